//! A store wrapper that injects faults into a real store: calls that fail
//! (the database away for a while), a write the database rejects, a panic
//! inside the store, a slow commit. Everything it does not fault reaches
//! the real database unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use octane::history::Event;
use octane::store::{
    Batch, Catalog, Cause, Census, ClaimRequest, Claimed, Control, Delivery, Lease, ListFilter,
    NewSignal, NewWorkflow, PendingSignal, QueryPlan, ScheduleInfo, SignalTarget, Store,
    StoreError, WorkflowId, WorkflowInfo, WorkflowState,
};

/// The store calls a fault can target.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Op {
    Claim,
    LoadHistory,
    Commit,
    Renew,
    Get,
    SendSignal,
    ResolveTarget,
    PendingSignals,
}

/// What happens to a targeted call.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Fails with "database unavailable", nothing done, this many times.
    Unavailable(u32),
    /// Fails with "database unavailable" until this instant.
    UnavailableUntil(Instant),
    /// Panics inside the store this many times.
    Panic(u32),
    /// Waits this long before reaching the real store, every time.
    Delay(Duration),
}

/// Decides which commits a rejection applies to.
pub type BatchMatcher = Box<dyn Fn(&Batch) -> bool + Send + Sync>;

pub struct Faults {
    inner: Arc<dyn Store>,
    plan: Mutex<HashMap<Op, Fault>>,
    reject: Mutex<Option<BatchMatcher>>,
    chaos: Mutex<Option<Chaos>>,
    /// How many faults were injected.
    pub injected: AtomicU64,
    /// How many claims were made through the wrapper.
    pub claims: AtomicU64,
    /// How many workflows were read (`Catalog::get`) through the wrapper.
    pub gets: AtomicU64,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("injected", &self.injected())
            .finish_non_exhaustive()
    }
}

/// Random faults from a seeded generator: each faultable call fails with
/// probability `p`; half of the failed commits reach the database first
/// (the caller hears of a failure whose outcome is in fact a success).
struct Chaos {
    rng: rand::rngs::StdRng,
    p: f64,
}

/// Where a random fault strikes a call.
enum Strike {
    None,
    Before,
    After,
}

/// The error a database that is briefly away gives.
pub fn unavailable() -> StoreError {
    StoreError::Unavailable(Cause::msg("injected fault: the database is away"))
}

/// The error a database gives for a value it will never accept.
pub fn rejected() -> StoreError {
    StoreError::Rejected(Cause::msg("injected fault: value out of range"))
}

impl Faults {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Faults {
            inner,
            plan: Mutex::new(HashMap::new()),
            reject: Mutex::new(None),
            chaos: Mutex::new(None),
            injected: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            gets: AtomicU64::new(0),
        })
    }

    /// Fails each faultable call with probability `p`, drawn from a
    /// generator seeded with `seed`; `p = 0` stops the chaos.
    pub fn chaos(&self, seed: u64, p: f64) {
        use rand::SeedableRng;
        *self.chaos.lock().unwrap() = (p > 0.0).then(|| Chaos {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            p,
        });
    }

    fn strike(&self) -> Strike {
        use rand::Rng;
        let mut chaos = self.chaos.lock().unwrap();
        let Some(c) = chaos.as_mut() else {
            return Strike::None;
        };
        if !c.rng.gen_bool(c.p) {
            return Strike::None;
        }
        self.injected.fetch_add(1, Ordering::SeqCst);
        if c.rng.gen_bool(0.5) {
            Strike::Before
        } else {
            Strike::After
        }
    }

    /// Applies `fault` to calls of `op` from now on.
    pub fn set(&self, op: Op, fault: Fault) {
        self.plan.lock().unwrap().insert(op, fault);
    }

    /// Rejects (deterministically, as a database would) every commit that
    /// `matches` holds for.
    pub fn reject_commits(&self, matches: BatchMatcher) {
        *self.reject.lock().unwrap() = Some(matches);
    }

    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    async fn enter(&self, op: Op) -> Result<(), StoreError> {
        // Commits meet their random fault in `commit`, where it can also
        // strike after the write.
        if op != Op::Commit && !matches!(self.strike(), Strike::None) {
            return Err(unavailable());
        }
        let fault = {
            let mut plan = self.plan.lock().unwrap();
            let Some(fault) = plan.get_mut(&op) else {
                return Ok(());
            };
            let now = *fault;
            match fault {
                Fault::Unavailable(n) | Fault::Panic(n) => {
                    *n -= 1;
                    if *n == 0 {
                        plan.remove(&op);
                    }
                }
                Fault::UnavailableUntil(t) if Instant::now() >= *t => {
                    plan.remove(&op);
                    return Ok(());
                }
                _ => {}
            }
            now
        };
        match fault {
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Fault::Panic(_) => {
                self.injected.fetch_add(1, Ordering::SeqCst);
                panic!("injected fault: the store panicked in {op:?}")
            }
            Fault::Unavailable(_) | Fault::UnavailableUntil(_) => {
                self.injected.fetch_add(1, Ordering::SeqCst);
                Err(unavailable())
            }
        }
    }
}

