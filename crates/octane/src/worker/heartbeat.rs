//! Renews the leases of the workflows a worker holds in memory.

use std::sync::Arc;

use super::WorkerShared;
use crate::clock::{duration_ms, now_ms};

/// Every third of the lease TTL, extends every lease in memory. A lease
/// found lost (another worker took the workflow over, or it was cancelled)
/// stops its run at the next step boundary; its writes are fenced off
/// regardless.
pub(super) async fn run(shared: Arc<WorkerShared>) {
    let period = shared.lease_ttl / 3;
    loop {
        tokio::time::sleep(period).await;
        let leases: Vec<_> = shared
            .leases
            .lock()
            .expect("leases lock")
            .values()
            .map(|(lease, _)| lease.clone())
            .collect();
        if leases.is_empty() {
            continue;
        }
        let epochs: Vec<_> = leases.iter().map(|l| (l.workflow_id, l.epoch)).collect();
        let expires_at = now_ms() + duration_ms(shared.lease_ttl);
        match shared.engine.store().renew(leases, expires_at).await {
            Ok(lost) => {
                let held = shared.leases.lock().expect("leases lock");
                for id in lost {
                    // Only the run whose epoch was renewed lost its lease: the
                    // worker may have claimed the workflow again since the
                    // snapshot, and that newer run holds a valid lease.
                    let renewed = epochs.iter().find(|(w, _)| *w == id).map(|(_, e)| *e);
                    if let Some((lease, token)) = held.get(&id) {
                        if Some(lease.epoch) == renewed {
                            tracing::warn!(workflow_id = %id, "lease lost; stopping the run");
                            metrics::counter!("octane_lease_losses_total").increment(1);
                            token.cancel();
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "renewing leases failed"),
        }
    }
}
