//! The PostgreSQL store, for many workers on many machines.
//!
//! # Connections
//! A pool of connections (`deadpool-postgres`) serves every operation:
//! each write in its own transaction (or a group's: see `group`), each read
//! outside any; a broken connection is dropped and replaced on its next
//! use. Claims, commits and lease renewals run on generic plans
//! (`BEGIN_GENERIC`). One more connection `LISTEN`s for wake-ups and reconnects
//! with backoff when the server goes away.
//!
//! # Which writes share a transaction
//! - `create`: the workflow row, its tag rows, and a `NOTIFY`; without a
//!   dispatch key, in the group commit with other dispatches and commits.
//! - `claim`: the lease (owner, epoch + 1, expiry) of every claimed row,
//!   chosen with `FOR UPDATE SKIP LOCKED` so concurrent workers never wait
//!   on each other.
//! - `commit`: the fencing check, which locks the workflow row
//!   (`SELECT … FOR UPDATE`, so no claim can interleave), every history
//!   write of the batch (event upserts, a loop's checkpoint row and its
//!   range delete of old iterations, consumed signals deleted, signals sent
//!   and child workflows created by the workflow), and the workflow's
//!   transition: suspend (which checks in the same transaction whether a
//!   signal or child it waits for is already there), release, or complete
//!   and fail (which drop its pending signals and wake the workflows waiting
//!   on it).
//! - `send_signal`: the signal row and the wake-up of its target.
//! - `renew`: the lease expiry of each lease still held.
//!
//! # Wake-ups
//! Every transaction that makes a workflow runnable is followed, once it
//! has committed, by `NOTIFY octane_runnable` with the workflow's name,
//! batched with others (see `announce`: a notifying transaction would
//! serialize every commit); workers listening on any machine claim at once.
//! Without notifications (a dropped listener, a lost announcement) workers
//! still find the work by polling.
//!
//! # Messages
//! A message a workflow publishes is sent with `NOTIFY octane_messages` (its
//! JSON as the payload, under 8,000 bytes; batched like wake-ups, in the
//! order sent); every store on the database
//! listens and hands it to its process's subscribers, the sender's
//! included.
//!
//! # Polling only
//! A Postgres-compatible database without `LISTEN`/`NOTIFY` or advisory
//! locks (found by a probe at open, or asked for with `notify=off` in the
//! URL) is served without them: workers find work by polling
//! (`poll_interval`), migrations queue on a table lock, a dead worker's
//! workflows are taken over when their leases expire, and messages reach
//! subscribers in the sending process only.

mod announce;
mod group;
mod history;
mod leases;
mod lifecycle;
mod migrate;
mod plans;
mod rows;
mod schedules;
mod schema;
mod signals;
mod workers;
mod workflows;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::{FutureExt, StreamExt};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{
    Batch, Catalog, Census, ClaimRequest, Claimed, Control, Delivery, Lease, ListFilter, NewSignal,
    NewWorkflow, PendingSignal, QueryPlan, ScheduleInfo, SignalTarget, Store, StoreError,
    WorkflowId, WorkflowInfo, WorkflowState,
};
use super::{Liveness, WorkerRecord};
use crate::history::Event;

const CHANNEL: &str = "octane_runnable";
/// The channel messages travel on.
const MESSAGES: &str = "octane_messages";
/// The channel finished workflows are announced on: their ids, separated
/// by commas.
const FINISHED: &str = "octane_finished";
/// The largest payload `NOTIFY` takes is 7,999 bytes.
const MAX_PAYLOAD: usize = 7_999;

type Sink = Arc<dyn Fn(super::Broadcast) + Send + Sync>;
type FinishedSink = Arc<dyn Fn(Option<WorkflowId>) + Send + Sync>;

/// Who the listener hands what it hears to.
#[derive(Default)]
struct Listeners {
    /// Each watcher, with the workflow names it runs (`None`: wake it for
    /// every name).
    runnable: Vec<(Arc<Notify>, Option<std::collections::BTreeSet<String>>)>,
    messages: Vec<Sink>,
    finished: Vec<FinishedSink>,
}

