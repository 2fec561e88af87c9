//! State shared by every branch of one run of a workflow: its recorded
//! history, its lease, and the write pipeline.
//!
//! # The write pipeline
//! Steps that must be durable before the workflow goes on (an activity's
//! result) call [`RunShared::commit`]. Bookkeeping that need not be (loop
//! checkpoints, branch markers, recorded `now`/`uuid` values, a sleep's
//! deadline) is [deferred](RunShared::defer): it waits in `pending` and
//! rides in the next commit that happens anyway, or is flushed in the
//! background by [`RunShared::kick`] while the workflow runs on. Loops kick
//! only when a checkpoint finds its predecessor still pending — a whole
//! interval passed without any write to carry it — so a loop whose
//! iterations commit anyway pays no extra commit for its checkpoints.
//!
//! Writes of one run are chained: each is submitted only after the one
//! before it has committed, so a newer checkpoint can never be overwritten
//! by an older one, whatever the backend does with concurrent transactions.
//! A loop checkpoint still pending when a newer one arrives is replaced by
//! it (latest wins), so a fast loop writes as many checkpoints as the
//! database can take, and no more. Checkpoints wait in a list of their own
//! (one entry per active loop, so replacing one costs nothing however many
//! events are queued) and are written after the queued events: a range
//! delete then always runs after the inserts of the events it covers.
//!
//! Deferring is safe because anything durable that depends on a deferred
//! value is committed in the same transaction as it or after it. For the
//! same reason a run that is parked drops its pending writes: they were made
//! by code that does not fit the history, and nothing durable needs them.
//!
//! Every write is driven to its end: by the step waiting for it, or, once
//! that step is dropped (user code racing it against a timeout), by a task
//! of its own, so no transaction is left open waiting for a poll.
//!
//! # Replay checks
//! A run made by [`RunShared::checking`] replays a workflow's history
//! against the code without ever touching the store: it holds no lease,
//! drops every write, waits for nothing, and stops at the first step that
//! would do something live — a step with no record, or one recorded but
//! unfinished (an activity between attempts, a wait for signals or a
//! child). What it found is its [`Verdict`].
//!
//! # The only door to the store
//! A run reaches the store through this type alone. Its reads of other
//! workflows first wait for the run's own writes that could change the
//! answer (a child it just started), and a read that fails because the
//! database is away is retried with backoff; a deterministic failure parks
//! the workflow. A failed write whose outcome is unknown stops the run: only
//! a replay from the database knows what landed.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::Error;
use crate::history::{EventKind, History};
use crate::message::MessageBus;
use crate::replay_check::Verdict;
use crate::store::{
    Batch, Broadcast, Cause, Delivery, FailureCode, Lease, NewWorkflow, PendingSignal,
    SignalTarget, Store, StoreError, Suspend, Transition, WorkflowId, WorkflowInfo, WriteOp,
};

/// Why a run must stop before its code returns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Interrupt {
    /// Leave memory until a wake-up condition holds.
    Suspend(Suspend),
    /// The worker is draining: leave memory, runnable at once.
    Evict,
    /// Stop without writing anything more: the lease is lost, or a write's
    /// outcome is unknown. `release` says whether the lease may still be
    /// ours to hand back.
    Abandon { reason: String, release: bool },
    /// Park the workflow, whatever the code does with the error.
    Park { error: String, code: FailureCode },
}

/// Per-run settings.
#[derive(Clone, Debug)]
pub(crate) struct RunConfig {
    pub max_loop_state: usize,
    pub sleep_in_memory_below: Duration,
}

/// What every run of an engine's workflows shares.
#[derive(Clone)]
pub(crate) struct RunEnv {
    pub store: Arc<dyn Store>,
    pub config: RunConfig,
    /// Where workflows publish messages.
    pub bus: MessageBus,
    /// Told when a commit made another workflow runnable.
    pub runnable: Arc<Notify>,
    /// Where workflow time comes from.
    pub clock: Clock,
}

/// How many deferred writes may wait for a flush before the loop making
/// them waits for the one in flight (see [`RunShared::keep_up`]).
const MAX_UNWRITTEN: usize = 4_096;

