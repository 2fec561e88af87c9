//! A worker process killed with SIGKILL mid-workflow: a new process on the
//! same database finishes it with the same result, and at most the one
//! activity in flight at the kill runs twice.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use octane::prelude::*;
use support::{eventually, fast_worker, wait_output, TestDb};

/// Appends `i` to a log file on every execution, so executions can be
/// counted across processes.
#[derive(Serialize, Deserialize)]
struct LoggedStep {
    log: PathBuf,
    i: u64,
}

impl Activity for LoggedStep {
    const NAME: &'static str = "logged_step";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(f, "{}", self.i)?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(self.i)
    }
}

struct ManySteps;
impl Workflow for ManySteps {
    const NAME: &'static str = "many_steps";
    type Input = (PathBuf, u64);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(PathBuf, u64)) -> Result<u64> {
        let (log, n) = input.clone();
        let mut sum = 0;
        for i in 0..n {
            sum += ctx
                .activity(LoggedStep {
                    log: log.clone(),
                    i,
                })
                .await?;
        }
        Ok(sum)
    }
}

/// Runs a worker until killed; started by the tests below as a child
/// process of this test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by the kill -9 tests"]
async fn kill_child_worker() {
    let Ok(url) = std::env::var("OCTANE_KILL_CHILD_DB") else {
        return;
    };
    let engine = Engine::open(&url).await.unwrap().register::<ManySteps>();
    let _worker = fast_worker(&engine);
    std::future::pending::<()>().await;
}

/// Starts `kill_child_worker` in a child process on `url`.
pub fn spawn_child(url: &str, test: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OCTANE_KILL_CHILD_DB", url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child worker")
}

fn executions(log: &Path) -> HashMap<u64, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.parse::<u64>().unwrap()).or_default() += 1;
    }
    counts
}

async fn kill_9_mid_workflow_then_finish_in_a_new_process(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let n = 60;
    let engine = db.engine().await.register::<ManySteps>();
    let id = engine
        .dispatch::<ManySteps>((log.clone(), n))
        .await
        .unwrap();

    let mut child = spawn_child(&db.url, "kill_child_worker");
    eventually(
        "the child to run 20 steps",
        Duration::from_secs(60),
        || async { (executions(&log).len() >= 20).then_some(()) },
    )
    .await;
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    let before = executions(&log).len() as u64;
    assert!(
        before < n,
        "the kill landed mid-workflow ({before} of {n} steps)"
    );

    let worker = fast_worker(&engine);
    assert_eq!(
        wait_output::<ManySteps>(&engine, id).await,
        (0..n).sum::<u64>()
    );
    let counts = executions(&log);
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
            before,
            "the repeated step is the one in flight at the kill"
        );
    }
    worker.shutdown().await;
}

store_tests!(kill_9_mid_workflow_then_finish_in_a_new_process);