/// The PostgreSQL [`Store`].
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    /// Whether `LISTEN`/`NOTIFY` and advisory locks are used.
    notify: bool,
    watchers: Arc<Mutex<Listeners>>,
    listener: Option<tokio::task::JoinHandle<()>>,
    group: group::GroupCommit,
    /// Sends notifications (`None` when polling only).
    announcer: Option<Arc<announce::Announcer>>,
}

/// A connection inside a transaction (see [`in_tx`]), whether the
/// transaction may send notifications, and the workflow names it makes
/// runnable (announced once it has committed: see `announce`).
pub(super) struct Tx<'a> {
    client: &'a deadpool_postgres::Object,
    notify: bool,
    runnable: &'a Mutex<Vec<String>>,
}

impl std::ops::Deref for Tx<'_> {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &deadpool_postgres::Object {
        self.client
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// Runs `$body` in a transaction on a pooled connection and commits it.
/// `BEGIN` is not waited for: it goes to the server with the body's first
/// statements, in the same round trip (the server runs them in order, and
/// an error in any aborts the transaction). `in_tx!(self, generic tx => …)`
/// begins with [`BEGIN_GENERIC`] instead.
macro_rules! in_tx {
    ($self:ident, generic $tx:ident => $body:expr) => {
        in_tx!(@begin BEGIN_GENERIC, $self, $tx => $body)
    };
    ($self:ident, $tx:ident => $body:expr) => {
        in_tx!(@begin "BEGIN", $self, $tx => $body)
    };
    (@begin $begin:expr, $self:ident, $tx:ident => $body:expr) => {{
        let open = Open::new($self.pool.get().await?);
        let $tx = open.tx($self.notify);
        let begin = $tx.batch_execute($begin);
        let body = async { Ok::<_, StoreError>($body) };
        // `join!` polls `begin` first: it is on the wire before the body's
        // first statement.
        let (begun, out) = futures::join!(begin, body);
        begun?;
        let out = out?;
        $tx.batch_execute("COMMIT")
            .await
            .map_err(|e| StoreError::from(e).during_commit())?;
        let runnable = open.done();
        if let Some(announcer) = &$self.announcer {
            announcer.runnable(runnable);
        }
        Ok(out)
    }};
}

/// Runs `$body`, which only reads, on a pooled connection outside any
/// transaction. Under `READ COMMITTED` a transaction gives its statements
/// no common snapshot, only a `BEGIN` and a `COMMIT` more, the `COMMIT` a
/// round trip of its own: a workflow's history read at every claim paid
/// three round trips for two queries.
macro_rules! read {
    ($self:ident, $tx:ident => $body:expr) => {{
        let open = Open::new($self.pool.get().await?);
        let $tx = open.tx(false);
        let out = async { Ok::<_, StoreError>($body) }.await?;
        open.done();
        Ok(out)
    }};
}

/// Begins a transaction of the hot path (claims, commits, lease renewals)
/// whose statements run on generic plans. They find rows by key, so one
/// plan serves any values; but a statement naming its rows in an id list
/// of unknown length (the fence, the group's lock, the renewal's lock), or
/// scanning per name, has a generic plan Postgres prices above the custom
/// plans of its first runs once the tables hold a few thousand rows, and
/// left to choose it plans such a statement anew at every run — under a
/// fan-out, more server time than running it. One message with `BEGIN`.
pub(super) const BEGIN_GENERIC: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// A pooled connection inside a transaction this store began, or serving
/// statements outside one (reads, a one-statement commit). Dropped before
/// [`Open::done`] (an error, or the caller gave up), it rolls back before
/// the connection goes back to the pool, so no one else's statements run
/// in a transaction left open (outside one, the rollback only warns).
struct Open {
    client: Option<deadpool_postgres::Object>,
    runnable: Mutex<Vec<String>>,
}

impl Open {
    fn new(client: deadpool_postgres::Object) -> Self {
        Open {
            client: Some(client),
            runnable: Mutex::default(),
        }
    }

