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
//! in the group still commit. A job that panics fails the same way (the
//! thread lives on). SQLite may roll back the whole transaction on some
//! errors (a full disk, an I/O error): then the jobs already run are undone
//! with it, so they and the jobs not yet run are told that nothing was
//! written — none of them is ever told of a success that did not happen.
//! If the `COMMIT` itself fails every job in the group is told so, and none
//! of them knows more than that the outcome is unknown: callers drop their
//! in-memory state and re-read the database.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::{Cause, StoreError};

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
            let outcome = conn.map_err(StoreError::clone).and_then(|conn| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).unwrap_or_else(
                    |_| {
                        Err(StoreError::OutcomeUnknown(Cause::msg(
                            "a write job panicked; it was rolled back",
                        )))
                    },
                )
            });
            match outcome {
                Ok(v) => (
                    true,
                    Box::new(move |commit_error: Option<&StoreError>| {
                        let _ = tx.send(match commit_error {
                            None => Ok(v),
                            Some(e) => Err(e.clone()),
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
        let outcome = execute(&conn, "COMMIT").map_err(StoreError::during_commit);
        if outcome.is_err() && !conn.is_autocommit() {
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
    if ok && !conn.is_autocommit() {
        return Some(vec![reply]);
    }
    if !conn.is_autocommit() {
        let _ = execute(conn, "ROLLBACK");
    }
    reply(Some(&StoreError::Unavailable(Cause::msg(
        "the transaction was rolled back by the database",
    ))));
    None
}

/// Each job in its own savepoint, so that a failing job fails alone — unless
/// its failure took the whole transaction with it.
fn run_group(conn: &Connection, group: Vec<Job>) -> Option<Vec<Reply>> {
    let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
    let mut jobs = group.into_iter();
    while let Some(job) = jobs.next() {
        if let Err(e) = execute(conn, "SAVEPOINT job") {
            let (_, reply) = job(Err(&e));
            reply(Some(&e));
            continue;
        }
        let (ok, reply) = job(Ok(conn));
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back: a `RELEASE` now
            // would start committing each later job on its own.
            let undone = StoreError::Unavailable(Cause::msg(
                "the group's transaction was rolled back by the database",
            ));
            reply(Some(&undone));
            for reply in replies {
                reply(Some(&undone));
            }
            for job in jobs {
                let (_, reply) = job(Err(&undone));
                reply(Some(&undone));
            }
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    type TestJob = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        (dir, Writer::spawn(conn))
    }

    fn insert(x: i64) -> impl FnOnce(&Connection) -> Result<(), StoreError> + Send {
        move |c| {
            c.execute("INSERT INTO t VALUES (?1)", [x])?;
            Ok(())
        }
    }

    async fn rows(w: &Writer) -> Vec<i64> {
        w.write(|c| {
            let mut stmt = c.prepare("SELECT x FROM t ORDER BY x")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
        .await
        .unwrap()
    }

    /// Queues `jobs` behind a slow job the writer is already running, so
    /// that they form one group.
    async fn grouped<F>(w: &Writer, jobs: Vec<F>) -> Vec<Result<(), StoreError>>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    {
        let (started, running) = oneshot::channel();
        let slow = tokio::spawn({
            let w = w.clone();
            async move {
                w.write(move |_| {
                    let _ = started.send(());
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    Ok(())
                })
                .await
            }
        });
        running.await.unwrap();
        let out = futures::future::join_all(jobs.into_iter().map(|job| w.write(job))).await;
        slow.await.unwrap().unwrap();
        out
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_writer_lives_on() {
        let (_dir, w) = writer();
        let boxed = |f: TestJob| f;
        let out = grouped(
            &w,
            vec![
                boxed(Box::new(insert(1))),
                boxed(Box::new(|_| panic!("a bug in a job"))),
                boxed(Box::new(insert(3))),
            ],
        )
        .await;
        assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
        assert!(
            matches!(out[1], Err(StoreError::OutcomeUnknown(_))),
            "{out:?}"
        );
        let alone = w
            .write(|_| -> Result<(), StoreError> { panic!("alone") })
            .await;
        assert!(alone.is_err());
        w.write(insert(4)).await.unwrap();
        assert_eq!(rows(&w).await, [1, 3, 4]);
    }

    #[tokio::test]
    async fn a_job_that_loses_the_whole_transaction_takes_no_one_down_with_a_lie() {
        let (_dir, w) = writer();
        let boxed = |f: TestJob| f;
        // What SQLite does on some errors (a full disk, an I/O error): the
        // whole transaction is rolled back, not just the statement.
        let rolls_back = |c: &Connection| -> Result<(), StoreError> {
            c.execute_batch("ROLLBACK")?;
            Err(StoreError::Unavailable(Cause::msg("disk full")))
        };
        let out = grouped(
            &w,
            vec![
                boxed(Box::new(insert(1))),
                boxed(Box::new(rolls_back)),
                boxed(Box::new(insert(3))),
            ],
        )
        .await;
        let landed = rows(&w).await;
        for (i, r) in out.iter().enumerate() {
            let x = [1, 2, 3][i];
            assert_eq!(
                r.is_ok(),
                landed.contains(&x),
                "job {x} reported {r:?} but the table holds {landed:?}"
            );
        }
        assert!(landed.is_empty(), "{landed:?}");
        w.write(insert(4)).await.unwrap();
        assert_eq!(rows(&w).await, [4]);
    }
}
