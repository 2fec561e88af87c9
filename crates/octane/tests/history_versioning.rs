//! Changing the code of running workflows: a diverged history parks the
//! workflow with a precise error; `v(n)`, `check_version` and `removed`
//! let new code replay old histories.

mod support;

use std::time::Duration;

use octane::prelude::*;
use octane::{Error, WorkflowState, HISTORY_DIVERGED};
use support::{count, executions, fast_worker, unique, wait_output, wait_state, Step, TestDb};

#[derive(Serialize, Deserialize)]
struct Extra {
    key: String,
}

impl Activity for Extra {
    const NAME: &'static str = "extra";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        count(&self.key);
        Ok(100)
    }
}

fn step(key: &str, name: &str, value: u64) -> Step {
    Step {
        key: format!("{key}/{name}"),
        value,
    }
}

fn extra(key: &str) -> Extra {
    Extra {
        key: format!("{key}/extra"),
    }
}

const NAME: &str = "versioned";
const NAP: Duration = Duration::from_millis(150);

/// The first deploy: a, sleep, b.
struct V1;
impl Workflow for V1 {
    const NAME: &'static str = NAME;
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx.activity(step(key, "a", 1)).await?;
        ctx.sleep(NAP).await?;
        let b = ctx.activity(step(key, "b", 10)).await?;
        Ok(a + b)
    }
}

/// An incompatible deploy: a new step where the sleep was recorded.
struct Incompatible;
impl Workflow for Incompatible {
    const NAME: &'static str = NAME;
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx.activity(step(key, "a", 1)).await?;
        let x = ctx.activity(extra(key)).await?;
        ctx.sleep(NAP).await?;
        let b = ctx.activity(step(key, "b", 10)).await?;
        Ok(a + x + b)
    }
}

/// The same change done right: the new step carries version 2.
struct Inserted;
impl Workflow for Inserted {
    const NAME: &'static str = NAME;
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx.activity(step(key, "a", 1)).await?;
        let x = ctx.v(2).activity(extra(key)).await?;
        ctx.sleep(NAP).await?;
        let b = ctx.activity(step(key, "b", 10)).await?;
        Ok(a + x + b)
    }
}

/// Old workflows keep the old path, new ones take the new step.
struct Checked;
impl Workflow for Checked {
    const NAME: &'static str = NAME;
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx.activity(step(key, "a", 1)).await?;
        let version = ctx.check_version(2)?;
        let x = if version >= 2 {
            ctx.activity(extra(key)).await?
        } else {
            0
        };
        ctx.sleep(NAP).await?;
        let b = ctx.activity(step(key, "b", 10)).await?;
        Ok(a + x + b + 1000 * u64::from(version))
    }
}

/// A deploy that had the extra step: a, extra, sleep, b.
struct WithExtra;
impl Workflow for WithExtra {
    const NAME: &'static str = NAME;
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx.activity(step(key, "a", 1)).await?;
        let x = ctx.activity(extra(key)).await?;
        ctx.sleep(NAP).await?;
        let b = ctx.activity(step(key, "b", 10)).await?;
        Ok(a + x + b)
    }
}

/// The extra step deleted, with `removed` standing in for it.
struct ExtraRemoved;
impl Workflow for ExtraRemoved {
    const NAME: &'static str = NAME;
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let a = ctx.activity(step(key, "a", 1)).await?;
        ctx.removed::<Extra>()?;
        ctx.sleep(NAP).await?;
        let b = ctx.activity(step(key, "b", 10)).await?;
        Ok(a + b)
    }
}

async fn deploy<W: Workflow>(db: &TestDb) -> Engine {
    db.engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<W>()
}

/// Runs `Old` until it sleeps, then stops its worker: the workflow now has
/// a recorded history written by the old code.
async fn start_on_old_code<Old: Workflow<Input = String>>(db: &TestDb, key: &str) -> WorkflowId {
    let engine = deploy::<Old>(db).await;
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Old>(key.to_string()).await.unwrap();
    wait_state(&engine, id, WorkflowState::Sleeping).await;
    worker.shutdown().await;
    id
}

fn locations(history: &[octane::HistoryEntry]) -> Vec<String> {
    history
        .iter()
        .map(|h| format!("{}@{}", h.event.name_or_kind(), h.event.location))
        .collect()
}

trait NameOrKind {
    fn name_or_kind(&self) -> String;
}

impl NameOrKind for octane::history::Event {
    fn name_or_kind(&self) -> String {
        if self.name.is_empty() {
            self.kind.to_string()
        } else {
            self.name.clone()
        }
    }
}

async fn an_incompatible_change_parks_the_workflow_with_a_precise_error(db: TestDb) {
    let key = unique("diverged");
    let id = start_on_old_code::<V1>(&db, &key).await;
    let engine = deploy::<V1>(&db).await;
    let recorded = engine.history(id).await.unwrap();

    let bad = deploy::<Incompatible>(&db).await;
    let worker = fast_worker(&bad);
    let info = wait_state(&bad, id, WorkflowState::Parked).await;
    worker.shutdown().await;
    let error = info.error.unwrap();
    assert!(error.contains(HISTORY_DIVERGED), "{error}");
    assert!(
        error.contains(&id.to_string()),
        "names the workflow: {error}"
    );
    assert!(error.contains("at {2}"), "names the location: {error}");
    assert!(
        error.contains("recorded sleep"),
        "names the record: {error}"
    );
    assert!(
        error.contains("asked for activity `extra`"),
        "names the request: {error}"
    );
    assert_eq!(
        engine.history(id).await.unwrap(),
        recorded,
        "nothing overwritten"
    );
    assert_eq!(executions(&format!("{key}/extra")), 0);
    assert_eq!(info.code, Some(octane::FailureCode::HistoryDiverged));
    let err = engine.wait::<V1>(id).await.unwrap_err();
    assert!(matches!(err, Error::WorkflowParked { .. }), "{err}");

    // The fix is deployed and the workflow woken: it carries on.
    let fixed = deploy::<V1>(&db).await;
    let worker = fast_worker(&fixed);
    fixed.wake(id).await.unwrap();
    assert_eq!(wait_output::<V1>(&fixed, id).await, 11);
    assert_eq!(executions(&format!("{key}/a")), 1);
    assert_eq!(executions(&format!("{key}/b")), 1);
    worker.shutdown().await;
}