    /// The transaction, for statements; `notify`: whether it may send
    /// notifications.
    fn tx(&self, notify: bool) -> Tx<'_> {
        Tx {
            client: self.client.as_ref().expect("open until done"),
            notify,
            runnable: &self.runnable,
        }
    }

    /// The transaction ended (committed): the connection is free. Returns
    /// the workflow names it made runnable.
    fn done(mut self) -> Vec<String> {
        self.client = None;
        std::mem::take(&mut *self.runnable.lock().expect("runnable names lock"))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    // Outside a transaction (BEGIN never ran) this only warns.
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        // The connection is broken: keep it out of the pool.
                        let _ = deadpool_postgres::Object::take(client);
                    }
                });
            }
            // No runtime to roll back on: the connection must not be reused.
            Err(_) => {
                let _ = deadpool_postgres::Object::take(client);
            }
        }
    }
}

impl PostgresStore {
    /// Connects to the database `url` names and migrates its schema. The
    /// URL may end in `notify=off` (after `?` or `&`) for a database without
    /// `LISTEN`/`NOTIFY` or advisory locks (see the module docs); without
    /// it, a probe at open decides.
    ///
    /// # Errors
    /// A malformed URL, an unreachable server, or a failed migration.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let (server_url, notify_off) = without_notify_option(url)?;
        let mut config: tokio_postgres::Config = server_url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::bad_url(url, e.to_string()))?;
        // The store's statements are written for their indexes. A table
        // that grew fast since autovacuum last analyzed it (a fan-out
        // filling a fresh database) looks small to the planner, which may
        // then plan a scan of it, and a connection keeps a prepared
        // statement's plan: so scans are priced out for the store's
        // sessions, and a plan does not hang on when autovacuum last ran.
        let options = format!(
            "{} -c enable_seqscan=off",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::bad_url(url, e.to_string()))?;
        let mut client = pool.get().await?;
        let notify = !notify_off && supports_notify(&client).await;
        migrate::migrate(&mut client, notify).await?;
        drop(client);
        let watchers: Arc<Mutex<Listeners>> = Arc::default();
        let listener = notify.then(|| tokio::spawn(listen(config.clone(), watchers.clone())));
        let announcer = notify.then(|| Arc::new(announce::Announcer::spawn(pool.clone())));
        Ok(PostgresStore {
            group: group::GroupCommit::spawn(pool.clone(), announcer.clone()),
            announcer,
            pool,
            config,
            notify,
            watchers,
            listener,
        })
    }

    /// Whether the store uses `LISTEN`/`NOTIFY` and advisory locks, or polls.
    pub fn notifies(&self) -> bool {
        self.notify
    }
}

/// `url` without Octane's own `notify=on|off` option, and whether it said
/// `off`.
fn without_notify_option(url: &str) -> Result<(String, bool), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), false));
    };
    let mut off = false;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("notify", "off")) => off = true,
            Some(("notify", "on")) => off = false,
            Some(("notify", other)) => {
                return Err(StoreError::bad_url(
                    url,
                    format!("`notify={other}`: write notify=on or notify=off"),
                ))
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, off))
}

/// Whether the server has `pg_notify` and advisory locks: a
/// Postgres-compatible database may lack them.
async fn supports_notify(client: &deadpool_postgres::Object) -> bool {
    let probe = client
        .batch_execute(
            "SELECT pg_notify('octane_probe', ''); \
             SELECT pg_try_advisory_lock(7246414); SELECT pg_advisory_unlock(7246414)",
        )
        .await;
    match probe {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "the database lacks LISTEN/NOTIFY or advisory locks; polling only");
            false
        }
    }
}

/// Whether a commit needs no answer from the server before its last
/// statement: history writes, alone or with the workflow's completion or
/// failure (a signal, a child, a sleep read before they write). It then
/// goes out in a group commit, as one round trip — `BEGIN`, the fence, the
/// writes, the transition and `COMMIT` — since the fence fails the
/// transaction on the server itself when the lease is lost (see `group`).
fn in_one_round_trip(batch: &Batch) -> bool {
    let transition = super::lifecycle::of_transition(&batch.transition);
    transition.is_none_or(|c| c.state.is_finished())
        && batch.ops.iter().all(|op| {
            matches!(
                op,
                super::WriteOp::Put(_) | super::WriteOp::ForgetIterations { .. }
            )
        })
}

