//! Tells the store this worker is alive for as long as it runs, and looks
//! for workers that are not: their leases are ended at once, so their
//! workflows are taken over without waiting for the leases to expire.

use std::sync::Arc;
use std::time::Duration;

use super::leases::Leases;
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
pub(super) async fn run(
    core: Arc<Core>,
    id: uuid::Uuid,
    leases: Arc<Leases>,
    adrift: Arc<std::sync::atomic::AtomicBool>,
) {
    let store = core.store().clone();
    let record = WorkerRecord {
        id,
        host: host_name(),
        pid: std::process::id(),
        started_at: now_ms(),
    };
    let mut alive: Option<Option<Box<dyn crate::store::Liveness>>> = None;
    let mut retry = Duration::from_millis(100);
    loop {
        let lost = matches!(&alive, Some(Some(session)) if !session.is_held());
        if lost {
            // Until it registers again, other workers see this one dead and
            // may take its workflows over: its runs stop at their next
            // step rather than race the new owners (only a step in flight
            // runs twice).
            tracing::warn!(
                "the worker's liveness session ended (a server restart or failover); \
                 stopping its runs and registering again"
            );
            adrift.store(true, std::sync::atomic::Ordering::Release);
            for lease in leases.snapshot() {
                leases.lose(&lease);
            }
            alive = None;
        }
        if alive.is_none() {
            match store.register_worker(record.clone()).await {
                Ok(liveness) => {
                    alive = Some(liveness);
                    adrift.store(false, std::sync::atomic::Ordering::Release);
                    core.env.runnable.notify_one();
                }
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
        let lost = match &alive {
            Some(Some(session)) => session.lost(),
            _ => Box::pin(std::future::pending()),
        };
        // A session that ends is acted on at once: every moment this worker
        // runs without it, another may take its workflows over.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = lost => {}
        }
    }
}

/// This machine's name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
