//! Forgotten history keeps a loop's storage and its wake-up cost bounded,
//! whatever its age.

mod support;

use octane::history::{Event, EventKind, Location};
use octane::prelude::*;
use octane::store::{Batch, Transition, WriteOp};
use support::crash::{activity_commits, run_until_crash, CrashAfter};
use support::loops::{first_step, Counting, CountingLoop};
use support::{claim_new, fast_worker, unique, wait_output, Step, TestDb};

/// `n` iterations checkpointed every `commit_every`; with `stamp`, each
/// records a value — a deferred event, written with the checkpoints rather
/// than in a commit of its own.
struct BareLoop;
impl Workflow for BareLoop {
    const NAME: &'static str = "bare_loop";
    type Input = (u64, u64, bool);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(u64, u64, bool)) -> Result<u64> {
        let (n, commit_every, stamp) = *input;
        ctx.repeat(0u64)
            .commit_every(commit_every)
            .run(move |ctx, i| {
                async move {
                    if stamp {
                        ctx.uuid()?;
                    }
                    *i += 1;
                    Ok(if *i == n {
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

async fn a_million_empty_iterations_leave_one_row(db: TestDb) {
    let engine = db.engine().await.register::<BareLoop>();
    let worker = fast_worker(&engine);
    let id = engine
        .dispatch::<BareLoop>((1_000_000, 20, false))
        .await
        .unwrap();
    assert_eq!(wait_output::<BareLoop>(&engine, id).await, 1_000_000);
    let history = engine.history(id).await.unwrap();
    assert_eq!(history.len(), 1, "only the loop event: {history:?}");
    assert_eq!(
        (history[0].event.iteration, history[0].event.done),
        (1_000_000, true)
    );
    worker.shutdown().await;
}

async fn stored_history_stays_within_commit_every_plus_retain(db: TestDb) {
    let (commit_every, retain) = (20, 100);
    let mut input = Counting::new(&unique("bounded"), 2_000, commit_every);
    input.retain = retain;
    // Stop the loop mid-way to look at its rows while it runs.
    let store = CrashAfter::new(db.store().await, 1_517, activity_commits());
    let (engine, id) = run_until_crash::<CountingLoop>(store, input.clone()).await;

    let stored = engine.history(id).await.unwrap();
    let activities = stored
        .iter()
        .filter(|h| h.event.kind == EventKind::Activity)
        .count() as u64;
    assert!(
        activities <= commit_every + retain + 1,
        "{activities} iterations stored mid-run"
    );
    // A wake-up reads the checkpoint and at most `commit_every` iterations.
    let loaded = db.store().await.load_history(id).await.unwrap();
    let loaded_activities = loaded
        .iter()
        .filter(|e| e.kind == EventKind::Activity)
        .count() as u64;
    assert!(
        loaded_activities <= commit_every,
        "a wake-up loads {loaded_activities} iterations"
    );
    assert!(
        loaded.iter().any(|e| e.location == first_step()),
        "and the checkpoint"
    );

    let engine = db.engine().await.register::<CountingLoop>();
    let worker = fast_worker(&engine);
    assert_eq!(
        wait_output::<CountingLoop>(&engine, id).await,
        input.expected()
    );
    let stored = engine.history(id).await.unwrap();
    assert_eq!(
        stored.len() as u64,
        retain + 1,
        "the last {retain} iterations and the loop event"
    );
    assert!(stored
        .iter()
        .filter(|h| h.event.kind == EventKind::Activity)
        .all(|h| h.forgotten));
    worker.shutdown().await;
}

async fn deferred_events_are_forgotten_like_the_others(db: TestDb) {
    let engine = db.engine().await.register::<BareLoop>();
    let worker = fast_worker(&engine);
    let id = engine
        .dispatch::<BareLoop>((20_000, 20, true))
        .await
        .unwrap();
    assert_eq!(wait_output::<BareLoop>(&engine, id).await, 20_000);
    let rows = engine.history(id).await.unwrap().len();
    assert!(
        rows <= 101,
        "{rows} rows after 20,000 iterations (retain 100)"
    );
    worker.shutdown().await;
}

fn recorded(location: &str, iteration: u64) -> WriteOp {
    WriteOp::Put(Event {
        location: location.parse::<Location>().unwrap(),
        version: 1,
        kind: if iteration > 0 {
            EventKind::Loop
        } else {
            EventKind::Now
        },
        name: String::new(),
        input_hash: 0,
        data: Some("1".into()),
        error: None,
        attempts: 0,
        iteration,
        deleted_below: 0,
        done: false,
        recorded_at: 0,
    })
}

/// One commit carrying a loop's deferred events and the checkpoint that
/// forgets them, as a fast loop's flush does, made on a store that has just
/// opened (its connections have prepared nothing yet): the range delete must
/// still run after the inserts it covers.
async fn a_commit_forgets_the_events_it_carries_on_a_fresh_connection(db: TestDb) {
    const ITERATIONS: u64 = 5_000;
    let store = db.store().await;
    let lease = claim_new(store.as_ref(), BareLoop::NAME, "[0, 20, true]").await;
    // Thousands of writes, as a loop that ran far ahead of its flushes
    // hands over at once.
    let mut ops: Vec<WriteOp> = (0..ITERATIONS)
        .map(|i| recorded(&format!("{{1, {i}, 1}}"), 0))
        .collect();
    ops.push(recorded("{1}", ITERATIONS));
    ops.push(WriteOp::ForgetIterations {
        loop_location: "{1}".parse().unwrap(),
        from: 0,
        below: ITERATIONS,
    });
    store
        .commit(
            &lease,
            Batch {
                ops,
                transition: Transition::Continue,
                now: 2,
            },
        )
        .await
        .unwrap();
    let left: Vec<String> = store
        .catalog()
        .all_events(lease.workflow_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.location.to_string())
        .collect();
    assert_eq!(left, ["{1}"], "only the checkpoint is left");
}

/// The iteration ranges `[from, below)` a run's commits deleted, in order.
fn forgotten_ranges(log: &[Batch]) -> Vec<(u64, u64)> {
    log.iter()
        .flat_map(|b| &b.ops)
        .filter_map(|op| match op {
            WriteOp::ForgetIterations { from, below, .. } => Some((*from, *below)),
            _ => None,
        })
        .collect()
}

/// Each forget deletes only what the one before it left: a loop that has
/// forgotten a million iterations must not walk them again at every
/// checkpoint (on Postgres their dead index entries stay until vacuum),
/// nor after a wake-up, which starts from the forget point stored with the
/// checkpoint.
async fn each_forget_starts_where_the_last_one_stopped(db: TestDb) {
    let mut input = Counting::new(&unique("tiles"), 2_000, 20);
    input.retain = 100;
    let store = CrashAfter::new(db.store().await, 1_517, activity_commits());
    let (_, id) = run_until_crash::<CountingLoop>(store.clone(), input.clone()).await;
    let before = forgotten_ranges(&store.log.lock().unwrap());

    let resumed = CrashAfter::logging(db.store().await);
    let engine = Engine::with_store(resumed.clone()).register::<CountingLoop>();
    let worker = fast_worker(&engine);
    assert_eq!(
        wait_output::<CountingLoop>(&engine, id).await,
        input.expected()
    );
    worker.shutdown().await;
    let after = forgotten_ranges(&resumed.log.lock().unwrap());

    for ranges in [&before, &after] {
        for pair in ranges.windows(2) {
            assert_eq!(pair[1].0, pair[0].1, "ranges not contiguous: {ranges:?}");
        }
    }
    assert_eq!(before.first().map(|r| r.0), Some(0), "{before:?}");
    // The resumed run starts at the stored forget point: past 0, and not
    // past what the crashed run asked to delete.
    let (resumed_from, _) = after[0];
    let asked = before.last().unwrap().1;
    assert!(
        resumed_from > 0 && resumed_from <= asked,
        "resumed at {resumed_from}, the crashed run had asked for {asked}"
    );
    let stored = engine.history(id).await.unwrap();
    assert_eq!(stored.len() as u64, input.retain + 1, "nothing leaked");
}

/// How many forgotten iterations `DeployedLoop` keeps, by its input's key:
/// what a deploy may change under a live workflow.
static RETAIN: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

fn set_retain(key: &str, retain: u64) {
    let mut all = RETAIN.lock().unwrap();
    all.retain(|(k, _)| k != key);
    all.push((key.to_string(), retain));
}

/// `n` iterations of one activity each, checkpointed every 20, keeping as
/// many forgotten iterations as the current deploy says.
struct DeployedLoop;
impl Workflow for DeployedLoop {
    const NAME: &'static str = "deployed_loop";
    type Input = (String, u64);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(String, u64)) -> Result<u64> {
        let (key, n) = input.clone();
        let retain = RETAIN
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap()
            .1;
        ctx.repeat(0u64)
            .commit_every(20)
            .retain(retain)
            .run(move |ctx, i| {
                let key = key.clone();
                async move {
                    ctx.activity(Step {
                        key: format!("{key}/{i}"),
                        value: *i,
                    })
                    .await?;
                    *i += 1;
                    Ok(if *i == n {
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

/// A deploy that keeps fewer forgotten iterations deletes the ones it no
/// longer keeps: the next deletion starts at the stored forget point, not at
/// one worked out from the new `retain`.
async fn a_deploy_that_keeps_fewer_iterations_deletes_the_rest(db: TestDb) {
    let key = unique("deployed");
    set_retain(&key, 100);
    let store = CrashAfter::new(db.store().await, 500, activity_commits());
    let (_, id) = run_until_crash::<DeployedLoop>(store, (key.clone(), 1_000)).await;

    set_retain(&key, 10);
    let engine = db.engine().await.register::<DeployedLoop>();
    let worker = fast_worker(&engine);
    assert_eq!(wait_output::<DeployedLoop>(&engine, id).await, 1_000);
    worker.shutdown().await;
    let stored = engine.history(id).await.unwrap();
    assert_eq!(
        stored.len(),
        11,
        "the last 10 iterations and the loop event"
    );
}

/// A loop whose iterations only defer writes (a recorded value each) runs
/// far faster than any store writes; what it has not written yet must stay
/// bounded — in memory, and in the size of the transaction that carries it,
/// which holds the workflow's row (on Postgres its lease renewal waits
/// behind it).
async fn a_loop_that_outruns_the_store_writes_in_bounded_batches(db: TestDb) {
    let store = CrashAfter::logging(db.store().await);
    let engine = Engine::with_store(store.clone()).register::<BareLoop>();
    let worker = fast_worker(&engine);
    let id = engine
        .dispatch::<BareLoop>((200_000, 20, true))
        .await
        .unwrap();
    assert_eq!(wait_output::<BareLoop>(&engine, id).await, 200_000);
    worker.shutdown().await;
    let log = store.log.lock().unwrap();
    let largest = log.iter().map(|b| b.ops.len()).max().unwrap();
    let written: usize = log.iter().map(|b| b.ops.len()).sum();
    assert!(written >= 200_000, "{written} writes for 200,000 values");
    assert!(
        largest <= 10_000,
        "a batch of {largest} writes ({} batches)",
        log.len()
    );
}

support::store_tests!(
    a_loop_that_outruns_the_store_writes_in_bounded_batches,
    a_deploy_that_keeps_fewer_iterations_deletes_the_rest,
    each_forget_starts_where_the_last_one_stopped,
    a_commit_forgets_the_events_it_carries_on_a_fresh_connection,
    deferred_events_are_forgotten_like_the_others,
    a_million_empty_iterations_leave_one_row,
    stored_history_stays_within_commit_every_plus_retain
);
