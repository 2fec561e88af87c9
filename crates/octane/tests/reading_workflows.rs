//! Reading workflows without replaying them: a loop's last checkpoint,
//! typed, straight from the store; and listing a million workflows a page
//! at a time.

mod support;

use std::collections::BTreeSet;

use octane::history::Location;
use octane::prelude::*;
use octane::{Error, ListFilter, LoopState, WorkflowState};
use support::{unique, wait_output, wait_state, Step, TestDb};

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
struct Actor {
    seen: u64,
    last: String,
}

#[derive(Serialize, Deserialize)]
struct Stop;
impl Signal for Stop {
    const NAME: &'static str = "stop";
}

/// 23 iterations with an activity each, checkpointed every 5, then it
/// waits (out of memory) for `stop` inside iteration 23.
struct Counter;
impl Workflow for Counter {
    const NAME: &'static str = "counter";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        let init = Actor {
            seen: 0,
            last: String::new(),
        };
        ctx.repeat(init)
            .commit_every(5)
            .run(move |ctx, actor| {
                let key = key.clone();
                async move {
                    if actor.seen == 23 {
                        ctx.listen::<Stop>().await?;
                        return Ok(Loop::Break(actor.seen));
                    }
                    let i = actor.seen;
                    actor.seen += ctx
                        .activity(Step {
                            key: format!("{key}/{i}"),
                            value: 1,
                        })
                        .await?;
                    actor.last = format!("step {i}");
                    Ok(Loop::Continue)
                }
                .boxed()
            })
            .await
    }
}

