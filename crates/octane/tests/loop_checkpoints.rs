//! Where a loop writes its checkpoints, what `Break` records, and what a
//! finished loop replays.

mod support;

use std::time::Duration;

use octane::history::{Event, EventKind};
use octane::prelude::*;
use octane::store::WriteOp;
use octane::{Error, WorkflowState};
use support::crash::CrashAfter;
use support::loops::{Counting, CountingLoop};
use support::{count, executions, fast_worker, unique, wait_output, wait_state, Step, TestDb};

/// The loop checkpoints written, in order, as `(iteration, done)`.
fn checkpoints(store: &CrashAfter) -> Vec<(u64, bool)> {
    store
        .log
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.ops.iter())
        .filter_map(|op| match op {
            WriteOp::Put(Event {
                kind: EventKind::Loop,
                iteration,
                done,
                ..
            }) => Some((*iteration, *done)),
            _ => None,
        })
        .collect()
}

async fn checkpoints_land_at_the_start_every_n_and_at_break(db: TestDb) {
    for (iterations, expected) in [
        (25, vec![(0, false), (20, false), (25, true)]),
        (15, vec![(0, false), (15, true)]),
        (20, vec![(0, false), (20, true)]),
        (40, vec![(0, false), (20, false), (40, true)]),
    ] {
        let store = CrashAfter::logging(db.store().await);
        let engine = Engine::with_store(store.clone()).register::<CountingLoop>();
        let worker = fast_worker(&engine);
        let input = Counting::new(&unique("ckpt"), iterations, 20);
        let id = engine
            .dispatch::<CountingLoop>(input.clone())
            .await
            .unwrap();
        assert_eq!(
            wait_output::<CountingLoop>(&engine, id).await,
            input.expected()
        );
        assert_eq!(checkpoints(&store), expected, "{iterations} iterations");
        // Every commit made while the loop ran carried an activity: the
        // checkpoints rode along, costing no commit of their own.
        let commits = store.log.lock().unwrap().len();
        assert_eq!(
            commits as u64,
            iterations + 1,
            "one commit per iteration, plus completion"
        );
        let loop_event = engine
            .history(id)
            .await
            .unwrap()
            .into_iter()
            .find(|h| h.event.kind == EventKind::Loop)
            .unwrap()
            .event;
        assert!(loop_event.done);
        assert_eq!(loop_event.iteration, iterations);
        assert_eq!(
            loop_event.data,
            Some(input.expected().to_string()),
            "the output is recorded"
        );
        worker.shutdown().await;
    }
}

/// A loop, then a sleep that evicts the workflow, so the finished loop is
/// replayed on wake-up.
struct LoopThenNap;
impl Workflow for LoopThenNap {
    const NAME: &'static str = "loop_then_nap";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        let body_key = key.clone();
        let total = ctx
            .repeat(0u64)
            .run(move |ctx, n| {
                let key = body_key.clone();
                async move {
                    count(&format!("{key}/body"));
                    *n += ctx
                        .activity(Step {
                            key: format!("{key}/{n}"),
                            value: 1,
                        })
                        .await?;
                    Ok(if *n == 5 {
                        Loop::Break(*n * 10)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await?;
        ctx.sleep(Duration::from_millis(100)).await?;
        Ok(total)
    }
}

async fn a_finished_loop_replays_its_output_without_running_the_body(db: TestDb) {
    let key = unique("finished");
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<LoopThenNap>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<LoopThenNap>(key.clone()).await.unwrap();
    assert_eq!(wait_output::<LoopThenNap>(&engine, id).await, 50);
    assert_eq!(
        executions(&format!("{key}/body")),
        5,
        "the body ran once per iteration, never on replay"
    );
    worker.shutdown().await;
}

/// A loop that sleeps (leaving memory) in every iteration.
struct NappingLoop;
impl Workflow for NappingLoop {
    const NAME: &'static str = "napping_loop";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        ctx.repeat(0u64)
            .commit_every(2)
            .run(move |ctx, n| {
                let key = key.clone();
                async move {
                    *n += ctx
                        .activity(Step {
                            key: format!("{key}/{n}"),
                            value: 1,
                        })
                        .await?;
                    ctx.sleep(Duration::from_millis(30)).await?;
                    Ok(if *n == 5 {
                        Loop::Break(*n)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

async fn a_sleep_inside_a_loop_evicts_and_resumes_the_loop(db: TestDb) {
    let key = unique("napping");
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<NappingLoop>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<NappingLoop>(key.clone()).await.unwrap();
    assert_eq!(wait_output::<NappingLoop>(&engine, id).await, 5);
    for n in 0..5 {
        assert_eq!(executions(&format!("{key}/{n}")), 1, "iteration {n}");
    }
    worker.shutdown().await;
}

/// A loop whose state grows by a kilobyte an iteration.
struct Hoarder;
impl Workflow for Hoarder {
    const NAME: &'static str = "hoarder";
    type Input = ();
    type Output = usize;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<usize> {
        ctx.repeat(Vec::<String>::new())
            .commit_every(1)
            .run(|_ctx, hoard| {
                async move {
                    hoard.push("x".repeat(1024));
                    Ok(if hoard.len() == 100 {
                        Loop::Break(hoard.len())
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

async fn a_loop_state_over_the_cap_parks_with_a_clear_error(db: TestDb) {
    let engine = db
        .engine()
        .await
        .max_loop_state(10 * 1024)
        .register::<Hoarder>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Hoarder>(()).await.unwrap();
    let info = wait_state(&engine, id, WorkflowState::Parked).await;
    assert_eq!(info.code, Some(octane::FailureCode::StateTooLarge));
    let error = info.error.unwrap();
    assert!(
        error.contains(&format!("loop at {{1}} of workflow {id}")),
        "{error}"
    );
    assert!(error.contains("over the cap of 10240 bytes"), "{error}");
    let err = engine.wait::<Hoarder>(id).await.unwrap_err();
    assert!(matches!(err, Error::WorkflowParked { .. }));
    worker.shutdown().await;
}

support::store_tests!(
    checkpoints_land_at_the_start_every_n_and_at_break,
    a_finished_loop_replays_its_output_without_running_the_body,
    a_sleep_inside_a_loop_evicts_and_resumes_the_loop,
    a_loop_state_over_the_cap_parks_with_a_clear_error,
);
