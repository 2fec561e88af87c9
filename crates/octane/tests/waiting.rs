//! `Engine::wait`: a waiter reads its workflow again when that workflow
//! finishes, not whenever any workflow does; on Postgres a finish in
//! another process reaches it at once, without fast polling.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use octane::prelude::*;
use support::faults::Faults;
use support::{fast_worker, wait_output, TestDb};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Signal)]
struct Go {
    value: u64,
}

/// Finishes with the value of the first `Go` it receives.
struct Blocked;
impl Workflow for Blocked {
    const NAME: &'static str = "blocked";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        Ok(ctx.listen::<Go>().await?.value)
    }
}

/// Finishes at once.
struct Quick;
impl Workflow for Quick {
    const NAME: &'static str = "quick";
    type Input = u64;
    type Output = u64;
    async fn run(_ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        Ok(*n)
    }
}

/// How many workflows finish, in the waiter's process, while it waits.
const OTHERS: u64 = 300;

async fn a_wait_reads_its_workflow_again_only_when_that_one_finishes(db: TestDb) {
    let faults = Faults::new(db.store().await);
    let engine = Engine::with_store(faults.clone())
        .register::<Blocked>()
        .register::<Quick>();
    let worker = engine.worker().concurrency(64).spawn();
    let id = engine.dispatch::<Blocked>(()).await.unwrap();
    let waiter = tokio::spawn({
        let engine = engine.clone();
        async move { engine.wait::<Blocked>(id).await }
    });
    // The others run on the waiter's engine and are waited for through a
    // second one, whose reads the wrapper does not count.
    let observer = db.engine().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = faults.gets.load(Ordering::SeqCst);
    let mut others = Vec::new();
    for n in 0..OTHERS {
        others.push(engine.dispatch::<Quick>(n).await.unwrap());
    }
    for (n, other) in others.into_iter().enumerate() {
        assert_eq!(wait_output::<Quick>(&observer, other).await, n as u64);
    }
    let reads = faults.gets.load(Ordering::SeqCst) - before;
    // Its own polls (which back off) are all it may read meanwhile; a
    // waiter woken by every finish reads about once per finish.
    assert!(
        reads < OTHERS / 6,
        "the waiter read its workflow {reads} times while {OTHERS} others finished"
    );
    assert!(!waiter.is_finished());
    engine.signal(Go { value: 7 }).to(id).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the wait ends once its workflow finishes");
    assert_eq!(waited.unwrap().unwrap(), 7);
    worker.shutdown().await;
}

support::store_tests!(a_wait_reads_its_workflow_again_only_when_that_one_finishes);

/// How long the waiter waits before its workflow finishes, in another
/// process: long enough that its polls have backed off to their longest.
const ASLEEP: Duration = Duration::from_millis(7_500);

async fn a_wait_hears_at_once_of_a_finish_in_another_process(db: TestDb) {
    // Two engines, each with its own store and listener, as two processes.
    let runner = db.engine().await.register::<Blocked>();
    let faults = Faults::new(db.store().await);
    let waiting = Engine::with_store(faults.clone());
    // The listeners are connected once a wake-up round trip has been seen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let worker = fast_worker(&runner);
    let id = runner.dispatch::<Blocked>(()).await.unwrap();
    let waiter = tokio::spawn({
        let waiting = waiting.clone();
        async move {
            let outcome = waiting.wait::<Blocked>(id).await;
            (outcome, Instant::now())
        }
    });
    tokio::time::sleep(ASLEEP).await;
    let sent = Instant::now();
    runner.signal(Go { value: 9 }).to(id).await.unwrap();
    let (outcome, returned) = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the wait ends once its workflow finishes")
        .unwrap();
    assert_eq!(outcome.unwrap(), 9);
    let late = returned - sent;
    // Its next poll is more than 2 s away: the finish announced it.
    assert!(
        late < Duration::from_secs(2),
        "the wait returned {late:?} after the signal that finished the workflow"
    );
    // Polling every half second, as it must without the announcements,
    // would have read it about 20 times.
    let reads = faults.gets.load(Ordering::SeqCst);
    assert!(
        reads <= 14,
        "the waiter read its workflow {reads} times in {ASLEEP:?}"
    );
    worker.shutdown().await;
}

/// Only a shared server has other processes on the database.
mod across_processes {
    use super::*;
    support::postgres_tests!(a_wait_hears_at_once_of_a_finish_in_another_process);
}
