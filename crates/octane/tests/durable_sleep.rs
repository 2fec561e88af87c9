//! A durable sleep leaves memory and survives a restart of the engine.

mod support;

use std::time::Duration;

use octane::clock::to_ms;
use octane::prelude::*;
use octane::WorkflowState;
use support::{count, executions, fast_worker, unique, wait_output, wait_state, TestDb};

struct Nap;
impl Workflow for Nap {
    const NAME: &'static str = "nap";
    type Input = (String, u64);
    type Output = (i64, i64);
    async fn run(ctx: &mut WorkflowCtx, input: &(String, u64)) -> Result<(i64, i64)> {
        let (key, millis) = input;
        let before = ctx.now()?;
        count(key);
        ctx.sleep(Duration::from_millis(*millis)).await?;
        let after = ctx.now()?;
        Ok((to_ms(before), to_ms(after)))
    }
}

async fn a_durable_sleep_survives_an_engine_restart(db: TestDb) {
    let key = unique("nap");
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Nap>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Nap>((key.clone(), 1500)).await.unwrap();
    let info = wait_state(&engine, id, WorkflowState::Sleeping).await;
    assert!(info.wake_at.is_some());
    assert_eq!(worker.running(), 0, "a sleeping workflow is not in memory");
    drop(worker);
    drop(engine);

    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Nap>();
    let worker = fast_worker(&engine);
    let (before, after) = wait_output::<Nap>(&engine, id).await;
    assert!(after - before >= 1500, "slept {} ms", after - before);
    // The code before the sleep was replayed, so `now` kept its recorded
    // value, while the counter saw the second run.
    assert_eq!(executions(&key), 2);
    worker.shutdown().await;
}

async fn a_short_sleep_waits_in_memory(db: TestDb) {
    let key = unique("short");
    let engine = db.engine().await.register::<Nap>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Nap>((key.clone(), 50)).await.unwrap();
    let (before, after) = wait_output::<Nap>(&engine, id).await;
    assert!(after - before >= 50);
    assert_eq!(executions(&key), 1, "no eviction, so no replay");
    worker.shutdown().await;
}

support::store_tests!(
    a_durable_sleep_survives_an_engine_restart,
    a_short_sleep_waits_in_memory
);