/// The workflows a commit locks besides its own: those it signals by id,
/// and the one it goes to sleep on (see `leases`, "Waiting on a workflow").
fn locked_with(ops: &[super::WriteOp], transition: &super::Transition) -> Vec<String> {
    let waits_on = match transition {
        super::Transition::Suspend(s) => s.child,
        _ => None,
    };
    ops.iter()
        .filter_map(|op| match op {
            super::WriteOp::SendSignal(NewSignal {
                target: SignalTarget::Id(id),
                ..
            }) => Some(id.to_string()),
            _ => None,
        })
        .chain(waits_on.map(|c| c.to_string()))
        .collect()
}

/// Whether the transition wakes the workflows waiting on this one (so
/// locks them).
fn lifecycle_wakes_waiters(transition: &super::Transition) -> bool {
    super::lifecycle::of_transition(transition).is_some_and(|c| c.wake_waiters)
}

/// Notes workflow names made runnable, to be announced once the
/// transaction commits (see `announce`); nothing when polling only. An
/// announcement names a workflow name, so only workers that run it wake.
fn note_runnable<'n>(tx: &Tx<'_>, names: impl IntoIterator<Item = &'n String>) {
    if tx.notify {
        let mut noted = tx.runnable.lock().expect("runnable names lock");
        noted.extend(names.into_iter().cloned());
    }
}

/// A notification the listener heard.
enum Heard {
    /// A workflow of this name became runnable (empty: some workflow).
    Runnable(String),
    /// A message, as JSON.
    Message(String),
    /// Workflows finished: their ids, separated by commas.
    Finished(String),
}

