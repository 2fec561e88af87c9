//! Workflow rows: creation, lookup, state transitions and operator control.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row};

use super::lifecycle::update;
use super::rows::push_tag_filter;
use super::signals;
use crate::store::codec::{parse_id, parse_state};
use crate::store::lifecycle::{self, Change, Values, RUNNABLE};
use crate::store::{
    Census, Control, IfFinished, ListFilter, NewWorkflow, Owner, StateCount, StoreError,
    Transition, WorkflowId, WorkflowInfo, WorkflowState,
};

const COLUMNS: &str =
    "id, name, state, input, output, error, tags, wake_at, created_at, updated_at, error_code,
     CASE WHEN state = 'running' THEN lease_owner END,
     (SELECT host FROM workers WHERE workers.id = workflows.lease_owner),
     (SELECT pid FROM workers WHERE workers.id = workflows.lease_owner)";

/// The workflow of `?1` holding the key `?2`: the unfinished one if any,
/// else the newest, with whether it finished.
const HOLDER_SQL: &str = "SELECT id, state IN ('completed', 'failed', 'cancelled') FROM workflows
     WHERE name = ?1 AND dispatch_key = ?2 ORDER BY 2, created_at DESC LIMIT 1";

/// Inserts the workflow, unless its key is held. The writer runs this job
/// in one transaction, and the unique index `workflows_by_key` backs it
/// against other processes' writers: the read and the insert cannot be
/// split by another holder's creation.
pub(super) fn create(conn: &Connection, wf: &NewWorkflow) -> Result<WorkflowId, StoreError> {
    if let Some(key) = &wf.key {
        let holder: Option<(String, bool)> = conn
            .prepare_cached(HOLDER_SQL)?
            .query_row((&wf.name, &key.key), |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((id, finished)) = holder {
            if !finished || key.if_finished == IfFinished::Return {
                return parse_id(&id);
            }
        }
    }
    let id = wf.id.to_string();
    let tags = serde_json::to_string(&wf.tags).map_err(|e| StoreError::Corrupt {
        table: "workflows",
        detail: e.to_string(),
    })?;
    conn.prepare_cached(
        "INSERT INTO workflows
         (id, name, input, tags, state, wake_at, created_at, updated_at, parent_id, dispatch_key,
          deadline_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5, ?6, ?7, ?8)",
    )?
    .execute((
        &id,
        &wf.name,
        &wf.input,
        tags,
        wf.now,
        wf.parent.map(|p| p.to_string()),
        wf.key.as_ref().map(|k| &k.key),
        wf.deadline_at,
    ))?;
    let mut tag = conn.prepare_cached(
        "INSERT INTO workflow_tags (workflow_id, key, value) VALUES (?1, ?2, ?3)",
    )?;
    for (k, v) in &wf.tags {
        tag.execute((&id, k, v))?;
    }
    Ok(wf.id)
}

pub(super) fn get(conn: &Connection, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM workflows WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id.to_string()], read_row)
        .optional()?
        .map(decode)
        .transpose()
}

pub(super) fn list(
    conn: &Connection,
    filter: &ListFilter,
) -> Result<Vec<WorkflowInfo>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM workflows WHERE 1 = 1");
    let mut params: Vec<String> = Vec::new();
    if let Some(name) = &filter.name {
        params.push(name.clone());
        sql.push_str(&format!(" AND name = ?{}", params.len()));
    }
    if let Some(state) = filter.state {
        params.push(state.as_str().to_string());
        sql.push_str(&format!(" AND state = ?{}", params.len()));
    }
    if let Some(code) = filter.code {
        params.push(code.as_str().to_string());
        sql.push_str(&format!(" AND error_code = ?{}", params.len()));
    }
    if let Some(key) = &filter.key {
        params.push(key.clone());
        sql.push_str(&format!(" AND dispatch_key = ?{}", params.len()));
    }
    if let Some(after) = &filter.after {
        params.push(after.created_at.to_string());
        params.push(after.id.to_string());
        sql.push_str(&format!(
            " AND (created_at, id) < (CAST(?{} AS INTEGER), ?{})",
            params.len() - 1,
            params.len()
        ));
    }
    push_tag_filter(&mut sql, &mut params, &filter.tags);
    sql.push_str(&format!(
        " ORDER BY created_at DESC, id DESC LIMIT {}",
        filter.limit.unwrap_or(100)
    ));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(&params), read_row)?;
    rows.map(|r| decode(r?)).collect()
}

/// Applies a commit's transition, as the lifecycle table says; the lease was
/// fenced just before.
pub(super) fn transition(
    conn: &Connection,
    id: WorkflowId,
    transition: &Transition,
    now: i64,
) -> Result<(), StoreError> {
    let Some(change) = lifecycle::of_transition(transition) else {
        return Ok(());
    };
    let values = Values::of_transition(transition, now)?;
    apply(conn, &id.to_string(), &change, &values)
}