type FlushResult = Result<(), StoreError>;
type Flush = Shared<BoxFuture<'static, FlushResult>>;

#[derive(Default)]
struct Pipeline {
    /// Deferred events, in the order they were made.
    pending: Vec<WriteOp>,
    /// The latest checkpoint (and range delete) of each loop: a handful,
    /// always written after `pending`, so a range delete runs after the
    /// inserts of every event it covers.
    checkpoints: Vec<WriteOp>,
    last: Option<Flush>,
}

impl Pipeline {
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.checkpoints.is_empty()
    }

    fn take(&mut self) -> Vec<WriteOp> {
        let mut all = std::mem::take(&mut self.pending);
        all.append(&mut self.checkpoints);
        all
    }

    /// Whether a pending write would change what a read of another
    /// workflow answers: only a child's creation does.
    fn creates_workflows(&self) -> bool {
        self.pending
            .iter()
            .any(|op| matches!(op, WriteOp::CreateWorkflow(_)))
    }
}

pub(crate) struct RunShared {
    pub workflow_id: WorkflowId,
    pub name: &'static str,
    pub history: History,
    pub config: RunConfig,
    /// Cancelled when the worker drains: evict at the next step boundary.
    pub drain: CancellationToken,
    /// Cancelled when the heartbeat finds the lease gone.
    pub lost: CancellationToken,
    /// Where the workflow's messages go.
    pub bus: MessageBus,
    /// Where workflow time comes from.
    pub clock: Clock,
    runnable: Arc<Notify>,
    store: Arc<dyn Store>,
    lease: Lease,
    pipeline: Mutex<Pipeline>,
    interrupt: Mutex<Option<Interrupt>>,
    /// Cancelled when the run is dropped: a write still under way then
    /// belongs to a run that is gone (its worker was dropped, as in a
    /// crash), and stops with it.
    alive: CancellationToken,
    /// Set for a replay check: what it found, once it found something.
    check: Option<Mutex<Option<Verdict>>>,
}

impl Drop for RunShared {
    fn drop(&mut self) {
        self.alive.cancel();
    }
}

/// The tokens that stop a run from outside.
pub(crate) struct Stops {
    /// The worker drains.
    pub drain: CancellationToken,
    /// The lease is gone.
    pub lost: CancellationToken,
}

/// The first pause between retries of a read the database failed.
const READ_BACKOFF: Duration = Duration::from_millis(20);
/// The longest pause between retries of a failed read.
const MAX_READ_BACKOFF: Duration = Duration::from_secs(2);

impl RunShared {
    pub(crate) fn new(
        env: &RunEnv,
        lease: Lease,
        name: &'static str,
        history: History,
        stops: Stops,
    ) -> Self {
        RunShared {
            workflow_id: lease.workflow_id,
            name,
            history,
            config: env.config.clone(),
            drain: stops.drain,
            lost: stops.lost,
            bus: env.bus.clone(),
            clock: env.clock.clone(),
            runnable: env.runnable.clone(),
            store: env.store.clone(),
            lease,
            pipeline: Mutex::new(Pipeline::default()),
            interrupt: Mutex::new(None),
            alive: CancellationToken::new(),
            check: None,
        }
    }

    /// A run that only checks `history` against the code (see the module
    /// docs): nothing it does reaches the store.
    pub(crate) fn checking(
        env: &RunEnv,
        workflow_id: WorkflowId,
        name: &'static str,
        history: History,
    ) -> Self {
        let lease = Lease {
            workflow_id,
            // Never a worker's: should a write slip through, the fence
            // refuses it.
            owner: uuid::Uuid::nil(),
            epoch: -1,
        };
        let stops = Stops {
            drain: CancellationToken::new(),
            lost: CancellationToken::new(),
        };
        let mut run = RunShared::new(env, lease, name, history, stops);
        run.check = Some(Mutex::new(None));
        run
    }

    /// Whether this run only checks its history against the code.
    pub(crate) fn is_check(&self) -> bool {
        self.check.is_some()
    }

