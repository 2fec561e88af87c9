//! The embedded SQLite store: one database file, WAL mode.
//!
//! # Connections
//! One writer thread owns the only write connection and commits in groups
//! (see `writer`); reads run on a small pool of read connections, which WAL
//! lets proceed while the writer commits.
//!
//! # Which writes share a transaction
//! - `create`: the workflow row and its tag rows.
//! - `claim`: the lease (owner, epoch + 1, expiry) of every claimed row.
//! - `commit`: the fencing check (lease owner and epoch), every history
//!   write of the batch (event upserts, a loop's checkpoint row and its
//!   range delete of old iterations, consumed signals deleted, signals sent
//!   and child workflows created by the workflow), and the workflow's
//!   transition: suspend (which checks in the same transaction whether a
//!   signal or child it waits for is already there), release, or complete
//!   and fail (which drop its pending signals and wake the workflows
//!   waiting for it). A checkpoint therefore never lands without the events it follows,
//!   a consumed signal never disappears without its record, and a
//!   fenced-off worker's batch leaves nothing behind.
//! - `send_signal`: the signal row and the wake-up of its target, if the
//!   target listens for that name.
//! - `renew`: the lease expiry of each lease still held.
//!
//! Separate jobs of one group commit share the transaction but not its
//! fate: each runs in its own savepoint.
//!
//! # Durability
//! `synchronous=FULL` by default: a commit is on disk when it returns.
//! `sqlite://PATH?synchronous=normal` trades the last moments of commits
//! before a power loss (not a process crash) for speed.

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
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};

use super::{
    Batch, Catalog, Cause, Census, ClaimRequest, Claimed, Control, Delivery, Lease, ListFilter,
    NewSignal, NewWorkflow, PendingSignal, QueryPlan, ScheduleInfo, SignalTarget, Store,
    StoreError, WorkflowId, WorkflowInfo, WorkflowState,
};
use super::{Liveness, WorkerRecord};
use crate::history::Event;
use writer::Writer;

/// How SQLite syncs commits to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync on every commit: nothing committed is lost, even on power loss.
    #[default]
    Full,
    /// fsync at WAL checkpoints only: survives a process crash, may lose the
    /// last commits on power loss.
    Normal,
}

/// Options of the SQLite store.
#[derive(Clone, Debug)]
pub struct Options {
    /// The database file.
    pub path: PathBuf,
    /// Commit durability.
    pub synchronous: Synchronous,
}

impl Options {
    /// Options for `path` with durable commits.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Options {
            path: path.into(),
            synchronous: Synchronous::Full,
        }
    }

    /// Parses what follows `sqlite://`: `PATH[?synchronous=full|normal]`.
    /// An empty path means `octane.db`. A relative path is made absolute
    /// against the current directory now, so that connections opened later
    /// (after a `chdir`) reach the same file.
    ///
    /// # Errors
    /// An unknown option, or `:memory:`: every connection the store opens
    /// would see a new, empty database of its own.
    pub fn from_url_rest(rest: &str) -> Result<Self, String> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path == ":memory:" || path.starts_with("file::memory:") {
            return Err(
                "`:memory:` is not supported: each connection would open a database of its own; \
                 use a file (a temporary one for tests)"
                    .into(),
            );
        }
        let path = std::path::absolute(if path.is_empty() { "octane.db" } else { path })
            .map_err(|e| format!("cannot resolve the path `{path}`: {e}"))?;
        let mut options = Options::new(path);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("synchronous", "full")) => options.synchronous = Synchronous::Full,
                Some(("synchronous", "normal")) => options.synchronous = Synchronous::Normal,
                _ => return Err(format!("unknown sqlite option `{pair}`")),
            }
        }
        Ok(options)
    }
}

/// The SQLite [`Store`].
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<ReaderPool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.options.path)
            .finish_non_exhaustive()
    }
}

/// Prepared statements kept per connection: room for every statement of
/// the hot paths (commits, claims, history loads, the group's own control
/// statements), so none of them is parsed twice.
const STATEMENT_CACHE: usize = 64;

