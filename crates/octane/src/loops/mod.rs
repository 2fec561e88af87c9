//! Durable loops that can run for ever.
//!
//! `ctx.repeat(state).commit_every(n).retain(k).run(body)` calls `body`
//! until it returns [`Loop::Break`]. Iteration `i` is a branch of history at
//! `{L, i}`; the loop event at `L` holds a checkpoint `(iteration, state)`.
//!
//! # How a loop is recorded
//! - A checkpoint is written when the loop starts, every `commit_every`
//!   iterations, and at `Break` together with the output (which a replay
//!   of the finished loop returns without running the body).
//! - A checkpoint at iteration `i` makes the events of iterations `< i`
//!   *forgotten*: replay loads the checkpoint and never reads them. Of the
//!   forgotten iterations the last `retain` are kept for inspection; older
//!   ones are deleted by one range delete in the checkpoint's transaction.
//!   Nothing is copied.
//! - Checkpoints are not awaited: a checkpoint rides in the next write the
//!   loop makes anyway (an activity's result), or, when a whole interval
//!   passes without one, is flushed in the background while the next
//!   iterations run (a newer checkpoint replaces one not yet written). An
//!   iteration that records no events costs no database round trip.
//! - Events that need not be durable at once (`ctx.now()`, `ctx.uuid()`)
//!   ride with the checkpoints. A loop making them faster than the store
//!   writes them waits at its next checkpoint, once a few thousand are
//!   unwritten, for the write in flight: what it holds unwritten, and the
//!   size of each transaction, stay within those plus one `commit_every`
//!   interval's events.
//!
//! # Choosing `commit_every`
//! `commit_every` never decides what survives a crash: every step's result
//! is committed when it completes, and after a crash the loop restarts from
//! its last checkpoint and *replays* the later iterations from their
//! recorded events — nothing committed runs again, and the state comes out
//! the same. What `commit_every` decides is how many iterations a wake-up
//! replays (at most `commit_every`) and how much active history exists.
//!
//! Replaying iterations requires the loop body to be deterministic apart
//! from its steps, exactly like workflow code. If a deploy changes the body
//! while a workflow has un-checkpointed iterations in its active history,
//! those iterations are replayed by the new code and may diverge (a
//! `HistoryDiverged` error parks the workflow). With `commit_every(1)` the
//! active history never holds more than the iteration in progress, so
//! loops whose body changes between deploys should use it; it costs no
//! extra commit when the iteration makes one anyway. Larger values suit
//! bodies that record nothing most of the time (in-memory work between
//! signals): they bound how often the state is serialized and written.

use std::time::Instant;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use crate::ctx::{encode, RunShared, Step, WorkflowCtx};
use crate::error::Error;
use crate::history::{iteration_location, Event, EventKind, Location, StepRequest};
use crate::store::WriteOp;

/// What a loop body returns: go on, or stop with an output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loop<T> {
    /// Run the next iteration.
    Continue,
    /// Stop; the loop returns this output (recorded with the final state).
    Break(T),
}

/// The default of [`Repeat::commit_every`].
pub const DEFAULT_COMMIT_EVERY: u64 = 20;
/// The default of [`Repeat::retain`].
pub const DEFAULT_RETAIN: u64 = 100;

/// A loop being configured; see [`WorkflowCtx::repeat`].
#[must_use = "a loop does nothing until `.run(body)` is awaited"]
pub struct Repeat<'c, S> {
    ctx: &'c mut WorkflowCtx,
    state: S,
    commit_every: u64,
    retain: u64,
}

impl<S> std::fmt::Debug for Repeat<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repeat")
            .field("workflow_id", &self.ctx.workflow_id())
            .field("commit_every", &self.commit_every)
            .field("retain", &self.retain)
            .finish_non_exhaustive()
    }
}

impl WorkflowCtx {
    /// Starts a durable loop over `state`; see the [module docs](crate::loops)
    /// for what `commit_every` and `retain` trade.
    ///
    /// ```no_run
    /// use octane::prelude::*;
    ///
    /// # #[derive(Serialize, Deserialize)] struct AddOne { value: u64 }
    /// # impl Activity for AddOne { const NAME: &'static str = "add_one"; type Output = u64;
    /// #   async fn run(&self, _: &ActivityCtx) -> Result<u64> { Ok(self.value + 1) } }
    /// # async fn f(ctx: &mut WorkflowCtx, target: u64) -> Result<u64> {
    /// let total = ctx
    ///     .repeat(0u64)
    ///     .commit_every(1)
    ///     .run(move |ctx, total| {
    ///         async move {
    ///             *total = ctx.activity(AddOne { value: *total }).await?;
    ///             Ok(if *total >= target { Loop::Break(*total) } else { Loop::Continue })
    ///         }
    ///         .boxed()
    ///     })
    ///     .await?;
    /// # Ok(total) }
    /// ```
    pub fn repeat<S>(&mut self, state: S) -> Repeat<'_, S> {
        Repeat {
            ctx: self,
            state,
            commit_every: DEFAULT_COMMIT_EVERY,
            retain: DEFAULT_RETAIN,
        }
    }
}

