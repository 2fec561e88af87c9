//! The leases of the runs a worker holds in memory. Each run owns a
//! [`LeaseGuard`]: its entry leaves the table when the run's task ends,
//! however it ends — a panic included — so the heartbeat never renews the
//! lease of a run that is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::store::{Lease, WorkflowId};

struct Held {
    lease: Lease,
    lost: CancellationToken,
}

/// Leases by workflow.
#[derive(Default)]
pub(super) struct Leases(Mutex<HashMap<WorkflowId, Held>>);

impl Leases {
    /// Records a lease just claimed. If the worker already held the
    /// workflow (its own lease lapsed and it won the workflow back), the old
    /// run is fenced off already and is told to stop too.
    pub(super) fn hold(self: &Arc<Self>, lease: Lease) -> LeaseGuard {
        let lost = CancellationToken::new();
        let held = Held {
            lease: lease.clone(),
            lost: lost.clone(),
        };
        let stale = self.lock().insert(lease.workflow_id, held);
        if let Some(stale) = stale {
            stale.lost.cancel();
        }
        LeaseGuard {
            leases: self.clone(),
            lease,
            lost,
        }
    }

    /// Every lease held now.
    pub(super) fn snapshot(&self) -> Vec<Lease> {
        self.lock().values().map(|h| h.lease.clone()).collect()
    }

    /// Stops the run holding `lease`, if it is still that run: the worker
    /// may have claimed the workflow again since, and that newer run holds
    /// a valid lease. Returns whether a run was stopped.
    pub(super) fn lose(&self, lease: &Lease) -> bool {
        match self.lock().get(&lease.workflow_id) {
            Some(h) if h.lease.epoch == lease.epoch => {
                h.lost.cancel();
                true
            }
            _ => false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkflowId, Held>> {
        self.0.lock().expect("leases lock")
    }
}

/// A run's hold on its lease; dropping it forgets the lease.
pub(super) struct LeaseGuard {
    leases: Arc<Leases>,
    lease: Lease,
    lost: CancellationToken,
}

impl LeaseGuard {
    pub(super) fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Cancelled when the heartbeat finds the lease gone.
    pub(super) fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut held = self.leases.lock();
        if held
            .get(&self.lease.workflow_id)
            .is_some_and(|h| h.lease.epoch == self.lease.epoch)
        {
            held.remove(&self.lease.workflow_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(epoch: i64, id: WorkflowId) -> Lease {
        Lease {
            workflow_id: id,
            owner: uuid::Uuid::nil(),
            epoch,
        }
    }

    #[test]
    fn a_guard_forgets_its_lease_however_the_run_ends() {
        let leases = Arc::new(Leases::default());
        let id = WorkflowId::new();
        let guard = leases.hold(lease(1, id));
        assert_eq!(leases.len(), 1);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = guard;
            panic!("the run panics");
        }));
        assert!(panicked.is_err());
        assert_eq!(leases.len(), 0);
    }

    #[test]
    fn a_newer_claim_outlives_the_stale_run_and_only_the_renewed_epoch_is_lost() {
        let leases = Arc::new(Leases::default());
        let id = WorkflowId::new();
        let old = leases.hold(lease(1, id));
        let new = leases.hold(lease(2, id));
        assert!(old.lost().is_cancelled(), "the stale run is stopped");
        assert!(
            !leases.lose(&lease(1, id)),
            "an old epoch's loss stops nobody"
        );
        assert!(!new.lost().is_cancelled());
        drop(old);
        assert_eq!(leases.snapshot(), [lease(2, id)], "the newer lease stays");
        assert!(leases.lose(&lease(2, id)));
        assert!(new.lost().is_cancelled());
    }
}
