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

#[derive(Serialize, Deserialize, Signal)]
struct Hello(u64);

/// Waits for one `Hello` and returns it.
struct Greeted;
impl Workflow for Greeted {
    const NAME: &'static str = "greeted";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        Ok(ctx.listen::<Hello>().await?.0)
    }
}

/// Starts a child and signals it straight away, before anything else
/// could have carried the child's creation to the database.
struct Greeter;
impl Workflow for Greeter {
    const NAME: &'static str = "greeter";
    type Input = u64;
    type Output = WorkflowId;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<WorkflowId> {
        let child = ctx.workflow::<Greeted>(()).dispatch().await?;
        ctx.signal(Hello(*n)).to(child).send().await?;
        Ok(child)
    }
}

async fn a_signal_to_a_child_just_dispatched_reaches_it(db: TestDb) {
    let engine = db
        .engine()
        .await
        .register::<Greeter>()
        .register::<Greeted>();
    let worker = fast_worker(&engine);
    let mut parents = Vec::new();
    for n in 0..20 {
        parents.push((n, engine.dispatch::<Greeter>(n).await.unwrap()));
    }
    for (n, parent) in parents {
        let child = wait_output::<Greeter>(&engine, parent).await;
        assert_eq!(wait_output::<Greeted>(&engine, child).await, n);
    }
    worker.shutdown().await;
}

/// The parent's workers are down while its child completes and an operator
/// prunes finished workflows: the parent, started again, does not wait for
/// ever on a child that is gone, but gets an error naming it.
async fn a_child_pruned_before_its_parent_saw_it_finish_is_an_outcome(db: TestDb) {
    let parents = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Parent>();
    let worker = fast_worker(&parents);
    let key = unique("orphaned");
    let parent = parents.dispatch::<Parent>((key.clone(), 5)).await.unwrap();
    let child = support::eventually("the child to exist", Duration::from_secs(30), || async {
        let children = parents
            .list(ListFilter::default().name("double"))
            .await
            .unwrap();
        children
            .into_iter()
            .find(|c| c.tags.contains_key("role"))
            .map(|c| c.id)
    })
    .await;
    wait_state(&parents, parent, WorkflowState::Sleeping).await;
    worker.shutdown().await;

    let children = db.engine().await.register::<Double>();
    let child_worker = fast_worker(&children);
    wait_state(&children, child, WorkflowState::Completed).await;
    child_worker.shutdown().await;
    assert!(children.prune(Duration::ZERO).await.unwrap() >= 1);

    let worker = fast_worker(&parents);
    child_outcome_recorded(&parents, parent).await;
    parents.signal(Resume).to(parent).await.unwrap();
    let outcome = wait_output::<Parent>(&parents, parent).await;
    assert!(
        outcome.starts_with("child failed: ") && outcome.contains(&child.to_string()),
        "{outcome}"
    );
    worker.shutdown().await;
}

support::store_tests!(
    a_parent_gets_its_childs_output_and_replays_it_after_the_child_is_pruned,
    a_childs_failure_reaches_the_parent_as_an_error_it_can_handle,
    a_signal_to_a_child_just_dispatched_reaches_it,
    a_child_pruned_before_its_parent_saw_it_finish_is_an_outcome,
);
