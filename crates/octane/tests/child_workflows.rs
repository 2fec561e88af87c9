//! Child workflows: the parent gets the child's output or error, recorded
//! in its own history, so it replays even after the child was pruned.

mod support;

use std::time::Duration;

use octane::prelude::*;
use octane::{Error, ListFilter, WorkflowState};
use support::{count, executions, fast_worker, unique, wait_output, wait_state, Step, TestDb};

struct Double;
impl Workflow for Double {
    const NAME: &'static str = "double";
    type Input = (String, u64);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(String, u64)) -> Result<u64> {
        let (key, n) = input;
        ctx.sleep(Duration::from_millis(50)).await?;
        let v = ctx
            .activity(Step {
                key: format!("{key}/child"),
                value: *n,
            })
            .await?;
        anyhow::ensure!(v != 13, "unlucky number {v}");
        Ok(v * 2)
    }
}

/// Runs a child and reports its outcome; then leaves memory for a while
/// (the test prunes the child meanwhile) and replays.
struct Parent;
impl Workflow for Parent {
    const NAME: &'static str = "parent";
    type Input = (String, u64);
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, input: &(String, u64)) -> Result<String> {
        let (key, n) = input.clone();
        count(&format!("{key}/parent-runs"));
        let outcome = match ctx
            .workflow::<Double>((key.clone(), n))
            .tag("role", "child")
            .output()
            .await
        {
            Ok(v) => format!("child returned {v}"),
            Err(Error::ChildFailed { message, .. }) => format!("child failed: {message}"),
            Err(e) => return Err(e.into()),
        };
        ctx.listen::<Resume>().await?;
        Ok(outcome)
    }
}

#[derive(Serialize, Deserialize)]
struct Resume;
impl Signal for Resume {
    const NAME: &'static str = "resume";
}

async fn engine(db: &TestDb) -> Engine {
    db.engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Parent>()
        .register::<Double>()
}

async fn a_parent_gets_its_childs_output_and_replays_it_after_the_child_is_pruned(db: TestDb) {
    let engine = engine(&db).await;
    let worker = fast_worker(&engine);
    let key = unique("family");
    let parent = engine.dispatch::<Parent>((key.clone(), 21)).await.unwrap();
    wait_state(&engine, parent, WorkflowState::Sleeping).await;
    let children = engine
        .list(ListFilter::default().name("double").tag("role", "child"))
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    let child = children[0].id;
    child_outcome_recorded(&engine, parent).await;
    assert_eq!(
        engine.get(child).await.unwrap().state,
        WorkflowState::Completed
    );
    assert!(engine.prune(Duration::ZERO).await.unwrap() >= 1);
    assert!(matches!(
        engine.get(child).await.unwrap_err(),
        Error::WorkflowNotFound { .. }
    ));

    engine.signal(Resume).to(parent).await.unwrap();
    assert_eq!(
        wait_output::<Parent>(&engine, parent).await,
        "child returned 42"
    );
    assert_eq!(executions(&format!("{key}/child")), 1);
    assert!(
        executions(&format!("{key}/parent-runs")) >= 2,
        "the parent was replayed"
    );
    worker.shutdown().await;
}

async fn a_childs_failure_reaches_the_parent_as_an_error_it_can_handle(db: TestDb) {
    let engine = engine(&db).await;
    let worker = fast_worker(&engine);
    let key = unique("failing");
    let parent = engine.dispatch::<Parent>((key.clone(), 13)).await.unwrap();
    child_outcome_recorded(&engine, parent).await;
    engine.signal(Resume).to(parent).await.unwrap();
    assert_eq!(
        wait_output::<Parent>(&engine, parent).await,
        "child failed: unlucky number 13"
    );
    worker.shutdown().await;
}

/// Waits until the parent has recorded its child's outcome.
async fn child_outcome_recorded(engine: &Engine, parent: WorkflowId) {
    support::eventually(
        "the parent to record its child's outcome",
        Duration::from_secs(30),
        || async {
            let history = engine.history(parent).await.unwrap();
            history
                .iter()
                .any(|h| h.event.kind == octane::history::EventKind::ChildOutput)
                .then_some(())
        },
    )
    .await;
}

store_tests!(
    a_parent_gets_its_childs_output_and_replays_it_after_the_child_is_pruned,
    a_childs_failure_reaches_the_parent_as_an_error_it_can_handle,
);
