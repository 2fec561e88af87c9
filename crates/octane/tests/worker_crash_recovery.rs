//! A worker that dies mid-workflow (dropped, or stopped right after a
//! commit) loses nothing: a new worker on the same database finishes the
//! workflow, and no committed step runs again.

mod support;

use std::time::Duration;

use octane::prelude::*;
use support::crash::{activity_commits, run_until_crash, CrashAfter};
use support::{count, eventually, executions, fast_worker, unique, wait_output, Step, TestDb};

type FourSteps = support::Steps<4>;

async fn crash_after_each_commit_resumes_without_rerunning(db: TestDb) {
    for crash_at in 1..=3 {
        let key = unique("crash");
        let store = CrashAfter::new(db.store().await, crash_at, activity_commits());
        let (_, id) = run_until_crash::<FourSteps>(store, key.clone()).await;

        let engine = db.engine().await.register::<FourSteps>();
        let worker = fast_worker(&engine);
        assert_eq!(
            wait_output::<FourSteps>(&engine, id).await,
            10,
            "crash after commit {crash_at}"
        );
        for i in 1..=4 {
            assert_eq!(
                executions(&format!("{key}/{i}")),
                1,
                "step {i} after a crash at commit {crash_at}"
            );
        }
        worker.shutdown().await;
    }
}

/// Hangs on its first execution (as if the worker died inside it).
#[derive(Serialize, Deserialize)]
struct HangOnce {
    key: String,
}

impl Activity for HangOnce {
    const NAME: &'static str = "hang_once";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        if count(&self.key) == 1 {
            std::future::pending::<()>().await;
        }
        Ok(100)
    }
}

struct HangsInTheMiddle;
impl Workflow for HangsInTheMiddle {
    const NAME: &'static str = "hangs_in_the_middle";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx
            .activity(Step {
                key: format!("{key}/a"),
                value: 1,
            })
            .await?;
        let b = ctx
            .activity(HangOnce {
                key: format!("{key}/hang"),
            })
            .await?;
        let c = ctx
            .activity(Step {
                key: format!("{key}/c"),
                value: 10,
            })
            .await?;
        Ok(a + b + c)
    }
}

async fn dropping_the_worker_mid_activity_finishes_on_a_new_worker(db: TestDb) {
    let key = unique("drop");
    let engine = db.engine().await.register::<HangsInTheMiddle>();
    let worker = fast_worker(&engine);
    let id = engine
        .dispatch::<HangsInTheMiddle>(key.clone())
        .await
        .unwrap();
    let hang = format!("{key}/hang");
    eventually("the activity to start", Duration::from_secs(10), || async {
        (executions(&hang) == 1).then_some(())
    })
    .await;
    drop(worker);

    let worker = fast_worker(&engine);
    assert_eq!(wait_output::<HangsInTheMiddle>(&engine, id).await, 111);
    assert_eq!(
        executions(&format!("{key}/a")),
        1,
        "the committed step did not run again"
    );
    assert_eq!(executions(&hang), 2, "the uncommitted step ran again");
    assert_eq!(executions(&format!("{key}/c")), 1);
    worker.shutdown().await;
}

/// Takes longer than a lease, to prove leases stay renewed while draining.
#[derive(Serialize, Deserialize)]
struct Slow {
    key: String,
}

impl Activity for Slow {
    const NAME: &'static str = "slow";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        count(&self.key);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        Ok(5)
    }
}

/// The same workflow on both engines, except that the fast step's counter
/// names the worker that ran it: which worker finished the workflow is then
/// visible without racing the hand-over.
struct SlowThenFast<const STANDBY: bool>;
impl<const STANDBY: bool> Workflow for SlowThenFast<STANDBY> {
    const NAME: &'static str = "slow_then_fast";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx
            .activity(Slow {
                key: format!("{key}/slow"),
            })
            .await?;
        let b = ctx
            .activity(Step {
                key: fast_key(key, STANDBY),
                value: 1,
            })
            .await?;
        Ok(a + b)
    }
}

fn fast_key(key: &str, standby: bool) -> String {
    format!(
        "{key}/fast/{}",
        if standby { "standby" } else { "draining" }
    )
}

async fn graceful_shutdown_drains_without_running_anything_twice(db: TestDb) {
    let key = unique("drain");
    let engine = db.engine().await.register::<SlowThenFast<false>>();
    let draining = fast_worker(&engine);
    let id = engine
        .dispatch::<SlowThenFast<false>>(key.clone())
        .await
        .unwrap();
    let slow = format!("{key}/slow");
    eventually(
        "the slow activity to start",
        Duration::from_secs(10),
        || async { (executions(&slow) == 1).then_some(()) },
    )
    .await;
    // A second worker stands by for the whole drain, which outlasts the
    // lease several times over: it must not take the workflow over.
    let other = db.engine().await.register::<SlowThenFast<true>>();
    let standby = fast_worker(&other);
    draining.shutdown().await;
    assert_eq!(wait_output::<SlowThenFast<false>>(&engine, id).await, 6);
    assert_eq!(executions(&slow), 1, "the draining activity ran once");
    assert_eq!(
        executions(&fast_key(&key, false)),
        0,
        "evicted at the step boundary: the draining worker started nothing new"
    );
    assert_eq!(
        executions(&fast_key(&key, true)),
        1,
        "the standby worker finished the evicted workflow"
    );
    standby.shutdown().await;
}

support::store_tests!(
    crash_after_each_commit_resumes_without_rerunning,
    dropping_the_worker_mid_activity_finishes_on_a_new_worker,
    graceful_shutdown_drains_without_running_anything_twice,
);
