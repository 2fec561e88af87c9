//! Group commit: commits that need no answer from the server before their
//! last statement, from any workflows of this process, share one
//! transaction.
//!
//! Those are history writes (an activity's result, a checkpoint), alone or
//! with the workflow's completion or failure, and new workflows without a
//! dispatch key (a keyed one reads the key's holder first, and goes
//! alone). A whole group goes out as one round trip: `BEGIN`, the group's
//! lock (when a job finishes its workflow), then each job's fence, writes
//! and transition or its new workflow, then `COMMIT` — one transaction, one
//! WAL flush. A group of one that only writes and deletes events is a
//! single statement, committing on its own (`history::OneStatement`). At
//! most [`IN_FLIGHT`] groups run at once; a job that finds a slot free
//! starts at once, alone, in the caller's task (a lone commit is never held
//! back), and jobs that queue while every slot is busy form the next group.
//! Batching therefore grows with load.
//!
//! Each commit is fenced on its own. When a job fails (its lease was lost,
//! the database refused a value), the server has aborted the transaction,
//! so nothing of the group landed: that job is told its error, and the
//! others go again, without it, in a fresh transaction. None is ever told
//! of a success or a failure that is not its own. (Going again is safe even
//! if the transaction had committed: the writes are upserts, range deletes
//! and a transition the fence refuses a second time, and a new workflow's
//! insert fails on its id rather than storing it twice.) When the
//! connection breaks, every job is told its outcome is unknown.
//!
//! A group locks rows in id order, the order every transaction locking
//! several rows keeps (see `leases`): its jobs are sorted by workflow id,
//! and a group in which a workflow finishes first locks, in one statement,
//! every job's row and the rows of the workflows waiting on the finishing
//! ones (which it wakes). Two groups, or a group and a lease renewal, never
//! wait for each other in a cycle.

use std::future::Future;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::announce::Announcer;
use super::{history, leases, workflows, Open, BEGIN_GENERIC};
use crate::store::{Batch, Cause, Lease, NewWorkflow, StoreError, WorkflowId};

/// Groups in flight at once: enough to overlap one group's round trip and
/// WAL flush with the next, few enough that commits queue up into groups.
pub(super) const IN_FLIGHT: usize = 2;

/// The most jobs one group takes.
const MAX_JOBS: usize = 64;

/// What a job commits.
enum Work {
    /// History writes and a transition, fenced on the lease.
    Commit { lease: Lease, batch: Batch },
    /// A new workflow without a dispatch key.
    Create(NewWorkflow),
}

struct Job {
    work: Work,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl Job {
    /// The workflow it writes, by which a group orders its jobs.
    fn workflow_id(&self) -> WorkflowId {
        match &self.work {
            Work::Commit { lease, .. } => lease.workflow_id,
            Work::Create(wf) => wf.id,
        }
    }
}

/// The queue of grouped jobs (commits and dispatches); dropping it stops
/// its task once the queued jobs are done.
pub(super) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
    slots: Arc<Semaphore>,
    pool: Pool,
    announcer: Option<Arc<Announcer>>,
}

impl GroupCommit {
    /// Starts the task that forms groups and commits them on `pool`;
    /// `announcer` announces the workflows they make runnable.
    pub(super) fn spawn(pool: Pool, announcer: Option<Arc<Announcer>>) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(form_groups(
            pool.clone(),
            announcer.clone(),
            slots.clone(),
            queue,
        ));
        GroupCommit {
            jobs,
            slots,
            pool,
            announcer,
        }
    }

    /// Commits `batch` under `lease` in the next group, and returns once
    /// that group is durable (see [`GroupCommit::submit`]).
    pub(super) async fn commit(&self, lease: &Lease, batch: Batch) -> Result<(), StoreError> {
        self.submit(Work::Commit {
            lease: lease.clone(),
            batch,
        })
        .await
    }

    /// Inserts `workflow`, which has no dispatch key, in the next group, and
    /// returns once that group is durable.
    pub(super) async fn create(&self, workflow: NewWorkflow) -> Result<(), StoreError> {
        debug_assert!(workflow.key.is_none(), "a keyed dispatch goes alone");
        self.submit(Work::Create(workflow)).await
    }

    /// With a slot free, `work` is a group of its own, committed by the
    /// caller (no task in between); otherwise it queues for the next group.
    /// (A freed slot goes to the group forming first: the semaphore serves
    /// waiters before `try_acquire`.)
    async fn submit(&self, work: Work) -> Result<(), StoreError> {
        let (done, outcome) = oneshot::channel();
        let job = Job { work, done };
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                commit_group(&self.pool, self.announcer.as_deref(), vec![job]).await;
                drop(slot);
            }
            Err(_) => self.jobs.send(job).map_err(|_| StoreError::Closed)?,
        }
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::OutcomeUnknown(Cause::msg(
                "the group commit task stopped during the commit",
            )))
        })
    }
}

