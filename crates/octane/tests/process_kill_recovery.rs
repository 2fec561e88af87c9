//! A worker process killed with SIGKILL mid-workflow: a new process on the
//! same database finishes it with the same result, and at most the one
//! activity in flight at the kill runs twice.

mod support;

use std::path::PathBuf;

use octane::prelude::*;
use support::process::{assert_once_but_the_one_in_flight, child_db, kill_child_after, LoggedStep};
use support::{fast_worker, wait_output, TestDb};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by the kill -9 test"]
async fn kill_child_worker() {
    let Some(url) = child_db() else { return };
    let engine = Engine::open(&url).await.unwrap().register::<ManySteps>();
    let _worker = fast_worker(&engine);
    std::future::pending::<()>().await;
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

    let before = kill_child_after(&db.url, "kill_child_worker", &log, 20).await;
    assert!(
        before < n,
        "the kill landed mid-workflow ({before} of {n} steps)"
    );

    let worker = fast_worker(&engine);
    assert_eq!(
        wait_output::<ManySteps>(&engine, id).await,
        (0..n).sum::<u64>()
    );
    assert_once_but_the_one_in_flight(&log, n, before);
    worker.shutdown().await;
}

support::store_tests!(kill_9_mid_workflow_then_finish_in_a_new_process);
