//! A workflow the engine cannot run as it is (its history diverged from the
//! code, a recorded value or a signal no longer decodes) is parked: kept
//! with its pending signals and its history as they were, not reported to
//! its parent as finished, not pruned, and carried on by `wake` once fixed
//! code is deployed.

mod support;

use std::time::Duration;

use octane::prelude::*;
use octane::{Error, WorkflowState, HISTORY_DIVERGED};
use support::TestDb;
use support::{count, eventually, executions, fast_worker, unique, wait_output, wait_state};

#[derive(Serialize, Deserialize, Signal)]
struct Deposit {
    cents: u64,
}

/// Applies a deposit (counted per deposit) and returns 1.
#[derive(Serialize, Deserialize)]
struct Apply {
    key: String,
    cents: u64,
}

impl Activity for Apply {
    const NAME: &'static str = "apply";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        count(&format!("{}/{}", self.key, self.cents));
        Ok(1)
    }
}

/// The same step under the name a bad deploy gave it.
#[derive(Serialize, Deserialize)]
struct ApplyRenamed {
    key: String,
    cents: u64,
}

impl Activity for ApplyRenamed {
    const NAME: &'static str = "apply_renamed";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        count(&format!("{}/renamed", self.key));
        Ok(1)
    }
}

const DEPOSITS: u64 = 8;

