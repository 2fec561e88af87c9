//! A 2,000-iteration loop with an activity per iteration, its worker
//! process killed with SIGKILL at a random iteration: a new process
//! finishes it with the uninterrupted result, and only the activity in
//! flight at the kill may run twice.

mod support;

use std::path::PathBuf;

use octane::prelude::*;
use rand::Rng;
use support::process::{assert_once_but_the_one_in_flight, child_db, kill_child_after, LoggedStep};
use support::{fast_worker, wait_output, TestDb};

struct LoggedLoop;
impl Workflow for LoggedLoop {
    const NAME: &'static str = "logged_loop";
    type Input = (PathBuf, u64, u64);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(PathBuf, u64, u64)) -> Result<u64> {
        let (log, n, commit_every) = input.clone();
        ctx.repeat((0u64, 0u64))
            .commit_every(commit_every)
            .run(move |ctx, (i, sum)| {
                let log = log.clone();
                async move {
                    *sum += ctx.activity(LoggedStep { log, i: *i }).await?;
                    *i += 1;
                    Ok(if *i == n {
                        Loop::Break(*sum)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by the kill -9 test"]
async fn loop_kill_child_worker() {
    let Some(url) = child_db() else { return };
    let engine = Engine::open(&url).await.unwrap().register::<LoggedLoop>();
    let _worker = fast_worker(&engine);
    std::future::pending::<()>().await;
}

async fn kill_9_at_a_random_iteration_then_finish_in_a_new_process(db: TestDb) {
    for commit_every in [1, 20] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("executions.log");
        let n = 2_000;
        let kill_after = rand::thread_rng().gen_range(200..1_800);
        let engine = db.engine().await.register::<LoggedLoop>();
        let id = engine
            .dispatch::<LoggedLoop>((log.clone(), n, commit_every))
            .await
            .unwrap();

        let before = kill_child_after(&db.url, "loop_kill_child_worker", &log, kill_after).await;
        assert!(
            before < n,
            "the kill landed mid-loop ({before} of {n} iterations)"
        );

        let worker = fast_worker(&engine);
        assert_eq!(
            wait_output::<LoggedLoop>(&engine, id).await,
            (0..n).sum::<u64>(),
            "commit_every({commit_every}), killed after {before} iterations"
        );
        assert_once_but_the_one_in_flight(&log, n, before);
        worker.shutdown().await;
    }
}

support::store_tests!(kill_9_at_a_random_iteration_then_finish_in_a_new_process);
