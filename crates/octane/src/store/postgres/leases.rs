//! Claiming runnable workflows, renewing leases, and fencing writes.
//!
//! # Whose clock
//! A lease's expiry is measured on the database's clock (`now()`, the
//! transaction's start), never a worker's: workers on machines whose clocks
//! disagree then agree on which leases have run out. Workers still send
//! their own time for what is workflow time (wake-ups, `updated_at`).
//!
//! # Lock order
//! A transaction that locks several workflow rows takes them in id order,
//! in one statement ([`LOCK_ROWS`]), before it writes: a commit (its own
//! row, the workflows it signals, the workflows waiting on it that it
//! wakes, the workflow it goes to sleep on), a renewal, a cancel. Two such
//! transactions then never wait for each other in a cycle, which Postgres
//! would break by aborting one (a deadlock).
//!
//! # Waiting on a workflow
//! A workflow going to sleep until another finishes locks that one's row
//! while it checks its state, and a finishing workflow holds its own row
//! locked while it wakes its waiters. The two therefore serialize on the
//! finishing workflow's row: either the sleeper sees it finished, or the
//! finisher's wake-up (a later statement, a later snapshot) sees the
//! sleeper waiting. No wake-up is lost, whichever workflow started the
//! one waited on.

use super::Tx;
use tokio_postgres::Statement;

use super::lifecycle::update;
use crate::store::codec::parse_id;
use crate::store::lifecycle::{self, Values};
use crate::store::{
    ClaimRequest, Claimed, ClaimedWorkflow, FailureCode, Lease, StoreError, Transition, WorkflowId,
};

/// The database's clock in ms since the epoch: the time leases expire by.
pub(super) const DB_NOW: &str = "(EXTRACT(EPOCH FROM now()) * 1000)::bigint";

/// The claim: `$1` owner, `$2` the lease term (ms), `$3` now (the worker's:
/// wake-ups are workflow time), `$4` limit, `$5` the registered names. Its
/// predicate matches the partial index `workflows_runnable`, so it reads
/// only unfinished workflows however many finished ones the database holds.
///
/// A running workflow's `wake_at` is when its lease runs out, on the
/// claiming worker's clock (renewals move it on): when it is due again
/// should its worker vanish. The index range `wake_at <= now` then ends
/// before the workflows running under live leases, instead of reading
/// every one of them (they would sort first, by the time they were
/// claimed) at every claim. Whether a lease has really run out is still
/// decided by `lease_expires`, on the database's clock.
pub(super) fn claim_sql() -> String {
    // Per name, a scan of the index in `wake_at` order that stops after
    // `$4` rows: with `name = ANY($5)` the planner reads every due row of
    // the names and sorts them (10,000 rows at every claim of a fan-out).
    // Updated by id (`= ANY`, primary-key lookups), not `IN (subquery)`,
    // which may be planned as a scan of the table.
    format!(
        "UPDATE workflows
         SET state = 'running', lease_owner = $1, lease_epoch = lease_epoch + 1,
             lease_expires = {DB_NOW} + $2, wake_at = $3 + $2, updated_at = $3,
             listening = NULL, waiting_child = NULL
         WHERE id = ANY(ARRAY(
             SELECT due.id FROM unnest($5::text[]) AS n (name)
             CROSS JOIN LATERAL (
                 SELECT id, wake_at FROM workflows
                 WHERE state IN ('pending', 'running', 'sleeping') AND name = n.name
                   AND wake_at <= $3 AND (lease_expires IS NULL OR lease_expires <= {DB_NOW})
                 ORDER BY wake_at LIMIT $4
                 FOR UPDATE SKIP LOCKED) AS due
             ORDER BY due.wake_at LIMIT $4))
         RETURNING id, name, input, lease_epoch"
    )
}

/// The earliest wake-up among waiting workflows of the names `$1`: per
/// name, the first entry of the index (a `MIN` over `name = ANY` reads
/// every waiting workflow of the names).
pub(super) const NEXT_WAKE_SQL: &str = "SELECT MIN(first.wake_at)
     FROM unnest($1::text[]) AS n (name)
     CROSS JOIN LATERAL (
         SELECT wake_at FROM workflows
         WHERE state IN ('pending', 'sleeping') AND name = n.name
         ORDER BY wake_at LIMIT 1) AS first";

/// Leases up to `limit` runnable workflows and reports the next deadline.
/// `SKIP LOCKED` lets many workers claim at once without waiting on each
/// other's rows.
pub(super) async fn claim(tx: &Tx<'_>, req: &ClaimRequest) -> Result<Claimed, StoreError> {
    if req.names.is_empty() {
        return Ok(Claimed::default());
    }
    let owner = req.owner.to_string();
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    let term = req.expires_at - req.now;
    let stmt = tx.prepare_cached(&claim_sql()).await?;
    // Run in a transaction of generic plans (`BEGIN_GENERIC`): the plan is
    // the same for any values, an index scan per name that stops at the
    // limit.
    let rows = tx
        .query(&stmt, &[&owner, &term, &req.now, &limit, &req.names])
        .await?;
    let mut workflows = Vec::with_capacity(rows.len());
    for row in rows {
        // Each row is decoded on its own: one that does not decode is
        // parked, and the claim goes on for the others.
        let id: String = row.try_get(0)?;
        let claimed = (|| -> Result<ClaimedWorkflow, StoreError> {
            Ok(ClaimedWorkflow {
                lease: Lease {
                    workflow_id: parse_id(&id)?,
                    owner: req.owner,
                    epoch: row.try_get(3)?,
                },
                name: row.try_get(1)?,
                input: row.try_get(2)?,
            })
        })();
        match claimed {
            Ok(c) => workflows.push(c),
            Err(e) => {
                tracing::error!(id, error = %e, "a workflow row does not decode; parking it");
                let park = Transition::Park {
                    error: format!("the workflow's row does not decode: {e}"),
                    code: FailureCode::CorruptRow,
                };
                let change = lifecycle::of_transition(&park).expect("parking changes the row");
                let values = Values::of_transition(&park, req.now)?;
                update(tx, &change, &values, "id = $1", &[&id]).await?;
            }
        }
    }
    let next = tx.prepare_cached(NEXT_WAKE_SQL).await?;
    let next_wake_at: Option<i64> = tx.query_one(&next, &[&req.names]).await?.try_get(0)?;
    Ok(Claimed {
        workflows,
        next_wake_at,
    })
}