/// Applies deposits until it has applied eight.
struct Account;
impl Workflow for Account {
    const NAME: &'static str = "account";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        ctx.repeat(0u64)
            .run(move |ctx, applied| {
                let key = key.clone();
                async move {
                    let d = ctx.listen::<Deposit>().await?;
                    *applied += ctx
                        .activity(Apply {
                            key,
                            cents: d.cents,
                        })
                        .await?;
                    Ok(if *applied == DEPOSITS {
                        Loop::Break(*applied)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

/// A bad deploy of `Account`: a new step, properly versioned (it is
/// deferred, so it would ride in the next write), then the apply step
/// renamed — a divergence from the recorded history.
struct AccountRenamed;
impl Workflow for AccountRenamed {
    const NAME: &'static str = "account";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        ctx.repeat(0u64)
            .run(move |ctx, applied| {
                let key = key.clone();
                async move {
                    let d = ctx.listen::<Deposit>().await?;
                    ctx.v(2).now()?;
                    *applied += ctx
                        .activity(ApplyRenamed {
                            key,
                            cents: d.cents,
                        })
                        .await?;
                    Ok(if *applied == DEPOSITS {
                        Loop::Break(*applied)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

async fn deploy<W: Workflow>(db: &TestDb) -> Engine {
    db.engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<W>()
}

async fn deposit(engine: &Engine, id: WorkflowId, cents: u64) {
    engine.signal(Deposit { cents }).to(id).await.unwrap();
}

async fn applied(key: &str, n: u64) {
    eventually(
        "deposits to be applied",
        Duration::from_secs(30),
        || async { ((1..=n).all(|c| executions(&format!("{key}/{c}")) == 1)).then_some(()) },
    )
    .await;
}

async fn a_parked_workflow_keeps_its_signals_and_takes_them_all_once_fixed(db: TestDb) {
    let key = unique("account");
    let v1 = deploy::<Account>(&db).await;
    let worker = fast_worker(&v1);
    let id = v1.dispatch::<Account>(key.clone()).await.unwrap();
    for cents in 1..=3 {
        deposit(&v1, id, cents).await;
    }
    applied(&key, 3).await;
    wait_state(&v1, id, WorkflowState::Sleeping).await;
    worker.shutdown().await;
    // Accepted while no worker runs.
    for cents in 4..DEPOSITS {
        deposit(&v1, id, cents).await;
    }
    let before = v1.history(id).await.unwrap();

    let bad = deploy::<AccountRenamed>(&db)
        .await
        .retain_finished(Duration::from_millis(100));
    let worker = fast_worker(&bad);
    let info = wait_state(&bad, id, WorkflowState::Parked).await;
    let error = info.error.unwrap_or_default();
    assert!(error.contains(HISTORY_DIVERGED), "{error}");
    assert_eq!(
        v1.history(id).await.unwrap(),
        before,
        "the diverging run wrote nothing, not even its deferred steps"
    );
    let err = v1.wait::<Account>(id).await.unwrap_err();
    assert!(matches!(err, Error::WorkflowParked { .. }), "{err}");
    // Retention (every 100 ms here) and an explicit prune leave it alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bad.prune(Duration::ZERO).await.unwrap(), 0);
    assert_eq!(v1.get(id).await.unwrap().state, WorkflowState::Parked);
    // A signal sent while it is parked is accepted and kept too.
    deposit(&v1, id, DEPOSITS).await;
    worker.shutdown().await;

    let fixed = deploy::<Account>(&db).await;
    let worker = fast_worker(&fixed);
    fixed.wake(id).await.unwrap();
    assert_eq!(wait_output::<Account>(&fixed, id).await, DEPOSITS);
    for cents in 1..=DEPOSITS {
        assert_eq!(executions(&format!("{key}/{cents}")), 1, "deposit {cents}");
    }
    assert_eq!(executions(&format!("{key}/renamed")), 0);
    worker.shutdown().await;
}

/// A deposit whose body the code's type no longer accepts.
#[derive(Serialize, Deserialize)]
struct LenientDeposit {
    #[serde(default)]
    cents: u64,
}

impl Signal for LenientDeposit {
    const NAME: &'static str = "deposit";
}

/// `Account` taking one deposit of any shape.
struct LenientAccount;
impl Workflow for LenientAccount {
    const NAME: &'static str = "account";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        ctx.repeat(0u64)
            .run(move |ctx, applied| {
                let key = key.clone();
                async move {
                    let d = ctx.listen::<LenientDeposit>().await?;
                    *applied += ctx
                        .activity(Apply {
                            key,
                            cents: d.cents,
                        })
                        .await?;
                    Ok(Loop::Break(*applied))
                }
                .boxed()
            })
            .await
    }
}

async fn a_signal_that_does_not_decode_parks_the_workflow_and_is_kept(db: TestDb) {
    let key = unique("undecodable");
    let v1 = deploy::<Account>(&db).await;
    let worker = fast_worker(&v1);
    let id = v1.dispatch::<Account>(key.clone()).await.unwrap();
    wait_state(&v1, id, WorkflowState::Sleeping).await;
    v1.signal_json(id, "deposit", r#"{"euros": 3}"#)
        .await
        .unwrap();
    let info = wait_state(&v1, id, WorkflowState::Parked).await;
    let error = info.error.unwrap_or_default();
    assert!(
        error.contains("signal `deposit`") && error.contains("euros"),
        "names the signal and its body: {error}"
    );
    worker.shutdown().await;

    let fixed = deploy::<LenientAccount>(&db).await;
    let worker = fast_worker(&fixed);
    fixed.wake(id).await.unwrap();
    assert_eq!(wait_output::<LenientAccount>(&fixed, id).await, 1);
    assert_eq!(
        executions(&format!("{key}/0")),
        1,
        "the kept signal was taken"
    );
    worker.shutdown().await;
}

/// Runs an `Account`-shaped child (renamed or not) and returns its output.
struct Bank;
impl Workflow for Bank {
    const NAME: &'static str = "bank";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        Ok(ctx.workflow::<Account>(key.clone()).output().await?)
    }
}

async fn a_parked_child_does_not_resolve_its_parent(db: TestDb) {
    let key = unique("bank");
    let v1 = deploy::<Account>(&db).await.register::<Bank>();
    let worker = fast_worker(&v1);
    let bank = v1.dispatch::<Bank>(key.clone()).await.unwrap();
    let child = eventually("the child account", Duration::from_secs(30), || async {
        let all = v1
            .list(octane::ListFilter::default().name("account"))
            .await
            .ok()?;
        all.first().map(|w| w.id)
    })
    .await;
    deposit(&v1, child, 1).await;
    applied(&key, 1).await;
    wait_state(&v1, child, WorkflowState::Sleeping).await;
    worker.shutdown().await;
    deposit(&v1, child, 2).await;

    let bad = deploy::<AccountRenamed>(&db).await.register::<Bank>();
    let worker = fast_worker(&bad);
    wait_state(&bad, child, WorkflowState::Parked).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bad.get(bank).await.unwrap().state,
        WorkflowState::Sleeping,
        "the parent still waits"
    );
    worker.shutdown().await;

    let fixed = deploy::<Account>(&db).await.register::<Bank>();
    let worker = fast_worker(&fixed);
    fixed.wake(child).await.unwrap();
    for cents in 3..=DEPOSITS {
        deposit(&fixed, child, cents).await;
    }
    assert_eq!(wait_output::<Bank>(&fixed, bank).await, DEPOSITS);
    worker.shutdown().await;
}

/// Workflow code (not an activity) that panics.
struct Panics;
impl Workflow for Panics {
    const NAME: &'static str = "panics";
    type Input = u64;
    type Output = ();
    async fn run(_: &mut WorkflowCtx, n: &u64) -> Result<()> {
        panic!("the ledger is off by {n}");
    }
}

async fn a_panic_in_workflow_code_parks_it_with_what_the_panic_said(db: TestDb) {
    let engine = deploy::<Panics>(&db).await;
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Panics>(42).await.unwrap();
    let info = wait_state(&engine, id, WorkflowState::Parked).await;
    worker.shutdown().await;
    assert_eq!(info.code, Some(octane::FailureCode::Panic));
    assert_eq!(
        info.error.as_deref(),
        Some("workflow `panics` panicked: the ledger is off by 42")
    );
}

support::store_tests!(
    a_panic_in_workflow_code_parks_it_with_what_the_panic_said,
    a_parked_workflow_keeps_its_signals_and_takes_them_all_once_fixed,
    a_signal_that_does_not_decode_parks_the_workflow_and_is_kept,
    a_parked_child_does_not_resolve_its_parent,
);
