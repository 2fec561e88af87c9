//! Worker liveness across machines: each worker holds a session-level
//! advisory lock, on a connection it keeps for its lifetime, and has a row
//! in `workers`. The server releases the lock when that session ends — the
//! process died, or its connection is gone — so a lock another session can
//! take names a dead worker. A paused process keeps its session and its
//! lock; a database without advisory locks falls back to lease expiry.

use deadpool_postgres::Object;

use super::Tx;
use tokio_postgres::NoTls;

use super::leases::DB_NOW;
use crate::store::{Liveness, StoreError, WorkerRecord};

/// A live worker's session; dropping it closes the session, which releases
/// the lock.
#[derive(Debug)]
pub(super) struct Session {
    _client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
    /// Turns `true` when the session's connection ends.
    ended: tokio::sync::watch::Receiver<bool>,
}

impl Liveness for Session {
    /// The connection's task says when the session ended.
    fn is_held(&self) -> bool {
        !*self.ended.borrow()
    }

    fn lost(&self) -> futures::future::BoxFuture<'static, ()> {
        let mut ended = self.ended.clone();
        Box::pin(async move {
            let _ = ended.wait_for(|e| *e).await;
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// The advisory lock key of a worker: the first 64 bits of its id.
fn key(id: &uuid::Uuid) -> i64 {
    let b = id.as_bytes();
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Opens the worker's own session and takes its lock there.
pub(super) async fn lock(
    config: &tokio_postgres::Config,
    worker: &WorkerRecord,
) -> Result<Session, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    let (end, ended) = tokio::sync::watch::channel(false);
    let connection = tokio::spawn(async move {
        let _ = connection.await;
        let _ = end.send(true);
    });
    client
        .execute("SELECT pg_advisory_lock($1)", &[&key(&worker.id)])
        .await?;
    Ok(Session {
        _client: client,
        connection,
        ended,
    })
}

pub(super) async fn register(tx: &Tx<'_>, w: &WorkerRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO workers (id, host, pid, started_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
           started_at = EXCLUDED.started_at",
        &[&w.id.to_string(), &w.host, &i64::from(w.pid), &w.started_at],
    )
    .await?;
    Ok(())
}

/// Registered workers other than `$1` holding leases that run past the
/// database's now. Every worker asks this twice a second, so it reads the
/// leased workflows' index by owner, never the whole table: a lateral
/// subquery with a limit is looked up once per worker, where the planner
/// could run an `EXISTS` as a join reading some other index whole.
pub(super) fn lease_holders_sql() -> String {
    format!(
        "SELECT w.id FROM workers w CROSS JOIN LATERAL (
             SELECT 1 FROM workflows f WHERE f.lease_owner = w.id
             AND f.state = 'running' AND f.lease_expires > {DB_NOW} LIMIT 1) held
         WHERE w.id <> $1"
    )
}

/// Ends the leases of the workers `$1` that run past the database's now.
/// Only after a worker died, with its leases running: the planner reads
/// the leased index, or the runnable one when it holds fewer rows.
fn reap_sql() -> String {
    format!(
        "UPDATE workflows SET lease_expires = {DB_NOW}, wake_at = LEAST(wake_at, updated_at)
         WHERE lease_owner = ANY($1) AND state = 'running' AND lease_expires > {DB_NOW}"
    )
}

/// Registered workers other than `me` that hold leases still running (on
/// the database's clock).
pub(super) async fn lease_holders(client: &Object, me: &str) -> Result<Vec<String>, StoreError> {
    let stmt = client.prepare_cached(&lease_holders_sql()).await?;
    let rows = client.query(&stmt, &[&me]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

/// Whether the registered worker `id` is gone: its lock can be taken (by
/// this session, which lets go of it again at once).
pub(super) async fn is_gone(client: &Object, id: &str) -> Result<bool, StoreError> {
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return Ok(false);
    };
    let taken: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key(&id)])
        .await?
        .try_get(0)?;
    if taken {
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&key(&id)])
            .await?;
    }
    Ok(taken)
}

/// Ends the leases of the dead workers `ids` now and forgets them; returns
/// how many workflows became claimable. Each is due again since it last
/// changed (its `wake_at` was its lease's end: see `leases::claim_sql`).
pub(super) async fn reap(tx: &Tx<'_>, ids: &[String]) -> Result<u64, StoreError> {
    // In id order, like every transaction that locks several rows.
    tx.execute(
        "SELECT 1 FROM workflows WHERE lease_owner = ANY($1) AND state = 'running'
         ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await?;
    let freed = tx.execute(&reap_sql(), &[&ids]).await?;
    tx.execute("DELETE FROM workers WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(freed)
}
