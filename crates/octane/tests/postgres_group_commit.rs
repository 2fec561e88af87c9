//! Postgres: history-only commits queued while others are in flight share
//! one transaction, each fenced on its own — one fenced off in the middle
//! of a group fails alone, and the others commit.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use octane::history::{Coordinate, Event, EventKind, Location, StepRequest};
use octane::store::{Batch, Control, Lease, StoreError, Transition, WriteOp};
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

async fn a_lease_lost_in_the_middle_of_a_group_fails_that_commit_alone(db: TestDb) {
    metrics::set_global_recorder(GroupSizes).expect("the only recorder of this test binary");
    let store = db.store().await;
    let mut leases: Vec<Lease> = Vec::new();
    for i in 0..HELD + QUEUED {
        // A name each: `claim_new`'s leases expire at once, and a second
        // claim of one name would take the first workflow over.
        leases.push(claim_new(store.as_ref(), &format!("grouped-{i}"), "null").await);
    }
    // Cancelled while its worker still runs it: its lease no longer holds.
    store
        .catalog()
        .control(leases[FENCED].workflow_id, Control::Cancel, 3)
        .await
        .unwrap();

    // Another session holds the rows of the first commits, so every group
    // in flight waits on them while the rest queue up behind.
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let held: Vec<String> = leases[..HELD]
        .iter()
        .map(|l| l.workflow_id.to_string())
        .collect();
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "SELECT 1 FROM workflows WHERE id = ANY($1) FOR UPDATE",
            &[&held],
        )
        .await
        .unwrap();

    let mut commits = tokio::task::JoinSet::new();
    let submit = |commits: &mut tokio::task::JoinSet<_>, i: usize| {
        let store = store.clone();
        let lease = leases[i].clone();
        commits.spawn(async move { (i, store.commit(&lease, commit_of(i as u64)).await) });
    };
    for i in 0..HELD {
        submit(&mut commits, i);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in HELD..HELD + QUEUED {
        submit(&mut commits, i);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.batch_execute("COMMIT").await.unwrap();

    let mut outcomes: Vec<(usize, Result<(), StoreError>)> = commits.join_all().await;
    outcomes.sort_by_key(|(i, _)| *i);
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

support::postgres_tests!(a_lease_lost_in_the_middle_of_a_group_fails_that_commit_alone);