async fn a_higher_version_inserts_a_step_into_recorded_history(db: TestDb) {
    let key = unique("inserted");
    let id = start_on_old_code::<V1>(&db, &key).await;
    let engine = deploy::<Inserted>(&db).await;
    let worker = fast_worker(&engine);
    assert_eq!(wait_output::<Inserted>(&engine, id).await, 111);
    assert_eq!(
        locations(&engine.history(id).await.unwrap()),
        ["step@{1}", "extra@{1.1}", "sleep@{2}", "step@{3}"]
    );
    for step in ["a", "extra", "b"] {
        assert_eq!(executions(&format!("{key}/{step}")), 1, "{step}");
    }
    worker.shutdown().await;
}

async fn check_version_keeps_old_workflows_on_the_old_path(db: TestDb) {
    let old_key = unique("check-old");
    let old = start_on_old_code::<V1>(&db, &old_key).await;
    let engine = deploy::<Checked>(&db).await;
    let worker = fast_worker(&engine);
    let new_key = unique("check-new");
    let new = engine.dispatch::<Checked>(new_key.clone()).await.unwrap();
    assert_eq!(
        wait_output::<Checked>(&engine, old).await,
        1011,
        "old path: no extra"
    );
    assert_eq!(
        wait_output::<Checked>(&engine, new).await,
        2111,
        "new path, replayed after the sleep"
    );
    assert_eq!(executions(&format!("{old_key}/extra")), 0);
    assert_eq!(executions(&format!("{new_key}/extra")), 1);
    assert_eq!(
        locations(&engine.history(old).await.unwrap()),
        ["step@{1}", "sleep@{2}", "step@{3}"],
        "the check took no location in the old history"
    );
    worker.shutdown().await;
}

async fn removed_stands_in_for_a_deleted_step(db: TestDb) {
    let old_key = unique("removed-old");
    let old = start_on_old_code::<WithExtra>(&db, &old_key).await;
    let engine = deploy::<ExtraRemoved>(&db).await;
    let worker = fast_worker(&engine);
    let new_key = unique("removed-new");
    let new = engine
        .dispatch::<ExtraRemoved>(new_key.clone())
        .await
        .unwrap();
    assert_eq!(wait_output::<ExtraRemoved>(&engine, old).await, 11);
    assert_eq!(wait_output::<ExtraRemoved>(&engine, new).await, 11);
    assert_eq!(
        executions(&format!("{old_key}/extra")),
        1,
        "ran under the old code only"
    );
    assert_eq!(executions(&format!("{new_key}/extra")), 0);
    assert_eq!(
        locations(&engine.history(new).await.unwrap()),
        ["step@{1}", "sleep@{2}", "step@{3}"],
        "a removed step that did nothing takes no location"
    );
    worker.shutdown().await;
}

#[derive(Serialize, Deserialize, Signal)]
struct Ping;

/// Waits briefly for a `Ping`, which never comes, then naps.
struct TimesOut;
impl Workflow for TimesOut {
    const NAME: &'static str = "listener";
    type Input = String;
    type Output = bool;
    async fn run(ctx: &mut WorkflowCtx, _: &String) -> Result<bool> {
        let got = ctx
            .listen_with_timeout::<Ping>(Duration::from_millis(20))
            .await?;
        ctx.sleep(NAP).await?;
        Ok(got.is_some())
    }
}

/// The same step turned into a `listen` without a timeout.
struct WaitsForever;
impl Workflow for WaitsForever {
    const NAME: &'static str = "listener";
    type Input = String;
    type Output = bool;
    async fn run(ctx: &mut WorkflowCtx, _: &String) -> Result<bool> {
        ctx.listen::<Ping>().await?;
        ctx.sleep(NAP).await?;
        Ok(true)
    }
}

/// `listen`, `listen_n` and `listen_with_timeout` record different steps:
/// changing one for another in code is a divergence, never a panic.
async fn changing_how_a_signal_is_waited_for_is_a_divergence(db: TestDb) {
    let id = start_on_old_code::<TimesOut>(&db, &unique("timeout")).await;
    let engine = deploy::<WaitsForever>(&db).await;
    let worker = fast_worker(&engine);
    let info = wait_state(&engine, id, WorkflowState::Parked).await;
    let error = info.error.unwrap();
    assert!(error.contains(HISTORY_DIVERGED), "{error}");
    assert!(error.contains("signal `ping`"), "names the step: {error}");
    worker.shutdown().await;
}

support::store_tests!(
    changing_how_a_signal_is_waited_for_is_a_divergence,
    an_incompatible_change_parks_the_workflow_with_a_precise_error,
    a_higher_version_inserts_a_step_into_recorded_history,
    check_version_keeps_old_workflows_on_the_old_path,
    removed_stands_in_for_a_deleted_step,
);