    /// Ends a replay check with `verdict` (the first one found wins): every
    /// later step returns a yield error.
    pub(crate) fn conclude(&self, verdict: Verdict) -> Error {
        if let Some(slot) = &self.check {
            slot.lock().expect("verdict lock").get_or_insert(verdict);
        }
        self.interrupt(Interrupt::Evict);
        self.yield_error("the replay check stops here")
    }

    /// What a replay check found, if it found anything.
    pub(crate) fn take_verdict(&self) -> Option<Verdict> {
        self.check
            .as_ref()
            .and_then(|slot| slot.lock().expect("verdict lock").take())
    }

    /// Records why the run must stop; the first reason wins.
    pub(crate) fn interrupt(&self, i: Interrupt) {
        let mut slot = self.interrupt.lock().expect("interrupt lock");
        if slot.is_none() {
            *slot = Some(i);
        }
    }

    pub(crate) fn take_interrupt(&self) -> Option<Interrupt> {
        self.interrupt.lock().expect("interrupt lock").take()
    }

    /// The error a step returns once the run is interrupted.
    pub(crate) fn yield_error(&self, reason: &'static str) -> Error {
        Error::Yield {
            workflow_id: self.workflow_id,
            reason,
        }
    }

    /// Checked before every step: a step boundary is where a run stops when
    /// it sleeps, is evicted, lost its lease or must be parked.
    pub(crate) fn boundary(&self) -> Result<(), Error> {
        if self.interrupt.lock().expect("interrupt lock").is_some() {
            return Err(self.yield_error("the run is stopping"));
        }
        if self.lost.is_cancelled() {
            self.interrupt(Interrupt::Abandon {
                reason: "lease lost".into(),
                release: false,
            });
            return Err(self.yield_error("lease lost"));
        }
        if self.drain.is_cancelled() {
            self.interrupt(Interrupt::Evict);
            return Err(self.yield_error("the worker is shutting down"));
        }
        Ok(())
    }

    /// Parks the workflow with `error` (one that has a
    /// [failure code](Error::failure_code)), whatever the code does next, and
    /// returns the error for the code.
    pub(crate) fn park(&self, error: Error) -> Error {
        if self.is_check() {
            self.conclude(Verdict::of_park(&error));
            return error;
        }
        self.interrupt(Interrupt::Park {
            error: error.to_string(),
            code: error.failure_code().unwrap_or(FailureCode::Undecodable),
        });
        error
    }

    /// Queues a write that need not be durable before the workflow goes on.
    /// A loop checkpoint replaces one still pending for the same loop;
    /// returns whether it did (no write carried the older one away).
    pub(crate) fn defer(&self, mut op: WriteOp) -> bool {
        if self.is_check() {
            return false;
        }
        let mut p = self.pipeline.lock().expect("pipeline lock");
        if !is_loop_bookkeeping(&op) {
            p.pending.push(op);
            return false;
        }
        // A deletion that replaces one not yet written must also cover what
        // that one would have deleted.
        let unwritten_from = p
            .checkpoints
            .iter()
            .filter(|old| supersedes(&op, old))
            .filter_map(|old| match old {
                WriteOp::ForgetIterations { from, .. } => Some(*from),
                _ => None,
            })
            .min();
        if let (WriteOp::ForgetIterations { from, .. }, Some(earlier)) = (&mut op, unwritten_from) {
            *from = (*from).min(earlier);
        }
        let before = p.checkpoints.len();
        p.checkpoints.retain(|old| !supersedes(&op, old));
        let replaced = p.checkpoints.len() < before;
        p.checkpoints.push(op);
        replaced
    }

    /// Starts flushing pending writes in the background, unless a write is
    /// still in flight (then they wait for the next commit or kick).
    pub(crate) fn kick(&self) {
        if self.is_check() {
            return;
        }
        let last = {
            let p = self.pipeline.lock().expect("pipeline lock");
            if p.is_empty() {
                return;
            }
            p.last.clone()
        };
        // Looked at outside the lock: whatever a store future does when
        // polled, it cannot leave the pipeline poisoned.
        if let Some(last) = last {
            match last.now_or_never() {
                None => return,
                Some(Err(e)) => {
                    self.on_store_error(&e);
                    return;
                }
                Some(Ok(())) => {}
            }
        }
        let mut p = self.pipeline.lock().expect("pipeline lock");
        let prior = p.last.take();
        let ops = p.take();
        let flush = self.submit(prior, ops, Transition::Continue);
        spawn_write(flush.clone(), self.alive.clone());
        p.last = Some(flush);
    }