/// Keeps a connection listening for wake-ups, reconnecting with backoff.
/// After every (re)connection the watchers are woken once, since
/// notifications sent while disconnected were lost.
async fn listen(config: tokio_postgres::Config, watchers: Arc<Mutex<Listeners>>) {
    // `name`: the workflow name that became runnable; `None` wakes all.
    let wake = |name: Option<&str>| {
        for (w, names) in &watchers.lock().expect("watchers lock").runnable {
            let runs_it = match (name, names) {
                (Some(name), Some(names)) => names.contains(name),
                _ => true,
            };
            if runs_it {
                w.notify_one();
            }
        }
    };
    let deliver = |payload: &str| match serde_json::from_str::<super::Broadcast>(payload) {
        Ok(message) => {
            for sink in &watchers.lock().expect("watchers lock").messages {
                sink(message.clone());
            }
        }
        Err(e) => tracing::warn!(error = %e, "a message notification does not decode; skipped"),
    };
    // `ids`: the workflows that finished; `None`: some may have, unheard.
    let finished = |ids: Option<&str>| {
        let sinks = &watchers.lock().expect("watchers lock").finished;
        match ids {
            Some(ids) => {
                for id in ids.split(',') {
                    match id.parse::<uuid::Uuid>() {
                        Ok(id) => sinks.iter().for_each(|sink| sink(Some(WorkflowId(id)))),
                        Err(e) => {
                            tracing::warn!(error = %e, id, "a finish announcement does not decode; skipped")
                        }
                    }
                }
            }
            None => sinks.iter().for_each(|sink| sink(None)),
        }
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let drive = tokio::spawn(async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let AsyncMessage::Notification(n) = message {
                        let payload = n.payload().to_string();
                        let heard = match n.channel() {
                            MESSAGES => Heard::Message(payload),
                            FINISHED => Heard::Finished(payload),
                            _ => Heard::Runnable(payload),
                        };
                        if tx.send(heard).is_err() {
                            break;
                        }
                    }
                }
            });
            if client
                .batch_execute(&format!(
                    "LISTEN {CHANNEL}; LISTEN {MESSAGES}; LISTEN {FINISHED}"
                ))
                .await
                .is_ok()
            {
                backoff = Duration::from_millis(100);
                wake(None);
                finished(None);
                while let Some(heard) = rx.recv().await {
                    match heard {
                        Heard::Message(message) => deliver(&message),
                        Heard::Finished(ids) => finished(Some(&ids)),
                        Heard::Runnable(name) if name.is_empty() => wake(None),
                        Heard::Runnable(name) => wake(Some(&name)),
                    }
                }
            }
            drive.abort();
            tracing::warn!("the postgres wake-up listener lost its connection; reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn claim(&self, request: ClaimRequest) -> Result<Claimed, StoreError> {
        in_tx!(self, generic tx => leases::claim(&tx, &request).await?)
    }

    async fn load_history(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        read!(self, tx => history::load(&tx, id).await?)
    }

    async fn commit(&self, lease: &Lease, batch: Batch) -> Result<(), StoreError> {
        if in_one_round_trip(&batch) {
            return self.group.commit(lease, batch).await;
        }
        in_tx!(self, generic tx => {
            // The fence, which locks every row the commit touches in id
            // order, is pipelined ahead of the history writes (prepared
            // first, like every pipelined statement: see `history::apply`).
            let stmt = tx.prepare_cached(leases::FENCE).await?;
            let rows = leases::LockSet {
                id: lease.workflow_id.to_string(),
                others: locked_with(&batch.ops, &batch.transition),
                with_waiters: lifecycle_wakes_waiters(&batch.transition),
                stmt: &stmt,
            };
            let fence = leases::fence(&tx, rows, lease).boxed();
            history::apply(&tx, fence, lease.workflow_id, &batch.ops, batch.now).await?;
            workflows::transition(&tx, lease.workflow_id, &batch.transition, batch.now).await?
        })
    }

    async fn renew(
        &self,
        leases: Vec<Lease>,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<WorkflowId>, StoreError> {
        in_tx!(self, generic tx => leases::renew(&tx, &leases, now, expires_at - now).await?)
    }

    fn catalog(&self) -> &dyn Catalog {
        self
    }

    async fn register_worker(
        &self,
        worker: WorkerRecord,
    ) -> Result<Option<Box<dyn Liveness>>, StoreError> {
        if !self.notify {
            // No advisory locks to tell the dead from the living: leases
            // expire instead.
            return Ok(None);
        }
        let session = workers::lock(&self.config, &worker).await?;
        let registered: Result<(), StoreError> =
            in_tx!(self, tx => workers::register(&tx, &worker).await?);
        registered?;
        Ok(Some(Box::new(session)))
    }

    async fn expire_deadlines(&self, now: i64) -> Result<Vec<WorkflowId>, StoreError> {
        let overdue: Result<Vec<WorkflowId>, StoreError> =
            in_tx!(self, tx => workflows::overdue(&tx, now).await?);
        let overdue = overdue?;
        let mut expired = Vec::with_capacity(overdue.len());
        // One transaction each: each locks its workflow and that one's
        // parent, in id order, and never holds more.
        for id in overdue {
            let done: Result<bool, StoreError> =
                in_tx!(self, tx => workflows::expire(&tx, id, now).await?);
            if done? {
                expired.push(id);
            }
        }
        Ok(expired)
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleInfo>, StoreError> {
        in_tx!(self, tx => schedules::due(&tx, now).await?)
    }

    async fn fire_schedule(
        &self,
        name: String,
        due: i64,
        next_at: i64,
        workflow: NewWorkflow,
    ) -> Result<Option<WorkflowId>, StoreError> {
        in_tx!(self, tx => schedules::fire(&tx, &name, due, next_at, &workflow).await?)
    }

    async fn reap_dead_workers(&self, me: uuid::Uuid, _now: i64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let mut gone = Vec::new();
        for id in workers::lease_holders(&client, &me.to_string()).await? {
            if workers::is_gone(&client, &id).await? {
                gone.push(id);
            }
        }
        drop(client);
        if gone.is_empty() {
            return Ok(0);
        }
        in_tx!(self, tx => workers::reap(&tx, &gone).await?)
    }

    fn watch_runnable(&self, notify: Arc<Notify>) {
        self.watchers
            .lock()
            .expect("watchers lock")
            .runnable
            .push((notify, None));
    }

    fn watch_names(&self, notify: &Arc<Notify>, names: &[String]) {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        for (w, filter) in &mut watchers.runnable {
            if Arc::ptr_eq(w, notify) {
                filter
                    .get_or_insert_with(Default::default)
                    .extend(names.iter().cloned());
            }
        }
    }

    fn announce_finished(&self, ids: &[WorkflowId]) {
        if let Some(announcer) = &self.announcer {
            announcer.finished(ids);
        }
    }

    fn watch_finished(&self, sink: FinishedSink) -> bool {
        self.watchers
            .lock()
            .expect("watchers lock")
            .finished
            .push(sink);
        self.notify
    }

    fn broadcasts(&self) -> bool {
        self.notify
    }

    async fn broadcast(&self, message: super::Broadcast) -> Result<(), StoreError> {
        let payload = serde_json::to_string(&message)
            .map_err(|e| StoreError::Rejected(super::Cause::new(e)))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(StoreError::Rejected(super::Cause::msg(format!(
                "message `{}` is {} bytes; NOTIFY carries at most {MAX_PAYLOAD}",
                message.name,
                payload.len()
            ))));
        }
        match &self.announcer {
            Some(announcer) => announcer.message(payload).await,
            // Polling only: the sending process's own subscribers have it.
            None => Ok(()),
        }
    }

    fn broadcast_limit(&self) -> usize {
        MAX_PAYLOAD
    }

    fn watch_messages(&self, sink: Sink) {
        self.watchers
            .lock()
            .expect("watchers lock")
            .messages
            .push(sink);
    }
}

