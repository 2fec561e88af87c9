//! Workflow rows: creation, lookup, state transitions and operator control.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::leases::parse_id;
use super::{notify_runnable, rows, signals};
use crate::store::{
    Control, ListFilter, NewWorkflow, StoreError, Transition, WorkflowId, WorkflowInfo,
    WorkflowState,
};

const COLUMNS: &str =
    "id, name, state, input, output, error, tags, wake_at, created_at, updated_at, error_code";

pub(super) async fn create(tx: &Transaction<'_>, wf: &NewWorkflow) -> Result<(), StoreError> {
    let id = wf.id.to_string();
    let tags = serde_json::to_string(&wf.tags).map_err(|e| StoreError::Corrupt {
        table: "workflows",
        detail: e.to_string(),
    })?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO workflows (id, name, input, tags, state, wake_at, created_at, updated_at, parent_id)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5, $6)",
        )
        .await?;
    let parent = wf.parent.map(|p| p.to_string());
    tx.execute(&stmt, &[&id, &wf.name, &wf.input, &tags, &wf.now, &parent])
        .await?;
    let tag = tx
        .prepare_cached("INSERT INTO workflow_tags (workflow_id, key, value) VALUES ($1, $2, $3)")
        .await?;
    for (k, v) in &wf.tags {
        tx.execute(&tag, &[&id, k, v]).await?;
    }
    notify_runnable(tx).await
}

pub(super) async fn get(
    tx: &Transaction<'_>,
    id: WorkflowId,
) -> Result<Option<WorkflowInfo>, StoreError> {
    let stmt = tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM workflows WHERE id = $1"))
        .await?;
    tx.query_opt(&stmt, &[&id.to_string()])
        .await?
        .map(|r| decode(&r))
        .transpose()
}

/// A condition on `workflows w`: it carries every tag given as parallel
/// arrays of keys (`$first`) and values (`$first + 1`), whose length is
/// `$first + 2`.
pub(super) fn has_all_tags(first: usize) -> String {
    format!(
        "(SELECT COUNT(*) FROM workflow_tags t, UNNEST(${}::text[], ${}::text[]) AS want(k, v)
          WHERE t.workflow_id = w.id AND t.key = want.k AND t.value = want.v) = ${}",
        first,
        first + 1,
        first + 2
    )
}

pub(super) async fn list(
    tx: &Transaction<'_>,
    filter: &ListFilter,
) -> Result<Vec<WorkflowInfo>, StoreError> {
    let keys: Vec<&String> = filter.tags.keys().collect();
    let values: Vec<&String> = filter.tags.values().collect();
    let n = i64::try_from(filter.tags.len()).unwrap_or(i64::MAX);
    let limit = i64::try_from(filter.limit.unwrap_or(100)).unwrap_or(i64::MAX);
    let state = filter.state.map(|s| s.as_str());
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM workflows w
             WHERE ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR state = $2)
               AND {}
             ORDER BY created_at DESC, id LIMIT $6",
            has_all_tags(3)
        ))
        .await?;
    tx.query(&stmt, &[&filter.name, &state, &keys, &values, &n, &limit])
        .await?
        .iter()
        .map(decode)
        .collect()
}

const RELEASE: &str = "lease_owner = NULL, lease_expires = NULL, updated_at = $2";

/// Applies a commit's transition; the lease was fenced just before.
/// Every transition but `Continue` releases the lease.
pub(super) async fn transition(
    tx: &Transaction<'_>,
    id: WorkflowId,
    transition: &Transition,
    now: i64,
) -> Result<(), StoreError> {
    let id = id.to_string();
    match transition {
        Transition::Continue => {}
        Transition::Suspend(suspend) => {
            let listening = (!suspend.signals.is_empty())
                .then(|| serde_json::to_string(&suspend.signals))
                .transpose()
                .map_err(|e| StoreError::Corrupt {
                    table: "workflows",
                    detail: e.to_string(),
                })?;
            let child = suspend.child.map(|c| c.to_string());
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE workflows SET state = 'sleeping', wake_at = $3, listening = $4,
                     waiting_child = $5, {RELEASE} WHERE id = $1"
                ))
                .await?;
            tx.execute(&stmt, &[&id, &now, &suspend.wake_at, &listening, &child])
                .await?;
            // The wake-up may already be due: a signal that arrived while the
            // workflow ran, a child that finished meanwhile.
            let signal_due = match &listening {
                Some(names) => signals::any_pending(tx, &id, names).await?,
                None => false,
            };
            let child_due = match &child {
                Some(c) => {
                    let stmt = tx
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM workflows WHERE id = $1
                             AND state IN ('completed', 'failed', 'cancelled'))",
                        )
                        .await?;
                    tx.query_one(&stmt, &[c]).await?.try_get::<_, bool>(0)?
                }
                None => false,
            };
            if signal_due || child_due {
                make_runnable(tx, &id, now).await?;
            }
            if suspend.wake_at.is_some() {
                // Workers elsewhere may need to move their next wake-up
                // earlier.
                notify_runnable(tx).await?;
            }
        }
        Transition::Release => {
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE workflows SET state = 'pending', wake_at = $2, {RELEASE} WHERE id = $1"
                ))
                .await?;
            tx.execute(&stmt, &[&id, &now]).await?;
            notify_runnable(tx).await?;
        }
        Transition::Complete { output } => {
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE workflows SET state = 'completed', output = $3, error = NULL,
                     error_code = NULL, wake_at = NULL, {RELEASE} WHERE id = $1"
                ))
                .await?;
            tx.execute(&stmt, &[&id, &now, output]).await?;
            finished(tx, &id, now).await?;
        }
        Transition::Fail { error } => {
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE workflows SET state = 'failed', error = $3, error_code = NULL,
                     wake_at = NULL, {RELEASE} WHERE id = $1"
                ))
                .await?;
            let error = rows::without_nul(error);
            tx.execute(&stmt, &[&id, &now, &error]).await?;
            finished(tx, &id, now).await?;
        }
        Transition::Park { error, code } => {
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE workflows SET state = 'parked', error = $3, error_code = $4,
                     wake_at = NULL, listening = NULL, waiting_child = NULL, {RELEASE}
                     WHERE id = $1"
                ))
                .await?;
            let error = rows::without_nul(error);
            tx.execute(&stmt, &[&id, &now, &error, &code.as_str()])
                .await?;
        }
    }
    Ok(())
}

