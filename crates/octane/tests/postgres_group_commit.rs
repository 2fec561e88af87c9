//! Postgres: history-only commits and dispatches queued while others are in
//! flight share one transaction — a commit fenced off, or a dispatch the
//! database refuses, in the middle of a group fails alone, and the others
//! land.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use octane::history::{Coordinate, Event, EventKind, Location, StepRequest};
use octane::store::{Batch, Control, Lease, NewWorkflow, Store, StoreError, Transition, WriteOp};
use octane::WorkflowId;
use support::{claim_new, TestDb};

/// The largest commit group recorded.
#[derive(Default)]
struct LargestGroup(AtomicU64);

impl HistogramFn for LargestGroup {
    fn record(&self, v: f64) {
        self.0.fetch_max(v as u64, Ordering::SeqCst);
    }
}

static LARGEST: LazyLock<Arc<LargestGroup>> = LazyLock::new(Default::default);

/// Records group sizes into [`LARGEST`], from zero, for one test at a time
/// (the recorder is the test binary's, the largest group one number).
async fn watch_groups() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        metrics::set_global_recorder(GroupSizes).expect("the only recorder of this test binary")
    });
    let turn = ONE_AT_A_TIME.lock().await;
    LARGEST.0.store(0, Ordering::SeqCst);
    turn
}

struct GroupSizes;

impl Recorder for GroupSizes {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() == "octane_postgres_group_size" {
            Histogram::from_arc(LARGEST.clone())
        } else {
            Histogram::noop()
        }
    }
}

fn event(n: u64) -> Event {
    let step = StepRequest::new(EventKind::Activity, "step", n, 1);
    Event::new(Location::root().child(Coordinate::new(n)), &step).finished(n.to_string())
}

fn commit_of(n: u64) -> Batch {
    Batch {
        ops: vec![WriteOp::Put(event(n))],
        transition: Transition::Continue,
        now: 2,
    }
}

const HELD: usize = 4;
const QUEUED: usize = 16;
const FENCED: usize = HELD + QUEUED / 2;

/// Another session locks the rows of `HELD` claimed workflows; commits to
/// them are submitted one by one, so each group in flight waits on that
/// lock and what is submitted next queues up behind. Returns the session
/// (its `COMMIT` lets the groups go on), the held leases and their commits.
async fn hold_the_groups(
    db: &TestDb,
    store: &Arc<dyn Store>,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinSet<(usize, Result<(), StoreError>)>,
    Vec<Lease>,
) {
    let mut leases = Vec::new();
    for i in 0..HELD {
        // A name each: `claim_new`'s leases expire at once, and a second
        // claim of one name would take the first workflow over.
        leases.push(claim_new(store.as_ref(), &format!("held-{i}"), "null").await);
    }
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let held: Vec<String> = leases.iter().map(|l| l.workflow_id.to_string()).collect();
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "SELECT 1 FROM workflows WHERE id = ANY($1) FOR UPDATE",
            &[&held],
        )
        .await
        .unwrap();
    let mut commits = tokio::task::JoinSet::new();
    for (i, lease) in leases.iter().enumerate() {
        let (store, lease) = (store.clone(), lease.clone());
        commits.spawn(async move { (i, store.commit(&lease, commit_of(i as u64)).await) });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (client, commits, leases)
}

