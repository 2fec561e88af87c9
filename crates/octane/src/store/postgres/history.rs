//! History rows: loading active history, applying history writes.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{signals, workflows};
use crate::history::{
    active_ranges, forgotten_ranges, iterations_range, Event, EventKind, Location, LoopBoundary,
};
use crate::store::{StoreError, WorkflowId, WriteOp};

const EVENT_COLUMNS: &str =
    "location, version, kind, name, input_hash, data, error, attempts, iteration, done, recorded_at";

/// The active history: first the loop events (to learn which iterations are
/// forgotten), then only the key ranges outside forgotten iterations.
pub(super) async fn load(tx: &Transaction<'_>, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
    let id = id.to_string();
    let loops = tx
        .prepare_cached(
            "SELECT location, iteration, done FROM events WHERE workflow_id = $1 AND kind = 4",
        )
        .await?;
    let mut boundaries = Vec::new();
    for row in tx.query(&loops, &[&id]).await? {
        let done: bool = row.try_get(2)?;
        boundaries.push(LoopBoundary {
            location: decode_location(&row.try_get::<_, Vec<u8>>(0)?)?,
            first_active: if done {
                u64::MAX
            } else {
                decode_u64("iteration", row.try_get(1)?)?
            },
        });
    }
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE workflow_id = $1 \
             AND ($2::bytea IS NULL OR location >= $2) AND ($3::bytea IS NULL OR location < $3)"
        ))
        .await?;
    let mut events = Vec::new();
    for range in active_ranges(&forgotten_ranges(boundaries)) {
        for row in tx.query(&stmt, &[&id, &range.from, &range.to]).await? {
            events.push(decode_event(&row)?);
        }
    }
    Ok(events)
}

/// Every stored event, forgotten ones included, in history order.
pub(super) async fn all(tx: &Transaction<'_>, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE workflow_id = $1 ORDER BY location"
        ))
        .await?;
    tx.query(&stmt, &[&id.to_string()])
        .await?
        .iter()
        .map(decode_event)
        .collect()
}

/// Applies history writes in order.
pub(super) async fn apply(
    tx: &Transaction<'_>,
    workflow: WorkflowId,
    ops: &[WriteOp],
    now: i64,
) -> Result<(), StoreError> {
    let id = workflow.to_string();
    for op in ops {
        match op {
            WriteOp::Put(e) => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO events
                         (workflow_id, location, version, kind, name, input_hash, data, error, attempts, iteration, done, recorded_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                         ON CONFLICT (workflow_id, location) DO UPDATE SET
                           version = EXCLUDED.version, kind = EXCLUDED.kind, name = EXCLUDED.name,
                           input_hash = EXCLUDED.input_hash, data = EXCLUDED.data, error = EXCLUDED.error,
                           attempts = EXCLUDED.attempts, iteration = EXCLUDED.iteration, done = EXCLUDED.done,
                           recorded_at = EXCLUDED.recorded_at",
                    )
                    .await?;
                let version =
                    i32::try_from(e.version).map_err(|_| corrupt("version", e.version))?;
                let kind =
                    i32::try_from(e.kind.code()).map_err(|_| corrupt("kind", e.kind.code()))?;
                let attempts =
                    i32::try_from(e.attempts).map_err(|_| corrupt("attempts", e.attempts))?;
                tx.execute(
                    &stmt,
                    &[
                        &id,
                        &e.location.encode(),
                        &version,
                        &kind,
                        &e.name,
                        &i64::from_be_bytes(e.input_hash.to_be_bytes()),
                        &e.data,
                        &e.error,
                        &attempts,
                        &i64::try_from(e.iteration)
                            .map_err(|_| corrupt("iteration", e.iteration))?,
                        &e.done,
                        &now,
                    ],
                )
                .await?;
            }
            WriteOp::ForgetIterations {
                loop_location,
                below,
            } => {
                let (from, to) = iterations_range(loop_location, 0, *below);
                let stmt = tx
                    .prepare_cached(
                        "DELETE FROM events WHERE workflow_id = $1 AND location >= $2 AND location < $3",
                    )
                    .await?;
                tx.execute(&stmt, &[&id, &from, &to]).await?;
            }
            WriteOp::AckSignals(seqs) => signals::ack(tx, workflow, seqs).await?,
            WriteOp::SendSignal(signal) => {
                signals::deliver(tx, signal).await?;
            }
            WriteOp::CreateWorkflow(new) => workflows::create(tx, new).await?,
        }
    }
    Ok(())
}

fn decode_event(row: &Row) -> Result<Event, StoreError> {
    let kind: i32 = row.try_get(2)?;
    let version: i32 = row.try_get(1)?;
    let attempts: i32 = row.try_get(7)?;
    Ok(Event {
        location: decode_location(&row.try_get::<_, Vec<u8>>(0)?)?,
        version: u32::try_from(version).map_err(|_| corrupt("version", version))?,
        kind: EventKind::from_code(i64::from(kind)).ok_or_else(|| StoreError::Corrupt {
            table: "events",
            detail: format!("unknown event kind {kind}"),
        })?,
        name: row.try_get(3)?,
        input_hash: u64::from_be_bytes(row.try_get::<_, i64>(4)?.to_be_bytes()),
        data: row.try_get(5)?,
        error: row.try_get(6)?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts", attempts))?,
        iteration: decode_u64("iteration", row.try_get(8)?)?,
        done: row.try_get(9)?,
        recorded_at: row.try_get(10)?,
    })
}

fn decode_location(bytes: &[u8]) -> Result<Location, StoreError> {
    Location::decode(bytes).ok_or_else(|| StoreError::Corrupt {
        table: "events",
        detail: format!("undecodable location {bytes:02x?}"),
    })
}

fn decode_u64(what: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what, v))
}

fn corrupt(what: &'static str, v: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table: "events",
        detail: format!("{what} {v} out of range"),
    }
}
