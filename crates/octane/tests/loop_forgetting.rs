//! Forgotten history keeps a loop's storage and its wake-up cost bounded,
//! whatever its age.

mod support;

use octane::history::{Event, EventKind, Location};
use octane::prelude::*;
use octane::store::{Batch, Transition, WriteOp};
use support::crash::{activity_commits, run_until_crash, CrashAfter};
use support::loops::{first_step, Counting, CountingLoop};
use support::{claim_new, fast_worker, unique, wait_output, TestDb};

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

support::store_tests!(
    a_commit_forgets_the_events_it_carries_on_a_fresh_connection,
    deferred_events_are_forgotten_like_the_others,
    a_million_empty_iterations_leave_one_row,
    stored_history_stays_within_commit_every_plus_retain
);
