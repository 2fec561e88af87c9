//! A store wrapper that "crashes" right after a chosen commit: the commit
//! reaches the real database, then the caller never hears back, and the
//! test drops the worker — exactly a process dying after its write was
//! durable but before it acted on it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use octane::history::{Event, EventKind};
use octane::store::{
    Batch, Catalog, ClaimRequest, Claimed, Lease, NewSignal, NewWorkflow, ScheduleInfo, Store,
    StoreError, WorkflowId, WriteOp,
};
use tokio::sync::Notify;

/// Which commits count towards the crash point.
pub type Matcher = Box<dyn Fn(&Batch) -> bool + Send + Sync>;

pub struct CrashAfter {
    inner: Arc<dyn Store>,
    matches: Matcher,
    remaining: AtomicU64,
    crashed: AtomicBool,
    /// Notified once the crash point is reached.
    pub reached: Notify,
    /// Every batch committed through the wrapper, in order.
    pub log: Mutex<Vec<Batch>>,
    checkpoint_delay: Option<std::time::Duration>,
    /// Delivered through the real store just before the next commit that
    /// suspends a workflow on signals: a signal racing the suspension.
    pub signal_before_suspend: Mutex<Option<NewSignal>>,
}

impl std::fmt::Debug for CrashAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashAfter")
            .field("crashed", &self.has_crashed())
            .finish_non_exhaustive()
    }
}

impl CrashAfter {
    /// Crashes after the `n`th commit (from 1) for which `matches` holds.
    pub fn new(inner: Arc<dyn Store>, n: u64, matches: Matcher) -> Arc<Self> {
        Arc::new(CrashAfter {
            inner,
            matches,
            remaining: AtomicU64::new(n),
            crashed: AtomicBool::new(false),
            reached: Notify::new(),
            log: Mutex::new(Vec::new()),
            checkpoint_delay: None,
            signal_before_suspend: Mutex::new(None),
        })
    }

    /// Holds back commits that carry a loop checkpoint and no activity, so
    /// they are still in flight while the loop runs on.
    pub fn delay_checkpoint_flushes(&mut self, d: std::time::Duration) {
        self.checkpoint_delay = Some(d);
    }

    /// Never crashes; only logs.
    pub fn logging(inner: Arc<dyn Store>) -> Arc<Self> {
        Self::new(inner, u64::MAX, Box::new(|_| false))
    }

    pub fn has_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }
}

/// Commits that record consumed signals.
pub fn signal_commits() -> Matcher {
    Box::new(|b: &Batch| {
        b.ops.iter().any(|op| {
            matches!(
                op,
                WriteOp::Put(Event {
                    kind: EventKind::Signal,
                    done: true,
                    ..
                })
            )
        })
    })
}

/// Commits that record a completed activity.
pub fn activity_commits() -> Matcher {
    Box::new(|b: &Batch| {
        b.ops.iter().any(|op| {
            matches!(
                op,
                WriteOp::Put(Event {
                    kind: EventKind::Activity,
                    done: true,
                    ..
                })
            )
        })
    })
}

#[async_trait]
impl Store for CrashAfter {
    async fn claim(&self, r: ClaimRequest) -> Result<Claimed, StoreError> {
        if self.has_crashed() {
            return std::future::pending().await;
        }
        self.inner.claim(r).await
    }
    async fn load_history(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        self.inner.load_history(id).await
    }
    async fn commit(&self, lease: &Lease, batch: Batch) -> Result<(), StoreError> {
        if self.has_crashed() {
            return std::future::pending().await;
        }
        let counts = (self.matches)(&batch);
        if let octane::store::Transition::Suspend(s) = &batch.transition {
            if !s.signals.is_empty() {
                let racing = self.signal_before_suspend.lock().unwrap().take();
                if let Some(signal) = racing {
                    self.inner.catalog().send_signal(signal).await?;
                }
            }
        }
        if let Some(d) = self.checkpoint_delay {
            let checkpoint_only = batch.ops.iter().all(|op| {
                matches!(op, WriteOp::Put(e) if e.kind == EventKind::Loop)
                    || matches!(op, WriteOp::ForgetIterations { .. })
            });
            if checkpoint_only && !batch.ops.is_empty() {
                tokio::time::sleep(d).await;
            }
        }
        self.log.lock().unwrap().push(batch.clone());
        self.inner.commit(lease, batch).await?;
        if counts && self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.crashed.store(true, Ordering::SeqCst);
            self.reached.notify_one();
            return std::future::pending().await;
        }
        Ok(())
    }
    async fn renew(&self, l: Vec<Lease>, n: i64, e: i64) -> Result<Vec<WorkflowId>, StoreError> {
        if self.has_crashed() {
            return std::future::pending().await;
        }
        self.inner.renew(l, n, e).await
    }
    async fn expire_deadlines(&self, now: i64) -> Result<Vec<WorkflowId>, StoreError> {
        if self.has_crashed() {
            return std::future::pending().await;
        }
        self.inner.expire_deadlines(now).await
    }
    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleInfo>, StoreError> {
        if self.has_crashed() {
            return std::future::pending().await;
        }
        self.inner.due_schedules(now).await
    }
    async fn fire_schedule(
        &self,
        name: String,
        due: i64,
        next_at: i64,
        workflow: NewWorkflow,
    ) -> Result<Option<WorkflowId>, StoreError> {
        if self.has_crashed() {
            return std::future::pending().await;
        }
        self.inner.fire_schedule(name, due, next_at, workflow).await
    }
    fn catalog(&self) -> &dyn Catalog {
        self.inner.catalog()
    }
}

/// Dispatches `input` on an engine over `store`, waits until the store's
/// crash point is reached, then drops the worker as a crash would. Returns
/// the workflow's id and the crashed engine (still usable for reads).
pub async fn run_until_crash<W: octane::Workflow>(
    store: Arc<CrashAfter>,
    input: W::Input,
) -> (octane::Engine, WorkflowId) {
    let engine = octane::Engine::with_store(store.clone()).register::<W>();
    let id = engine.dispatch::<W>(input).await.unwrap();
    crash_existing::<W>(store).await;
    (engine, id)
}

/// Runs the workflows already in `store` until its crash point is
/// reached, then drops the worker as a crash would.
pub async fn crash_existing<W: octane::Workflow>(store: Arc<CrashAfter>) {
    let engine = octane::Engine::with_store(store.clone()).register::<W>();
    let worker = super::fast_worker(&engine);
    tokio::time::timeout(std::time::Duration::from_secs(60), store.reached.notified())
        .await
        .expect("the crash point was not reached in time");
    drop(worker);
}
