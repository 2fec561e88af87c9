//! Renews the leases of the workflows a worker holds in memory.

use std::sync::Arc;
use std::time::Duration;

use super::leases::Leases;
use crate::clock::{duration_ms, Clock};
use crate::ctx::error_chain;
use crate::store::Store;

/// Every third of the lease TTL, extends every lease in memory. A lease
/// found lost (another worker took the workflow over, or it was cancelled)
/// stops its run at the next step boundary; its writes are fenced off
/// regardless.
pub(super) async fn run(store: Arc<dyn Store>, leases: Arc<Leases>, ttl: Duration, clock: Clock) {
    let period = ttl / 3;
    loop {
        tokio::time::sleep(period).await;
        let held = leases.snapshot();
        if held.is_empty() {
            continue;
        }
        let now = clock.now_ms();
        match store.renew(held.clone(), now, now + duration_ms(ttl)).await {
            Ok(lost) => {
                for lease in held.iter().filter(|l| lost.contains(&l.workflow_id)) {
                    if leases.lose(lease) {
                        tracing::warn!(workflow_id = %lease.workflow_id, "lease lost; stopping the run");
                        metrics::counter!("octane_lease_losses_total").increment(1);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %error_chain(&e), "renewing leases failed"),
        }
    }
}
