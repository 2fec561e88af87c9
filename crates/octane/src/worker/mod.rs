//! Workers: claim runnable workflows, run them, keep their leases alive.
//!
//! A worker polls its store for runnable workflows of the names its engine
//! registered (new, woken, or abandoned by a dead worker whose lease
//! expired), runs each as a task, and renews the leases of the ones in
//! memory. It wakes at once when this engine dispatches or wakes a
//! workflow, at the next known deadline, and otherwise every
//! `poll_interval` (which covers work created by other processes).

mod deadlines;
mod heartbeat;
mod leases;
mod liveness;
mod retention;
mod runner;
mod schedules;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::clock::duration_ms;
use crate::runtime::Core;
use crate::store::ClaimRequest;
use leases::Leases;

/// Configures and starts a [`Worker`]; from
/// [`Engine::worker`](crate::Engine::worker).
#[must_use = "a worker does nothing until spawned"]
pub struct WorkerBuilder {
    core: Arc<Core>,
    concurrency: usize,
    lease_ttl: Duration,
    poll_interval: Duration,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("concurrency", &self.concurrency)
            .field("lease_ttl", &self.lease_ttl)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        WorkerBuilder {
            core,
            concurrency: 64,
            lease_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
        }
    }

    /// How many workflows the worker holds in memory at once (default 64).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How long a lease lasts unless renewed (default 30 s); leases are
    /// renewed every third of it. A worker whose process died is found dead
    /// at once and its workflows taken over within half a second; only one
    /// that is alive but stalled (paused, cut off from the database) keeps
    /// its workflows until its leases expire.
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.lease_ttl = d.max(Duration::from_millis(30));
        self
    }

    /// How often to look for work nobody announced (default 1 s).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d.max(Duration::from_millis(1));
        self
    }

    /// Starts the worker on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn(self) -> Worker {
        let shared = Arc::new(WorkerShared {
            id: uuid::Uuid::new_v4(),
            core: self.core,
            concurrency: self.concurrency,
            lease_ttl: self.lease_ttl,
            poll_interval: self.poll_interval,
            drain: CancellationToken::new(),
            leases: Arc::default(),
            adrift: Arc::default(),
        });
        let task = tokio::spawn(run(shared.clone()));
        Worker {
            shared,
            task: Some(task),
        }
    }
}

struct WorkerShared {
    id: uuid::Uuid,
    core: Arc<Core>,
    concurrency: usize,
    lease_ttl: Duration,
    poll_interval: Duration,
    /// Cancelled by `shutdown`: runs stop at their next step boundary.
    drain: CancellationToken,
    /// Leases of the runs in memory.
    leases: Arc<Leases>,
    /// Set while the worker's liveness session is lost and not yet back:
    /// other workers may find it dead then, so it claims nothing.
    adrift: Arc<std::sync::atomic::AtomicBool>,
}

/// A running worker.
///
/// [`Worker::shutdown`] stops it gracefully. Dropping it instead aborts
/// every run on the spot, as a crash would: it stops being alive, so
/// another worker takes its workflows over at once and replays them.
pub struct Worker {
    shared: Arc<WorkerShared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.shared.id)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// This worker's id (the lease owner it writes).
    pub fn id(&self) -> uuid::Uuid {
        self.shared.id
    }

    /// How many workflows are in this worker's memory.
    pub fn running(&self) -> usize {
        self.shared.leases.len()
    }

    /// Stops claiming work and evicts every running workflow at its next
    /// step boundary (flushing its pending writes and releasing it to be
    /// runnable at once), keeping leases renewed while they drain. Returns
    /// when all have left.
    pub async fn shutdown(mut self) {
        self.shared.drain.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Aborts a task when dropped, so helpers die with the worker's main task.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run(shared: Arc<WorkerShared>) {
    let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat::run(
        shared.core.store().clone(),
        shared.leases.clone(),
        shared.lease_ttl,
        shared.core.env.clock.clone(),
    )));
    let _liveness = AbortOnDrop(tokio::spawn(liveness::run(
        shared.core.clone(),
        shared.id,
        shared.leases.clone(),
        shared.adrift.clone(),
    )));
    let _deadlines = AbortOnDrop(tokio::spawn(deadlines::run(shared.core.clone())));
    let _schedules = AbortOnDrop(tokio::spawn(schedules::run(shared.core.clone())));
    let _retention = shared
        .core
        .retain_finished
        .map(|retain| AbortOnDrop(tokio::spawn(retention::run(shared.core.clone(), retain))));
    let slots = Arc::new(Semaphore::new(shared.concurrency));
    let mut runs = JoinSet::new();
    let names = shared.core.registry.names();
    let store = shared.core.store().clone();
    store.watch_names(&shared.core.env.runnable, &names);
    let mut backoff = Duration::ZERO;
    while !shared.drain.is_cancelled() {
        while runs.try_join_next().is_some() {}
        let free = slots.available_permits();
        let mut next_wake_at = None;
        let adrift = shared.adrift.load(std::sync::atomic::Ordering::Acquire);
        if free > 0 && !adrift {
            let now = shared.core.env.clock.now_ms();
            let limit = free.min(128);
            let request = ClaimRequest {
                owner: shared.id,
                names: names.clone(),
                limit,
                now,
                expires_at: now + duration_ms(shared.lease_ttl),
            };
            let started = std::time::Instant::now();
            match store.claim(request).await {
                Ok(claimed) => {
                    backoff = Duration::ZERO;
                    metrics::histogram!("octane_pull_seconds")
                        .record(started.elapsed().as_secs_f64());
                    next_wake_at = claimed.next_wake_at;
                    let full = claimed.workflows.len() == limit;
                    for wf in claimed.workflows {
                        let permit = slots
                            .clone()
                            .try_acquire_owned()
                            .expect("claims never exceed free slots");
                        let guard = shared.leases.hold(wf.lease.clone());
                        runs.spawn(runner::run(
                            shared.core.clone(),
                            shared.drain.child_token(),
                            wf,
                            guard,
                            permit,
                        ));
                    }
                    if full {
                        continue;
                    }
                }
                Err(e) => {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
                    metrics::counter!("octane_store_errors_total").increment(1);
                    tracing::warn!(error = %e, retry_in = ?backoff, "claiming workflows failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shared.drain.cancelled() => {}
                    }
                    continue;
                }
            }
        }
        let mut wait = shared.poll_interval;
        if let Some(at) = next_wake_at {
            let until = u64::try_from(at - shared.core.env.clock.now_ms()).unwrap_or(0);
            wait = wait.min(Duration::from_millis(until));
        }
        tokio::select! {
            _ = shared.core.env.runnable.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            Some(_) = runs.join_next(), if !runs.is_empty() => {}
            _ = shared.drain.cancelled() => {}
        }
    }
    while runs.join_next().await.is_some() {}
}