/// Reads that run at once, each on a connection of its own. Opening a
/// connection parses the whole schema, so the pool never opens more than
/// this many and never closes one; further reads wait their turn.
const READERS: usize = 8;

struct ReaderPool {
    options: Options,
    idle: Mutex<Vec<Connection>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.idle.lock().expect("reader pool lock").pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.options.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        self.idle.lock().expect("reader pool lock").push(conn);
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database and migrates its schema.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(options: Options) -> Result<Self, StoreError> {
        let opts = options.clone();
        let conn = tokio::task::spawn_blocking(move || open_writer(&opts))
            .await
            .map_err(|e| StoreError::Unavailable(Cause::new(e)))??;
        Ok(SqliteStore {
            writer: Writer::spawn(conn),
            readers: Arc::new(ReaderPool {
                options,
                idle: Mutex::new(Vec::new()),
                slots: Arc::new(tokio::sync::Semaphore::new(READERS)),
            }),
        })
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        let slot = pool
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        // A read that panics (or a runtime shutting down) loses nothing; it
        // is reported as the database being unavailable to that caller.
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.put(conn);
            drop(slot);
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(Cause::new(e)))?
    }
}

fn open_writer(options: &Options) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(&options.path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match options.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Savepoint journals (one per job of a group) stay in memory instead of
    // temporary files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Every statement the store runs stays parsed (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate::migrate(&mut conn)?;
    // Gathers the statistics the planner lacks (tables whose size changed a
    // lot since the last look), bounded so that opening stays quick.
    conn.execute_batch("PRAGMA optimize=0x10002")?;
    drop_value_samples(&conn)?;
    Ok(conn)
}

/// Deletes the samples of index values that `ANALYZE` keeps in
/// `sqlite_stat4`, keeping the per-index averages (`sqlite_stat1`) that the
/// store's plans need. The bundled SQLite is built with
/// `SQLITE_ENABLE_STAT4`: with samples present, a statement comparing an
/// indexed column with a bound value is compiled again whenever the value
/// changes, so every history read and write of every workflow paid a parse
/// and a plan on any database old enough to have been analyzed (fan-out on
/// such a database ran at about 0.6 of a fresh one). The plans do not need
/// the samples: the checks of `octane db plans` hold without them.
fn drop_value_samples(conn: &Connection) -> Result<(), StoreError> {
    let sampled: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_stat4)", [], |r| {
            r.get(0)
        })
        .or_else(|e| match e {
            // No `ANALYZE` has run yet: the table does not exist.
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                Ok(false)
            }
            e => Err(e),
        })?;
    if sampled {
        // `ANALYZE sqlite_schema` makes the connection read the
        // statistics again.
        conn.execute_batch("DELETE FROM sqlite_stat4; ANALYZE sqlite_schema;")?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim(&self, request: ClaimRequest) -> Result<Claimed, StoreError> {
        self.writer.write(move |c| leases::claim(c, &request)).await
    }

    async fn load_history(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        self.read(move |c| history::load(c, id)).await
    }

    async fn commit(&self, lease: &Lease, batch: Batch) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.writer
            .write(move |c| {
                leases::fence(c, &lease)?;
                history::apply(c, lease.workflow_id, &batch.ops, batch.now)?;
                workflows::transition(c, lease.workflow_id, &batch.transition, batch.now)
            })
            .await
    }

    async fn renew(
        &self,
        leases: Vec<Lease>,
        _now: i64,
        expires_at: i64,
    ) -> Result<Vec<WorkflowId>, StoreError> {
        self.writer
            .write(move |c| leases::renew(c, &leases, expires_at))
            .await
    }

    fn catalog(&self) -> &dyn Catalog {
        self
    }

    async fn register_worker(
        &self,
        worker: WorkerRecord,
    ) -> Result<Option<Box<dyn Liveness>>, StoreError> {
        let lock = workers::lock(&workers::lock_dir(&self.readers.options.path), &worker)?;
        self.writer
            .write(move |c| workers::register(c, &worker))
            .await?;
        Ok(Some(Box::new(lock)))
    }

    async fn expire_deadlines(&self, now: i64) -> Result<Vec<WorkflowId>, StoreError> {
        // Most looks find nothing: ask a reader first, and take the writer
        // only when something is due.
        let due = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(workflows::OVERDUE_SQL)?;
                Ok(stmt.exists([now])?)
            })
            .await?;
        if !due {
            return Ok(Vec::new());
        }
        self.writer
            .write(move |c| workflows::expire_deadlines(c, now))
            .await
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleInfo>, StoreError> {
        self.read(move |c| schedules::due(c, now)).await
    }

    async fn fire_schedule(
        &self,
        name: String,
        due: i64,
        next_at: i64,
        workflow: NewWorkflow,
    ) -> Result<Option<WorkflowId>, StoreError> {
        self.writer
            .write(move |c| schedules::fire(c, &name, due, next_at, &workflow))
            .await
    }

    async fn reap_dead_workers(&self, me: uuid::Uuid, now: i64) -> Result<u64, StoreError> {
        let me = me.to_string();
        let holders = self
            .read(move |c| workers::lease_holders(c, &me, now))
            .await?;
        let dir = workers::lock_dir(&self.readers.options.path);
        let gone: Vec<String> = holders
            .into_iter()
            .filter(|id| workers::is_gone(&dir, id))
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        self.writer
            .write(move |c| workers::reap(c, &gone, now))
            .await
    }
}

