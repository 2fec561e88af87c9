//! Dispatch keys: a second dispatch of the same workflow name and key
//! finds the first workflow instead of starting another, atomically across
//! processes, with a per-call policy once that workflow has finished.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use octane::history::EventKind;
use octane::prelude::*;
use octane::store::WriteOp;
use octane::{IfFinished, ListFilter, WorkflowState};
use support::faults::Faults;
use support::process::{child_db, spawn_child};
use support::{
    count as tally, executions, executions_with_prefix, unique, wait_output, wait_state, TestDb,
};

#[derive(Serialize, Deserialize)]
struct Go;
impl Signal for Go {
    const NAME: &'static str = "go";
}

/// Waits for `go`, then returns its input.
struct Order;
impl Workflow for Order {
    const NAME: &'static str = "order";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        ctx.listen::<Go>().await?;
        Ok(*n)
    }
}

/// Another workflow name, to show that keys are per name.
struct Refund;
impl Workflow for Refund {
    const NAME: &'static str = "refund";
    type Input = u64;
    type Output = u64;
    async fn run(_ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        Ok(*n)
    }
}

async fn count(engine: &Engine, filter: ListFilter) -> usize {
    engine.list(filter.limit(1_000)).await.unwrap().len()
}

async fn a_second_dispatch_with_a_key_returns_the_first_and_stores_nothing(db: TestDb) {
    let engine = db.engine().await;
    let first = engine.dispatch::<Order>(1).key("order-42").await.unwrap();
    // A retry with another input (a changed request body) changes nothing.
    let again = engine.dispatch::<Order>(2).key("order-42").await.unwrap();
    assert_eq!(first, again);
    assert_eq!(count(&engine, ListFilter::default().name("order")).await, 1);
    assert_eq!(engine.get(first).await.unwrap().input, "1");

    let other_key = engine.dispatch::<Order>(3).key("order-43").await.unwrap();
    let other_name = engine.dispatch::<Refund>(4).key("order-42").await.unwrap();
    let unkeyed = engine.dispatch::<Order>(5).await.unwrap();
    assert!(other_key != first && other_name != first && unkeyed != first);
    assert_eq!(count(&engine, ListFilter::default().name("order")).await, 3);

    assert_eq!(
        engine
            .find::<Order>("order-42")
            .await
            .unwrap()
            .map(|w| w.id),
        Some(first)
    );
    assert_eq!(
        engine
            .find::<Refund>("order-42")
            .await
            .unwrap()
            .map(|w| w.id),
        Some(other_name)
    );
    assert!(engine.find::<Order>("order-44").await.unwrap().is_none());
}

async fn a_dispatch_by_name_takes_a_key_too(db: TestDb) {
    let engine = db.engine().await.register::<Order>();
    let by_type = engine.dispatch::<Order>(1).key("k").await.unwrap();
    let tags = std::collections::BTreeMap::new();
    let by_name = engine
        .dispatch_json("order", "2", tags.clone())
        .key("k")
        .await
        .unwrap();
    assert_eq!(by_name, by_type);
    let other = engine
        .dispatch_json("order", "3", tags)
        .key("other")
        .await
        .unwrap();
    assert_ne!(other, by_type);
    assert_eq!(count(&engine, ListFilter::default().name("order")).await, 2);
}

async fn a_finished_holder_is_returned_or_replaced_as_each_call_says(db: TestDb) {
    let engine = db.engine().await.register::<Order>();
    let worker = support::fast_worker(&engine);
    let first = engine.dispatch::<Order>(1).key("k").await.unwrap();
    wait_state(&engine, first, WorkflowState::Sleeping).await;
    engine.signal(Go).to(first).await.unwrap();
    assert_eq!(wait_output::<Order>(&engine, first).await, 1);

    // Return (the default): the key names that run for good.
    assert_eq!(engine.dispatch::<Order>(2).key("k").await.unwrap(), first);
    let explicit = engine
        .dispatch::<Order>(2)
        .key("k")
        .if_finished(IfFinished::Return)
        .await
        .unwrap();
    assert_eq!(explicit, first);

    // StartNew: a new run takes the key; while it runs, every dispatch
    // (whatever its policy) finds it.
    let second = engine
        .dispatch::<Order>(3)
        .if_finished(IfFinished::StartNew)
        .key("k")
        .await
        .unwrap();
    assert_ne!(second, first);
    for policy in [IfFinished::StartNew, IfFinished::Return] {
        let again = engine
            .dispatch::<Order>(4)
            .key("k")
            .if_finished(policy)
            .await
            .unwrap();
        assert_eq!(again, second, "{policy:?}");
    }
    assert_eq!(
        engine.find::<Order>("k").await.unwrap().map(|w| w.id),
        Some(second)
    );
    engine.signal(Go).to(second).await.unwrap();
    assert_eq!(wait_output::<Order>(&engine, second).await, 3);
    assert_eq!(
        engine.find::<Order>("k").await.unwrap().map(|w| w.id),
        Some(second),
        "the newest finished run"
    );
    assert_eq!(count(&engine, ListFilter::default().key("k")).await, 2);
    worker.shutdown().await;
}

