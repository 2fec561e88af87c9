//! A loop stopped at any point — right after any iteration's step commits,
//! while a checkpoint is still in flight, inside a nested loop, or by a
//! real `kill -9` — resumes from its last checkpoint, replays the later
//! iterations from history, and finishes with the uninterrupted result;
//! no committed activity runs twice.

mod support;

use std::sync::Arc;
use std::time::Duration;

use octane::prelude::*;
use support::crash::{activity_commits, run_until_crash, CrashAfter};
use support::loops::{active_iterations, first_step, Counting, CountingLoop};
use support::{executions, fast_worker, unique, wait_output, Step, TestDb};

/// Runs `input` on a store that crashes right after the `crash_at`th
/// activity commit, then finishes it on a fresh engine and checks the
/// result, the execution counts and the size of the active history at the
/// crash.
async fn crash_and_resume(db: &TestDb, input: Counting, crash_at: u64, slow_checkpoints: bool) {
    let mut store = CrashAfter::new(db.store().await, crash_at, activity_commits());
    if slow_checkpoints {
        Arc::get_mut(&mut store)
            .unwrap()
            .delay_checkpoint_flushes(Duration::from_millis(15));
    }
    let (engine, id) = run_until_crash::<CountingLoop>(store, input.clone()).await;

    let what = format!(
        "commit_every({}), crash after activity {crash_at}",
        input.commit_every
    );
    let active = active_iterations(&engine, id, &first_step()).await;
    assert!(
        active.len() as u64 <= input.commit_every + 1,
        "{what}: active history holds iterations {active:?}"
    );

    let engine = db.engine().await.register::<CountingLoop>();
    let worker = fast_worker(&engine);
    assert_eq!(
        wait_output::<CountingLoop>(&engine, id).await,
        input.expected(),
        "{what}"
    );
    for key in input.activity_keys() {
        assert_eq!(executions(&key), 1, "{what}: {key}");
    }
    worker.shutdown().await;
}

async fn a_crash_after_any_iteration_in_a_batch_loses_nothing(db: TestDb) {
    // The last case checkpoints every iteration, each forgetting (and, with
    // retain(0), deleting) everything before it, over many checkpoints:
    // resuming from any but the newest would run deleted iterations'
    // activities again.
    for (commit_every, iterations) in [(1, 5), (5, 13), (20, 43), (1, 36)] {
        for crash_at in 1..=iterations - 2 {
            let input = Counting::new(&unique("offset"), iterations, commit_every);
            crash_and_resume(&db, input, crash_at, false).await;
        }
    }
}

async fn a_checkpoint_in_flight_never_forgets_the_running_iteration(db: TestDb) {
    // Two iterations in three record nothing, so checkpoints are flushed on
    // their own, in the background, and are slowed down so that the next
    // iteration records its activity while the flush is still in flight.
    // With retain(0) a checkpoint deletes everything before it: had it
    // reached the running iteration, replay would run that activity again.
    // Two things prevent that — the range is fixed when the checkpoint is
    // taken, and a run's writes land in the order they were made — and
    // this test fails if both are broken.
    for commit_every in [1, 2] {
        for crash_at in 1..=6 {
            let mut input = Counting::new(&unique("overlap"), 20, commit_every);
            input.active_every = 3;
            crash_and_resume(&db, input, crash_at, true).await;
        }
    }
}

/// `outer` iterations of an inner loop of `inner` iterations, one activity
/// per inner iteration.
#[derive(Serialize, Deserialize, Clone)]
struct Nested {
    key: String,
    outer: u64,
    inner: u64,
}

struct NestedLoops;
impl Workflow for NestedLoops {
    const NAME: &'static str = "nested_loops";
    type Input = Nested;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &Nested) -> Result<u64> {
        let n = input.clone();
        ctx.repeat((0u64, 0u64))
            .commit_every(1)
            .run(move |ctx, (o, total)| {
                let n = n.clone();
                async move {
                    let outer = *o;
                    let key = n.key.clone();
                    let sum = ctx
                        .repeat((0u64, 0u64))
                        .commit_every(7)
                        .retain(3)
                        .run(move |ctx, (i, sum)| {
                            let key = format!("{key}/{outer}/{i}");
                            async move {
                                *sum += ctx
                                    .activity(Step {
                                        key,
                                        value: outer * 100 + *i,
                                    })
                                    .await?;
                                *i += 1;
                                Ok(if *i == n.inner {
                                    Loop::Break(*sum)
                                } else {
                                    Loop::Continue
                                })
                            }
                            .boxed()
                        })
                        .await?;
                    *total += sum;
                    *o += 1;
                    Ok(if *o == n.outer {
                        Loop::Break(*total)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

async fn nested_loops_resume_from_a_crash_inside_the_inner_loop(db: TestDb) {
    for crash_at in [5, 30, 31, 44, 75] {
        let input = Nested {
            key: unique("nested"),
            outer: 3,
            inner: 30,
        };
        let store = CrashAfter::new(db.store().await, crash_at, activity_commits());
        let (_, id) = run_until_crash::<NestedLoops>(store, input.clone()).await;

        let engine = db.engine().await.register::<NestedLoops>();
        let worker = fast_worker(&engine);
        let expected: u64 = (0..3).flat_map(|o| (0..30).map(move |i| o * 100 + i)).sum();
        assert_eq!(
            wait_output::<NestedLoops>(&engine, id).await,
            expected,
            "crash at {crash_at}"
        );
        for o in 0..3 {
            for i in 0..30 {
                assert_eq!(
                    executions(&format!("{}/{o}/{i}", input.key)),
                    1,
                    "crash at {crash_at}: {o}/{i}"
                );
            }
        }
        worker.shutdown().await;
    }
}

support::store_tests!(
    a_crash_after_any_iteration_in_a_batch_loses_nothing,
    a_checkpoint_in_flight_never_forgets_the_running_iteration,
    nested_loops_resume_from_a_crash_inside_the_inner_loop,
);