async fn a_lease_lost_in_the_middle_of_a_group_fails_that_commit_alone(db: TestDb) {
    let _turn = watch_groups().await;
    let store = db.store().await;
    let mut leases: Vec<Lease> = Vec::new();
    for i in 0..QUEUED {
        leases.push(claim_new(store.as_ref(), &format!("grouped-{i}"), "null").await);
    }
    // Cancelled while its worker still runs it: its lease no longer holds.
    store
        .catalog()
        .control(leases[FENCED - HELD].workflow_id, Control::Cancel, 3)
        .await
        .unwrap();

    let (client, mut commits, held) = hold_the_groups(&db, &store).await;
    for (i, lease) in leases.iter().enumerate() {
        let (store, lease) = (store.clone(), lease.clone());
        let i = HELD + i;
        commits.spawn(async move { (i, store.commit(&lease, commit_of(i as u64)).await) });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.batch_execute("COMMIT").await.unwrap();

    let mut outcomes: Vec<(usize, Result<(), StoreError>)> = commits.join_all().await;
    outcomes.sort_by_key(|(i, _)| *i);
    leases.splice(0..0, held);
    for (i, outcome) in &outcomes {
        let id = leases[*i].workflow_id;
        let stored = store.catalog().all_events(id).await.unwrap();
        if *i == FENCED {
            assert!(
                matches!(outcome, Err(StoreError::LeaseLost { workflow_id }) if *workflow_id == id),
                "the fenced commit: {outcome:?}"
            );
            assert!(stored.is_empty(), "the fenced commit landed: {stored:?}");
        } else {
            assert!(outcome.is_ok(), "commit {i}: {outcome:?}");
            assert_eq!(
                stored
                    .iter()
                    .map(|e| e.location.clone())
                    .collect::<Vec<_>>(),
                [event(*i as u64).location],
                "commit {i} reported success"
            );
        }
    }
    let largest = LARGEST.0.load(Ordering::SeqCst);
    assert!(
        largest >= QUEUED as u64,
        "the queued commits (the fenced one among them) shared a transaction: largest group {largest}"
    );
}

/// The dispatch among the queued ones that Postgres refuses: a tag value
/// holding a NUL, which a `text` column cannot store.
const REFUSED: usize = QUEUED / 2;

async fn dispatches_queued_behind_others_share_a_group_and_a_refused_one_fails_alone(db: TestDb) {
    let _turn = watch_groups().await;
    let store = db.store().await;
    let (client, commits, _) = hold_the_groups(&db, &store).await;
    let mut dispatches = tokio::task::JoinSet::new();
    for i in 0..QUEUED {
        let store = store.clone();
        let value = if i == REFUSED { "a\0b" } else { "ok" };
        let workflow = NewWorkflow {
            id: WorkflowId::new(),
            name: format!("dispatched-{i}"),
            input: i.to_string(),
            tags: BTreeMap::from([("n".to_string(), value.to_string())]),
            now: 2,
            parent: None,
            key: None,
            deadline_at: None,
        };
        dispatches.spawn(async move {
            let id = workflow.id;
            (i, id, store.catalog().create(workflow).await)
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.batch_execute("COMMIT").await.unwrap();
    for (i, outcome) in commits.join_all().await {
        assert!(outcome.is_ok(), "held commit {i}: {outcome:?}");
    }

    let mut outcomes = dispatches.join_all().await;
    outcomes.sort_by_key(|(i, ..)| *i);
    for (i, id, outcome) in outcomes {
        let stored = store.catalog().get(id).await.unwrap();
        if i == REFUSED {
            assert!(
                matches!(outcome, Err(StoreError::Rejected(_))),
                "the refused dispatch: {outcome:?}"
            );
            assert!(stored.is_none(), "the refused dispatch landed: {stored:?}");
        } else {
            assert_eq!(outcome.ok(), Some(id), "dispatch {i}");
            let stored = stored.unwrap_or_else(|| panic!("dispatch {i} reported success"));
            assert_eq!(stored.input, i.to_string(), "dispatch {i}");
            assert_eq!(stored.tags.get("n").map(String::as_str), Some("ok"));
        }
    }
    let largest = LARGEST.0.load(Ordering::SeqCst);
    assert!(
        largest >= QUEUED as u64,
        "the queued dispatches (the refused one among them) shared a transaction: largest group {largest}"
    );
}

support::postgres_tests!(
    a_lease_lost_in_the_middle_of_a_group_fails_that_commit_alone,
    dispatches_queued_behind_others_share_a_group_and_a_refused_one_fails_alone
);
