//! Signals: consumed exactly once and in send order, waking a workflow
//! that waits for them, surviving crashes between receipt and the work
//! that follows; clear errors for recipients that are not there.

mod support;

use std::time::Duration;

use octane::prelude::*;
use octane::store::{NewSignal, SignalTarget};
use octane::{Error, WorkflowState};
use support::crash::{crash_existing, signal_commits, CrashAfter};
use support::{count, executions, fast_worker, unique, wait_output, wait_state, Step, TestDb};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Signal)]
struct Deposit {
    cents: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Close;

impl Signal for Close {
    const NAME: &'static str = "close";
}

octane::join_signal!(
    enum Command {
        Deposit(Deposit),
        Close(Close),
    }
);

/// Takes deposits in batches of up to three until it has five, leaving
/// memory after the first batch so the rest happens after a replay.
struct Collector;
impl Workflow for Collector {
    const NAME: &'static str = "collector";
    type Input = ();
    type Output = Vec<u64>;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<Vec<u64>> {
        let mut got = Vec::new();
        while got.len() < 5 {
            let batch = ctx.listen_n::<Deposit>(3).await?;
            assert!((1..=3).contains(&batch.len()));
            got.extend(batch.into_iter().map(|d| d.cents));
            if got.len() <= 3 {
                ctx.sleep(Duration::from_millis(20)).await?;
            }
        }
        Ok(got)
    }
}

async fn signals_are_consumed_once_in_send_order_and_replayed_in_that_order(db: TestDb) {
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Collector>();
    let id = engine.dispatch::<Collector>(()).await.unwrap();
    for cents in 1..=5 {
        engine.signal(Deposit { cents }).to(id).await.unwrap();
    }
    let worker = fast_worker(&engine);
    assert_eq!(wait_output::<Collector>(&engine, id).await, [1, 2, 3, 4, 5]);
    let left = engine
        .store()
        .catalog()
        .pending_signals(id, vec!["deposit".into()], 10)
        .await
        .unwrap();
    assert!(left.is_empty(), "every signal consumed: {left:?}");
    worker.shutdown().await;
}

async fn a_listening_workflow_leaves_memory_and_a_signal_wakes_it(db: TestDb) {
    let engine = db.engine().await.register::<Collector>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Collector>(()).await.unwrap();
    wait_state(&engine, id, WorkflowState::Sleeping).await;
    assert_eq!(worker.running(), 0, "waiting for a signal, not in memory");
    for cents in [10, 20, 30, 40, 50] {
        engine.signal(Deposit { cents }).to(id).await.unwrap();
    }
    assert_eq!(
        wait_output::<Collector>(&engine, id).await,
        [10, 20, 30, 40, 50]
    );
    worker.shutdown().await;
}

/// Waits in an activity until released, then listens.
struct BusyThenListen;
impl Workflow for BusyThenListen {
    const NAME: &'static str = "busy_then_listen";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        ctx.activity(Gate { key: key.clone() }).await?;
        Ok(ctx.listen::<Deposit>().await?.cents)
    }
}

#[derive(Serialize, Deserialize)]
struct Gate {
    key: String,
}

