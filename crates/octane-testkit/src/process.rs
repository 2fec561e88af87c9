//! Child worker processes for `kill -9` tests: the test binary re-runs
//! itself with one ignored test selected, which opens the database named
//! in the environment and runs a worker until it is killed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use octane::prelude::*;

/// The environment variable that carries the database URL to the child.
pub const CHILD_DB: &str = "OCTANE_KILL_CHILD_DB";

/// Starts this test binary's ignored test `test` in a child process.
pub fn spawn_child(url: &str, test: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child worker")
}

/// In the child: the database to work on, or `None` when run as a test.
pub fn child_db() -> Option<String> {
    std::env::var(CHILD_DB).ok()
}

/// Appends `i` to a log file on every execution, so that executions can be
/// counted across processes.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct LoggedStep {
    pub log: PathBuf,
    pub i: u64,
}

impl Activity for LoggedStep {
    const NAME: &'static str = "logged_step";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        log_execution(&self.log, self.i)?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(self.i)
    }
}

/// Appends `i` to the log at `log`, as one execution of step `i`. The
/// line goes out in one write, so lines appended at once by concurrent
/// steps (or processes) never interleave.
pub fn log_execution(log: &Path, i: u64) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    f.write_all(format!("{i}\n").as_bytes())
}

/// How many times each `i` was logged.
pub fn executions(log: &Path) -> HashMap<u64, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.parse::<u64>().unwrap()).or_default() += 1;
    }
    counts
}

/// Checks a log after one kill: every step of `0..n` ran, and only the one
/// in flight at the kill (the last logged before it, `logged_before - 1`)
/// may have run twice.
pub fn assert_once_but_the_one_in_flight(log: &Path, n: u64, logged_before: u64) {
    let counts = executions(log);
    assert_eq!(counts.len() as u64, n, "every step ran");
    let twice: Vec<_> = counts
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        twice.len() <= 1 && counts.values().all(|&c| c <= 2),
        "only the step in flight at the kill may run again: {twice:?}"
    );
    if let Some(&i) = twice.first() {
        assert_eq!(
            i + 1,
            logged_before,
            "the repeated step is the one in flight at the kill"
        );
    }
}

/// Starts the child worker `test` on `url`, SIGKILLs it once `log` shows
/// `at_least` distinct steps, and returns how many it shows after the kill.
pub async fn kill_child_after(url: &str, test: &str, log: &Path, at_least: usize) -> u64 {
    let mut child = spawn_child(url, test);
    super::eventually(
        "the child to reach the kill point",
        Duration::from_secs(120),
        || async { (executions(log).len() >= at_least).then_some(()) },
    )
    .await;
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    executions(log).len() as u64
}