/// Takes the first queued job, waits for a free slot (while more queue),
/// and commits everything queued by then as one group.
async fn form_groups(
    pool: Pool,
    announcer: Option<Arc<Announcer>>,
    slots: Arc<Semaphore>,
    mut queue: mpsc::UnboundedReceiver<Job>,
) {
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
        let (pool, announcer) = (pool.clone(), announcer.clone());
        tokio::spawn(async move {
            commit_group(&pool, announcer.as_deref(), jobs).await;
            drop(slot);
        });
    }
}

/// Commits `jobs` in one transaction, taking out and answering each job
/// that fails, until the rest commit (or the connection fails them all).
async fn commit_group(pool: &Pool, announcer: Option<&Announcer>, mut jobs: Vec<Job>) {
    jobs.sort_by_key(|j| j.workflow_id().to_string());
    metrics::histogram!("octane_postgres_group_size").record(jobs.len() as f64);
    loop {
        // A caller that gave up (its run is gone) is not committed for.
        jobs.retain(|j| !j.done.is_closed());
        if jobs.is_empty() {
            return;
        }
        match try_group(pool, announcer, &jobs).await {
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

/// Locks the rows of a group with finishing jobs: every job's workflow and
/// every workflow waiting on a finishing one (`$2`), in id order, before
/// any job's writes.
const LOCK_GROUP: &str = "SELECT 1 FROM workflows
     WHERE id = ANY($1::text[] || ARRAY(SELECT id FROM workflows WHERE waiting_child = ANY($2)))
     ORDER BY id FOR UPDATE";

/// One try at committing `jobs` together, in one round trip.
async fn try_group(pool: &Pool, announcer: Option<&Announcer>, jobs: &[Job]) -> Outcome {
    let mut finishes = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let finish = match &job.work {
            Work::Commit { lease, batch } => {
                workflows::Finish::of(lease.workflow_id, &batch.transition, batch.now)
            }
            Work::Create(_) => Ok(None),
        };
        match finish {
            Ok(finish) => finishes.push(finish),
            Err(e) => return Outcome::JobFailed(i, e),
        }
    }
    // A lone commit that only writes and deletes events is one statement.
    let alone = match (jobs, finishes.as_slice()) {
        (
            [Job {
                work: Work::Commit { lease, batch },
                ..
            }],
            [None],
        ) => match history::OneStatement::of(&batch.ops) {
            Ok(one) => one.map(|one| (lease, batch, one)),
            Err(e) => return Outcome::JobFailed(0, e),
        },
        _ => None,
    };
    let open = match pool.get().await {
        Ok(client) => Open::new(client),
        Err(e) => return Outcome::GroupFailed(e.into()),
    };
    if let Some((lease, batch, one)) = alone {
        return match one.send(&open.tx(false), lease, batch.now).await {
            // A broken connection: the statement was sent, and may have landed.
            Err(e @ StoreError::Unavailable(_)) => Outcome::GroupFailed(e.during_commit()),
            outcome => {
                // Outside a transaction: the connection is free either way.
                open.done();
                match outcome {
                    Ok(()) => Outcome::Committed,
                    Err(e) => Outcome::JobFailed(0, e),
                }
            }
        };
    }
    let tx = open.tx(announcer.is_some());
    // Every statement is prepared before any is sent, so that the first
    // poll of each sends it, in order (see `history::apply`).
    let prepared = async {
        let fence = tx.prepare_cached(leases::FENCE).await?;
        let lock = tx.prepare_cached(LOCK_GROUP).await?;
        let insert = tx.prepare_cached(workflows::INSERT_SQL).await?;
        history::prepare(&tx).await?;
        let mut finishing = Vec::with_capacity(jobs.len());
        for finish in &finishes {
            finishing.push(match finish {
                Some(f) => Some(f.prepare(&tx).await?),
                None => None,
            });
        }
        Ok::<_, StoreError>((fence, lock, insert, finishing))
    };
    let (fence, lock, insert, finishing) = match prepared.await {
        Ok(p) => p,
        Err(e) => return Outcome::GroupFailed(e),
    };
    let ids: Vec<String> = jobs.iter().map(|j| j.workflow_id().to_string()).collect();
    let finishing_ids: Vec<String> = ids
        .iter()
        .zip(&finishes)
        .filter(|(_, f)| f.is_some())
        .map(|(id, _)| id.clone())
        .collect();

    // Each statement with the job it belongs to (`None`: the group's own).
    let mut pipeline: Vec<(Option<usize>, Statement<'_>)> = Vec::new();
    pipeline.push((
        None,
        unit(async { Ok(tx.batch_execute(BEGIN_GENERIC).await?) }),
    ));
    if !finishing_ids.is_empty() {
        let (tx, ids, finishing_ids, lock) = (&tx, &ids, &finishing_ids, &lock);
        pipeline.push((
            None,
            unit(
                async move {
                    tx.execute(lock, &[ids, finishing_ids]).await?;
                    Ok(())
                }
                .boxed(),
            ),
        ));
    }
    for (i, job) in jobs.iter().enumerate() {
        let (lease, batch) = match &job.work {
            Work::Commit { lease, batch } => (lease, batch),
            Work::Create(wf) => match workflows::insert(&tx, &insert, wf) {
                Ok(inserted) => {
                    pipeline.push((Some(i), unit(inserted.map_ok(|_| ()))));
                    continue;
                }
                Err(e) => return Outcome::JobFailed(i, e),
            },
        };
        let rows = leases::LockSet {
            id: ids[i].clone(),
            others: Vec::new(),
            with_waiters: false,
            stmt: &fence,
        };
        let fenced = leases::fence(&tx, rows, lease).boxed();
        let writes = history::apply(&tx, fenced, lease.workflow_id, &batch.ops, batch.now);
        pipeline.push((Some(i), unit(writes)));
        if let (Some(finish), Some(stmts)) = (&finishes[i], &finishing[i]) {
            for statement in finish.send(&tx, stmts) {
                pipeline.push((Some(i), statement));
            }
        }
    }
    pipeline.push((
        None,
        unit(
            async {
                tx.batch_execute("COMMIT")
                    .await
                    .map_err(|e| StoreError::from(e).during_commit())
            }
            .boxed(),
        ),
    ));
    let (owners, statements): (Vec<_>, Vec<_>) = pipeline.into_iter().unzip();
    let results = futures::future::join_all(statements).await;
    let mut woken = Vec::new();
    let mut failed = None;
    for (owner, result) in owners.into_iter().zip(results) {
        match result {
            Ok(names) => woken.extend(names),
            Err(e) => {
                failed.get_or_insert((owner, e));
            }
        }
    }
    match failed {
        None => {
            // Finishes report whom they woke; inserts note their names.
            woken.extend(open.done());
            if let Some(announcer) = announcer {
                announcer.runnable(woken);
            }
            Outcome::Committed
        }
        // `BEGIN`, the group's lock or `COMMIT`: nothing to blame a job for.
        Some((None, e)) => Outcome::GroupFailed(e.during_commit()),
        // A broken connection: the `COMMIT` was sent, and may have landed.
        Some((Some(_), e @ StoreError::Unavailable(_))) => Outcome::GroupFailed(e.during_commit()),
        Some((Some(i), e)) => Outcome::JobFailed(i, e),
    }
}

/// A statement of the pipeline, sent on its first poll; it returns the
/// names of the workflows it made runnable.
type Statement<'f> = BoxFuture<'f, Result<Vec<String>, StoreError>>;

/// A statement that returns nothing, as a pipeline entry.
fn unit<'f>(f: impl Future<Output = Result<(), StoreError>> + Send + 'f) -> Statement<'f> {
    f.map_ok(|()| Vec::new()).boxed()
}
