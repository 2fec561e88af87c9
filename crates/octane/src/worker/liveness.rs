//! Tells the store this worker is alive for as long as it runs, and looks
//! for workers that are not: their leases are ended at once, so their
//! workflows are taken over without waiting for the leases to expire.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::ctx::error_chain;
use crate::runtime::Core;
use crate::store::WorkerRecord;

/// How often a worker looks for dead workers: the longest a dead worker's
/// workflows wait for a live one to take them over.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Registers the worker (retrying while the database is away), then every
/// [`LOOK_EVERY`] ends the leases of dead workers and wakes the claim loop
/// when that freed any. The liveness the store hands back is held by this task,
/// which dies with the worker. Runs beside the claim loop, so a worker's
/// first claim never waits for it.
pub(super) async fn run(core: Arc<Core>, id: uuid::Uuid) {
    let store = core.store().clone();
    let record = WorkerRecord {
        id,
        host: host_name(),
        pid: std::process::id(),
        started_at: now_ms(),
    };
    let mut alive = None;
    let mut retry = Duration::from_millis(100);
    loop {
        if alive.is_none() {
            match store.register_worker(record.clone()).await {
                Ok(liveness) => alive = Some(liveness),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), retry_in = ?retry, "registering the worker failed");
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
        }
        match store.reap_dead_workers(id, now_ms()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(workflows = n, "took over the workflows of dead workers");
                metrics::counter!("octane_dead_worker_takeovers_total").increment(n);
                core.env.runnable.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "looking for dead workers failed")
            }
        }
        let wait = if alive.is_none() {
            retry.min(LOOK_EVERY)
        } else {
            LOOK_EVERY
        };
        tokio::time::sleep(wait).await;
    }
}

/// This machine's name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
