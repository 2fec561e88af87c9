//! PostgreSQL restarted in the middle of a run: workers reconnect, every
//! workflow finishes with the right result, and only steps whose commit
//! was cut off by the restart run again.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use octane::prelude::*;
use octane::{ListFilter, WorkflowState};
use support::{eventually, fast_worker, TestDb};

#[derive(Serialize, Deserialize)]
struct Logged {
    log: PathBuf,
    key: String,
}

impl Activity for Logged {
    const NAME: &'static str = "logged";
    type Output = ();
    async fn run(&self, _ctx: &ActivityCtx) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        f.write_all(format!("{}\n", self.key).as_bytes())?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Signal)]
struct Go;

/// Eight logged steps in a loop; with `signalled`, each waits for a `Go`
/// first.
struct Steps;
impl Workflow for Steps {
    const NAME: &'static str = "steps";
    type Input = (PathBuf, String, bool);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(PathBuf, String, bool)) -> Result<u64> {
        let (log, key, signalled) = input.clone();
        ctx.repeat(0u64)
            .commit_every(1)
            .run(move |ctx, i| {
                let (log, key) = (log.clone(), format!("{key}/{i}"));
                async move {
                    if signalled {
                        ctx.listen::<Go>().await?;
                    }
                    ctx.activity(Logged { log, key }).await?;
                    *i += 1;
                    Ok(if *i == 8 {
                        Loop::Break(*i)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

support::postgres_restart_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_restarted_mid_run_loses_and_duplicates_nothing() {
        restart_mid_run(false).await;
    }
}

support::postgres_restart_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_restarted_while_workflows_take_signals_fails_none() {
        restart_mid_run(true).await;
    }
}

/// Runs 40 workflows of eight logged steps (each after a signal, when
/// `signalled`), restarts the server once 60 steps ran, and checks that
/// every workflow completes, none is failed or parked, every step ran, and
/// only steps in flight at the restart ran again.
async fn restart_mid_run(signalled: bool) {
    // One server restart at a time: each test restarts the shared server.
    static RESTARTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _alone = RESTARTS.lock().await;
    let cluster = std::env::var("OCTANE_TEST_POSTGRES_CLUSTER").unwrap();
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let engine = db.engine().await.register::<Steps>();
    let worker = fast_worker(&engine);
    let n = 40;
    for j in 0..n {
        let id = engine
            .dispatch::<Steps>((log.clone(), format!("w{j}"), signalled))
            .await
            .unwrap();
        if signalled {
            for _ in 0..8 {
                engine.signal(Go).to(id).await.unwrap();
            }
        }
    }
    eventually("work to be under way", Duration::from_secs(60), || async {
        (lines(&log).len() >= 60).then_some(())
    })
    .await;
    let mut args: Vec<&str> = cluster.split_whitespace().collect();
    args.push("restart");
    let status = Command::new("pg_ctlcluster")
        .args(&args)
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {args:?}");
    let during = lines(&log).len();

    eventually(
        "every workflow to complete after the restart",
        Duration::from_secs(120),
        || async {
            let done = engine
                .list(
                    ListFilter::default()
                        .state(WorkflowState::Completed)
                        .limit(n + 1),
                )
                .await
                .ok()?
                .len();
            (done == n).then_some(())
        },
    )
    .await;
    for state in [WorkflowState::Failed, WorkflowState::Parked] {
        let stuck = engine
            .list(ListFilter::default().state(state))
            .await
            .unwrap();
        assert!(stuck.is_empty(), "{state}: {stuck:?}");
    }
    let all = lines(&log);
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for l in &all {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), n * 8, "every step ran");
    let repeated: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(
        counts.values().all(|&c| c <= 2),
        "a step ran more than twice: {repeated:?}"
    );
    // Only a step whose commit the restart cut off may run again, and a
    // workflow has one step in flight at a time.
    let mut per_workflow = std::collections::HashMap::<&str, usize>::new();
    for (key, _) in &repeated {
        *per_workflow
            .entry(key.split('/').next().unwrap())
            .or_default() += 1;
    }
    assert!(
        per_workflow.values().all(|&c| c == 1),
        "a workflow repeated more than its step in flight: {repeated:?}"
    );
    eprintln!(
        "{during} steps before the restart finished; {} steps repeated after it",
        repeated.len()
    );
    worker.shutdown().await;
}
