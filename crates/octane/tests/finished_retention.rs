//! Finished workflows leave the database: `Engine::prune` in batches, and
//! the workers' own pruning once `retain_finished` has passed.

mod support;

use std::time::Duration;

use octane::clock::now_ms;
use octane::prelude::*;
use octane::{Error, ListFilter, WorkflowState};
use support::{eventually, fast_worker, wait_output, wait_state, Sleeper, TestDb};

/// Finishes at once.
struct Echo;
impl Workflow for Echo {
    const NAME: &'static str = "echo";
    type Input = u32;
    type Output = u32;
    async fn run(_ctx: &mut WorkflowCtx, n: &u32) -> Result<u32> {
        Ok(*n)
    }
}

async fn prune_deletes_finished_workflows_in_batches_and_nothing_else(db: TestDb) {
    const FINISHED: u32 = 1_100;
    let engine = db.engine().await.register::<Echo>().register::<Sleeper>();
    let worker = fast_worker(&engine);
    let sleeper = engine.dispatch::<Sleeper>(()).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..FINISHED {
        ids.push(engine.dispatch::<Echo>(n).tag("batch", "a").await.unwrap());
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(wait_output::<Echo>(&engine, *id).await, n as u32);
    }
    wait_state(&engine, sleeper, WorkflowState::Sleeping).await;
    worker.shutdown().await;
    // Finished strictly before the prune's cut-off.
    tokio::time::sleep(Duration::from_millis(5)).await;

    let mut progress = Vec::new();
    let pruned = engine
        .prune_with_progress(Duration::ZERO, |total| progress.push(total))
        .await
        .unwrap();
    assert_eq!(pruned, u64::from(FINISHED));
    assert_eq!(progress.last(), Some(&u64::from(FINISHED)), "{progress:?}");
    for id in [ids[0], ids[777], ids[1_099]] {
        assert!(
            matches!(engine.get(id).await, Err(Error::WorkflowNotFound { .. })),
            "{id} was pruned"
        );
        assert!(
            matches!(
                engine.history(id).await,
                Err(Error::WorkflowNotFound { .. })
            ),
            "{id}'s history went with it"
        );
    }
    let tagged = engine
        .list(ListFilter::default().tag("batch", "a"))
        .await
        .unwrap();
    assert!(tagged.is_empty(), "their tags went too: {tagged:?}");
    let left = engine.list(ListFilter::default()).await.unwrap();
    assert_eq!(
        left.iter().map(|w| w.id).collect::<Vec<_>>(),
        [sleeper],
        "the sleeping workflow stays"
    );
    assert_eq!(engine.prune(Duration::ZERO).await.unwrap(), 0);
}

async fn prune_bounds_each_transaction_by_rows_not_workflows(db: TestDb) {
    // A prune transaction stops at about 5,000 rows: 1,000 workflows of 5
    // rows (itself, a tag and 3 events), 250 of 20 (18 events).
    let engine = db.engine().await;
    support::seed::finished_workflows(&db.url, "short", 1_000, 3).await;
    support::seed::finished_workflows(&db.url, "long", 500, 18).await;
    let mut progress = Vec::new();
    let pruned = engine
        .prune_with_progress(Duration::ZERO, |total| progress.push(total))
        .await
        .unwrap();
    assert_eq!(pruned, 1_500);
    assert_eq!(progress, [1_000, 1_250, 1_500], "one report per batch");
}

async fn workers_delete_finished_workflows_once_their_retention_has_passed(db: TestDb) {
    // Long enough that the completed workflow is surely seen before it goes,
    // even on a machine that stalls.
    let retain = Duration::from_secs(2);
    let engine = db
        .engine()
        .await
        .register::<Echo>()
        .register::<Sleeper>()
        .retain_finished(retain);
    let worker = fast_worker(&engine);
    let sleeper = engine.dispatch::<Sleeper>(()).await.unwrap();
    let id = engine.dispatch::<Echo>(7).await.unwrap();
    let finished_at = wait_state(&engine, id, WorkflowState::Completed)
        .await
        .updated_at;
    // Polled every 10 ms, so the first miss is seen soon after the delete:
    // a prune before the retention had passed would be caught.
    let gone_at = eventually(
        "the finished workflow to be pruned",
        Duration::from_secs(20),
        || async {
            matches!(engine.get(id).await, Err(Error::WorkflowNotFound { .. })).then(now_ms)
        },
    )
    .await;
    assert!(
        gone_at >= finished_at + 2_000,
        "kept for the whole retention: finished at {finished_at}, gone at {gone_at}"
    );
    wait_state(&engine, sleeper, WorkflowState::Sleeping).await;
    worker.shutdown().await;
}

support::store_tests!(
    prune_bounds_each_transaction_by_rows_not_workflows,
    prune_deletes_finished_workflows_in_batches_and_nothing_else,
    workers_delete_finished_workflows_once_their_retention_has_passed,
);
