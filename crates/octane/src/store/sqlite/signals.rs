//! Signals: delivery (with the wake-up of a listening workflow in the same
//! transaction), lookup of pending ones, acknowledgement, cleanup.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};

use super::lifecycle::update;
use super::rows::push_tag_filter;
use crate::store::codec::{parse_id, parse_state};
use crate::store::lifecycle::{Values, RUNNABLE};
use crate::store::{Delivery, NewSignal, PendingSignal, SignalTarget, StoreError, WorkflowId};

/// Where a signal to `target` would go.
pub(super) fn resolve(conn: &Connection, target: &SignalTarget) -> Result<Delivery, StoreError> {
    match target {
        SignalTarget::Id(id) => {
            let state: Option<String> = conn
                .prepare_cached("SELECT state FROM workflows WHERE id = ?1")?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()?;
            Ok(match state {
                None => Delivery::NotFound,
                Some(s) => {
                    let state = parse_state(&s)?;
                    if state.is_finished() {
                        Delivery::Finished(state)
                    } else {
                        Delivery::Delivered(*id)
                    }
                }
            })
        }
        // No tags would match every workflow: a target that names nobody.
        SignalTarget::Tags(tags) if tags.is_empty() => Ok(Delivery::NoMatch),
        SignalTarget::Tags(tags) => {
            let (sql, params) = tagged_sql(tags);
            let ids = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(&params), |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(match ids.as_slice() {
                [] => Delivery::NoMatch,
                [one] => Delivery::Delivered(parse_id(one)?),
                _ => Delivery::Ambiguous(count_matches(conn, &sql, &params)?),
            })
        }
    }
}

/// The unfinished workflows carrying every one of `tags` (not empty), at
/// most two. The search starts from the first tag's index entries and
/// then looks each workflow up by id (`CROSS JOIN` fixes that order), so
/// its cost is the number of workflows with that tag, not the number of
/// workflows in the database.
pub(super) fn tagged_sql(tags: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut tags = tags.iter();
    let (key, value) = tags.next().expect("a tag target names at least one tag");
    let mut sql = String::from(
        "SELECT workflows.id FROM workflow_tags t0 CROSS JOIN workflows
         WHERE t0.key = ?1 AND t0.value = ?2 AND workflows.id = t0.workflow_id
           AND workflows.state NOT IN ('completed', 'failed', 'cancelled')",
    );
    let mut params = vec![key.clone(), value.clone()];
    push_tag_filter(&mut sql, &mut params, tags);
    sql.push_str(" LIMIT 2");
    (sql, params)
}

fn count_matches(conn: &Connection, sql: &str, params: &[String]) -> Result<usize, StoreError> {
    let count_sql = format!(
        "SELECT COUNT(*) FROM ({})",
        sql.trim_end_matches(" LIMIT 2")
    );
    let n: i64 = conn.query_row(&count_sql, rusqlite::params_from_iter(params), |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Stores the signal for its target, if the target is there and
/// unfinished, and wakes the target if it listens for this name.
pub(super) fn deliver(conn: &Connection, signal: &NewSignal) -> Result<Delivery, StoreError> {
    let delivery = resolve(conn, &signal.target)?;
    if let Delivery::Delivered(id) = delivery {
        let id = id.to_string();
        conn.prepare_cached(
            "INSERT INTO signals (workflow_id, name, body, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute((&id, &signal.name, &signal.body, signal.now))?;
        update(
            conn,
            &RUNNABLE,
            &Values::at(signal.now),
            "id = ?1 AND state = 'sleeping'
             AND EXISTS (SELECT 1 FROM json_each(listening) WHERE value = ?2)",
            &[&id, &signal.name],
        )?;
    }
    Ok(delivery)
}

/// A workflow's pending signals of some names (a JSON array), oldest first.
const PENDING_SQL: &str = "SELECT seq, name, body FROM signals
     WHERE workflow_id = ?1 AND name IN (SELECT value FROM json_each(?2))
     ORDER BY seq LIMIT ?3";
/// [`PENDING_SQL`] for every name (`?2` unused but bound alike).
const PENDING_ANY_SQL: &str = "SELECT seq, name, body FROM signals
     WHERE workflow_id = ?1 AND ?2 = '[]' ORDER BY seq LIMIT ?3";

pub(super) fn pending(
    conn: &Connection,
    id: WorkflowId,
    names: &[String],
    limit: usize,
) -> Result<Vec<PendingSignal>, StoreError> {
    let names_json = serde_json::to_string(names).map_err(|e| StoreError::Corrupt {
        table: "signals",
        detail: e.to_string(),
    })?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .prepare_cached(if names.is_empty() {
            PENDING_ANY_SQL
        } else {
            PENDING_SQL
        })?
        .query_map((id.to_string(), names_json, limit), |r| {
            Ok(PendingSignal {
                seq: r.get(0)?,
                name: r.get(1)?,
                body: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Whether a signal of one of `names` (a JSON array) is pending.
pub(super) fn any_pending(
    conn: &Connection,
    id: &str,
    names_json: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM signals
             WHERE workflow_id = ?1 AND name IN (SELECT value FROM json_each(?2)))",
        )?
        .query_row((id, names_json), |r| r.get(0))?)
}

pub(super) fn ack(conn: &Connection, id: WorkflowId, seqs: &[i64]) -> Result<(), StoreError> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM signals WHERE seq = ?1 AND workflow_id = ?2")?;
    for seq in seqs {
        stmt.execute((seq, id.to_string()))?;
    }
    Ok(())
}

/// Deletes every pending signal of a finished workflow.
pub(super) fn delete_all(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM signals WHERE workflow_id = ?1")?
        .execute([id])?;
    Ok(())
}