async fn make_runnable(tx: &Transaction<'_>, id: &str, now: i64) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE workflows SET state = 'pending', wake_at = $2, listening = NULL,
             waiting_child = NULL, updated_at = $2 WHERE id = $1",
        )
        .await?;
    tx.execute(&stmt, &[&id, &now]).await?;
    notify_runnable(tx).await
}

/// What every way of finishing does: pending signals are dropped (nobody
/// will consume them) and a parent waiting for this child is woken.
async fn finished(tx: &Transaction<'_>, id: &str, now: i64) -> Result<(), StoreError> {
    signals::delete_all(tx, id).await?;
    // Lock the waiting parent first, for the reason `signals::deliver` locks
    // a signal's target: a parent going to sleep on this child holds that
    // lock while it checks the child's state.
    let lock = tx
        .prepare_cached(
            "SELECT 1 FROM workflows WHERE id = (SELECT parent_id FROM workflows WHERE id = $1) FOR UPDATE",
        )
        .await?;
    tx.query_opt(&lock, &[&id]).await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE workflows SET state = 'pending', wake_at = $2, listening = NULL,
             waiting_child = NULL, updated_at = $2
             WHERE state = 'sleeping' AND waiting_child = $1
               AND id = (SELECT parent_id FROM workflows WHERE id = $1)",
        )
        .await?;
    if tx.execute(&stmt, &[&id, &now]).await? > 0 {
        notify_runnable(tx).await?;
    }
    Ok(())
}

/// Deletes at most `limit` finished workflows last changed before `before`,
/// oldest first, with their events, tags and signals.
pub(super) async fn prune(
    tx: &Transaction<'_>,
    before: i64,
    limit: usize,
) -> Result<u64, StoreError> {
    // SKIP LOCKED: two pruners (workers with retention on) split the work
    // instead of queueing behind each other's row locks.
    let ids: Vec<String> = tx
        .query(
            "SELECT id FROM workflows
             WHERE state IN ('completed', 'failed', 'cancelled') AND updated_at < $1
             ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&before, &i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for table in ["events", "signals", "workflow_tags", "workflows"] {
        let column = if table == "workflows" {
            "id"
        } else {
            "workflow_id"
        };
        tx.execute(
            &format!("DELETE FROM {table} WHERE {column} = ANY($1)"),
            &[&ids],
        )
        .await?;
    }
    Ok(ids.len() as u64)
}

pub(super) async fn control(
    tx: &Transaction<'_>,
    id: WorkflowId,
    control: Control,
    now: i64,
) -> Result<Option<WorkflowState>, StoreError> {
    let lock = tx
        .prepare_cached("SELECT state FROM workflows WHERE id = $1 FOR UPDATE")
        .await?;
    let Some(row) = tx.query_opt(&lock, &[&id.to_string()]).await? else {
        return Ok(None);
    };
    let before = parse_state(&row)?;
    let key = id.to_string();
    match control {
        Control::Cancel if !before.is_finished() => {
            tx.execute(
                "UPDATE workflows SET state = 'cancelled', error = 'cancelled', wake_at = NULL,
                 listening = NULL, waiting_child = NULL, lease_owner = NULL,
                 lease_expires = NULL, updated_at = $2 WHERE id = $1",
                &[&key, &now],
            )
            .await?;
            finished(tx, &key, now).await?;
        }
        Control::Wake if matches!(before, WorkflowState::Parked | WorkflowState::Sleeping) => {
            tx.execute(
                "UPDATE workflows SET state = 'pending', error = NULL, error_code = NULL,
                 listening = NULL, waiting_child = NULL, wake_at = $2, updated_at = $2 WHERE id = $1",
                &[&key, &now],
            )
            .await?;
            notify_runnable(tx).await?;
        }
        _ => {}
    }
    Ok(Some(before))
}

/// The state in the first column of `row`.
pub(super) fn parse_state(row: &Row) -> Result<WorkflowState, StoreError> {
    row.try_get::<_, String>(0)?
        .parse()
        .map_err(|detail| StoreError::Corrupt {
            table: "workflows",
            detail,
        })
}

fn decode(row: &Row) -> Result<WorkflowInfo, StoreError> {
    let id: String = row.try_get(0)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: "workflows",
        detail,
    };
    let tags: String = row.try_get(6)?;
    Ok(WorkflowInfo {
        id: parse_id(&id)?,
        name: row.try_get(1)?,
        state: row.try_get::<_, String>(2)?.parse().map_err(corrupt)?,
        input: row.try_get(3)?,
        output: row.try_get(4)?,
        error: row.try_get(5)?,
        // A code this version does not know reads as none, not as damage.
        code: row
            .try_get::<_, Option<String>>(10)?
            .and_then(|c| c.parse().ok()),
        tags: serde_json::from_str::<BTreeMap<String, String>>(&tags)
            .map_err(|e| corrupt(format!("tags of {id}: {e}")))?,
        wake_at: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}
