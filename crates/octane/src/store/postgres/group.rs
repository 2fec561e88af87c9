//! Group commit: commits of history writes alone, from any workflows of
//! this process, share one transaction.
//!
//! A commit that only writes history (an activity's result, a checkpoint)
//! needs no answer from the server before its last statement, so a whole
//! group goes out as one round trip: `BEGIN`, then each job's fence and
//! writes, then `COMMIT` — one transaction, one WAL flush. At most
//! [`IN_FLIGHT`] groups run at once; a commit that finds a slot free starts
//! at once, alone (a lone commit is never held back), and commits that
//! queue while every slot is busy form the next group. Batching therefore
//! grows with load.
//!
//! Each job is fenced on its own. When one fails (its lease was lost, the
//! database refused a value), the server has aborted the transaction, so
//! nothing of the group landed: that job is told its error, and the others
//! go again, without it, in a fresh transaction. None is ever told of a
//! success or a failure that is not its own. (Going again is safe even if
//! the transaction had committed: history writes are upserts and range
//! deletes, the same twice as once.) When the connection breaks, every job
//! is told its outcome is unknown.
//!
//! A group locks its workflows' rows in id order (its jobs are sorted by
//! workflow id), the order every transaction locking several rows keeps
//! (see `leases`): two groups, or a group and a lease renewal, never wait
//! for each other in a cycle.

use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{history, leases, Open};
use crate::store::{Batch, Cause, Lease, StoreError};

/// Groups in flight at once: enough to overlap one group's round trip and
/// WAL flush with the next, few enough that commits queue up into groups.
pub(super) const IN_FLIGHT: usize = 2;

/// The most jobs one group takes.
const MAX_JOBS: usize = 64;

struct Job {
    lease: Lease,
    batch: Batch,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The queue of history-only commits; dropping it stops its task once the
/// queued jobs are done.
pub(super) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupCommit {
    /// Starts the task that forms groups and commits them on `pool`;
    /// `notify`: whether transactions may send notifications.
    pub(super) fn spawn(pool: Pool, notify: bool) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(form_groups(pool, notify, queue));
        GroupCommit { jobs }
    }

    /// Commits `batch` (history writes only) under `lease` in the next
    /// group, and returns once that group is durable.
    pub(super) async fn commit(&self, lease: &Lease, batch: Batch) -> Result<(), StoreError> {
        let (done, outcome) = oneshot::channel();
        self.jobs
            .send(Job {
                lease: lease.clone(),
                batch,
                done,
            })
            .map_err(|_| StoreError::Closed)?;
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::OutcomeUnknown(Cause::msg(
                "the group commit task stopped during the commit",
            )))
        })
    }
}

/// Takes the first queued job, waits for a free slot (while more queue),
/// and commits everything queued by then as one group.
async fn form_groups(pool: Pool, notify: bool, mut queue: mpsc::UnboundedReceiver<Job>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            commit_group(&pool, notify, jobs).await;
            drop(slot);
        });
    }
}

/// Commits `jobs` in one transaction, taking out and answering each job
/// that fails, until the rest commit (or the connection fails them all).
async fn commit_group(pool: &Pool, notify: bool, mut jobs: Vec<Job>) {
    jobs.sort_by_key(|j| j.lease.workflow_id.to_string());
    metrics::histogram!("octane_postgres_group_size").record(jobs.len() as f64);
    loop {
        // A caller that gave up (its run is gone) is not committed for.
        jobs.retain(|j| !j.done.is_closed());
        if jobs.is_empty() {
            return;
        }
        match try_group(pool, notify, &jobs).await {
            Outcome::Committed => {
                for job in jobs {
                    let _ = job.done.send(Ok(()));
                }
                return;
            }
            Outcome::JobFailed(i, e) => {
                let _ = jobs.remove(i).done.send(Err(e));
            }
            Outcome::GroupFailed(e) => {
                for job in jobs {
                    let _ = job.done.send(Err(e.clone()));
                }
                return;
            }
        }
    }
}

enum Outcome {
    Committed,
    /// The job at this index failed on its own; the transaction did not
    /// commit (or did, and going again changes nothing).
    JobFailed(usize, StoreError),
    /// Every job is told this.
    GroupFailed(StoreError),
}

/// One try at committing `jobs` together, in one round trip.
async fn try_group(pool: &Pool, notify: bool, jobs: &[Job]) -> Outcome {
    let open = match pool.get().await {
        Ok(client) => Open::new(client),
        Err(e) => return Outcome::GroupFailed(e.into()),
    };
    let tx = open.tx(notify);
    // Every statement is prepared before any is sent, so that the first
    // poll of each job's writes sends them, in job order (see
    // `history::apply`).
    let fence = match tx.prepare_cached(leases::FENCE).await {
        Ok(stmt) => stmt,
        Err(e) => return Outcome::GroupFailed(e.into()),
    };
    if let Err(e) = history::prepare(&tx).await {
        return Outcome::GroupFailed(e);
    }
    let mut pipeline: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
    pipeline.push(async { Ok(tx.batch_execute("BEGIN").await?) }.boxed());
    for job in jobs {
        let rows = leases::LockSet {
            id: job.lease.workflow_id.to_string(),
            others: Vec::new(),
            with_waiters: false,
            stmt: &fence,
        };
        let fenced = leases::fence(&tx, rows, &job.lease).boxed();
        pipeline.push(
            history::apply(
                &tx,
                fenced,
                job.lease.workflow_id,
                &job.batch.ops,
                job.batch.now,
                None,
            )
            .boxed(),
        );
    }
    pipeline.push(
        async {
            tx.batch_execute("COMMIT")
                .await
                .map_err(|e| StoreError::from(e).during_commit())
        }
        .boxed(),
    );
    let mut results = futures::future::join_all(pipeline).await;
    let commit = results.pop().expect("the COMMIT's result");
    let begin = results.remove(0);
    let failed = results
        .into_iter()
        .enumerate()
        .find_map(|(i, r)| r.err().map(|e| (i, e)));
    match (begin, failed, commit) {
        (Err(e), _, _) => Outcome::GroupFailed(e.during_commit()),
        // A broken connection: the `COMMIT` was sent, and may have landed.
        (Ok(()), Some((_, e @ StoreError::Unavailable(_))), _) => {
            Outcome::GroupFailed(e.during_commit())
        }
        (Ok(()), Some((i, e)), _) => Outcome::JobFailed(i, e),
        (Ok(()), None, Err(e)) => Outcome::GroupFailed(e),
        (Ok(()), None, Ok(())) => {
            open.done();
            Outcome::Committed
        }
    }
}
