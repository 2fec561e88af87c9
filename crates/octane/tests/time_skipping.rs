//! `octane::testing`: workflows that wait for days run in a test in
//! milliseconds, on a clock the test moves.

use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::testing::{TestEnv, TestError};
use octane::WorkflowState;

const DAY: Duration = Duration::from_secs(86_400);

#[derive(Serialize, Deserialize)]
struct Paid;
impl Signal for Paid {
    const NAME: &'static str = "paid";
}

/// Waits up to 3 days for `paid`; without it, the order lapses.
struct Order;
impl Workflow for Order {
    const NAME: &'static str = "order";
    type Input = ();
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<String> {
        let started = ctx.now()?;
        let paid = ctx.listen_with_timeout::<Paid>(3 * DAY).await?;
        let waited = ctx.now()?.duration_since(started)?;
        Ok(match paid {
            Some(Paid) => format!("paid after {}h", waited.as_secs() / 3600),
            None => format!("lapsed after {}h", waited.as_secs() / 3600),
        })
    }
}

/// Sleeps 30 days, twice.
struct Trial;
impl Workflow for Trial {
    const NAME: &'static str = "trial";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        ctx.sleep(30 * DAY).await?;
        ctx.sleep(30 * DAY).await?;
        Ok(())
    }
}

/// Waits for `paid` with no deadline.
struct Patient;
impl Workflow for Patient {
    const NAME: &'static str = "patient";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        ctx.listen::<Paid>().await?;
        Ok(())
    }
}

async fn env() -> TestEnv {
    TestEnv::start(|e| {
        e.register::<Order>()
            .register::<Trial>()
            .register::<Patient>()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn advancing_the_clock_wakes_exactly_the_workflows_it_made_due() {
    let env = env().await;
    let engine = env.engine();
    let start = env.now();
    let trial = engine.dispatch::<Trial>(()).await.unwrap();
    env.settle().await.unwrap();
    assert_eq!(
        engine.get(trial).await.unwrap().state,
        WorkflowState::Sleeping
    );

    env.advance(29 * DAY).await.unwrap();
    let info = engine.get(trial).await.unwrap();
    assert_eq!(info.state, WorkflowState::Sleeping, "a day early");
    let first_deadline = info.wake_at.unwrap();

    env.advance(DAY).await.unwrap();
    let info = engine.get(trial).await.unwrap();
    assert_eq!(info.state, WorkflowState::Sleeping, "in its second sleep");
    assert!(info.wake_at.unwrap() >= first_deadline + 30 * 86_400_000);

    env.advance(30 * DAY).await.unwrap();
    assert_eq!(
        engine.get(trial).await.unwrap().state,
        WorkflowState::Completed
    );
    assert!(env.now().duration_since(start).unwrap() >= 60 * DAY);
}

#[tokio::test]
async fn a_listen_times_out_on_the_skipped_clock_and_a_signal_beats_it() {
    let env = env().await;
    let engine = env.engine();
    let real = Instant::now();
    let lapsing = engine.dispatch::<Order>(()).await.unwrap();
    assert_eq!(
        env.run_until_finished::<Order>(lapsing).await.unwrap(),
        "lapsed after 72h"
    );

    let paying = engine.dispatch::<Order>(()).await.unwrap();
    env.advance(DAY + Duration::from_secs(3600)).await.unwrap();
    engine.signal(Paid).to(paying).await.unwrap();
    assert_eq!(
        env.run_until_finished::<Order>(paying).await.unwrap(),
        "paid after 25h"
    );
    // Generous: the point is days of workflow time in moments.
    assert!(
        real.elapsed() < Duration::from_secs(60),
        "{:?}",
        real.elapsed()
    );
}

#[tokio::test]
async fn a_wait_no_deadline_ends_is_reported_not_hung_on() {
    let env = env().await;
    let engine = env.engine();
    let id = engine.dispatch::<Patient>(()).await.unwrap();
    match env.run_until_finished::<Patient>(id).await {
        Err(TestError::Stalled { workflow_id, state }) => {
            assert_eq!((workflow_id, state), (id, WorkflowState::Sleeping));
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    engine.signal(Paid).to(id).await.unwrap();
    env.run_until_finished::<Patient>(id).await.unwrap();
}

#[tokio::test]
async fn two_environments_keep_their_own_time() {
    let moved = env().await;
    let still = env().await;
    moved.advance(365 * DAY).await.unwrap();
    let gap = moved.now().duration_since(still.now()).unwrap();
    assert!(gap >= 364 * DAY, "{gap:?}");
}
