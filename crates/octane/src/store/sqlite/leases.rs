//! Claiming runnable workflows, renewing leases, and fencing writes.

use rusqlite::Connection;

use super::lifecycle::update;
use crate::store::codec::parse_id;
use crate::store::lifecycle::{self, Values};
use crate::store::{
    ClaimRequest, Claimed, ClaimedWorkflow, FailureCode, Lease, StoreError, Transition, WorkflowId,
};

fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The claim for `names` registered workflow names. Its predicate matches
/// the partial index `workflows_runnable` exactly, so it reads only
/// unfinished workflows however many finished ones the database holds.
pub(super) fn claim_sql(names: usize) -> String {
    format!(
        "UPDATE workflows
         SET state = 'running', lease_owner = ?1, lease_epoch = lease_epoch + 1,
             lease_expires = ?2, wake_at = ?3, updated_at = ?3,
             listening = NULL, waiting_child = NULL
         WHERE id IN (
             SELECT id FROM workflows
             WHERE state IN ('pending', 'running', 'sleeping') AND name IN ({})
               AND wake_at <= ?3 AND (lease_expires IS NULL OR lease_expires <= ?3)
             ORDER BY wake_at LIMIT ?4)
         RETURNING rowid, id, name, input, lease_epoch",
        placeholders(5, names)
    )
}

/// The earliest wake-up among waiting workflows of `names`. SQLite uses a
/// partial index only when the query repeats its predicate, so this states
/// it in full and then leaves out running workflows.
pub(super) fn next_wake_sql(names: usize) -> String {
    format!(
        "SELECT MIN(wake_at) FROM workflows
         WHERE state IN ('pending', 'running', 'sleeping') AND name IN ({})
           AND state <> 'running'",
        placeholders(1, names)
    )
}

/// Leases up to `limit` runnable workflows and reports the next deadline.
pub(super) fn claim(conn: &Connection, req: &ClaimRequest) -> Result<Claimed, StoreError> {
    if req.names.is_empty() {
        return Ok(Claimed::default());
    }
    let sql = claim_sql(req.names.len());
    let owner = req.owner.to_string();
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&owner, &req.expires_at, &req.now, &limit];
    params.extend(req.names.iter().map(|n| n as &dyn rusqlite::ToSql));
    let mut stmt = conn.prepare_cached(&sql)?;
    // Each row is decoded on its own: one that does not decode is parked
    // below, and the claim goes on for the others.
    let rows = stmt
        .query_map(params.as_slice(), |r| {
            let decoded = (|| -> rusqlite::Result<_> {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })();
            Ok((r.get::<_, i64>(0)?, decoded))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    let mut workflows = Vec::new();
    for (rowid, decoded) in rows {
        let claimed = decoded
            .map_err(StoreError::from)
            .and_then(|(id, name, input, epoch)| {
                Ok(ClaimedWorkflow {
                    lease: Lease {
                        workflow_id: parse_id(&id)?,
                        owner: req.owner,
                        epoch,
                    },
                    name,
                    input,
                })
            });
        match claimed {
            Ok(c) => workflows.push(c),
            Err(e) => quarantine(conn, rowid, &e, req.now)?,
        }
    }
    let next_wake_at = conn
        .prepare_cached(&next_wake_sql(req.names.len()))?
        .query_row(rusqlite::params_from_iter(&req.names), |r| r.get(0))?;
    Ok(Claimed {
        workflows,
        next_wake_at,
    })
}

/// Parks a claimed row that does not decode, so that it stops being
/// claimed; it is found by its row number, since its id may be the damage.
fn quarantine(conn: &Connection, rowid: i64, e: &StoreError, now: i64) -> Result<(), StoreError> {
    tracing::error!(rowid, error = %e, "a workflow row does not decode; parking it");
    let park = Transition::Park {
        error: format!("the workflow's row does not decode: {e}"),
        code: FailureCode::CorruptRow,
    };
    let change = lifecycle::of_transition(&park).expect("parking changes the row");
    update(
        conn,
        &change,
        &Values::of_transition(&park, now)?,
        "rowid = ?1",
        &[&rowid],
    )?;
    Ok(())
}

/// Checks that `lease` is current: the first statement of every history
/// write, in the same transaction. A read suffices because SQLite runs one
/// write transaction at a time, so no claim can interleave; renewing is the
/// heartbeat's job, which keeps a commit to the pages it really changes.
pub(super) fn fence(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let held = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM workflows
             WHERE id = ?1 AND lease_owner = ?2 AND lease_epoch = ?3 AND state = 'running')",
        )?
        .query_row(
            (
                lease.workflow_id.to_string(),
                lease.owner.to_string(),
                lease.epoch,
            ),
            |r| r.get::<_, bool>(0),
        )?;
    if !held {
        return Err(StoreError::LeaseLost {
            workflow_id: lease.workflow_id,
        });
    }
    Ok(())
}

/// Extends leases; returns those that were lost.
pub(super) fn renew(
    conn: &Connection,
    leases: &[Lease],
    expires_at: i64,
) -> Result<Vec<WorkflowId>, StoreError> {
    let mut lost = Vec::new();
    let mut stmt = conn.prepare_cached(
        "UPDATE workflows SET lease_expires = ?1
         WHERE id = ?2 AND lease_owner = ?3 AND lease_epoch = ?4 AND state = 'running'",
    )?;
    for lease in leases {
        let n = stmt.execute((
            expires_at,
            lease.workflow_id.to_string(),
            lease.owner.to_string(),
            lease.epoch,
        ))?;
        if n == 0 {
            lost.push(lease.workflow_id);
        }
    }
    Ok(lost)
}
