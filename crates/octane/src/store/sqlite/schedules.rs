//! Schedules: stored cron expressions, and the firing of their ticks.

use rusqlite::{Connection, Row};

use super::workflows;
use crate::store::{NewWorkflow, ScheduleInfo, StoreError, WorkflowId};

const COLUMNS: &str = "name, workflow, input, cron, timezone, next_at, paused, last_fired_at";

fn read_row(r: &Row<'_>) -> rusqlite::Result<ScheduleInfo> {
    Ok(ScheduleInfo {
        name: r.get(0)?,
        workflow: r.get(1)?,
        input: r.get(2)?,
        cron: r.get(3)?,
        timezone: r.get(4)?,
        next_at: r.get(5)?,
        paused: r.get(6)?,
        last_fired_at: r.get(7)?,
    })
}

pub(super) fn put(conn: &Connection, s: &ScheduleInfo, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO schedules (name, workflow, input, cron, timezone, next_at, paused, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (name) DO UPDATE SET workflow = excluded.workflow, input = excluded.input,
             cron = excluded.cron, timezone = excluded.timezone, next_at = excluded.next_at",
    )?
    .execute(rusqlite::params![
        s.name, s.workflow, s.input, s.cron, s.timezone, s.next_at, s.paused, now
    ])?;
    Ok(())
}

pub(super) fn all(conn: &Connection) -> Result<Vec<ScheduleInfo>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY name");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map([], read_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn due(conn: &Connection, now: i64) -> Result<Vec<ScheduleInfo>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules WHERE next_at <= ?1 AND NOT paused
         ORDER BY next_at LIMIT 100"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map([now], read_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Moves the schedule on from exactly `due` and creates the tick's
/// workflow, in the writer's one transaction.
pub(super) fn fire(
    conn: &Connection,
    name: &str,
    due: i64,
    next_at: i64,
    workflow: &NewWorkflow,
) -> Result<Option<WorkflowId>, StoreError> {
    let moved = conn
        .prepare_cached(
            "UPDATE schedules SET next_at = ?3, last_fired_at = ?4
             WHERE name = ?1 AND next_at = ?2 AND NOT paused",
        )?
        .execute((name, due, next_at, workflow.now))?;
    if moved == 0 {
        return Ok(None);
    }
    Ok(Some(workflows::create(conn, workflow)?))
}

pub(super) fn pause(
    conn: &Connection,
    name: &str,
    paused: bool,
    next_at: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE schedules SET paused = ?2,
                 next_at = CASE WHEN ?2 THEN next_at ELSE ?3 END
             WHERE name = ?1",
        )?
        .execute((name, paused, next_at))?;
    Ok(n > 0)
}

pub(super) fn delete(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM schedules WHERE name = ?1")?
        .execute([name])?;
    Ok(n > 0)
}
