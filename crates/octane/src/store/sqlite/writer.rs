//! The single writer thread and its group commit.
//!
//! One thread owns the only write connection. Callers send it jobs; the
//! thread takes every job already queued (up to [`MAX_GROUP`]), runs each in
//! its own `SAVEPOINT` inside one transaction, commits once — one fsync for
//! the whole group — and only then answers each caller. A lone job is never
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

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let size = group.len();
        let replies = match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => run_group(&conn, group),
            Err(e) => {
                let e = StoreError::from(e);
                // The jobs never ran; tell each caller.
                for job in group {
                    let (_, reply) = job(Err(&e));
                    reply(Some(&e));
                }
                continue;
            }
        };
        let outcome = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if outcome.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        metrics::histogram!("octane_sqlite_group_size").record(size as f64);
        for reply in replies {
            reply(outcome.as_ref().err());
        }
    }
}

fn run_group(conn: &Connection, group: Vec<Job>) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(group.len());
    for job in group {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            let e = StoreError::from(e);
            let (_, reply) = job(Err(&e));
            reply(Some(&e));
            continue;
        }
        let (ok, reply) = job(Ok(conn));
        let end = if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute_batch(end) {
            let e = StoreError::from(e);
            reply(Some(&e));
            continue;
        }
        replies.push(reply);
    }
    replies
}
