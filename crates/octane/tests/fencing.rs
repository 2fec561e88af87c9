//! A write under a lease that is no longer current lands nothing — on
//! Postgres even when the whole transaction, `COMMIT` included, went to the
//! server before the fence's answer came back.

mod support;

use octane::history::{Coordinate, Event, EventKind, Location, StepRequest};
use octane::store::{Batch, Lease, StoreError, Suspend, Transition, WriteOp};
use support::{claim_new, TestDb};

fn event(n: u64) -> Event {
    let step = StepRequest::new(EventKind::Activity, "step", n, 1);
    Event::new(Location::root().child(Coordinate::new(n)), &step).finished(n.to_string())
}

fn batch(ops: Vec<WriteOp>, transition: Transition) -> Batch {
    Batch {
        ops,
        transition,
        now: 2,
    }
}

async fn a_stale_lease_writes_nothing_and_the_current_one_goes_on(db: TestDb) {
    let store = db.store().await;
    let lease = claim_new(store.as_ref(), "fenced", "null").await;
    let id = lease.workflow_id;
    store
        .commit(
            &lease,
            batch(vec![WriteOp::Put(event(1))], Transition::Continue),
        )
        .await
        .unwrap();

    let stale = [
        Lease {
            epoch: lease.epoch - 1,
            ..lease.clone()
        },
        Lease {
            owner: uuid::Uuid::new_v4(),
            ..lease.clone()
        },
    ];
    for stale in &stale {
        // History writes alone and with a completion (one round trip on
        // Postgres), and with a sleep (statements that wait for answers).
        for transition in [
            Transition::Continue,
            Transition::Suspend(Suspend {
                wake_at: Some(10),
                ..Suspend::default()
            }),
            Transition::Complete { output: "1".into() },
        ] {
            let ops = vec![
                WriteOp::Put(event(2)),
                WriteOp::ForgetIterations {
                    loop_location: Location::root().child(Coordinate::new(1)),
                    from: 0,
                    below: 5,
                },
                WriteOp::Put(event(3)),
            ];
            let err = store
                .commit(stale, batch(ops, transition))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::LeaseLost { workflow_id } if workflow_id == id),
                "{err:?}"
            );
        }
    }
    let stored: Vec<Location> = store
        .catalog()
        .all_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.location)
        .collect();
    assert_eq!(stored, vec![Location::root().child(Coordinate::new(1))]);
    let info = store.catalog().get(id).await.unwrap().unwrap();
    assert_eq!(
        info.state,
        octane::WorkflowState::Running,
        "no transition landed"
    );

    store
        .commit(
            &lease,
            batch(vec![WriteOp::Put(event(4))], Transition::Continue),
        )
        .await
        .unwrap();
    assert_eq!(store.catalog().all_events(id).await.unwrap().len(), 2);
}

/// A batch whose second write cannot be stored (an iteration no column
/// holds) lands nothing, not even the write before it — on Postgres, where
/// the first one may already be on its way to the server.
async fn a_failing_write_takes_the_writes_before_it_down_with_it(db: TestDb) {
    let store = db.store().await;
    let lease = claim_new(store.as_ref(), "fenced", "null").await;
    let mut bad = event(2);
    bad.iteration = u64::MAX;
    let err = store
        .commit(
            &lease,
            batch(
                // Enough writes ahead of it that a pipeline would have sent
                // them (and a COMMIT after) if the bad one were found late.
                (1..=40)
                    .map(|n| WriteOp::Put(event(100 + n)))
                    .chain([WriteOp::Put(bad)])
                    .collect(),
                Transition::Continue,
            ),
        )
        .await
        .unwrap_err();
    assert!(err.is_deterministic(), "{err:?}");
    assert!(store
        .catalog()
        .all_events(lease.workflow_id)
        .await
        .unwrap()
        .is_empty());
    store
        .commit(
            &lease,
            batch(vec![WriteOp::Put(event(3))], Transition::Continue),
        )
        .await
        .unwrap();
}

support::store_tests!(
    a_stale_lease_writes_nothing_and_the_current_one_goes_on,
    a_failing_write_takes_the_writes_before_it_down_with_it,
);
