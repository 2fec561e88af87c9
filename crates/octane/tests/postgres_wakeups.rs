//! Postgres: a wake-up names the workflow that became runnable, so only
//! workers that run it wake and claim; the others sleep on.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use octane::prelude::*;
use support::faults::Faults;
use support::{wait_output, Steps, TestDb};

struct Beta;
impl Workflow for Beta {
    const NAME: &'static str = "beta";
    type Input = ();
    type Output = u8;
    async fn run(_: &mut WorkflowCtx, _: &()) -> Result<u8> {
        Ok(7)
    }
}

async fn wake_ups_reach_only_the_workers_that_run_the_workflow(db: TestDb) {
    // A worker for `beta` only, in a process of its own (its own store and
    // listener), polling so rarely that only a wake-up brings it to claim.
    let counted = Faults::new(db.store().await);
    let beta = octane::Engine::with_store(counted.clone()).register::<Beta>();
    let beta_worker = beta
        .worker()
        .poll_interval(Duration::from_secs(600))
        .spawn();
    let alpha = db.engine().await.register::<Steps<2>>();
    let alpha_worker = alpha.worker().spawn();
    // Both have started and made their first claims.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = counted.claims.load(Ordering::Relaxed);
    for i in 0..20 {
        let id = alpha
            .dispatch::<Steps<2>>(support::unique(&format!("a{i}")))
            .await
            .unwrap();
        assert_eq!(wait_output::<Steps<2>>(&alpha, id).await, 3);
    }
    let woken = counted.claims.load(Ordering::Relaxed) - before;
    assert!(
        woken <= 2,
        "the beta worker claimed {woken} times for 20 workflows it does not run"
    );

    // Its own workflows still wake it at once, though it polls every 10 min.
    let started = Instant::now();
    let client = db.engine().await.register::<Beta>();
    let id = client.dispatch::<Beta>(()).await.unwrap();
    assert_eq!(beta.wait::<Beta>(id).await.unwrap(), 7);
    assert!(started.elapsed() < Duration::from_secs(30));
    beta_worker.shutdown().await;
    alpha_worker.shutdown().await;
}

support::postgres_tests!(wake_ups_reach_only_the_workers_that_run_the_workflow);
