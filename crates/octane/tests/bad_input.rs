//! Bad input gets a clear error and loses nothing; the worker keeps going.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use octane::prelude::*;
use octane::{Error, ListFilter, WorkflowState};
use support::{fast_worker, unique, wait_output, wait_state, Step, TestDb};

struct Typed;
impl Workflow for Typed {
    const NAME: &'static str = "typed";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        let v = ctx
            .activity(Step {
                key: unique("typed"),
                value: *n,
            })
            .await?;
        Ok(v * 2)
    }
}

/// Same name, other input type: what an old client might still send.
struct TypedByAnOldClient;
impl Workflow for TypedByAnOldClient {
    const NAME: &'static str = "typed";
    type Input = String;
    type Output = u64;
    async fn run(_ctx: &mut WorkflowCtx, _: &String) -> Result<u64> {
        unreachable!("never registered")
    }
}

struct Other;
impl Workflow for Other {
    const NAME: &'static str = "other";
    type Input = ();
    type Output = ();
    async fn run(_ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        Ok(())
    }
}

async fn unknown_names_and_bad_json_are_refused_before_anything_is_stored(db: TestDb) {
    let engine = db.engine().await.register::<Typed>();
    let err = engine
        .dispatch_json("no_such_workflow", "1", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownWorkflow { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "unknown workflow `no_such_workflow`; registered: [typed]"
    );
    let err = engine
        .dispatch_json("typed", "\"seven\"", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("invalid input for workflow `typed`: invalid type: string"),
        "{err}"
    );
    assert!(
        engine.list(ListFilter::default()).await.unwrap().is_empty(),
        "nothing stored"
    );
    let id = engine
        .dispatch_json("typed", "21", BTreeMap::new())
        .await
        .unwrap();
    let worker = fast_worker(&engine);
    assert_eq!(wait_output::<Typed>(&engine, id).await, 42);
    worker.shutdown().await;
}

async fn unknown_ids_are_clear_errors(db: TestDb) {
    let engine = db.engine().await.register::<Typed>();
    let id = WorkflowId::new();
    let err = engine.get(id).await.unwrap_err();
    assert_eq!(err.to_string(), format!("no workflow with id {id}"));
    let err = engine.wait::<Typed>(id).await.unwrap_err();
    assert!(matches!(err, Error::WorkflowNotFound { .. }), "{err}");
    assert!(matches!(
        engine.cancel(id).await.unwrap_err(),
        Error::WorkflowNotFound { .. }
    ));
    assert!(matches!(
        engine.wake(id).await.unwrap_err(),
        Error::WorkflowNotFound { .. }
    ));
    let other = engine.dispatch::<Other>(()).await.unwrap();
    let err = engine.wait::<Typed>(other).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("workflow {other} is a `other`, not a `typed`")
    );
}

async fn a_stored_input_that_does_not_decode_parks_only_its_workflow(db: TestDb) {
    let engine = db.engine().await.register::<Typed>();
    let worker = fast_worker(&engine);
    let bad = engine
        .dispatch::<TypedByAnOldClient>("seven".into())
        .await
        .unwrap();
    let good = engine.dispatch::<Typed>(4).await.unwrap();
    let info = wait_state(&engine, bad, WorkflowState::Parked).await;
    assert_eq!(info.code, Some(octane::FailureCode::InvalidInput));
    let error = info.error.unwrap();
    assert!(
        error.starts_with("invalid input for workflow `typed`"),
        "{error}"
    );
    assert_eq!(wait_output::<Typed>(&engine, good).await, 8);
    // The worker is still alive for new work.
    let later = engine.dispatch::<Typed>(5).await.unwrap();
    assert_eq!(wait_output::<Typed>(&engine, later).await, 10);
    worker.shutdown().await;
}

struct Napper;
impl Workflow for Napper {
    const NAME: &'static str = "napper";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        ctx.sleep(Duration::from_millis(300)).await?;
        Ok(*n)
    }
}

/// One workflow whose history cannot be decoded is quarantined alone, with
/// a visible error, while the others on the same worker run on.
async fn a_corrupt_history_is_quarantined_alone(db: TestDb) {
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Napper>();
    let worker = fast_worker(&engine);
    let mut ids = Vec::new();
    for i in 0..3u64 {
        ids.push(engine.dispatch::<Napper>(i).await.unwrap());
    }
    for &id in &ids {
        wait_state(&engine, id, WorkflowState::Sleeping).await;
    }
    db.execute_sql(
        "UPDATE events SET kind = 99 WHERE workflow_id = ?1",
        &ids[1].to_string(),
    )
    .await;
    let info = wait_state(&engine, ids[1], WorkflowState::Parked).await;
    assert_eq!(info.code, Some(octane::FailureCode::CorruptHistory));
    let error = info.error.unwrap();
    assert!(
        error.contains("history does not decode") && error.contains("unknown event kind 99"),
        "{error}"
    );
    for (i, &id) in ids.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(wait_output::<Napper>(&engine, id).await, i as u64);
    }
    worker.shutdown().await;
}

/// A row the store cannot read (its id is not a UUID) fails nobody's
/// claim but its own: the other workflows of its name still run.
async fn a_malformed_row_does_not_stop_the_claim_for_the_others(db: TestDb) {
    let engine = db.engine().await.register::<Typed>();
    let bad = engine.dispatch::<Typed>(1).await.unwrap();
    db.execute_sql(
        "UPDATE workflows SET id = 'not-a-uuid' WHERE id = ?1",
        &bad.to_string(),
    )
    .await;
    let good = engine.dispatch::<Typed>(2).await.unwrap();
    let worker = fast_worker(&engine);
    let output = tokio::time::timeout(Duration::from_secs(15), engine.wait::<Typed>(good)).await;
    assert_eq!(output.expect("the good workflow ran").unwrap(), 4);
    worker.shutdown().await;
}

support::store_tests!(
    a_malformed_row_does_not_stop_the_claim_for_the_others,
    unknown_names_and_bad_json_are_refused_before_anything_is_stored,
    unknown_ids_are_clear_errors,
    a_stored_input_that_does_not_decode_parks_only_its_workflow,
    a_corrupt_history_is_quarantined_alone,
);

/// A URL's password never appears in an error.
#[tokio::test]
async fn errors_never_show_a_database_password() {
    for url in [
        "postgres://octane:s3cret@127.0.0.1:1/octane",
        "postgres://octane:s3cret@127.0.0.1:notaport/octane",
        "postgresql://octane:s3cret@/octane?host=/nonexistent",
    ] {
        let err = Engine::open(url).await.expect_err("cannot open");
        let shown = format!("{err} / {err:?}");
        let shown = format!("{shown} / {:#}", anyhow::Error::from(err));
        assert!(!shown.contains("s3cret"), "{url}: {shown}");
        assert!(
            shown.contains("octane"),
            "still names the database: {shown}"
        );
    }
}

/// An in-memory SQLite database would be a new, empty one on every
/// connection the store opens: refused with a clear error.
#[tokio::test]
async fn an_in_memory_sqlite_url_is_refused() {
    let err = Engine::open("sqlite://:memory:")
        .await
        .expect_err("refused");
    assert!(err.to_string().contains(":memory:"), "{err}");
}
