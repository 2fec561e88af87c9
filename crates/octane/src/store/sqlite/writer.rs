//! The single writer thread and its group commit.
//!
//! One thread owns the only write connection. Callers send it jobs; the
//! thread takes every job already queued (up to [`MAX_GROUP`]), runs each in
//! its own `SAVEPOINT` inside one transaction (a lone job needs none),
//! commits once — one fsync for the whole group — and only then answers each
//! caller. A lone job is never
//! held back waiting for company: the group is whatever has queued up while
//! the previous commit was in flight, so batching grows with load.
//!
//! A job that fails rolls back to its savepoint and fails alone; the others
//! in the group still commit. If the `COMMIT` itself fails every job in the
//! group is told so, and none of them knows more than that the outcome is
//! unknown: callers drop their in-memory state and re-read the database.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// The most jobs one transaction takes.
const MAX_GROUP: usize = 512;

type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A job runs against the connection (or learns why it cannot) and says
/// whether it succeeded, with the reply to send once the commit is known.
type Job = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> (bool, Reply) + Send>;

/// Handle to the writer thread; cloning shares the thread.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn spawn(conn: Connection) -> Writer {
        let (jobs, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("octane-sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawn the sqlite writer thread");
        Writer { jobs }
    }

    /// Runs `f` in the next group commit and returns its result once the
    /// group is durable.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the job: it may still commit.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            match conn
                .map_err(|e| StoreError::Commit(e.to_string()))
                .and_then(f)
            {
                Ok(v) => (
                    true,
                    Box::new(move |commit_error: Option<&StoreError>| {
                        let _ = tx.send(match commit_error {
                            None => Ok(v),
                            Some(e) => Err(StoreError::Commit(e.to_string())),
                        });
                    }),
                ),
                Err(e) => (
                    false,
                    Box::new(move |_: Option<&StoreError>| {
                        let _ = tx.send(Err(e));
                    }),
                ),
            }
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// How long the writer keeps looking for the next job before it sleeps.
const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// The next job: a caller that answers a commit with the next one (a loop)
/// usually does so within microseconds, and finding its job while still
/// awake spares the futex wake-up of a sleeping thread.
fn next_job(rx: &mpsc::Receiver<Job>) -> Option<Job> {
    let started = std::time::Instant::now();
    while started.elapsed() < LINGER {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Disconnected) => return None,
        }
    }
    rx.recv().ok()
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Some(first) = next_job(&rx) {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let size = group.len();
        if let Err(e) = execute(&conn, "BEGIN IMMEDIATE") {
            // The jobs never ran; tell each caller.
            for job in group {
                let (_, reply) = job(Err(&e));
                reply(Some(&e));
            }
            continue;
        }
        let replies = if size == 1 {
            run_alone(&conn, group.pop().expect("one job"))
        } else {
            run_group(&conn, group)
        };
        let Some(replies) = replies else {
            continue;
        };
        let outcome = execute(&conn, "COMMIT");
        if outcome.is_err() {
            let _ = execute(&conn, "ROLLBACK");
        }
        metrics::histogram!("octane_sqlite_group_size").record(size as f64);
        for reply in replies {
            reply(outcome.as_ref().err());
        }
    }
}

/// Runs one statement from the connection's statement cache: the group's
/// control statements run for every commit, so they are parsed once.
fn execute(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// A lone job needs no savepoint: if it fails, the whole transaction is
/// rolled back (and `None` says there is nothing left to commit).
fn run_alone(conn: &Connection, job: Job) -> Option<Vec<Reply>> {
    let (ok, reply) = job(Ok(conn));
    if ok {
        return Some(vec![reply]);
    }
    let rollback = execute(conn, "ROLLBACK");
    reply(rollback.as_ref().err());
    None
}

/// Each job in its own savepoint, so that a failing job fails alone.
fn run_group(conn: &Connection, group: Vec<Job>) -> Option<Vec<Reply>> {
    let mut replies = Vec::with_capacity(group.len());
    for job in group {
        if let Err(e) = execute(conn, "SAVEPOINT job") {
            let (_, reply) = job(Err(&e));
            reply(Some(&e));
            continue;
        }
        let (ok, reply) = job(Ok(conn));
        let end = if ok {
            execute(conn, "RELEASE job")
        } else {
            execute(conn, "ROLLBACK TO job").and_then(|()| execute(conn, "RELEASE job"))
        };
        if let Err(e) = end {
            reply(Some(&e));
            continue;
        }
        replies.push(reply);
    }
    Some(replies)
}