impl Activity for Gate {
    const NAME: &'static str = "gate";
    type Output = ();
    async fn run(&self, _ctx: &ActivityCtx) -> Result<()> {
        count(&self.key);
        while executions(&format!("{}/open", self.key)) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

async fn a_signal_sent_while_the_workflow_runs_is_seen_by_its_next_listen(db: TestDb) {
    let engine = db.engine().await.register::<BusyThenListen>();
    let worker = fast_worker(&engine);
    let key = unique("busy");
    let id = engine
        .dispatch::<BusyThenListen>(key.clone())
        .await
        .unwrap();
    support::eventually("the gate", Duration::from_secs(10), || async {
        (executions(&key) == 1).then_some(())
    })
    .await;
    engine.signal(Deposit { cents: 7 }).to(id).await.unwrap();
    count(&format!("{key}/open"));
    assert_eq!(wait_output::<BusyThenListen>(&engine, id).await, 7);
    worker.shutdown().await;
}

struct Listener;
impl Workflow for Listener {
    const NAME: &'static str = "listener";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        Ok(ctx.listen::<Deposit>().await?.cents)
    }
}

async fn a_signal_racing_the_suspension_still_wakes_the_workflow(db: TestDb) {
    // The signal lands after the workflow looked for pending signals and
    // before its suspension commits: the suspension must notice it.
    let store = CrashAfter::logging(db.store().await);
    let engine = Engine::with_store(store.clone()).register::<Listener>();
    let id = engine.dispatch::<Listener>(()).await.unwrap();
    *store.signal_before_suspend.lock().unwrap() = Some(NewSignal {
        target: SignalTarget::Id(id),
        name: "deposit".into(),
        body: r#"{"cents":99}"#.into(),
        now: 0,
    });
    let worker = engine
        .worker()
        .lease_ttl(Duration::from_millis(500))
        .poll_interval(Duration::from_secs(3600))
        .spawn();
    // Polling is off: only the suspension's own check can make it runnable
    // again (its release wakes this worker in-process).
    assert_eq!(wait_output::<Listener>(&engine, id).await, 99);
    worker.shutdown().await;
}

/// A state machine: each signal drives an activity.
struct Account;
impl Workflow for Account {
    const NAME: &'static str = "account";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        ctx.repeat(0u64)
            .commit_every(1)
            .run(move |ctx, balance| {
                let key = key.clone();
                async move {
                    match ctx.listen::<Command>().await? {
                        Command::Deposit(d) => {
                            *balance += ctx
                                .activity(Step {
                                    key: format!("{key}/{}", d.cents),
                                    value: d.cents,
                                })
                                .await?;
                            Ok(Loop::Continue)
                        }
                        Command::Close(_) => Ok(Loop::Break(*balance)),
                    }
                }
                .boxed()
            })
            .await
    }
}

async fn a_crash_between_receiving_a_signal_and_its_activity_loses_and_duplicates_nothing(
    db: TestDb,
) {
    for crash_at in 1..=3 {
        let key = unique("account");
        let store = CrashAfter::new(db.store().await, crash_at, signal_commits());
        let setup = db.engine().await;
        let id = setup.dispatch::<Account>(key.clone()).await.unwrap();
        for cents in [100, 20, 3] {
            setup.signal(Deposit { cents }).to(id).await.unwrap();
        }
        setup.signal(Close).to(id).await.unwrap();
        crash_existing::<Account>(store).await;

        let engine = db.engine().await.register::<Account>();
        let worker = fast_worker(&engine);
        assert_eq!(
            wait_output::<Account>(&engine, id).await,
            123,
            "crash after signal {crash_at}"
        );
        for cents in [100, 20, 3] {
            assert_eq!(
                executions(&format!("{key}/{cents}")),
                1,
                "crash after signal {crash_at}: deposit {cents}"
            );
        }
        worker.shutdown().await;
    }
}

struct Patient;
impl Workflow for Patient {
    const NAME: &'static str = "patient";
    type Input = u64;
    type Output = Option<u64>;
    async fn run(ctx: &mut WorkflowCtx, millis: &u64) -> Result<Option<u64>> {
        let got = ctx
            .listen_with_timeout::<Deposit>(Duration::from_millis(*millis))
            .await?;
        Ok(got.map(|d| d.cents))
    }
}

async fn listen_with_timeout_gives_up_at_its_recorded_deadline_across_a_restart(db: TestDb) {
    let engine = db.engine().await.register::<Patient>();
    let worker = fast_worker(&engine);
    let started = std::time::Instant::now();
    let id = engine.dispatch::<Patient>(1200).await.unwrap();
    wait_state(&engine, id, WorkflowState::Sleeping).await;
    drop(worker);
    drop(engine);

    let engine = db.engine().await.register::<Patient>();
    let worker = fast_worker(&engine);
    assert_eq!(wait_output::<Patient>(&engine, id).await, None);
    assert!(started.elapsed() >= Duration::from_millis(1200));

    let id = engine.dispatch::<Patient>(60_000).await.unwrap();
    wait_state(&engine, id, WorkflowState::Sleeping).await;
    engine.signal(Deposit { cents: 5 }).to(id).await.unwrap();
    assert_eq!(wait_output::<Patient>(&engine, id).await, Some(5));
    worker.shutdown().await;
}

