//! History rows: loading active history, applying history writes.

use rusqlite::{Connection, Row};

use super::{signals, workflows};

use crate::history::{active_ranges, forgotten_ranges, iterations_range, Event, LoopBoundary};
use crate::store::codec::{
    decode_count, decode_hash, decode_kind, decode_location, encode_count, encode_hash,
};
use crate::store::{StoreError, WorkflowId, WriteOp};

const EVENT_COLUMNS: &str =
    "location, version, kind, name, input_hash, data, error, attempts, iteration, done, recorded_at, deleted_below";

/// The loop events of a workflow: where each loop's active iterations start.
pub(super) const LOOPS_SQL: &str =
    "SELECT location, iteration, done FROM events WHERE workflow_id = ?1 AND kind = 4";

/// The read of one active range, bounded above or not. Each shape is its own
/// statement so that both bounds reach the primary key as a range.
pub(super) fn range_sql(bounded: bool) -> String {
    let upper = if bounded { " AND location < ?3" } else { "" };
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE workflow_id = ?1 AND location >= ?2{upper}")
}

/// The active history: first the loop events (to learn which iterations are
/// forgotten), then only the key ranges outside forgotten iterations.
pub(super) fn load(conn: &Connection, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
    let id = id.to_string();
    let mut loops = conn.prepare_cached(LOOPS_SQL)?;
    let boundaries = loops
        .query_map([&id], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?
        .map(|row| {
            let (location, iteration, done) = row?;
            Ok(LoopBoundary {
                location: decode_location(&location)?,
                first_active: if done {
                    u64::MAX
                } else {
                    decode_count("iteration", iteration)?
                },
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut events = Vec::new();
    for range in active_ranges(&forgotten_ranges(boundaries)) {
        let mut stmt = conn.prepare_cached(&range_sql(range.to.is_some()))?;
        let rows = match &range.to {
            Some(to) => stmt.query_map((&id, &range.from, to), read_row)?,
            None => stmt.query_map((&id, &range.from), read_row)?,
        };
        for row in rows {
            events.push(decode_event(row?)?);
        }
    }
    Ok(events)
}

/// The loop events, in history order.
pub(super) fn loops(conn: &Connection, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
    in_order(conn, id, "AND kind = 4")
}

/// Every stored event, forgotten ones included, in history order.
pub(super) fn all(conn: &Connection, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
    in_order(conn, id, "")
}

/// The workflow's events matching `condition`, in history order.
fn in_order(conn: &Connection, id: WorkflowId, condition: &str) -> Result<Vec<Event>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE workflow_id = ?1 {condition} ORDER BY location"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([id.to_string()], read_row)?;
    rows.map(|r| decode_event(r?)).collect()
}

/// Applies history writes in order.
pub(super) fn apply(
    conn: &Connection,
    workflow: WorkflowId,
    ops: &[WriteOp],
    now: i64,
) -> Result<(), StoreError> {
    let id = workflow.to_string();
    for op in ops {
        match op {
            WriteOp::Put(e) => {
                let mut stmt = conn.prepare_cached(
                    "INSERT OR REPLACE INTO events
                     (workflow_id, location, version, kind, name, input_hash, data, error, attempts, iteration, done, recorded_at, deleted_below)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )?;
                stmt.execute(rusqlite::params![
                    id,
                    e.location.encode(),
                    e.version,
                    e.kind.code(),
                    e.name,
                    encode_hash(e.input_hash),
                    e.data,
                    e.error,
                    e.attempts,
                    encode_count("iteration", e.iteration, 64)?,
                    e.done,
                    now,
                    encode_count("deleted_below", e.deleted_below, 64)?,
                ])?;
            }
            WriteOp::ForgetIterations {
                loop_location,
                from,
                below,
            } => {
                let (from, to) = iterations_range(loop_location, *from, *below);
                let mut stmt = conn.prepare_cached(
                    "DELETE FROM events WHERE workflow_id = ?1 AND location >= ?2 AND location < ?3",
                )?;
                stmt.execute((&id, from, to))?;
            }
            WriteOp::AckSignals(seqs) => signals::ack(conn, workflow, seqs)?,
            WriteOp::SendSignal(signal) => {
                signals::deliver(conn, signal)?;
            }
            WriteOp::CreateWorkflow(new) => {
                workflows::create(conn, new)?;
            }
        }
    }
    Ok(())
}

type RawEvent = (
    Vec<u8>,
    u32,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    u32,
    i64,
    bool,
    i64,
    i64,
);

fn read_row(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
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
        r.get(11)?,
    ))
}

fn decode_event(raw: RawEvent) -> Result<Event, StoreError> {
    let (
        location,
        version,
        kind,
        name,
        input_hash,
        data,
        error,
        attempts,
        iteration,
        done,
        recorded_at,
        deleted_below,
    ) = raw;
    Ok(Event {
        location: decode_location(&location)?,
        version,
        kind: decode_kind(kind)?,
        name,
        input_hash: decode_hash(input_hash),
        data,
        error,
        attempts,
        iteration: decode_count("iteration", iteration)?,
        done,
        recorded_at,
        deleted_below: decode_count("deleted_below", deleted_below)?,
    })
}