    /// Whether [`MAX_UNWRITTEN`] deferred writes are waiting: a loop then
    /// calls [`RunShared::keep_up`] (looked at with each checkpoint).
    pub(crate) fn backlogged(&self) -> bool {
        self.pipeline.lock().expect("pipeline lock").pending.len() >= MAX_UNWRITTEN
    }

    /// Waits for the write in flight to end, and starts the next with the
    /// deferred writes waiting, when [`MAX_UNWRITTEN`] of them are. A loop whose
    /// iterations only defer writes runs far faster than any store writes
    /// them; without this its unwritten events would grow without bound,
    /// and so would the one transaction that finally carries them (holding
    /// the workflow's row, and on Postgres its lease renewal, for as long).
    /// With it the loop runs at the store's pace, one flush in flight while
    /// it makes the next.
    ///
    /// # Errors
    /// What the write in flight failed with, as a commit would report it.
    pub(crate) async fn keep_up(&self) -> Result<(), Error> {
        let last = {
            let p = self.pipeline.lock().expect("pipeline lock");
            if p.pending.len() < MAX_UNWRITTEN {
                // A commit carried them away meanwhile.
                return Ok(());
            }
            p.last.clone()
        };
        if let Some(last) = last {
            last.await.map_err(|e| self.on_store_error(&e))?;
        }
        self.kick();
        Ok(())
    }

    /// Commits pending writes, `ops` and `transition` in one transaction,
    /// after every earlier write of the run, and waits until it is durable.
    pub(crate) async fn commit(
        &self,
        ops: Vec<WriteOp>,
        transition: Transition,
    ) -> Result<(), Error> {
        if self.is_check() {
            // Every live write follows a step the check stops at; this
            // is the guard should one ever not, and the check reports it.
            self.interrupt(Interrupt::Evict);
            return Err(self.yield_error("a replay check writes nothing"));
        }
        let flush = {
            let mut p = self.pipeline.lock().expect("pipeline lock");
            let mut all = p.take();
            all.extend(ops);
            let flush = self.submit(p.last.take(), all, transition);
            p.last = Some(flush.clone());
            flush
        };
        Finish(Some((flush, self.alive.clone())))
            .await
            .map_err(|e| self.on_store_error(&e))
    }

    /// Records how the run stopped, after every earlier write. A parked
    /// run's pending writes are dropped: the code that made them does not
    /// fit the workflow's history.
    pub(crate) async fn finish(&self, transition: Transition) -> Result<(), Error> {
        if matches!(transition, Transition::Park { .. }) {
            let mut p = self.pipeline.lock().expect("pipeline lock");
            p.take();
        }
        self.commit(Vec::new(), transition).await
    }