/// Signals another workflow, and reports what happened.
struct Notifier;
impl Workflow for Notifier {
    const NAME: &'static str = "notifier";
    type Input = WorkflowId;
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, to: &WorkflowId) -> Result<String> {
        let outcome = match ctx.signal(Deposit { cents: 1 }).to(*to).send().await {
            Ok(()) => "sent".to_string(),
            Err(e @ (Error::SignalRejected { .. } | Error::WorkflowNotFound { .. })) => {
                e.to_string()
            }
            Err(e) => return Err(e.into()),
        };
        ctx.sleep(Duration::from_millis(20)).await?;
        Ok(outcome)
    }
}

async fn signals_to_unknown_or_finished_workflows_are_clear_errors(db: TestDb) {
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Listener>()
        .register::<Notifier>();
    let worker = fast_worker(&engine);
    let nobody = WorkflowId::new();
    let err = engine
        .signal(Deposit { cents: 1 })
        .to(nobody)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("no workflow with id {nobody}"));

    let done = engine.dispatch::<Listener>(()).await.unwrap();
    engine.signal(Deposit { cents: 4 }).to(done).await.unwrap();
    assert_eq!(wait_output::<Listener>(&engine, done).await, 4);
    let err = engine
        .signal(Deposit { cents: 1 })
        .to(done)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("signal `deposit` to workflow {done} rejected: the workflow is completed")
    );

    // Inside a workflow the same error reaches the code, and the workflow
    // (which sleeps afterwards, so it is replayed) gets the same answer.
    let n = engine.dispatch::<Notifier>(done).await.unwrap();
    let out = wait_output::<Notifier>(&engine, n).await;
    assert_eq!(
        out,
        format!("signal `deposit` to workflow {done} rejected: the workflow is completed")
    );
    let sends = engine
        .history(n)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.event.kind == octane::history::EventKind::SignalSend)
        .count();
    assert_eq!(sends, 1);
    worker.shutdown().await;
}

struct Quick;
impl Workflow for Quick {
    const NAME: &'static str = "quick";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<()> {
        ctx.activity(Gate { key: key.clone() }).await?;
        Ok(())
    }
}

async fn pending_signals_of_a_finished_workflow_are_cleaned_up(db: TestDb) {
    let engine = db.engine().await.register::<Quick>();
    let worker = fast_worker(&engine);
    let key = unique("quick");
    let id = engine.dispatch::<Quick>(key.clone()).await.unwrap();
    support::eventually("the gate", Duration::from_secs(10), || async {
        (executions(&key) == 1).then_some(())
    })
    .await;
    for cents in 1..=3 {
        engine.signal(Deposit { cents }).to(id).await.unwrap();
    }
    assert_eq!(
        engine
            .store()
            .catalog()
            .pending_signals(id, vec!["deposit".into()], 10)
            .await
            .unwrap()
            .len(),
        3
    );
    count(&format!("{key}/open"));
    wait_output::<Quick>(&engine, id).await;
    assert!(engine
        .store()
        .catalog()
        .pending_signals(id, vec!["deposit".into()], 10)
        .await
        .unwrap()
        .is_empty());
    worker.shutdown().await;
}

struct Tagged;
impl Workflow for Tagged {
    const NAME: &'static str = "tagged";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        Ok(ctx.listen::<Deposit>().await?.cents)
    }
}

