//! A database that fails under a running workflow — away for a while,
//! rejecting a value, panicking inside the store, slow to commit — never
//! fails the workflow for good, never leaves it stuck, and never makes a
//! committed step run again.

mod support;

use std::time::{Duration, Instant};

use octane::history::EventKind;
use octane::prelude::*;
use octane::store::WriteOp;
use octane::WorkflowState;
use support::faults::{Fault, Faults, Op};
use support::{count, eventually, executions, fast_worker, unique, wait_output, wait_state};
use support::{Step, TestDb};

#[derive(Serialize, Deserialize, Signal)]
struct Go(u64);

/// Waits for one `Go` and returns it.
struct Waiter;
impl Workflow for Waiter {
    const NAME: &'static str = "waiter";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        Ok(ctx.listen::<Go>().await?.0)
    }
}

/// Sends `Go(7)` to a waiter.
struct Pinger;
impl Workflow for Pinger {
    const NAME: &'static str = "pinger";
    type Input = WorkflowId;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, target: &WorkflowId) -> Result<()> {
        ctx.signal(Go(7)).to(*target).send().await?;
        Ok(())
    }
}

/// Starts a child that returns its input, and waits for its output.
struct Echo;
impl Workflow for Echo {
    const NAME: &'static str = "echo";
    type Input = u64;
    type Output = u64;
    async fn run(_ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        Ok(*n)
    }
}

struct EchoParent;
impl Workflow for EchoParent {
    const NAME: &'static str = "echo_parent";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        Ok(ctx.workflow::<Echo>(*n).output().await? + 1)
    }
}

/// Each read a step makes (a listen's pending signals, a signal's target,
/// a child's state) fails once, then for two seconds: every workflow still
/// completes, none is failed.
async fn a_read_that_fails_inside_a_step_never_fails_the_workflow(db: TestDb) {
    for fault in [
        Fault::Unavailable(1),
        Fault::UnavailableUntil(Instant::now() + Duration::from_secs(2)),
    ] {
        for op in [Op::PendingSignals, Op::ResolveTarget, Op::Get] {
            let faults = Faults::new(db.store().await);
            let engine = Engine::with_store(faults.clone())
                .register::<Waiter>()
                .register::<Pinger>()
                .register::<Echo>()
                .register::<EchoParent>();
            let observer = db.engine().await;
            let waiter = engine.dispatch::<Waiter>(()).await.unwrap();
            let parent = engine.dispatch::<EchoParent>(41).await.unwrap();
            let faults_at = match fault {
                Fault::UnavailableUntil(_) => {
                    Fault::UnavailableUntil(Instant::now() + Duration::from_secs(2))
                }
                f => f,
            };
            faults.set(op, faults_at);
            let pinger = engine.dispatch::<Pinger>(waiter).await.unwrap();
            let worker = fast_worker(&engine);
            assert_eq!(wait_output::<Waiter>(&observer, waiter).await, 7, "{op:?}");
            assert_eq!(wait_output::<Pinger>(&observer, pinger).await, (), "{op:?}");
            assert_eq!(wait_output::<EchoParent>(&observer, parent).await, 42);
            assert!(faults.injected() > 0, "{op:?} was faulted");
            worker.shutdown().await;
        }
    }
}

/// Fails for good: the database rejects the record of its failure.
#[derive(Serialize, Deserialize)]
struct Rejected {
    key: String,
}

impl Activity for Rejected {
    const NAME: &'static str = "rejected";
    type Output = ();
    fn retry() -> RetryPolicy {
        RetryPolicy::never()
    }
    async fn run(&self, _ctx: &ActivityCtx) -> Result<()> {
        count(&self.key);
        anyhow::bail!("bad response")
    }
}

struct RecordsTheUnrecordable;
impl Workflow for RecordsTheUnrecordable {
    const NAME: &'static str = "records_the_unrecordable";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<()> {
        let _ = ctx.activity(Rejected { key: key.clone() }).await;
        Ok(())
    }
}

/// A write the database will never accept is not retried for ever (each
/// replay running the activity again): the workflow stops at once with an
/// error that names the cause, and the activity ran once.
async fn a_write_the_database_rejects_stops_the_workflow_after_one_execution(db: TestDb) {
    let faults = Faults::new(db.store().await);
    faults.reject_commits(Box::new(|b| {
        b.ops
            .iter()
            .any(|op| matches!(op, WriteOp::Put(e) if e.kind == EventKind::Activity))
    }));
    let engine = Engine::with_store(faults.clone()).register::<RecordsTheUnrecordable>();
    let key = unique("rejected");
    let id = engine
        .dispatch::<RecordsTheUnrecordable>(key.clone())
        .await
        .unwrap();
    let worker = engine
        .worker()
        .lease_ttl(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let info = eventually("the workflow to stop", Duration::from_secs(30), || async {
        let info = engine.get(id).await.ok()?;
        (info.state != WorkflowState::Running && info.state != WorkflowState::Pending)
            .then_some(info)
    })
    .await;
    // Long enough for several lease expiries had the run been replayed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(executions(&key), 1, "the activity ran once");
    let error = info.error.unwrap_or_default();
    assert!(error.contains("rejected"), "{error}");
    assert_eq!(engine.get(id).await.unwrap().state, info.state);
    worker.shutdown().await;
}

/// The real thing on PostgreSQL: TEXT cannot hold a NUL byte.
#[derive(Serialize, Deserialize)]
struct NulError {
    key: String,
}

impl Activity for NulError {
    const NAME: &'static str = "nul_error";
    type Output = ();
    fn retry() -> RetryPolicy {
        RetryPolicy::never()
    }
    async fn run(&self, _ctx: &ActivityCtx) -> Result<()> {
        count(&self.key);
        anyhow::bail!("bad response: a\0b")
    }
}

struct FailsWithNul;
impl Workflow for FailsWithNul {
    const NAME: &'static str = "fails_with_nul";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<()> {
        ctx.activity(NulError { key: key.clone() }).await?;
        Ok(())
    }
}