/// Makes `change` to the workflow `id`, and what goes with it.
fn apply(
    conn: &Connection,
    id: &str,
    change: &Change,
    values: &Values<'_>,
) -> Result<(), StoreError> {
    update(conn, change, values, "id = ?1", &[&id])?;
    let now = values.now;
    if change.check_waits {
        // The wake-up may already be due: a signal that arrived while the
        // workflow ran, a child that finished meanwhile.
        let signal_due = match &values.listening {
            Some(names) => signals::any_pending(conn, id, names)?,
            None => false,
        };
        let child_due = match &values.child {
            Some(c) => conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM workflows WHERE id = ?1
                     AND state IN ('completed', 'failed', 'cancelled'))",
                )?
                .query_row([c], |r| r.get::<_, bool>(0))?,
            None => false,
        };
        if signal_due || child_due {
            update(conn, &RUNNABLE, &Values::at(now), "id = ?1", &[&id])?;
        }
    }
    if change.drop_signals {
        signals::delete_all(conn, id)?;
    }
    if change.wake_waiters {
        update(conn, &RUNNABLE, &Values::at(now), WAITERS, &[&id])?;
    }
    Ok(())
}

/// The workflows asleep until `?1` finishes: its parent, and any other
/// workflow given it by a dispatch key. Only a sleeping workflow has a
/// `waiting_child` (going to sleep on a workflow sets it; every change out
/// of sleeping, a claim included, clears it), so the predicate needs no
/// state, and it matches the partial index `workflows_by_waiting_child`.
pub(super) const WAITERS: &str = "waiting_child = ?1";

/// Unfinished workflows whose deadline is at or before `?1`.
pub(super) const OVERDUE_SQL: &str = "SELECT id FROM workflows
     WHERE deadline_at <= ?1 AND deadline_at IS NOT NULL
       AND state NOT IN ('completed', 'failed', 'cancelled')
     ORDER BY deadline_at LIMIT 500";

/// Cancels the workflows past their deadline (up to 500 a call).
pub(super) fn expire_deadlines(conn: &Connection, now: i64) -> Result<Vec<WorkflowId>, StoreError> {
    let ids = conn
        .prepare_cached(OVERDUE_SQL)?
        .query_map([now], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let values = Values::deadline(now);
    ids.iter()
        .map(|id| {
            apply(conn, id, &lifecycle::CANCEL, &values)?;
            parse_id(id)
        })
        .collect()
}

/// The oldest finished workflows last changed before `?1`, at most `?2`.
pub(super) const PRUNE_SQL: &str = "SELECT id FROM workflows
     WHERE state IN ('completed', 'failed', 'cancelled') AND updated_at < ?1
     ORDER BY updated_at LIMIT ?2";

/// Deletes finished workflows last changed before `before`, with their
/// events, tags and signals, until `max_rows` rows are gone.
pub(super) fn prune(conn: &Connection, before: i64, max_rows: usize) -> Result<u64, StoreError> {
    // Every workflow deleted is at least one row: no more candidates than
    // the bound can be needed.
    let ids = conn
        .prepare_cached(PRUNE_SQL)?
        .query_map((before, i64::try_from(max_rows).unwrap_or(i64::MAX)), |r| {
            r.get::<_, String>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = 0;
    let mut pruned = 0;
    for id in &ids {
        for table in ["events", "signals", "workflow_tags"] {
            rows += conn
                .prepare_cached(&format!("DELETE FROM {table} WHERE workflow_id = ?1"))?
                .execute([id])?;
        }
        rows += conn
            .prepare_cached("DELETE FROM workflows WHERE id = ?1")?
            .execute([id])?;
        pruned += 1;
        if rows >= max_rows {
            break;
        }
    }
    Ok(pruned)
}

pub(super) fn control(
    conn: &Connection,
    id: WorkflowId,
    control: Control,
    now: i64,
) -> Result<Option<WorkflowState>, StoreError> {
    let Some(before) = get(conn, id)?.map(|w| w.state) else {
        return Ok(None);
    };
    if let Some(change) = lifecycle::of_control(control, before) {
        apply(
            conn,
            &id.to_string(),
            &change,
            &Values::of_control(control, now),
        )?;
    }
    Ok(Some(before))
}

type RawWorkflow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    Option<Owner>,
);

fn read_row(r: &Row<'_>) -> rusqlite::Result<RawWorkflow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        Owner::from_row(r.get(11)?, r.get(12)?, r.get(13)?),
    ))
}

fn decode(raw: RawWorkflow) -> Result<WorkflowInfo, StoreError> {
    let (id, name, state, input, output, error, tags, wake_at, created_at, updated_at, code, owner) =
        raw;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: "workflows",
        detail,
    };
    Ok(WorkflowInfo {
        id: parse_id(&id)?,
        name,
        state: parse_state(&state)?,
        input,
        output,
        error,
        // A code this version does not know reads as none, not as damage.
        code: code.and_then(|c| c.parse().ok()),
        tags: serde_json::from_str::<BTreeMap<String, String>>(&tags)
            .map_err(|e| corrupt(format!("tags of {id}: {e}")))?,
        wake_at,
        created_at,
        updated_at,
        owner,
    })
}

/// Workflows by name and state, and the loops' checkpointed iterations.
pub(super) fn census(conn: &Connection) -> Result<Census, StoreError> {
    let counts = conn
        .prepare_cached(
            "SELECT name, state, COUNT(*) FROM workflows GROUP BY name, state ORDER BY name, state",
        )?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .map(|row| {
            let (name, state, count) = row?;
            Ok(StateCount {
                name,
                state: parse_state(&state)?,
                count: count.unsigned_abs(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let loop_iterations: i64 = conn
        .prepare_cached("SELECT COALESCE(SUM(iteration), 0) FROM events WHERE kind = 4")?
        .query_row([], |r| r.get(0))?;
    Ok(Census {
        counts,
        loop_iterations: loop_iterations.unsigned_abs(),
    })
}