/// An outer loop of 2 iterations, each running an inner loop of 3, then a
/// wait for `stop` inside the second inner loop's last iteration; both
/// checkpoint every iteration.
struct Nested;
impl Workflow for Nested {
    const NAME: &'static str = "nested";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        ctx.repeat(0u64)
            .commit_every(1)
            .run(|ctx, outer| {
                async move {
                    let o = *outer;
                    ctx.repeat(100u64)
                        .commit_every(1)
                        .run(move |ctx, inner| {
                            async move {
                                if o == 1 && *inner == 102 {
                                    ctx.listen::<Stop>().await?;
                                }
                                *inner += 1;
                                Ok(if *inner == 103 {
                                    Loop::Break(())
                                } else {
                                    Loop::Continue
                                })
                            }
                            .boxed()
                        })
                        .await?;
                    *outer += 1;
                    Ok(if *outer == 2 {
                        Loop::Break(())
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

struct NoLoop;
impl Workflow for NoLoop {
    const NAME: &'static str = "no_loop";
    type Input = ();
    type Output = ();
    async fn run(_ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        Ok(())
    }
}

async fn loop_state_reads_the_last_checkpoint_typed_without_a_worker(db: TestDb) {
    let engine = db.engine().await.register::<Counter>().register::<NoLoop>();
    let worker = support::fast_worker(&engine);
    let id = engine.dispatch::<Counter>(unique("actor")).await.unwrap();
    wait_state(&engine, id, WorkflowState::Sleeping).await;
    let plain = engine.dispatch::<NoLoop>(()).await.unwrap();
    wait_output::<NoLoop>(&engine, plain).await;
    worker.shutdown().await;

    // No worker runs now: the answer comes from the store alone.
    let state: LoopState<Actor> = engine.loop_state(id).await.unwrap();
    assert_eq!(state.iteration, 20, "the checkpoint before the wait");
    assert_eq!(
        state.state,
        Actor {
            seen: 20,
            last: "step 19".into()
        }
    );
    assert!(state.recorded_at > 0);
    let at: LoopState<Actor> = engine.loop_state_at(id, &state.location).await.unwrap();
    assert_eq!(at, state);

    // A state that no longer decodes into the type asked for names the loop.
    let err = engine.loop_state::<Vec<u8>>(id).await.unwrap_err();
    match &err {
        Error::Decode {
            workflow_id,
            location,
            what,
            ..
        } => {
            assert_eq!(
                (*workflow_id, location, what.as_str()),
                (id, &state.location, "loop state")
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&state.location.to_string()),
        "{err}"
    );

    assert!(matches!(
        engine.loop_state::<u64>(plain).await,
        Err(Error::NoLoop { workflow_id, location: None }) if workflow_id == plain
    ));
    let unknown = WorkflowId::new();
    assert!(matches!(
        engine.loop_state::<u64>(unknown).await,
        Err(Error::WorkflowNotFound { workflow_id }) if workflow_id == unknown
    ));

    // Once the loop has ended there is no state to read, only its output.
    let worker = support::fast_worker(&engine);
    engine.signal(Stop).to(id).await.unwrap();
    assert_eq!(wait_output::<Counter>(&engine, id).await, 23);
    let err = engine.loop_state::<Actor>(id).await.unwrap_err();
    assert!(matches!(err, Error::NoLoop { .. }), "{err:?}");
    worker.shutdown().await;
}

async fn loop_state_at_reads_an_inner_loop_by_location(db: TestDb) {
    let engine = db.engine().await.register::<Nested>();
    let worker = support::fast_worker(&engine);
    let id = engine.dispatch::<Nested>(()).await.unwrap();
    wait_state(&engine, id, WorkflowState::Sleeping).await;
    worker.shutdown().await;

    let outer: LoopState<u64> = engine.loop_state(id).await.unwrap();
    // The outer loop checkpoints after each iteration (commit_every 1):
    // one done, the second under way.
    assert_eq!((outer.iteration, outer.state), (1, 1));
    let history = engine.history(id).await.unwrap();
    let loops: Vec<Location> = history
        .iter()
        .filter(|h| h.event.kind == octane::history::EventKind::Loop)
        .map(|h| h.event.location.clone())
        .collect();
    assert_eq!(loops.len(), 3, "{loops:?}");
    assert_eq!(
        loops[0], outer.location,
        "the outermost loop, first in history"
    );
    let inner_locations: BTreeSet<&Location> = loops[1..].iter().collect();
    assert!(inner_locations
        .iter()
        .all(|l| l.starts_with(&outer.location)));
    let (first, second) = (
        *inner_locations.first().unwrap(),
        *inner_locations.last().unwrap(),
    );
    let inner: LoopState<u64> = engine.loop_state_at(id, second).await.unwrap();
    assert_eq!((inner.iteration, inner.state), (2, 102));
    // The first inner loop has ended.
    assert!(matches!(
        engine.loop_state_at::<u64>(id, first).await,
        Err(Error::NoLoop { location: Some(l), .. }) if &l == first
    ));
}

async fn list_pages_walk_every_workflow_once_newest_first(db: TestDb) {
    let engine = db.engine().await;
    let mut dispatched = Vec::new();
    for i in 0..250u64 {
        dispatched.push(
            engine
                .dispatch::<NoLoop>(())
                .tag("n", i.to_string())
                .await
                .unwrap(),
        );
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut filter = ListFilter::default().name("no_loop").limit(100);
    loop {
        let page = engine.list_page(filter.clone()).await.unwrap();
        sizes.push(page.workflows.len());
        seen.extend(page.workflows.iter().map(|w| (w.created_at, w.id)));
        match page.next {
            Some(next) => {
                // A cursor survives a round trip through text (URLs, CLI).
                let parsed: octane::ListCursor = next.to_string().parse().unwrap();
                assert_eq!(parsed, next);
                filter = filter.after(parsed);
            }
            None => break,
        }
    }
    assert_eq!(sizes, [100, 100, 50]);
    let mut newest_first = seen.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first, "newest first, ties by id");
    let ids: BTreeSet<WorkflowId> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, dispatched.into_iter().collect(), "each once");

    assert!("12.not-an-id".parse::<octane::ListCursor>().is_err());
    let short = engine
        .list_page(ListFilter::default().tag("n", "7"))
        .await
        .unwrap();
    assert_eq!(short.workflows.len(), 1);
    assert!(short.next.is_none(), "a short page is the last");
}

support::store_tests!(
    loop_state_reads_the_last_checkpoint_typed_without_a_worker,
    loop_state_at_reads_an_inner_loop_by_location,
    list_pages_walk_every_workflow_once_newest_first,
);