#[async_trait]
impl Catalog for SqliteStore {
    async fn create(&self, workflow: NewWorkflow) -> Result<WorkflowId, StoreError> {
        self.writer
            .write(move |c| workflows::create(c, &workflow))
            .await
    }

    async fn all_events(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        self.read(move |c| history::all(c, id)).await
    }

    async fn loop_events(&self, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
        self.read(move |c| history::loops(c, id)).await
    }

    async fn get(&self, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError> {
        self.read(move |c| workflows::get(c, id)).await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<WorkflowInfo>, StoreError> {
        self.read(move |c| workflows::list(c, &filter)).await
    }

    async fn send_signal(&self, signal: NewSignal) -> Result<Delivery, StoreError> {
        self.writer
            .write(move |c| signals::deliver(c, &signal))
            .await
    }

    async fn resolve_target(&self, target: SignalTarget) -> Result<Delivery, StoreError> {
        self.read(move |c| signals::resolve(c, &target)).await
    }

    async fn pending_signals(
        &self,
        id: WorkflowId,
        names: Vec<String>,
        limit: usize,
    ) -> Result<Vec<PendingSignal>, StoreError> {
        self.read(move |c| signals::pending(c, id, &names, limit))
            .await
    }

    async fn prune(&self, before: i64, max_rows: usize) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| workflows::prune(c, before, max_rows))
            .await
    }

    async fn control(
        &self,
        id: WorkflowId,
        control: Control,
        now: i64,
    ) -> Result<Option<WorkflowState>, StoreError> {
        self.writer
            .write(move |c| workflows::control(c, id, control, now))
            .await
    }

    async fn query_plans(&self) -> Result<Vec<QueryPlan>, StoreError> {
        self.read(plans::explain_all).await
    }

    async fn census(&self) -> Result<Census, StoreError> {
        self.read(workflows::census).await
    }

    async fn put_schedule(&self, schedule: ScheduleInfo) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        self.writer
            .write(move |c| schedules::put(c, &schedule, now))
            .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleInfo>, StoreError> {
        self.read(schedules::all).await
    }

    async fn pause_schedule(
        &self,
        name: String,
        paused: bool,
        next_at: i64,
    ) -> Result<bool, StoreError> {
        self.writer
            .write(move |c| schedules::pause(c, &name, paused, next_at))
            .await
    }

    async fn delete_schedule(&self, name: String) -> Result<bool, StoreError> {
        self.writer
            .write(move |c| schedules::delete(c, &name))
            .await
    }
}
