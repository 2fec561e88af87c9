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
//! value is committed in the same transaction as it or after it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::error::Error;
use crate::history::{EventKind, History};
use crate::message::MessageBus;
use crate::store::{Batch, Lease, Store, StoreError, Suspend, Transition, WorkflowId, WriteOp};

/// Why a run must stop before its code returns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Interrupt {
    /// Leave memory until a wake-up condition holds.
    Suspend(Suspend),
    /// The worker is draining: leave memory, runnable at once.
    Evict,
    /// Stop without writing anything more (lease lost, store failed).
    Abandon { reason: String },
    /// Park the workflow as failed, whatever the code does with the error.
    Fail {
        error: String,
        code: Option<&'static str>,
    },
}

/// Per-run settings taken from the engine and worker.
#[derive(Clone, Debug)]
pub(crate) struct RunConfig {
    pub max_loop_state: usize,
    pub sleep_in_memory_below: Duration,
}

type FlushResult = Result<(), Arc<StoreError>>;
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
    /// Told when a commit made another workflow runnable.
    pub runnable: Arc<tokio::sync::Notify>,
    store: Arc<dyn Store>,
    lease: Lease,
    pipeline: Mutex<Pipeline>,
    interrupt: Mutex<Option<Interrupt>>,
}

impl RunShared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workflow_id: WorkflowId,
        name: &'static str,
        history: History,
        config: RunConfig,
        store: Arc<dyn Store>,
        lease: Lease,
        drain: CancellationToken,
        lost: CancellationToken,
        bus: MessageBus,
        runnable: Arc<tokio::sync::Notify>,
    ) -> Self {
        RunShared {
            workflow_id,
            name,
            history,
            config,
            drain,
            lost,
            bus,
            runnable,
            store,
            lease,
            pipeline: Mutex::new(Pipeline::default()),
            interrupt: Mutex::new(None),
        }
    }

    /// The store, for reads a step needs (pending signals, a child's state).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Records why the run must stop; the first reason wins.
    pub fn interrupt(&self, i: Interrupt) {
        let mut slot = self.interrupt.lock().expect("interrupt lock");
        if slot.is_none() {
            *slot = Some(i);
        }
    }

    pub fn take_interrupt(&self) -> Option<Interrupt> {
        self.interrupt.lock().expect("interrupt lock").take()
    }

    /// The error a step returns once the run is interrupted.
    pub fn yield_error(&self, reason: &'static str) -> Error {
        Error::Yield {
            workflow_id: self.workflow_id,
            reason,
        }
    }

    /// Checked before every step: a step boundary is where a run stops when
    /// it sleeps, is evicted, lost its lease or must fail.
    pub fn boundary(&self) -> Result<(), Error> {
        if self.interrupt.lock().expect("interrupt lock").is_some() {
            return Err(self.yield_error("the run is stopping"));
        }
        if self.lost.is_cancelled() {
            self.interrupt(Interrupt::Abandon {
                reason: "lease lost".into(),
            });
            return Err(self.yield_error("lease lost"));
        }
        if self.drain.is_cancelled() {
            self.interrupt(Interrupt::Evict);
            return Err(self.yield_error("the worker is shutting down"));
        }
        Ok(())
    }

    /// Parks the workflow as failed with `error`, whatever the code does
    /// next, and returns the error for the code.
    pub fn fail(&self, error: Error) -> Error {
        self.interrupt(Interrupt::Fail {
            error: error.to_string(),
            code: error.code(),
        });
        error
    }

    /// Queues a write that need not be durable before the workflow goes on.
    /// A loop checkpoint replaces one still pending for the same loop;
    /// returns whether it did (no write carried the older one away).
    pub fn defer(&self, op: WriteOp) -> bool {
        let mut p = self.pipeline.lock().expect("pipeline lock");
        if !is_loop_bookkeeping(&op) {
            p.pending.push(op);
            return false;
        }
        let before = p.checkpoints.len();
        p.checkpoints.retain(|old| !supersedes(&op, old));
        let replaced = p.checkpoints.len() < before;
        p.checkpoints.push(op);
        replaced
    }

    /// Starts flushing pending writes in the background, unless a write is
    /// still in flight (then they wait for the next commit or kick).
    pub fn kick(&self) {
        let mut p = self.pipeline.lock().expect("pipeline lock");
        if p.is_empty() {
            return;
        }
        if let Some(last) = &p.last {
            match last.clone().now_or_never() {
                None => return,
                Some(Err(e)) => {
                    drop(p);
                    self.on_store_error(&e);
                    return;
                }
                Some(Ok(())) => {}
            }
        }
        let ops = p.take();
        let flush = self.submit(None, ops, Transition::Continue);
        tokio::spawn(flush.clone());
        p.last = Some(flush);
    }

    /// Makes every write so far durable: commits what is pending, or, with
    /// nothing pending, only waits for the write in flight (no round trip).
    pub async fn flush(&self) -> Result<(), Error> {
        let last = {
            let p = self.pipeline.lock().expect("pipeline lock");
            if !p.is_empty() {
                None
            } else {
                Some(p.last.clone())
            }
        };
        match last {
            None => self.commit(Vec::new(), Transition::Continue).await,
            Some(None) => Ok(()),
            Some(Some(flush)) => flush.await.map_err(|e| self.on_store_error(&e)),
        }
    }

    /// Commits pending writes, `ops` and `transition` in one transaction,
    /// after every earlier write of the run, and waits until it is durable.
    pub async fn commit(&self, ops: Vec<WriteOp>, transition: Transition) -> Result<(), Error> {
        let flush = {
            let mut p = self.pipeline.lock().expect("pipeline lock");
            let mut all = p.take();
            all.extend(ops);
            let flush = self.submit(p.last.take(), all, transition);
            p.last = Some(flush.clone());
            flush
        };
        flush.await.map_err(|e| self.on_store_error(&e))
    }

    fn submit(&self, prior: Option<Flush>, ops: Vec<WriteOp>, transition: Transition) -> Flush {
        let store = self.store.clone();
        let lease = self.lease.clone();
        let has_checkpoint = ops.iter().any(is_checkpoint);
        let wakes_others = ops
            .iter()
            .any(|op| matches!(op, WriteOp::SendSignal(_) | WriteOp::CreateWorkflow(_)));
        let runnable = self.runnable.clone();
        let name = self.name;
        async move {
            if let Some(prior) = prior {
                prior.await?;
            }
            let started = std::time::Instant::now();
            let now = now_ms();
            let batch = Batch {
                ops,
                transition,
                now,
            };
            store.commit(&lease, batch).await.map_err(Arc::new)?;
            if wakes_others {
                runnable.notify_one();
            }
            if has_checkpoint {
                metrics::histogram!("octane_loop_checkpoint_seconds", "workflow" => name)
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(())
        }
        .boxed()
        .shared()
    }

    /// Turns a failed write into the step's error and stops the run: after
    /// a write whose outcome is unknown, only a fresh replay knows the truth.
    fn on_store_error(&self, e: &StoreError) -> Error {
        match e {
            StoreError::LeaseLost { .. } => {
                self.interrupt(Interrupt::Abandon {
                    reason: "lease lost".into(),
                });
                self.yield_error("lease lost")
            }
            other => {
                self.interrupt(Interrupt::Abandon {
                    reason: other.to_string(),
                });
                Error::Store(StoreError::Commit(format!(
                    "workflow {}: {other}",
                    self.workflow_id
                )))
            }
        }
    }
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
            },
            WriteOp::ForgetIterations {
                loop_location: o,
                below: ob,
            },
        ) => n == o && nb >= ob,
        _ => false,
    }
}