/// The rows a [`LockSet`] locks, in id order: `$1` ids, and with `$3` also
/// the workflows asleep until `$2` finishes (a macro, so that both
/// statements below are one literal each).
macro_rules! locked_rows {
    () => {
        "SELECT id, lease_owner, lease_epoch, state FROM workflows
         WHERE id = ANY($1::text[] || ARRAY(
             SELECT id FROM workflows WHERE $3 AND waiting_child = $2))
         ORDER BY id FOR UPDATE"
    };
}

/// Locks workflow rows in id order (see `locked_rows`). Returns each
/// locked row's id, lease and state, for the fence.
pub(super) const LOCK_ROWS: &str = locked_rows!();

/// The rows a transaction about `id` locks: its own, `others`, and its
/// waiters' (the workflows asleep until it finishes) when `with_waiters`.
pub(super) struct LockSet<'a> {
    pub id: String,
    pub others: Vec<String>,
    pub with_waiters: bool,
    pub stmt: &'a Statement,
}

impl LockSet<'_> {
    /// `$1`: every id named.
    fn ids(&self) -> Vec<String> {
        let mut ids = self.others.clone();
        ids.push(self.id.clone());
        ids
    }

    /// Locks the set in id order; returns the state of `id`'s row, if it
    /// exists, with its lease owner and epoch.
    pub(super) async fn lock(
        &self,
        tx: &Tx<'_>,
    ) -> Result<Option<(Option<String>, i64, String)>, StoreError> {
        let rows = tx
            .query(self.stmt, &[&self.ids(), &self.id, &self.with_waiters])
            .await?;
        for row in rows {
            if row.try_get::<_, String>(0)? == self.id {
                return Ok(Some((row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)));
            }
        }
        Ok(None)
    }
}

/// The fence of a commit: locks its rows as [`LOCK_ROWS`] does (`$1`-`$3`)
/// and fails, in SQL, unless `$2`'s lease is still `$4`'s at epoch `$5` —
/// so the server aborts the transaction itself, and statements sent behind
/// the fence without waiting for its answer (a `COMMIT` among them) cannot
/// land. The failure is a cast error whose text says `lease lost`: plain
/// SQL, no stored procedure. The cast reads a column (`MIN(id)`), so the
/// planner cannot fold it into an error of every execution.
pub(super) const FENCE: &str = concat!(
    "SELECT CASE
         WHEN bool_or(id = $2 AND lease_owner = $4 AND lease_epoch = $5 AND state = 'running')
         THEN 1
         ELSE CAST('lease lost: ' || COALESCE(MIN(id), $2) AS integer) END
     FROM (",
    locked_rows!(),
    ") AS locked"
);

/// Locks the rows a commit under `lease` touches (see [`LockSet`]; `stmt`
/// is [`FENCE`]) and checks that the lease is current, failing the
/// transaction on the server if not: the row stays locked until the
/// transaction ends, so no claim can take the workflow over between this
/// check and the writes that follow (fencing).
pub(super) async fn fence(tx: &Tx<'_>, rows: LockSet<'_>, lease: &Lease) -> Result<(), StoreError> {
    let checked = tx
        .query_one(
            rows.stmt,
            &[
                &rows.ids(),
                &rows.id,
                &rows.with_waiters,
                &lease.owner.to_string(),
                &lease.epoch,
            ],
        )
        .await;
    checked.map(drop).map_err(|e| fence_error(e, lease))
}

/// The error of a statement carrying [`FENCE`]: a lost lease when the
/// fence failed it.
pub(super) fn fence_error(e: tokio_postgres::Error, lease: &Lease) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION)
        && e.as_db_error()
            .is_some_and(|d| d.message().contains("lease lost"))
    {
        StoreError::LeaseLost {
            workflow_id: lease.workflow_id,
        }
    } else {
        e.into()
    }
}

/// Extends leases by `term` ms from the database's clock; returns those
/// that were lost. The rows are locked in id order first.
pub(super) async fn renew(
    tx: &Tx<'_>,
    leases: &[Lease],
    now: i64,
    term: i64,
) -> Result<Vec<WorkflowId>, StoreError> {
    let ids: Vec<String> = leases.iter().map(|l| l.workflow_id.to_string()).collect();
    let lock = tx
        .prepare_cached("SELECT 1 FROM workflows WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .await?;
    tx.query(&lock, &[&ids]).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE workflows SET lease_expires = {DB_NOW} + $1, wake_at = $5 + $1
             WHERE id = $2 AND lease_owner = $3 AND lease_epoch = $4 AND state = 'running'"
        ))
        .await?;
    let mut lost = Vec::new();
    for lease in leases {
        let n = tx
            .execute(
                &stmt,
                &[
                    &term,
                    &lease.workflow_id.to_string(),
                    &lease.owner.to_string(),
                    &lease.epoch,
                    &now,
                ],
            )
            .await?;
        if n == 0 {
            lost.push(lease.workflow_id);
        }
    }
    Ok(lost)
}