impl<S> Repeat<'_, S>
where
    S: Serialize + DeserializeOwned + Send,
{
    /// Checkpoint the state every `n` iterations (at least 1; default 20).
    pub fn commit_every(mut self, n: u64) -> Self {
        self.commit_every = n.max(1);
        self
    }

    /// Keep the last `k` forgotten iterations for inspection (default 100);
    /// older ones are deleted.
    pub fn retain(mut self, k: u64) -> Self {
        self.retain = k;
        self
    }

    /// Runs the loop until `body` returns [`Loop::Break`].
    ///
    /// A loop that already broke in an earlier run returns its recorded
    /// output without running `body`.
    ///
    /// # Errors
    /// What `body` returns; [`Error::LoopStateTooLarge`] when the state
    /// outgrows the engine's cap; a step error.
    pub async fn run<O, F>(self, mut body: F) -> anyhow::Result<O>
    where
        O: Serialize + DeserializeOwned + Send,
        F: for<'a> FnMut(&'a mut WorkflowCtx, &'a mut S) -> BoxFuture<'a, anyhow::Result<Loop<O>>>
            + Send,
    {
        let Repeat {
            ctx,
            state,
            commit_every,
            retain,
        } = self;
        let (step, req) = ctx.resolve(EventKind::Loop, "", 0)?;
        let run = ctx.run().clone();
        let (location, mut iteration, mut state, mut deleted) = match step {
            Step::Replay(e) if e.done => {
                return Ok(ctx.decode("loop output", &e.location, e.data.as_deref())?);
            }
            Step::Replay(e) => {
                let state: S = ctx.decode("loop state", &e.location, e.data.as_deref())?;
                (e.location, e.iteration, state, e.deleted_below)
            }
            Step::Live(location) => {
                let mut deleted = 0;
                checkpoint(&run, &location, &req, 0, &state, retain, &mut deleted)?;
                (location, 0, state, deleted)
            }
        };
        let labels = [("workflow", run.name)];
        let iterations = metrics::counter!("octane_loop_iterations_total", &labels);
        let iteration_seconds = metrics::histogram!("octane_loop_iteration_seconds", &labels);
        loop {
            run.boundary()?;
            let started = Instant::now();
            let mut branch = ctx.child(iteration_location(&location, iteration));
            let span = tracing::debug_span!(
                "loop_iteration",
                workflow_id = %run.workflow_id,
                location = %location,
                iteration,
            );
            let outcome = body(&mut branch, &mut state).instrument(span).await?;
            iteration += 1;
            iterations.increment(1);
            iteration_seconds.record(started.elapsed().as_secs_f64());
            match outcome {
                Loop::Continue if iteration % commit_every == 0 => {
                    if checkpoint(
                        &run,
                        &location,
                        &req,
                        iteration,
                        &state,
                        retain,
                        &mut deleted,
                    )? {
                        run.kick();
                    }
                    // Boxed, and looked at with the checkpoint only: an
                    // empty iteration costs a few hundred nanoseconds, and
                    // the wait's state inline in the loop's future slowed
                    // `loop_empty_c1` by about a fifth.
                    if run.backlogged() {
                        Box::pin(run.keep_up()).await?;
                    }
                }
                Loop::Continue => {}
                Loop::Break(output) => {
                    let mut event = Event::new(location.clone(), &req)
                        .finished(encode("loop output", &output)?);
                    event.iteration = iteration;
                    let forget = forget(&location, iteration, retain, &mut deleted);
                    event.deleted_below = deleted;
                    // Like a checkpoint, the final record need not be
                    // durable yet: lost in a crash, the last iterations
                    // replay from their recorded steps and break again.
                    run.defer(WriteOp::Put(event));
                    if let Some(op) = forget {
                        run.defer(op);
                    }
                    metrics::counter!("octane_loop_checkpoints_total", &labels).increment(1);
                    return Ok(output);
                }
            }
        }
    }
}

/// Defers the checkpoint `(iteration, state)` and the deletion of forgotten
/// iterations older than `retain` (from `deleted`, where the last deletion
/// stopped, which it moves on). Returns whether it replaced a checkpoint
/// that no write carried away, so the caller should flush it itself.
fn checkpoint<S: Serialize>(
    run: &RunShared,
    location: &Location,
    req: &StepRequest,
    iteration: u64,
    state: &S,
    retain: u64,
    deleted: &mut u64,
) -> Result<bool, Error> {
    let json = encode("loop state", state)?;
    metrics::histogram!("octane_loop_state_bytes", "workflow" => run.name)
        .record(json.len() as f64);
    if json.len() > run.config.max_loop_state {
        return Err(run.park(Error::LoopStateTooLarge {
            workflow_id: run.workflow_id,
            location: location.clone(),
            size: json.len(),
            cap: run.config.max_loop_state,
        }));
    }
    let forget = forget(location, iteration, retain, deleted);
    let mut event = Event::new(location.clone(), req);
    event.iteration = iteration;
    event.data = Some(json);
    event.deleted_below = *deleted;
    let stale = run.defer(WriteOp::Put(event));
    if let Some(op) = forget {
        run.defer(op);
    }
    metrics::counter!("octane_loop_checkpoints_total", "workflow" => run.name).increment(1);
    Ok(stale)
}

/// The deletion of the iterations older than `retain` that `deleted` (where
/// the last one stopped, stored with the checkpoint) has not covered yet.
/// Starting there rather than at 0 keeps a deletion's cost to what it
/// removes: on Postgres the index entries of deleted rows stay until vacuum,
/// and a loop that has deleted a million iterations would walk them all.
fn forget(location: &Location, iteration: u64, retain: u64, deleted: &mut u64) -> Option<WriteOp> {
    let below = iteration.saturating_sub(retain);
    (below > *deleted).then(|| WriteOp::ForgetIterations {
        loop_location: location.clone(),
        from: std::mem::replace(deleted, below),
        below,
    })
}