async fn an_activity_error_with_a_nul_byte_fails_the_workflow_once(db: TestDb) {
    let engine = db.engine().await.register::<FailsWithNul>();
    let key = unique("nul");
    let id = engine.dispatch::<FailsWithNul>(key.clone()).await.unwrap();
    let worker = engine
        .worker()
        .lease_ttl(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let info = wait_state(&engine, id, WorkflowState::Failed).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(executions(&key), 1, "the activity ran once");
    assert!(
        info.error.unwrap_or_default().contains("bad response: a"),
        "the error is kept, readable"
    );
    worker.shutdown().await;
}

/// A panic inside the store while a run commits does not leave the
/// workflow held by a run that is gone: it is replayed and completes.
async fn a_panic_inside_the_store_does_not_strand_the_workflow(db: TestDb) {
    let faults = Faults::new(db.store().await);
    let engine = Engine::with_store(faults.clone()).register::<Steps3>();
    let key = unique("panic");
    let id = engine.dispatch::<Steps3>(key.clone()).await.unwrap();
    faults.set(Op::Commit, Fault::Panic(1));
    let worker = fast_worker(&engine);
    assert_eq!(wait_output::<Steps3>(&engine, id).await, 6);
    assert_eq!(faults.injected(), 1);
    // The run that completed it leaves memory just after its last commit.
    support::eventually(
        "no run left holding a lease",
        Duration::from_secs(10),
        || async { (worker.running() == 0).then_some(()) },
    )
    .await;
    worker.shutdown().await;
}

type Steps3 = support::Steps<3>;

/// Races an activity against a timeout shorter than its commit, then idles
/// (outside any step) while the test looks at the database.
struct Impatient;
impl Workflow for Impatient {
    const NAME: &'static str = "impatient";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<()> {
        let step = Step {
            key: key.clone(),
            value: 1,
        };
        let _ = tokio::time::timeout(Duration::from_millis(50), ctx.activity(step)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    }
}

/// A step future dropped in the middle of its commit (user code racing it
/// against a timeout) still has its commit finish on its own: the record
/// lands, and nothing is left half-done holding the workflow's row.
async fn a_commit_whose_step_was_dropped_still_finishes(db: TestDb) {
    let faults = Faults::new(db.store().await);
    faults.set(Op::Commit, Fault::Delay(Duration::from_millis(200)));
    let engine = Engine::with_store(faults.clone()).register::<Impatient>();
    let key = unique("impatient");
    let id = engine.dispatch::<Impatient>(key.clone()).await.unwrap();
    let worker = fast_worker(&engine);
    let observer = db.engine().await;
    eventually(
        "the dropped step's record to land while the workflow idles",
        Duration::from_millis(2500),
        || async {
            let history = observer.history(id).await.ok()?;
            history
                .iter()
                .any(|h| h.event.kind == EventKind::Activity && h.event.done)
                .then_some(())
        },
    )
    .await;
    wait_output::<Impatient>(&observer, id).await;
    assert_eq!(executions(&key), 1);
    worker.shutdown().await;
}

/// A failed history load hands the workflow back at once instead of
/// holding it until its lease (30 s by default) runs out.
async fn a_failed_history_load_does_not_hold_the_workflow_for_a_lease(db: TestDb) {
    let faults = Faults::new(db.store().await);
    faults.set(Op::LoadHistory, Fault::Unavailable(1));
    let engine = Engine::with_store(faults.clone()).register::<Steps3>();
    let key = unique("load");
    let id = engine.dispatch::<Steps3>(key.clone()).await.unwrap();
    let worker = engine
        .worker()
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let started = Instant::now();
    assert_eq!(wait_output::<Steps3>(&engine, id).await, 6);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}: the workflow waited for its lease",
        started.elapsed()
    );
    assert_eq!(faults.injected(), 1);
    worker.shutdown().await;
}

support::store_tests!(
    a_read_that_fails_inside_a_step_never_fails_the_workflow,
    a_write_the_database_rejects_stops_the_workflow_after_one_execution,
    an_activity_error_with_a_nul_byte_fails_the_workflow_once,
    a_panic_inside_the_store_does_not_strand_the_workflow,
    a_commit_whose_step_was_dropped_still_finishes,
    a_failed_history_load_does_not_hold_the_workflow_for_a_lease,
);
