//! The storage seam: one narrow [`Store`] trait, one module per backend.
//!
//! Contexts and the worker speak only to this trait. A backend stores
//! workflows (with their lease), their history events, and nothing else;
//! all replay logic lives above it. The trait is public so that a
//! fault-injecting wrapper can sit around a real store in tests.
//!
//! Every history write goes through [`Store::commit`], which checks the
//! caller's lease epoch in the same transaction as the write (fencing): a
//! worker that lost its lease can never write again.
//!
//! This module is public for wrappers and tools, but it is the engine's
//! seam, not its API: it may change in any release (semver-exempt).

// What the stores write is persisted: no cast may lose or reinterpret bits
// silently there.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("Octane needs a store: enable the `sqlite` feature, the `postgres` one, or both");

mod codec;
mod error;
mod lifecycle;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod types;

use async_trait::async_trait;

pub use types::{
    Batch, ClaimRequest, Claimed, ClaimedWorkflow, Control, Delivery, DispatchKey, FailureCode,
    IfFinished, Lease, ListCursor, ListFilter, Liveness, NewSignal, NewWorkflow, Owner,
    PendingSignal, QueryPlan, ScheduleInfo, SignalTarget, Suspend, Transition, WorkerRecord,
    WorkflowId, WorkflowInfo, WorkflowState, WriteOp,
};
pub use types::{Broadcast, Census, StateCount};

pub use error::{mask_password, Cause, StoreError};

use crate::history::Event;