async fn signals_by_tags_need_exactly_one_recipient(db: TestDb) {
    let engine = db.engine().await.register::<Tagged>();
    let worker = fast_worker(&engine);
    let a = engine
        .dispatch::<Tagged>(())
        .tag("user", "ann")
        .tag("kind", "wallet")
        .await
        .unwrap();
    let _b = engine
        .dispatch::<Tagged>(())
        .tag("user", "bob")
        .tag("kind", "wallet")
        .await
        .unwrap();
    let err = engine
        .signal(Deposit { cents: 1 })
        .to_tags([("user", "cyd")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSignalTarget { .. }), "{err}");
    let err = engine
        .signal(Deposit { cents: 1 })
        .to_tags([("kind", "wallet")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AmbiguousSignalTarget { count: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("2 unfinished workflows"), "{err}");
    let to = engine
        .signal(Deposit { cents: 8 })
        .to_tags([("user", "ann"), ("kind", "wallet")])
        .await
        .unwrap();
    assert_eq!(to, a);
    assert_eq!(wait_output::<Tagged>(&engine, a).await, 8);
    worker.shutdown().await;
}

/// Signals `Deposit(5)` to the workflow carrying no tags at all: a target
/// that names nobody.
struct SignalsNobody;
impl Workflow for SignalsNobody {
    const NAME: &'static str = "signals_nobody";
    type Input = ();
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<String> {
        let none: Vec<(String, String)> = Vec::new();
        match ctx.signal(Deposit { cents: 5 }).to_tags(none).send().await {
            Err(Error::NoSignalTarget { .. }) => Ok("refused".into()),
            other => Ok(format!("{other:?}")),
        }
    }
}

/// An empty tag set matches every workflow; it must name none instead.
async fn a_signal_to_an_empty_tag_set_is_refused(db: TestDb) {
    let engine = db
        .engine()
        .await
        .register::<Tagged>()
        .register::<SignalsNobody>();
    let worker = fast_worker(&engine);
    let only = engine.dispatch::<Tagged>(()).await.unwrap();
    let none: Vec<(String, String)> = Vec::new();
    let err = engine
        .signal(Deposit { cents: 1 })
        .to_tags(none)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSignalTarget { .. }), "{err}");
    let sender = engine.dispatch::<SignalsNobody>(()).await.unwrap();
    assert_eq!(
        wait_output::<SignalsNobody>(&engine, sender).await,
        "refused"
    );
    let pending = engine
        .store()
        .catalog()
        .pending_signals(only, vec!["deposit".into()], 10)
        .await
        .unwrap();
    assert!(pending.is_empty(), "nothing was delivered: {pending:?}");
    worker.shutdown().await;
}

#[derive(Serialize, Deserialize, Message)]
struct Echoed(u64);

/// Answers each signal with a message, then waits for the next.
struct Echo;
impl Workflow for Echo {
    const NAME: &'static str = "echo";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        let n = *n;
        ctx.repeat(0u64)
            .commit_every(1)
            .run(move |ctx, seen| {
                async move {
                    let d = ctx.listen::<Deposit>().await?;
                    ctx.msg(Echoed(d.cents)).send().await?;
                    *seen += 1;
                    Ok(if *seen == n {
                        Loop::Break(*seen)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

async fn signals_sent_as_fast_as_answered_never_stall_a_workflow(db: TestDb) {
    // Each signal is sent the moment the previous one is answered, so it
    // races the workflow going back to sleep: the signal's commit and the
    // suspension's commit must never both miss each other.
    let engine = db.engine().await.register::<Echo>();
    let worker = engine
        .worker()
        .lease_ttl(Duration::from_millis(500))
        .poll_interval(Duration::from_secs(3600))
        .spawn();
    let mut answers = engine.subscribe::<Echoed, &str, &str>([]);
    let n = 150;
    let id = engine.dispatch::<Echo>(n).await.unwrap();
    for cents in 0..n {
        engine.signal(Deposit { cents }).to(id).await.unwrap();
        let Ok(answer) = tokio::time::timeout(Duration::from_secs(10), answers.recv()).await else {
            let info = engine.get(id).await.unwrap();
            let pending = engine
                .store()
                .catalog()
                .pending_signals(id, vec!["deposit".into()], 10)
                .await
                .unwrap();
            panic!(
                "signal {cents} was never answered: the workflow is {} (wake_at {:?}, {} in memory), {} signal(s) pending",
                info.state,
                info.wake_at,
                worker.running(),
                pending.len()
            );
        };
        assert_eq!(answer.unwrap().0, cents);
    }
    assert_eq!(wait_output::<Echo>(&engine, id).await, n);
    worker.shutdown().await;
}

support::store_tests!(
    signals_sent_as_fast_as_answered_never_stall_a_workflow,
    signals_are_consumed_once_in_send_order_and_replayed_in_that_order,
    a_listening_workflow_leaves_memory_and_a_signal_wakes_it,
    a_signal_sent_while_the_workflow_runs_is_seen_by_its_next_listen,
    a_signal_racing_the_suspension_still_wakes_the_workflow,
    a_crash_between_receiving_a_signal_and_its_activity_loses_and_duplicates_nothing,
    listen_with_timeout_gives_up_at_its_recorded_deadline_across_a_restart,
    signals_to_unknown_or_finished_workflows_are_clear_errors,
    pending_signals_of_a_finished_workflow_are_cleaned_up,
    signals_by_tags_need_exactly_one_recipient,
    a_signal_to_an_empty_tag_set_is_refused,
);
