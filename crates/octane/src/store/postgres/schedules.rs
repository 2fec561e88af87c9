//! Schedules: stored cron expressions, and the firing of their ticks.

use super::Tx;
use tokio_postgres::Row;

use super::workflows;
use crate::store::{NewWorkflow, ScheduleInfo, StoreError, WorkflowId};

const COLUMNS: &str = "name, workflow, input, cron, timezone, next_at, paused, last_fired_at";

fn decode(r: &Row) -> Result<ScheduleInfo, StoreError> {
    Ok(ScheduleInfo {
        name: r.try_get(0)?,
        workflow: r.try_get(1)?,
        input: r.try_get(2)?,
        cron: r.try_get(3)?,
        timezone: r.try_get(4)?,
        next_at: r.try_get(5)?,
        paused: r.try_get(6)?,
        last_fired_at: r.try_get(7)?,
    })
}

pub(super) async fn put(tx: &Tx<'_>, s: &ScheduleInfo, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO schedules (name, workflow, input, cron, timezone, next_at, paused, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (name) DO UPDATE SET workflow = EXCLUDED.workflow, input = EXCLUDED.input,
             cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, next_at = EXCLUDED.next_at",
        &[
            &s.name,
            &s.workflow,
            &s.input,
            &s.cron,
            &s.timezone,
            &s.next_at,
            &s.paused,
            &now,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn all(tx: &Tx<'_>) -> Result<Vec<ScheduleInfo>, StoreError> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM schedules ORDER BY name"),
        &[],
    )
    .await?
    .iter()
    .map(decode)
    .collect()
}

pub(super) async fn due(tx: &Tx<'_>, now: i64) -> Result<Vec<ScheduleInfo>, StoreError> {
    tx.query(
        &format!(
            "SELECT {COLUMNS} FROM schedules WHERE next_at <= $1 AND NOT paused
             ORDER BY next_at LIMIT 100"
        ),
        &[&now],
    )
    .await?
    .iter()
    .map(decode)
    .collect()
}

/// Moves the schedule on from exactly `due` and creates the tick's
/// workflow, in one transaction: a worker firing the same tick at once
/// waits on the row, then finds `next_at` moved and fires nothing.
pub(super) async fn fire(
    tx: &Tx<'_>,
    name: &str,
    due: i64,
    next_at: i64,
    workflow: &NewWorkflow,
) -> Result<Option<WorkflowId>, StoreError> {
    let moved = tx
        .execute(
            "UPDATE schedules SET next_at = $3, last_fired_at = $4
             WHERE name = $1 AND next_at = $2 AND NOT paused",
            &[&name, &due, &next_at, &workflow.now],
        )
        .await?;
    if moved == 0 {
        return Ok(None);
    }
    Ok(Some(workflows::create(tx, workflow).await?))
}

pub(super) async fn pause(
    tx: &Tx<'_>,
    name: &str,
    paused: bool,
    next_at: i64,
) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            "UPDATE schedules SET paused = $2,
                 next_at = CASE WHEN $2 THEN next_at ELSE $3 END
             WHERE name = $1",
            &[&name, &paused, &next_at],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn delete(tx: &Tx<'_>, name: &str) -> Result<bool, StoreError> {
    let n = tx
        .execute("DELETE FROM schedules WHERE name = $1", &[&name])
        .await?;
    Ok(n > 0)
}