/// Persistent state of workflows and their histories: what a worker's runs
/// need — claim, load, commit, renew — and, through
/// [`Store::catalog`], everything else.
///
/// Implementations must make each method atomic. Times are milliseconds
/// since the Unix epoch, supplied by the caller so that all backends agree.
/// A wrapper (one that injects faults, say) implements these four methods
/// and hands [`Store::catalog`] on to the store it wraps, unless it wants
/// to intercept the catalog's calls too.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Leases up to `limit` runnable workflows to a worker: new ones, sleepers
    /// whose deadline passed, and running ones whose lease expired. Each
    /// claim bumps the workflow's lease epoch.
    async fn claim(&self, request: ClaimRequest) -> Result<Claimed, StoreError>;

    /// The active history of a workflow: every event except forgotten loop
    /// iterations, which are not read at all.
    async fn load_history(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError>;

    /// Applies a batch of history writes and a state transition in one
    /// transaction, if and only if `lease` is still current.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the epoch no longer matches.
    async fn commit(&self, lease: &Lease, batch: Batch) -> Result<(), StoreError>;

    /// Extends the given leases to `expires_at`, a lease term after `now`
    /// (both the worker's time; a store shared by machines may measure the
    /// term on its own clock instead); returns the ids of those that were
    /// lost.
    async fn renew(
        &self,
        leases: Vec<Lease>,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<WorkflowId>, StoreError>;

    /// The rest of the store: clients', operators' and steps' calls.
    fn catalog(&self) -> &dyn Catalog;

    /// Records `worker` as alive for as long as the returned guard lives.
    /// Stores that cannot tell a dead worker from a live one return `None`:
    /// their workers' workflows are taken over when the leases expire.
    async fn register_worker(
        &self,
        worker: WorkerRecord,
    ) -> Result<Option<Box<dyn Liveness>>, StoreError> {
        let _ = worker;
        Ok(None)
    }

    /// Cancels every unfinished workflow whose deadline is at or before
    /// `now`, as [`Control::Cancel`] would (its signals dropped, its parent
    /// woken), with an error that says the deadline passed; returns them.
    async fn expire_deadlines(&self, now: i64) -> Result<Vec<WorkflowId>, StoreError>;

    /// The unpaused schedules whose next tick is at or before `now`.
    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleInfo>, StoreError>;

    /// Fires one tick of a schedule, in one transaction: if the schedule
    /// still waits for the tick `due` (no other worker fired it, nobody
    /// paused it), moves it to `next_at` and creates `workflow`; returns
    /// the id of the workflow holding the tick's key, or `None` when the
    /// tick was not this caller's to fire.
    async fn fire_schedule(
        &self,
        name: String,
        due: i64,
        next_at: i64,
        workflow: NewWorkflow,
    ) -> Result<Option<WorkflowId>, StoreError>;

    /// Ends at once the leases held by registered workers other than `me`
    /// whose liveness is gone (their process died); returns how many
    /// workflows became claimable. A worker that is alive but slow or cut
    /// off keeps its leases until they expire.
    async fn reap_dead_workers(&self, me: uuid::Uuid, now: i64) -> Result<u64, StoreError> {
        let _ = (me, now);
        Ok(0)
    }

    /// Asks the store to tell `notify` whenever it learns that another
    /// process made a workflow runnable. Stores without such a channel rely
    /// on polling and ignore this.
    fn watch_runnable(&self, notify: std::sync::Arc<tokio::sync::Notify>) {
        let _ = notify;
    }

    /// Tells the store that the watcher `notify` (see
    /// [`Store::watch_runnable`]) runs workflows of `names` (added to any
    /// named before): a store whose wake-ups name what became runnable
    /// then wakes it only for those.
    fn watch_names(&self, notify: &std::sync::Arc<tokio::sync::Notify>, names: &[String]) {
        let _ = (notify, names);
    }

    /// Tells the other processes on the database that these workflows
    /// finished (completed, failed, cancelled or parked; the transaction
    /// that finished them has committed), for their `Engine::wait`
    /// callers. Stores without such a channel ignore it: waiters in other
    /// processes poll.
    fn announce_finished(&self, ids: &[WorkflowId]) {
        let _ = ids;
    }

    /// Asks the store to hand `sink` every workflow that a process on the
    /// database announces finished; `None` when some announcements may
    /// have been missed (the channel was down), so every waiter should look.
    /// Returns whether announcements from other processes will reach it
    /// (then waiters may poll rarely).
    fn watch_finished(
        &self,
        sink: std::sync::Arc<dyn Fn(Option<WorkflowId>) + Send + Sync>,
    ) -> bool {
        let _ = sink;
        false
    }

    /// Whether [`Store::broadcast`] reaches subscribers in every process on
    /// the database. Otherwise messages go to the sender's process only,
    /// and the store is never asked to broadcast.
    fn broadcasts(&self) -> bool {
        false
    }

    /// Publishes `message` to the subscribers of every process on the
    /// database, the sender's included (through [`Store::watch_messages`]).
    ///
    /// # Errors
    /// [`StoreError::Rejected`] when the message is too large to travel;
    /// the database's errors.
    async fn broadcast(&self, message: Broadcast) -> Result<(), StoreError> {
        let _ = message;
        Err(StoreError::Rejected(Cause::msg(
            "this store does not broadcast messages",
        )))
    }

    /// The largest message (as [`Broadcast`] JSON, in bytes) that
    /// [`Store::broadcast`] carries.
    fn broadcast_limit(&self) -> usize {
        usize::MAX
    }

    /// Asks the store to hand every message broadcast on the database to
    /// `sink`.
    fn watch_messages(&self, sink: std::sync::Arc<dyn Fn(Broadcast) + Send + Sync>) {
        let _ = sink;
    }
}

/// The store's side for clients, operators and the reads a step makes:
/// workflows created, looked up, listed, signalled, controlled and pruned.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Inserts a new workflow, runnable at once, and returns its id; or,
    /// when its [`DispatchKey`] is held already (see [`IfFinished`]),
    /// stores nothing and returns the id of the workflow holding it.
    async fn create(&self, workflow: NewWorkflow) -> Result<WorkflowId, StoreError>;

    /// One workflow, if it exists.
    async fn get(&self, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError>;

    /// Workflows matching `filter`, newest first.
    async fn list(&self, filter: ListFilter) -> Result<Vec<WorkflowInfo>, StoreError>;

    /// A workflow's loop events (each loop's checkpoint, or its output once
    /// it ended), in history order: one indexed read however long the
    /// loops have run.
    async fn loop_events(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError>;

    /// Every stored event of a workflow, forgotten ones included (for
    /// inspection tools).
    async fn all_events(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError>;

    /// Delivers a signal from outside any workflow.
    async fn send_signal(&self, signal: NewSignal) -> Result<Delivery, StoreError>;

    /// Where a signal to `target` would go, without sending it.
    async fn resolve_target(&self, target: SignalTarget) -> Result<Delivery, StoreError>;

    /// The oldest `limit` pending signals of the given names (of every
    /// name when `names` is empty), in send order.
    async fn pending_signals(
        &self,
        id: WorkflowId,
        names: Vec<String>,
        limit: usize,
    ) -> Result<Vec<PendingSignal>, StoreError>;

    /// Deletes finished workflows last changed before `before` (ms since
    /// the epoch), oldest first, with their history, and stops after the
    /// first workflow that brings the rows deleted to `max_rows` or more;
    /// returns how many workflows, 0 once none is due. The bound keeps each
    /// transaction short, however many workflows are due and however long
    /// their histories.
    async fn prune(&self, before: i64, max_rows: usize) -> Result<u64, StoreError>;

    /// Cancels or wakes a workflow; returns its state before, or `None` if it
    /// does not exist.
    async fn control(
        &self,
        id: WorkflowId,
        control: Control,
        now: i64,
    ) -> Result<Option<WorkflowState>, StoreError>;

    /// Creates the schedule, or replaces the one of the same name (its
    /// workflow, input, expression, time zone and next tick; paused or not,
    /// as it was).
    async fn put_schedule(&self, schedule: ScheduleInfo) -> Result<(), StoreError>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleInfo>, StoreError>;

    /// Pauses a schedule or resumes it from the tick `next_at`; returns
    /// whether it exists.
    async fn pause_schedule(
        &self,
        name: String,
        paused: bool,
        next_at: i64,
    ) -> Result<bool, StoreError>;

    /// Deletes a schedule (the workflows it started stay); returns whether
    /// it existed.
    async fn delete_schedule(&self, name: String) -> Result<bool, StoreError>;

    /// How the database runs each of the store's frequent queries now, with
    /// the statistics it holds: for an operator checking that a large or
    /// old database still uses the indexes the queries are written for.
    async fn query_plans(&self) -> Result<Vec<QueryPlan>, StoreError>;

    /// How many workflows there are of each name in each state, and the
    /// iterations all stored loops have checkpointed: what an overview
    /// shows. Reads every workflow's row (through an index): for a page an
    /// operator opens, not for a hot path.
    async fn census(&self) -> Result<Census, StoreError>;
}

/// Opens the store a URL names: `sqlite://PATH` or `postgres://…`.
///
/// # Errors
/// [`StoreError::BadUrl`] for an unknown scheme or options; backend errors
/// otherwise. No message shows the URL's password.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(url).await?,
        ));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::bad_url(
            url,
            "this build of Octane has no PostgreSQL store (the `postgres` feature)",
        ));
    }
    if let Some(rest) = url.strip_prefix("sqlite://") {
        #[cfg(feature = "sqlite")]
        {
            let options =
                sqlite::Options::from_url_rest(rest).map_err(|e| StoreError::bad_url(url, e))?;
            return Ok(std::sync::Arc::new(
                sqlite::SqliteStore::open(options).await?,
            ));
        }
        #[cfg(not(feature = "sqlite"))]
        {
            let _ = rest;
            return Err(StoreError::bad_url(
                url,
                "this build of Octane has no SQLite store (the `sqlite` feature)",
            ));
        }
    }
    Err(StoreError::bad_url(
        url,
        "use sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE",
    ))
}