/// Rounds of 50 concurrent dispatches of one key each; returns the ids.
async fn contend(engine: &Engine, rounds: u64) -> Vec<Vec<WorkflowId>> {
    let mut out = Vec::new();
    for round in 0..rounds {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let engine = engine.clone();
            tasks.spawn(async move {
                engine
                    .dispatch::<Order>(i)
                    .key(format!("contested-{round}"))
                    .await
                    .unwrap()
            });
        }
        out.push(tasks.join_all().await);
    }
    out
}

const ROUNDS: u64 = 30;

async fn concurrent_dispatches_from_two_processes_agree_on_one_workflow(db: TestDb) {
    let engine = db.engine().await;
    let mut child = spawn_child(&db.url, "dispatching_child");
    let mine = contend(&engine, ROUNDS).await;
    let status = child.wait().expect("wait for the child");
    assert!(status.success(), "the child saw one id per round: {status}");
    for (round, ids) in mine.iter().enumerate() {
        assert!(ids.iter().all(|id| *id == ids[0]), "round {round}: {ids:?}");
        let stored = engine
            .list(ListFilter::default().key(format!("contested-{round}")))
            .await
            .unwrap();
        assert_eq!(
            stored.iter().map(|w| w.id).collect::<Vec<_>>(),
            [ids[0]],
            "round {round}: one workflow, the one both processes were given"
        );
    }
    assert_eq!(
        count(&engine, ListFilter::default().name("order")).await,
        ROUNDS as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by the two-process dispatch test"]
async fn dispatching_child() {
    let Some(url) = child_db() else { return };
    let engine = Engine::open(&url).await.unwrap();
    for (round, ids) in contend(&engine, ROUNDS).await.iter().enumerate() {
        assert!(ids.iter().all(|id| *id == ids[0]), "round {round}: {ids:?}");
    }
}

/// Waits for `go`, then pays: the child every checkout of one order shares.
struct Payment;
impl Workflow for Payment {
    const NAME: &'static str = "payment";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, order: &String) -> Result<u64> {
        tally(&format!("{order}/payment-runs"));
        ctx.listen::<Go>().await?;
        Ok(order.len() as u64)
    }
}

/// Starts the payment of its order under the order's key, counts the
/// start, and returns what the payment returns.
struct Checkout;
impl Workflow for Checkout {
    const NAME: &'static str = "checkout";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, order: &String) -> Result<u64> {
        let payment = ctx
            .workflow::<Payment>(order.clone())
            .key(format!("pay:{order}"))
            .dispatch()
            .await?;
        tally(&format!("{order}/started {payment}"));
        let paid = ctx
            .workflow::<Payment>(order.clone())
            .key(format!("pay:{order}"))
            .output()
            .await?;
        Ok(paid)
    }
}

/// How often checkouts of `order` were given each payment id.
fn given(order: &str) -> std::collections::HashMap<String, u64> {
    executions_with_prefix(&format!("{order}/started "))
}

async fn payments(engine: &Engine, order: &str) -> Vec<octane::WorkflowInfo> {
    engine
        .list(
            ListFilter::default()
                .name("payment")
                .key(format!("pay:{order}"))
                .limit(100),
        )
        .await
        .unwrap()
}

/// Parents asking for one keyed child share it, and every parent waiting
/// on it (not only the one recorded as its parent) is woken when it ends.
async fn parents_that_ask_for_one_keyed_child_share_it(db: TestDb) {
    let engine = db
        .engine()
        .await
        .register::<Checkout>()
        .register::<Payment>();
    let worker = support::fast_worker(&engine);
    let order = unique("order");
    let mut checkouts = Vec::new();
    for _ in 0..3 {
        checkouts.push(engine.dispatch::<Checkout>(order.clone()).await.unwrap());
    }
    for &c in &checkouts {
        wait_state(&engine, c, WorkflowState::Sleeping).await;
    }
    let found = payments(&engine, &order).await;
    assert_eq!(found.len(), 1, "one payment for three checkouts: {found:?}");
    let payment = found[0].id;
    wait_state(&engine, payment, WorkflowState::Sleeping).await;
    assert_eq!(executions(&format!("{order}/payment-runs")), 1);
    assert_eq!(
        given(&order),
        [(format!("{order}/started {payment}"), 3)].into(),
        "each checkout was given the one payment's id"
    );

    engine.signal(Go).to(payment).await.unwrap();
    for &c in &checkouts {
        assert_eq!(
            wait_output::<Checkout>(&engine, c).await,
            order.len() as u64
        );
    }
    // A checkout of the order after the payment finished is given it too.
    let late = engine.dispatch::<Checkout>(order.clone()).await.unwrap();
    assert_eq!(
        wait_output::<Checkout>(&engine, late).await,
        order.len() as u64
    );
    assert_eq!(payments(&engine, &order).await.len(), 1);
    // Each run of a checkout (first runs and replays) counts; all of them
    // were given the one payment.
    let runs = given(&order);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[&format!("{order}/started {payment}")] >= 4, "{runs:?}");
    worker.shutdown().await;
}