    /// Builds a write chained after `prior`. The step that waits for it
    /// drives it (no task hop on the way to the database); one dropped
    /// before the write ends hands it to a task of its own (see [`Finish`]),
    /// so it runs to its end as long as the run itself lives.
    fn submit(&self, prior: Option<Flush>, ops: Vec<WriteOp>, transition: Transition) -> Flush {
        let store = self.store.clone();
        let lease = self.lease.clone();
        let has_checkpoint = ops.iter().any(is_checkpoint);
        let wakes_others = ops
            .iter()
            .any(|op| matches!(op, WriteOp::SendSignal(_) | WriteOp::CreateWorkflow(_)));
        let runnable = self.runnable.clone();
        let name = self.name;
        let clock = self.clock.clone();
        let write = async move {
            if let Some(prior) = prior {
                // A write the database refused left nothing behind, so the
                // chain still holds (the run is being parked); any other
                // failure may have landed, and only a replay knows.
                if let Err(e) = prior.await {
                    if !e.is_deterministic() {
                        return Err(e);
                    }
                }
            }
            let started = std::time::Instant::now();
            let batch = Batch {
                ops,
                transition,
                now: clock.now_ms(),
            };
            AssertUnwindSafe(store.commit(&lease, batch))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::OutcomeUnknown(Cause::msg(
                        "the store panicked during a commit",
                    )))
                })?;
            if wakes_others {
                runnable.notify_one();
            }
            if has_checkpoint {
                metrics::histogram!("octane_loop_checkpoint_seconds", "workflow" => name)
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(())
        };
        write.boxed().shared()
    }

    /// The oldest `limit` pending signals of these names sent to this
    /// workflow. The run's own pending writes never hold any (a signal it
    /// sends itself commits at once), so nothing is flushed first.
    ///
    /// # Errors
    /// As [`RunShared::read`].
    pub(crate) async fn pending_signals(
        &self,
        names: &[String],
        limit: usize,
    ) -> Result<Vec<PendingSignal>, Error> {
        let id = self.workflow_id;
        self.read("pending signals", |store| {
            let names = names.to_vec();
            async move { store.catalog().pending_signals(id, names, limit).await }
        })
        .await
    }

    /// Publishes a message: to this process's subscribers, or through a
    /// store that broadcasts to every process's (retrying while the
    /// database is away, as reads do).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] when the store cannot carry it; as
    /// [`RunShared::read`].
    pub(crate) async fn publish(&self, message: Broadcast) -> Result<(), Error> {
        if !self.store.broadcasts() {
            self.bus.publish(message);
            return Ok(());
        }
        let size = serde_json::to_string(&message).map_or(usize::MAX, |j| j.len());
        let limit = self.store.broadcast_limit();
        if size > limit {
            return Err(Error::MessageTooLarge {
                workflow_id: self.workflow_id,
                message: message.name,
                size,
                limit,
            });
        }
        self.read("a message's broadcast", |store| {
            let message = message.clone();
            async move { store.broadcast(message).await }
        })
        .await
    }

    /// Where a signal to `target` would go, as the database sees it once
    /// this run's own writes (a child just started) have landed.
    ///
    /// # Errors
    /// As [`RunShared::read`].
    pub(crate) async fn resolve_target(&self, target: &SignalTarget) -> Result<Delivery, Error> {
        self.settle_for_reads().await?;
        self.read("a signal's recipient", |store| {
            let target = target.clone();
            async move { store.catalog().resolve_target(target).await }
        })
        .await
    }

    /// Another workflow, as the database sees it once this run's own
    /// writes (its creation, for a child) have landed.
    ///
    /// # Errors
    /// As [`RunShared::read`].
    pub(crate) async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowInfo>, Error> {
        self.settle_for_reads().await?;
        self.read("a child workflow", |store| async move {
            store.catalog().get(id).await
        })
        .await
    }

    /// Creates a keyed child, unless its key is held, and returns the
    /// holder. Retried like a read when the database fails: asking again
    /// for a key returns what the first ask created, if it landed.
    pub(crate) async fn create_keyed(&self, child: NewWorkflow) -> Result<WorkflowId, Error> {
        let created = child.id;
        let holder = self
            .read("a keyed child workflow", |store| {
                let child = child.clone();
                async move { store.catalog().create(child).await }
            })
            .await?;
        if holder == created {
            self.runnable.notify_one();
        }
        Ok(holder)
    }

    /// Waits for the write in flight, and commits the pending ones only if
    /// they would change what a read of another workflow answers: a read
    /// costs no extra round trip otherwise.
    async fn settle_for_reads(&self) -> Result<(), Error> {
        let creates = self
            .pipeline
            .lock()
            .expect("pipeline lock")
            .creates_workflows();
        if creates {
            return self.commit(Vec::new(), Transition::Continue).await;
        }
        let last = self.pipeline.lock().expect("pipeline lock").last.clone();
        match last {
            Some(flush) => flush.await.map_err(|e| self.on_store_error(&e)),
            None => Ok(()),
        }
    }

    /// Runs a read for a step. A database that is away is waited out with
    /// backoff (the run stops instead if it loses its lease or its worker
    /// drains meanwhile); a deterministic failure parks the workflow.
    ///
    /// # Errors
    /// [`Error::Yield`] when the run stops while waiting; the store's error
    /// when it parks the workflow.
    async fn read<T, F, Fut>(&self, what: &'static str, read: F) -> Result<T, Error>
    where
        F: Fn(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = READ_BACKOFF;
        loop {
            let outcome = AssertUnwindSafe(read(self.store.clone()))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(Cause::msg(
                        "the store panicked during a read",
                    )))
                });
            match outcome {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() || matches!(e, StoreError::Closed) => {
                    metrics::counter!("octane_store_errors_total").increment(1);
                    tracing::warn!(
                        workflow_id = %self.workflow_id, error = %error_chain(&e), retry_in = ?backoff,
                        "reading {what} failed; retrying"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.drain.cancelled() => {}
                        _ = self.lost.cancelled() => {}
                    }
                    self.boundary()?;
                    backoff = (backoff * 2).min(MAX_READ_BACKOFF);
                }
                Err(e) => return Err(self.on_store_error(&e)),
            }
        }
    }

    /// Turns a failed store call into the step's error and decides what
    /// becomes of the run: a lost lease or an unknown outcome stops it (only
    /// a fresh replay knows the truth), a deterministic failure parks the
    /// workflow with the cause.
    fn on_store_error(&self, e: &StoreError) -> Error {
        match e {
            StoreError::LeaseLost { .. } => {
                self.interrupt(Interrupt::Abandon {
                    reason: "lease lost".into(),
                    release: false,
                });
                self.yield_error("lease lost")
            }
            e if e.is_deterministic() => {
                let error = Error::StoreRejected {
                    workflow_id: self.workflow_id,
                    source: e.clone(),
                };
                let code = match e {
                    StoreError::Corrupt { .. } => FailureCode::CorruptHistory,
                    _ => FailureCode::WriteRejected,
                };
                self.interrupt(Interrupt::Park {
                    error: format!("{error}: {}", error_chain(e)),
                    code,
                });
                error
            }
            other => {
                self.interrupt(Interrupt::Abandon {
                    reason: error_chain(other),
                    release: true,
                });
                self.yield_error("the database failed; the workflow will be replayed")
            }
        }
    }
}

