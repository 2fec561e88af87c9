//! The runtime core: what the engine's facade and its workers share — the
//! store, the registered workflows, the run settings and the in-process
//! notifiers. It sits between the worker (which drives runs) and the
//! contexts (which a run's code steps through).
//!
//! A core never changes once a worker holds it: the facade's builder
//! methods copy it on write, so a worker runs exactly the workflows and
//! settings it was spawned with.

mod finishes;
mod registry;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub(crate) use finishes::Finishes;
pub(crate) use registry::{Registry, RunError};

use crate::clock::{duration_ms, Clock};
use crate::ctx::{RunConfig, RunEnv};
use crate::message::MessageBus;
use crate::store::{Store, StoreError, WorkflowId};

/// The default cap on a loop's serialized state: 1 MiB.
pub const DEFAULT_MAX_LOOP_STATE: usize = 1 << 20;

/// How many rows (events, signals, tags, workflows) one pruning
/// transaction deletes, about: on SQLite it is one job of the single
/// writer, which every commit waits behind.
const PRUNE_ROWS: usize = 5_000;

#[derive(Clone)]
pub(crate) struct Core {
    /// What every run shares: the store, the run settings, the notifiers.
    pub env: RunEnv,
    pub registry: Registry,
    /// The workflows `wait` callers of this process wait for.
    pub finishes: Arc<Finishes>,
    /// Whether finishes in other processes are announced to `finishes`.
    pub finishes_announced: bool,
    /// A run left a worker's memory, however it stopped: wakes whoever
    /// waits for the workers to go quiet (the test kit's `settle`).
    pub stopped: Arc<Notify>,
    /// How long finished workflows are kept, if workers prune them.
    pub retain_finished: Option<Duration>,
    /// The URL the store was opened from (password masked), if it was.
    pub store_url: Option<String>,
}

impl Core {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        let runnable = Arc::new(Notify::new());
        store.watch_runnable(runnable.clone());
        let bus = MessageBus::new();
        let sink = bus.clone();
        store.watch_messages(Arc::new(move |m| sink.publish(m)));
        let finishes = Arc::new(Finishes::default());
        let heard = finishes.clone();
        let finishes_announced = store.watch_finished(Arc::new(move |id| match id {
            Some(id) => heard.wake(id),
            None => heard.wake_all(),
        }));
        Core {
            env: RunEnv {
                store,
                config: RunConfig {
                    max_loop_state: DEFAULT_MAX_LOOP_STATE,
                    sleep_in_memory_below: Duration::from_secs(1),
                },
                bus,
                runnable,
                clock: Clock::default(),
            },
            registry: Registry::default(),
            finishes,
            finishes_announced,
            stopped: Arc::new(Notify::new()),
            retain_finished: None,
            store_url: None,
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.env.store
    }

    /// Tells waiters, here and (through the store) in other processes,
    /// that these workflows finished: their finishing commit is durable.
    pub(crate) fn finished(&self, ids: &[WorkflowId]) {
        for id in ids {
            self.finishes.wake(*id);
        }
        self.env.store.announce_finished(ids);
    }

    /// Deletes workflows that finished more than `older_than` ago, in
    /// batches; `progress` gets the running total after each batch that
    /// deleted something.
    pub(crate) async fn prune(
        &self,
        older_than: Duration,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
        let before = self
            .env
            .clock
            .now_ms()
            .saturating_sub(duration_ms(older_than));
        let mut total = 0;
        loop {
            let n = self.env.store.catalog().prune(before, PRUNE_ROWS).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
            metrics::counter!("octane_pruned_total").increment(n);
            progress(total);
        }
    }
}
