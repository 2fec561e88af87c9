//! Worker liveness on one machine: each worker holds an exclusive lock on a
//! file of its own beside the database (`PATH.workers/ID.lock`) for its
//! lifetime, and has a row in `workers`. The operating system releases the
//! lock when the process dies, however it dies, so a lock that can be taken
//! names a dead worker; a pid reused by another process, or a lock file a
//! crash left behind, changes nothing. A paused process keeps its lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::store::{Cause, Liveness, StoreError, WorkerRecord};

/// A live worker's lock; dropping it releases the lock and removes the file.
#[derive(Debug)]
pub(super) struct LockFile {
    path: PathBuf,
    _file: File,
}

impl Liveness for LockFile {}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where the workers of the database at `db` keep their lock files.
pub(super) fn lock_dir(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".workers");
    PathBuf::from(name)
}

fn lock_path(dir: &Path, worker: &str) -> PathBuf {
    dir.join(format!("{worker}.lock"))
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(Cause::new(e))
}

/// Takes the lock of `worker` for its lifetime.
pub(super) fn lock(dir: &Path, worker: &WorkerRecord) -> Result<LockFile, StoreError> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = lock_path(dir, &worker.id.to_string());
    let file = File::create(&path).map_err(io)?;
    file.try_lock().map_err(|e| io(std::io::Error::other(e)))?;
    Ok(LockFile { path, _file: file })
}

/// Whether the registered worker `id` is gone: its lock file is missing,
/// or its lock can be taken (it is released again at once).
pub(super) fn is_gone(dir: &Path, id: &str) -> bool {
    let path = lock_path(dir, id);
    match File::options().write(true).open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => false,
        Ok(file) => {
            let gone = file.try_lock().is_ok();
            if gone {
                let _ = std::fs::remove_file(&path);
            }
            gone
        }
    }
}

pub(super) fn register(conn: &Connection, w: &WorkerRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO workers (id, host, pid, started_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute((w.id.to_string(), &w.host, w.pid, w.started_at))?;
    Ok(())
}

/// Registered workers other than `?1` holding leases that run past `?2`.
/// Every worker asks this twice a second, so it reads the leased
/// workflows' index, never the whole table.
pub(super) const LEASE_HOLDERS_SQL: &str = "SELECT id FROM workers WHERE id <> ?1 AND EXISTS (
     SELECT 1 FROM workflows WHERE lease_owner = workers.id
     AND state = 'running' AND lease_expires > ?2)";

/// Ends the leases of worker `?1` that run past `?2`.
pub(super) const REAP_SQL: &str = "UPDATE workflows SET lease_expires = ?2
     WHERE lease_owner = ?1 AND state = 'running' AND lease_expires > ?2";

/// Registered workers other than `me` that hold leases still running.
pub(super) fn lease_holders(
    conn: &Connection,
    me: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(LEASE_HOLDERS_SQL)?;
    let rows = stmt.query_map((me, now), |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Ends the leases of the dead workers `ids` now and forgets them; returns
/// how many workflows became claimable.
pub(super) fn reap(conn: &Connection, ids: &[String], now: i64) -> Result<u64, StoreError> {
    let mut freed = 0;
    for id in ids {
        freed += conn.prepare_cached(REAP_SQL)?.execute((id, now))?;
        conn.prepare_cached("DELETE FROM workers WHERE id = ?1")?
            .execute([id])?;
    }
    Ok(u64::try_from(freed).unwrap_or(u64::MAX))
}