/// The keyed child exists before the step that names it is recorded; a
/// parent whose record never landed asks again on replay and is given the
/// same child, so no second payment starts.
async fn a_parent_that_lost_its_record_of_a_keyed_child_finds_the_same_child(db: TestDb) {
    let faults = Faults::new(db.store().await);
    let rejected = Arc::new(AtomicBool::new(false));
    let once = rejected.clone();
    faults.reject_commits(Box::new(move |b| {
        b.ops
            .iter()
            .any(|op| matches!(op, WriteOp::Put(e) if e.kind == EventKind::ChildDispatch))
            && !once.swap(true, Ordering::SeqCst)
    }));
    let engine = Engine::with_store(faults.clone())
        .register::<Checkout>()
        .register::<Payment>();
    let worker = support::fast_worker(&engine);
    let order = unique("order");
    let checkout = engine.dispatch::<Checkout>(order.clone()).await.unwrap();
    // The commit recording the child was rejected: the parent is parked
    // with nothing of its run recorded, and the payment exists.
    wait_state(&engine, checkout, WorkflowState::Parked).await;
    assert!(rejected.load(Ordering::SeqCst));
    assert!(engine.history(checkout).await.unwrap().is_empty());
    let first = payments(&engine, &order).await;
    assert_eq!(first.len(), 1);
    let payment = first[0].id;

    engine.wake(checkout).await.unwrap();
    wait_state(&engine, checkout, WorkflowState::Sleeping).await;
    assert_eq!(
        payments(&engine, &order)
            .await
            .iter()
            .map(|w| w.id)
            .collect::<Vec<_>>(),
        [payment],
        "the replay found the payment its first run started"
    );
    wait_state(&engine, payment, WorkflowState::Sleeping).await;
    assert_eq!(executions(&format!("{order}/payment-runs")), 1);
    engine.signal(Go).to(payment).await.unwrap();
    assert_eq!(
        wait_output::<Checkout>(&engine, checkout).await,
        order.len() as u64
    );
    worker.shutdown().await;
}

/// `unique` dispatches share the unfinished workflow with the same name
/// and tags (tag order aside), and start a new one once it has finished.
async fn a_unique_dispatch_finds_the_unfinished_workflow_with_its_tags(db: TestDb) {
    let engine = db.engine().await.register::<Order>();
    let worker = support::fast_worker(&engine);
    let user = unique("user");
    let first = engine
        .dispatch::<Order>(1)
        .tag("user", &user)
        .tag("plan", "pro")
        .unique()
        .await
        .unwrap();
    let again = engine
        .dispatch::<Order>(2)
        .tag("plan", "pro")
        .tag("user", &user)
        .unique()
        .await
        .unwrap();
    assert_eq!(first, again, "the same tags, in another order");
    let other_tags = engine
        .dispatch::<Order>(3)
        .tag("user", &user)
        .unique()
        .await
        .unwrap();
    let not_unique = engine
        .dispatch::<Order>(4)
        .tag("user", &user)
        .tag("plan", "pro")
        .await
        .unwrap();
    assert!(other_tags != first && not_unique != first);

    wait_state(&engine, first, WorkflowState::Sleeping).await;
    engine.signal(Go).to(first).await.unwrap();
    assert_eq!(wait_output::<Order>(&engine, first).await, 1);
    let after = engine
        .dispatch::<Order>(5)
        .tag("user", &user)
        .tag("plan", "pro")
        .unique()
        .await
        .unwrap();
    assert_ne!(after, first, "a finished one is not returned");
    assert_eq!(engine.get(after).await.unwrap().input, "5");
    worker.shutdown().await;
}

support::store_tests!(
    a_second_dispatch_with_a_key_returns_the_first_and_stores_nothing,
    a_dispatch_by_name_takes_a_key_too,
    a_finished_holder_is_returned_or_replaced_as_each_call_says,
    concurrent_dispatches_from_two_processes_agree_on_one_workflow,
    parents_that_ask_for_one_keyed_child_share_it,
    a_parent_that_lost_its_record_of_a_keyed_child_finds_the_same_child,
    a_unique_dispatch_finds_the_unfinished_workflow_with_its_tags,
);
