//! Claiming runnable workflows, renewing leases, and fencing writes.

use deadpool_postgres::Transaction;
use tokio_postgres::Statement;

use super::lifecycle::update;
use crate::store::codec::parse_id;
use crate::store::lifecycle::{self, Values};
use crate::store::{
    ClaimRequest, Claimed, ClaimedWorkflow, FailureCode, Lease, StoreError, Transition, WorkflowId,
};

/// The claim: `$1` owner, `$2` lease expiry, `$3` now, `$4` limit, `$5` the
/// registered names. Its predicate matches the partial index
/// `workflows_runnable`, so it reads only unfinished workflows however
/// many finished ones the database holds.
pub(super) const CLAIM_SQL: &str = "UPDATE workflows
     SET state = 'running', lease_owner = $1, lease_epoch = lease_epoch + 1,
         lease_expires = $2, wake_at = $3, updated_at = $3,
         listening = NULL, waiting_child = NULL
     WHERE id IN (
         SELECT id FROM workflows
         WHERE state IN ('pending', 'running', 'sleeping') AND name = ANY($5)
           AND wake_at <= $3 AND (lease_expires IS NULL OR lease_expires <= $3)
         ORDER BY wake_at LIMIT $4
         FOR UPDATE SKIP LOCKED)
     RETURNING id, name, input, lease_epoch";

/// The earliest wake-up among waiting workflows of the names `$1`.
pub(super) const NEXT_WAKE_SQL: &str = "SELECT MIN(wake_at) FROM workflows
     WHERE state IN ('pending', 'sleeping') AND name = ANY($1)";

/// Leases up to `limit` runnable workflows and reports the next deadline.
/// `SKIP LOCKED` lets many workers claim at once without waiting on each
/// other's rows.
pub(super) async fn claim(tx: &Transaction<'_>, req: &ClaimRequest) -> Result<Claimed, StoreError> {
    if req.names.is_empty() {
        return Ok(Claimed::default());
    }
    let owner = req.owner.to_string();
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    let stmt = tx.prepare_cached(CLAIM_SQL).await?;
    let rows = tx
        .query(
            &stmt,
            &[&owner, &req.expires_at, &req.now, &limit, &req.names],
        )
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

/// The fencing query for [`fence`].
pub(super) const FENCE: &str = "SELECT 1 FROM workflows
     WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 AND state = 'running'
     FOR UPDATE";

/// Checks that `lease` is current and locks the workflow row until the
/// transaction ends, so no claim can take it over between this check and
/// the writes that follow (fencing). `stmt` is [`FENCE`], prepared.
pub(super) async fn fence(
    tx: &Transaction<'_>,
    stmt: &Statement,
    lease: &Lease,
) -> Result<(), StoreError> {
    let held = tx
        .query_opt(
            stmt,
            &[
                &lease.workflow_id.to_string(),
                &lease.owner.to_string(),
                &lease.epoch,
            ],
        )
        .await?
        .is_some();
    if !held {
        return Err(StoreError::LeaseLost {
            workflow_id: lease.workflow_id,
        });
    }
    Ok(())
}

/// Extends leases; returns those that were lost.
pub(super) async fn renew(
    tx: &Transaction<'_>,
    leases: &[Lease],
    expires_at: i64,
) -> Result<Vec<WorkflowId>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE workflows SET lease_expires = $1
             WHERE id = $2 AND lease_owner = $3 AND lease_epoch = $4 AND state = 'running'",
        )
        .await?;
    let mut lost = Vec::new();
    for lease in leases {
        let n = tx
            .execute(
                &stmt,
                &[
                    &expires_at,
                    &lease.workflow_id.to_string(),
                    &lease.owner.to_string(),
                    &lease.epoch,
                ],
            )
            .await?;
        if n == 0 {
            lost.push(lease.workflow_id);
        }
    }
    Ok(lost)
}