#[async_trait]
impl Catalog for PostgresStore {
    async fn create(&self, workflow: NewWorkflow) -> Result<WorkflowId, StoreError> {
        if workflow.key.is_none() {
            let id = workflow.id;
            return self.group.create(workflow).await.map(|()| id);
        }
        in_tx!(self, tx => workflows::create(&tx, &workflow).await?)
    }

    async fn all_events(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        read!(self, tx => history::all(&tx, id).await?)
    }

    async fn loop_events(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        read!(self, tx => history::loops(&tx, id).await?)
    }

    async fn get(&self, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError> {
        read!(self, tx => workflows::get(&tx, id).await?)
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<WorkflowInfo>, StoreError> {
        read!(self, tx => workflows::list(&tx, &filter).await?)
    }

    async fn send_signal(&self, signal: NewSignal) -> Result<Delivery, StoreError> {
        in_tx!(self, tx => signals::deliver(&tx, &signal).await?)
    }

    async fn resolve_target(&self, target: SignalTarget) -> Result<Delivery, StoreError> {
        in_tx!(self, tx => signals::resolve(&tx, &target).await?)
    }

    async fn pending_signals(
        &self,
        id: WorkflowId,
        names: Vec<String>,
        limit: usize,
    ) -> Result<Vec<PendingSignal>, StoreError> {
        read!(self, tx => signals::pending(&tx, id, &names, limit).await?)
    }

    async fn prune(&self, before: i64, max_rows: usize) -> Result<u64, StoreError> {
        in_tx!(self, tx => workflows::prune(&tx, before, max_rows).await?)
    }

    async fn control(
        &self,
        id: WorkflowId,
        control: Control,
        now: i64,
    ) -> Result<Option<WorkflowState>, StoreError> {
        in_tx!(self, tx => workflows::control(&tx, id, control, now).await?)
    }

    async fn query_plans(&self) -> Result<Vec<QueryPlan>, StoreError> {
        in_tx!(self, tx => plans::explain_all(&tx).await?)
    }

    async fn census(&self) -> Result<Census, StoreError> {
        read!(self, tx => workflows::census(&tx).await?)
    }

    async fn put_schedule(&self, schedule: ScheduleInfo) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        in_tx!(self, tx => schedules::put(&tx, &schedule, now).await?)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleInfo>, StoreError> {
        read!(self, tx => schedules::all(&tx).await?)
    }

    async fn pause_schedule(
        &self,
        name: String,
        paused: bool,
        next_at: i64,
    ) -> Result<bool, StoreError> {
        in_tx!(self, tx => schedules::pause(&tx, &name, paused, next_at).await?)
    }

    async fn delete_schedule(&self, name: String) -> Result<bool, StoreError> {
        in_tx!(self, tx => schedules::delete(&tx, &name).await?)
    }
}
