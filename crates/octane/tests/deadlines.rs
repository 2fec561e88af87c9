//! Workflow deadlines: past it, an unfinished workflow is cancelled —
//! asleep in the database or in the middle of an activity — the reason is
//! recorded, waiters and its parent are told, and no later step runs.

mod support;

use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::{Error, WorkflowState};
use support::{count, executions, fast_worker, unique, wait_output, Sleeper, Step, TestDb};

/// Runs the sleeper as a child with a 1 s deadline; returns how it ended.
struct Parent;
impl Workflow for Parent {
    const NAME: &'static str = "parent";
    type Input = ();
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<String> {
        let outcome = ctx
            .workflow::<Sleeper>(())
            .deadline(Duration::from_secs(1))
            .output()
            .await;
        Ok(match outcome {
            Ok(()) => "finished".into(),
            Err(Error::ChildFailed { message, .. }) => message,
            Err(e) => return Err(e.into()),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Slow {
    key: String,
}
impl Activity for Slow {
    const NAME: &'static str = "slow";
    type Output = ();
    async fn run(&self, _ctx: &ActivityCtx) -> Result<()> {
        count(&format!("{}/started", self.key));
        tokio::time::sleep(Duration::from_secs(30)).await;
        count(&format!("{}/finished", self.key));
        Ok(())
    }
}

/// A 30 s activity, then a step.
struct Busy;
impl Workflow for Busy {
    const NAME: &'static str = "busy";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<()> {
        ctx.activity(Slow { key: key.clone() }).await?;
        ctx.activity(Step {
            key: format!("{key}/after"),
            value: 1,
        })
        .await?;
        Ok(())
    }
}

fn is_deadline(err: &Error, id: WorkflowId) -> bool {
    matches!(err, Error::WorkflowCancelled { workflow_id, reason }
        if *workflow_id == id && reason == "deadline passed")
}

async fn a_deadline_cancels_a_sleeping_workflow_and_tells_its_parent(db: TestDb) {
    let engine = db.engine().await.register::<Sleeper>().register::<Parent>();
    let worker = fast_worker(&engine);
    let started = Instant::now();
    let id = engine
        .dispatch::<Sleeper>(())
        .deadline(Duration::from_secs(1))
        .await
        .unwrap();
    let parent = engine.dispatch::<Parent>(()).await.unwrap();

    let err = tokio::time::timeout(Duration::from_secs(30), engine.wait::<Sleeper>(id))
        .await
        .expect("the deadline fires")
        .unwrap_err();
    assert!(is_deadline(&err, id), "{err:?}");
    assert!(err.to_string().contains("deadline passed"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(1), "not before it");
    let info = engine.get(id).await.unwrap();
    assert_eq!(info.state, WorkflowState::Cancelled);
    assert_eq!(info.error.as_deref(), Some("deadline passed"));

    let message = wait_output::<Parent>(&engine, parent).await;
    assert_eq!(message, "deadline passed", "the parent hears why");
    worker.shutdown().await;
}

async fn a_deadline_cancels_a_workflow_while_its_activity_runs(db: TestDb) {
    let engine = db.engine().await.register::<Busy>();
    let worker = fast_worker(&engine);
    let key = unique("busy");
    let id = engine
        .dispatch::<Busy>(key.clone())
        .deadline(Duration::from_secs(1))
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), engine.wait::<Busy>(id))
        .await
        .expect("cancelled long before the 30 s activity ends")
        .unwrap_err();
    assert!(is_deadline(&err, id), "{err:?}");
    assert_eq!(executions(&format!("{key}/started")), 1);
    // Give the worker time to notice and to try (in vain) to go on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(executions(&format!("{key}/after")), 0, "no step after it");
    let history = engine.history(id).await.unwrap();
    assert!(
        history
            .iter()
            .all(|h| !(h.event.name == "slow" && h.event.done)),
        "the activity's result is never recorded: {history:?}"
    );
    assert_eq!(
        engine.get(id).await.unwrap().state,
        WorkflowState::Cancelled
    );
    worker.shutdown().await;
}

/// Returns at once.
struct Quick;
impl Workflow for Quick {
    const NAME: &'static str = "quick";
    type Input = ();
    type Output = u64;
    async fn run(_ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        Ok(7)
    }
}

async fn a_workflow_finished_in_time_keeps_its_result_and_a_cancel_says_so(db: TestDb) {
    let engine = db.engine().await.register::<Quick>();
    let worker = fast_worker(&engine);
    let id = engine
        .dispatch::<Quick>(())
        .deadline(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(wait_output::<Quick>(&engine, id).await, 7);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        engine.get(id).await.unwrap().state,
        WorkflowState::Completed,
        "a deadline past after the end changes nothing"
    );

    let sleeping = engine
        .dispatch::<Sleeper>(())
        .deadline(Duration::from_secs(3600))
        .await
        .unwrap();
    engine.cancel(sleeping).await.unwrap();
    let err = engine.wait::<Sleeper>(sleeping).await.unwrap_err();
    assert!(
        matches!(&err, Error::WorkflowCancelled { reason, .. } if reason == "cancelled"),
        "a cancel by request says so: {err:?}"
    );
    worker.shutdown().await;
}

support::store_tests!(
    a_deadline_cancels_a_sleeping_workflow_and_tells_its_parent,
    a_deadline_cancels_a_workflow_while_its_activity_runs,
    a_workflow_finished_in_time_keeps_its_result_and_a_cancel_says_so,
);