#[async_trait]
impl Store for Faults {
    async fn claim(&self, r: ClaimRequest) -> Result<Claimed, StoreError> {
        self.claims.fetch_add(1, Ordering::Relaxed);
        self.enter(Op::Claim).await?;
        self.inner.claim(r).await
    }
    async fn load_history(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        self.enter(Op::LoadHistory).await?;
        self.inner.load_history(id).await
    }
    async fn commit(&self, lease: &Lease, batch: Batch) -> Result<(), StoreError> {
        self.enter(Op::Commit).await?;
        if self
            .reject
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|m| m(&batch))
        {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(rejected());
        }
        match self.strike() {
            Strike::None => self.inner.commit(lease, batch).await,
            Strike::Before => Err(unavailable()),
            Strike::After => {
                self.inner.commit(lease, batch).await?;
                Err(StoreError::OutcomeUnknown(Cause::msg(
                    "injected fault: the connection broke as the commit landed",
                )))
            }
        }
    }
    async fn renew(&self, l: Vec<Lease>, n: i64, e: i64) -> Result<Vec<WorkflowId>, StoreError> {
        self.enter(Op::Renew).await?;
        self.inner.renew(l, n, e).await
    }
    async fn expire_deadlines(&self, now: i64) -> Result<Vec<WorkflowId>, StoreError> {
        self.inner.expire_deadlines(now).await
    }
    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleInfo>, StoreError> {
        self.inner.due_schedules(now).await
    }
    async fn fire_schedule(
        &self,
        name: String,
        due: i64,
        next_at: i64,
        workflow: NewWorkflow,
    ) -> Result<Option<WorkflowId>, StoreError> {
        self.inner.fire_schedule(name, due, next_at, workflow).await
    }
    fn catalog(&self) -> &dyn Catalog {
        self
    }
    fn watch_runnable(&self, notify: Arc<tokio::sync::Notify>) {
        self.inner.watch_runnable(notify)
    }
    fn watch_names(&self, notify: &Arc<tokio::sync::Notify>, names: &[String]) {
        self.inner.watch_names(notify, names)
    }
    fn announce_finished(&self, ids: &[WorkflowId]) {
        self.inner.announce_finished(ids)
    }
    fn watch_finished(&self, sink: Arc<dyn Fn(Option<WorkflowId>) + Send + Sync>) -> bool {
        self.inner.watch_finished(sink)
    }
    fn broadcasts(&self) -> bool {
        self.inner.broadcasts()
    }
    async fn broadcast(&self, m: octane::store::Broadcast) -> Result<(), StoreError> {
        self.inner.broadcast(m).await
    }
    fn broadcast_limit(&self) -> usize {
        self.inner.broadcast_limit()
    }
    fn watch_messages(&self, sink: Arc<dyn Fn(octane::store::Broadcast) + Send + Sync>) {
        self.inner.watch_messages(sink)
    }
}

/// The reads a step makes can fail too; the rest passes through.
#[async_trait]
impl Catalog for Faults {
    async fn create(&self, w: NewWorkflow) -> Result<WorkflowId, StoreError> {
        self.inner.catalog().create(w).await
    }
    async fn get(&self, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.enter(Op::Get).await?;
        self.inner.catalog().get(id).await
    }
    async fn list(&self, f: ListFilter) -> Result<Vec<WorkflowInfo>, StoreError> {
        self.inner.catalog().list(f).await
    }
    async fn all_events(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        self.inner.catalog().all_events(id).await
    }
    async fn loop_events(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        self.inner.catalog().loop_events(id).await
    }
    async fn send_signal(&self, s: NewSignal) -> Result<Delivery, StoreError> {
        self.enter(Op::SendSignal).await?;
        self.inner.catalog().send_signal(s).await
    }
    async fn resolve_target(&self, t: SignalTarget) -> Result<Delivery, StoreError> {
        self.enter(Op::ResolveTarget).await?;
        self.inner.catalog().resolve_target(t).await
    }
    async fn pending_signals(
        &self,
        id: WorkflowId,
        names: Vec<String>,
        limit: usize,
    ) -> Result<Vec<PendingSignal>, StoreError> {
        self.enter(Op::PendingSignals).await?;
        self.inner.catalog().pending_signals(id, names, limit).await
    }
    async fn prune(&self, before: i64, max_rows: usize) -> Result<u64, StoreError> {
        self.inner.catalog().prune(before, max_rows).await
    }
    async fn control(
        &self,
        id: WorkflowId,
        c: Control,
        now: i64,
    ) -> Result<Option<WorkflowState>, StoreError> {
        self.inner.catalog().control(id, c, now).await
    }
    async fn query_plans(&self) -> Result<Vec<QueryPlan>, StoreError> {
        self.inner.catalog().query_plans().await
    }
    async fn census(&self) -> Result<Census, StoreError> {
        self.inner.catalog().census().await
    }
    async fn put_schedule(&self, s: ScheduleInfo) -> Result<(), StoreError> {
        self.inner.catalog().put_schedule(s).await
    }
    async fn schedules(&self) -> Result<Vec<ScheduleInfo>, StoreError> {
        self.inner.catalog().schedules().await
    }
    async fn pause_schedule(
        &self,
        name: String,
        paused: bool,
        next_at: i64,
    ) -> Result<bool, StoreError> {
        self.inner
            .catalog()
            .pause_schedule(name, paused, next_at)
            .await
    }
    async fn delete_schedule(&self, name: String) -> Result<bool, StoreError> {
        self.inner.catalog().delete_schedule(name).await
    }
}