/// Waits for a write; dropped before it ends (a step future raced against
/// a timeout by user code), it spawns the rest of the write, so no
/// transaction is left open waiting for a poll that never comes.
struct Finish(Option<(Flush, CancellationToken)>);

impl Future for Finish {
    type Output = FlushResult;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<FlushResult> {
        let (flush, _) = self.0.as_mut().expect("polled after completion");
        let done = std::task::ready!(flush.poll_unpin(cx));
        self.0 = None;
        std::task::Poll::Ready(done)
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some((rest, alive)) = self.0.take() {
            spawn_write(rest, alive);
        }
    }
}

/// Drives `flush` on a task of its own until it ends or `alive` is
/// cancelled: the run was dropped (its worker died, as in a crash), and the
/// write stops with it.
fn spawn_write(flush: Flush, alive: CancellationToken) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        tokio::select! {
            _ = flush => {}
            _ = alive.cancelled() => {}
        }
    });
}

/// What a caught panic said.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string payload".to_string()
    }
}

/// An error with its causes, on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn is_checkpoint(op: &WriteOp) -> bool {
    matches!(op, WriteOp::Put(e) if e.kind == EventKind::Loop)
}

fn is_loop_bookkeeping(op: &WriteOp) -> bool {
    is_checkpoint(op) || matches!(op, WriteOp::ForgetIterations { .. })
}

/// Whether `new` makes the still-pending `old` pointless: a newer checkpoint
/// of the same loop, or a wider forget range of the same loop.
fn supersedes(new: &WriteOp, old: &WriteOp) -> bool {
    match (new, old) {
        (WriteOp::Put(n), WriteOp::Put(o)) => {
            n.kind == EventKind::Loop && o.kind == EventKind::Loop && n.location == o.location
        }
        (
            WriteOp::ForgetIterations {
                loop_location: n,
                below: nb,
                ..
            },
            WriteOp::ForgetIterations {
                loop_location: o,
                below: ob,
                ..
            },
        ) => n == o && nb >= ob,
        _ => false,
    }
}
