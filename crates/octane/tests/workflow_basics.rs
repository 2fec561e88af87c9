//! A workflow's life without faults: dispatch, steps, wait, inspect, cancel.

mod support;

use std::time::Duration;

use octane::prelude::*;
use octane::{Error, ListFilter, WorkflowState};
use support::{count, executions, fast_worker, unique, wait_output, wait_state, Step, TestDb};

struct ThreeSteps;
impl Workflow for ThreeSteps {
    const NAME: &'static str = "three_steps";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx
            .activity(Step {
                key: format!("{key}/1"),
                value: 1,
            })
            .await?;
        let b = ctx
            .activity(Step {
                key: format!("{key}/2"),
                value: 20,
            })
            .await?;
        let c = ctx
            .activity(Step {
                key: format!("{key}/3"),
                value: 300,
            })
            .await?;
        Ok(a + b + c)
    }
}

async fn three_steps_complete_and_wait_returns_output(db: TestDb) {
    let engine = db.engine().await.register::<ThreeSteps>();
    let worker = fast_worker(&engine);
    let key = unique("three");
    let id = engine
        .dispatch::<ThreeSteps>(key.clone())
        .tag("tenant", "acme")
        .await
        .unwrap();
    assert_eq!(wait_output::<ThreeSteps>(&engine, id).await, 321);
    for i in 1..=3 {
        assert_eq!(executions(&format!("{key}/{i}")), 1, "step {i} ran once");
    }
    let info = engine.get(id).await.unwrap();
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.output.as_deref(), Some("321"));
    assert_eq!(info.tags.get("tenant").map(String::as_str), Some("acme"));
    let history = engine.history(id).await.unwrap();
    let names: Vec<_> = history
        .iter()
        .map(|h| (h.event.location.to_string(), h.event.name.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("{1}".into(), "step".into()),
            ("{2}".into(), "step".to_string()),
            ("{3}".into(), "step".into())
        ]
    );
    let times: Vec<i64> = history.iter().map(|h| h.event.recorded_at).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1])
            && times[0] >= info.created_at
            && times[2] <= info.updated_at,
        "each step carries the time it was written, between creation and completion: {times:?} \
         (created {}, completed {})",
        info.created_at,
        info.updated_at
    );
    worker.shutdown().await;
}

async fn list_filters_by_name_state_and_tag(db: TestDb) {
    let engine = db.engine().await.register::<ThreeSteps>();
    let worker = fast_worker(&engine);
    let a = engine
        .dispatch::<ThreeSteps>(unique("a"))
        .tag("tenant", "acme")
        .await
        .unwrap();
    let b = engine
        .dispatch::<ThreeSteps>(unique("b"))
        .tag("tenant", "globex")
        .await
        .unwrap();
    wait_output::<ThreeSteps>(&engine, a).await;
    wait_output::<ThreeSteps>(&engine, b).await;
    let acme = engine
        .list(ListFilter::default().tag("tenant", "acme"))
        .await
        .unwrap();
    assert_eq!(acme.iter().map(|w| w.id).collect::<Vec<_>>(), [a]);
    let done = engine
        .list(
            ListFilter::default()
                .name("three_steps")
                .state(WorkflowState::Completed),
        )
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    let none = engine
        .list(ListFilter::default().state(WorkflowState::Failed))
        .await
        .unwrap();
    assert!(none.is_empty());
    worker.shutdown().await;
}

struct Sleeper;
impl Workflow for Sleeper {
    const NAME: &'static str = "sleeper";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<()> {
        ctx.sleep(Duration::from_secs(3600)).await?;
        count(key);
        Ok(())
    }
}

async fn cancel_stops_a_workflow_for_good(db: TestDb) {
    let engine = db.engine().await.register::<Sleeper>();
    let worker = fast_worker(&engine);
    let key = unique("cancel");
    let id = engine.dispatch::<Sleeper>(key.clone()).await.unwrap();
    wait_state(&engine, id, WorkflowState::Sleeping).await;
    engine.cancel(id).await.unwrap();
    assert_eq!(
        engine.get(id).await.unwrap().state,
        WorkflowState::Cancelled
    );
    let err = engine.wait::<Sleeper>(id).await.unwrap_err();
    assert!(matches!(err, Error::WorkflowCancelled { .. }), "{err}");
    let again = engine.cancel(id).await.unwrap_err();
    assert!(matches!(again, Error::InvalidState { .. }), "{again}");
    assert!(again.to_string().contains("cancelled"), "{again}");
    assert_eq!(executions(&key), 0);
    worker.shutdown().await;
}

support::store_tests!(
    three_steps_complete_and_wait_returns_output,
    list_filters_by_name_state_and_tag,
    cancel_stops_a_workflow_for_good,
);
