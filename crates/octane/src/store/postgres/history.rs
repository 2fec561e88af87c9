//! History rows: loading active history, applying history writes.

use super::Tx;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_postgres::{Row, Statement};

use super::{leases, rows, signals, workflows};
use crate::history::{
    active_ranges, forgotten_ranges, iterations_range, Event, Location, LoopBoundary,
};
use crate::store::codec::{
    decode_count, decode_hash, decode_kind, decode_location, encode_count, encode_hash,
};
use crate::store::{Lease, StoreError, WorkflowId, WriteOp};

const EVENT_COLUMNS: &str =
    "location, version, kind, name, input_hash, data, error, attempts, iteration, done, recorded_at, deleted_below";

/// The loop events of a workflow: where each loop's active iterations start.
pub(super) const LOOPS_SQL: &str =
    "SELECT location, iteration, done FROM events WHERE workflow_id = $1 AND kind = 4";

/// The read of one active range, bounded above or not. Each shape is its own
/// statement so that both bounds reach the primary key as a range, also in
/// a generic plan.
pub(super) fn range_sql(bounded: bool) -> String {
    let upper = if bounded { " AND location < $3" } else { "" };
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE workflow_id = $1 AND location >= $2{upper}")
}

/// The active history: first the loop events (to learn which iterations are
/// forgotten), then only the key ranges outside forgotten iterations.
pub(super) async fn load(tx: &Tx<'_>, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
    let id = id.to_string();
    let loops = tx.prepare_cached(LOOPS_SQL).await?;
    let mut boundaries = Vec::new();
    for row in tx.query(&loops, &[&id]).await? {
        let done: bool = row.try_get(2)?;
        boundaries.push(LoopBoundary {
            location: decode_location(&row.try_get::<_, Vec<u8>>(0)?)?,
            first_active: if done {
                u64::MAX
            } else {
                decode_count("iteration", row.try_get(1)?)?
            },
        });
    }
    let mut events = Vec::new();
    for range in active_ranges(&forgotten_ranges(boundaries)) {
        let stmt = tx.prepare_cached(&range_sql(range.to.is_some())).await?;
        let rows = match &range.to {
            Some(to) => tx.query(&stmt, &[&id, &range.from, to]).await?,
            None => tx.query(&stmt, &[&id, &range.from]).await?,
        };
        for row in rows {
            events.push(decode_event(&row)?);
        }
    }
    Ok(events)
}

/// The loop events, in history order.
pub(super) async fn loops(tx: &Tx<'_>, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
    in_order(tx, id, "AND kind = 4").await
}

/// Every stored event, forgotten ones included, in history order.
pub(super) async fn all(tx: &Tx<'_>, id: WorkflowId) -> Result<Vec<Event>, StoreError> {
    in_order(tx, id, "").await
}

/// The workflow's events matching `condition`, in history order.
async fn in_order(tx: &Tx<'_>, id: WorkflowId, condition: &str) -> Result<Vec<Event>, StoreError> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE workflow_id = $1 {condition} ORDER BY location"
        ))
        .await?;
    tx.query(&stmt, &[&id.to_string()])
        .await?
        .iter()
        .map(decode_event)
        .collect()
}

/// Upserts one event.
const PUT: &str = "INSERT INTO events
     (workflow_id, location, version, kind, name, input_hash, data, error, attempts, iteration, done, recorded_at, deleted_below)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (workflow_id, location) DO UPDATE SET
       version = EXCLUDED.version, kind = EXCLUDED.kind, name = EXCLUDED.name,
       input_hash = EXCLUDED.input_hash, data = EXCLUDED.data, error = EXCLUDED.error,
       attempts = EXCLUDED.attempts, iteration = EXCLUDED.iteration, done = EXCLUDED.done,
       recorded_at = EXCLUDED.recorded_at, deleted_below = EXCLUDED.deleted_below";

/// Deletes a key range of one workflow's events.
const FORGET: &str =
    "DELETE FROM events WHERE workflow_id = $1 AND location >= $2 AND location < $3";

/// Prepares the statements [`apply`] pipelines, so that a caller
/// pipelining several `apply`s (a group commit) sends them in order.
pub(super) async fn prepare(tx: &Tx<'_>) -> Result<(), StoreError> {
    tx.prepare_cached(PUT).await?;
    tx.prepare_cached(FORGET).await?;
    Ok(())
}

/// Checks the lease and applies history writes in order, pipelined: the
/// fence and the event writes and range deletes that follow it go to the
/// server together, one round trip instead of one each. The server runs
/// them in the order they arrive, so a lost lease still fails the
/// transaction before anything commits, and a range delete still runs after
/// the inserts it covers. Writes that read before they write, or prepare
/// statements of their own (signals, child creation), wait for everything
/// before them.
///
/// The order of arrival is the order in which the futures are first polled
/// (a query is sent on its first poll) only if nothing before the send can
/// wait: so every pipelined statement is prepared beforehand. When each
/// future prepared its own, the inserts of a large batch on a connection
/// that had not prepared them yet waited on one shared preparation and sent
/// only after the range delete queued behind them (the test
/// `a_commit_forgets_the_events_it_carries_on_a_fresh_connection`).
///
/// `fence` (the lease check, not yet sent) goes first in the pipeline.
pub(super) async fn apply<'t>(
    tx: &'t Tx<'_>,
    fence: BoxFuture<'t, Result<(), StoreError>>,
    workflow: WorkflowId,
    ops: &'t [WriteOp],
    now: i64,
) -> Result<(), StoreError> {
    let id = workflow.to_string();
    // Every row is encoded before anything is sent: a value no column
    // holds must fail the commit before its first statement is on the
    // wire, not after a `COMMIT` queued behind it.
    let rows: Vec<Option<EventRow>> = ops
        .iter()
        .map(|op| match op {
            WriteOp::Put(e) => EventRow::encode(e).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_, _>>()?;
    let put_stmt = tx.prepare_cached(PUT).await?;
    let forget_stmt = tx.prepare_cached(FORGET).await?;
    let mut pipeline: Vec<BoxFuture<'_, Result<(), StoreError>>> = vec![fence];
    for (op, row) in ops.iter().zip(&rows) {
        match op {
            WriteOp::Put(e) => {
                let row = row.as_ref().expect("encoded above");
                pipeline.push(put(tx, &put_stmt, &id, e, row, now).boxed());
            }
            WriteOp::ForgetIterations {
                loop_location,
                from,
                below,
            } => pipeline.push(forget(tx, &forget_stmt, &id, loop_location, *from, *below).boxed()),
            WriteOp::AckSignals(seqs) => {
                drain(&mut pipeline).await?;
                signals::ack(tx, workflow, seqs).await?;
            }
            WriteOp::SendSignal(signal) => {
                drain(&mut pipeline).await?;
                signals::deliver(tx, signal).await?;
            }
            WriteOp::CreateWorkflow(new) => {
                drain(&mut pipeline).await?;
                workflows::create(tx, new).await?;
            }
        }
    }
    drain(&mut pipeline).await
}

/// Sends every queued statement and waits for all of them. `try_join_all`
/// first-polls them in order (each sends at once: see [`apply`]).
async fn drain(
    pipeline: &mut Vec<BoxFuture<'_, Result<(), StoreError>>>,
) -> Result<(), StoreError> {
    futures::future::try_join_all(std::mem::take(pipeline)).await?;
    Ok(())
}

/// The columns of an event that must be checked to fit.
struct EventRow {
    location: Vec<u8>,
    version: i32,
    kind: i32,
    attempts: i32,
    iteration: i64,
    deleted_below: i64,
    error: Option<String>,
}

impl EventRow {
    fn encode(e: &Event) -> Result<Self, StoreError> {
        let int = |what, v: u64| -> Result<i32, StoreError> {
            Ok(i32::try_from(encode_count(what, v, 32)?).expect("checked to fit 32 bits"))
        };
        Ok(EventRow {
            location: e.location.encode(),
            version: int("version", u64::from(e.version))?,
            kind: int("kind", u64::try_from(e.kind.code()).unwrap_or(u64::MAX))?,
            attempts: int("attempts", u64::from(e.attempts))?,
            iteration: encode_count("iteration", e.iteration, 64)?,
            deleted_below: encode_count("deleted_below", e.deleted_below, 64)?,
            error: e
                .error
                .as_deref()
                .map(|t| rows::without_nul(t).into_owned()),
        })
    }
}

/// Upserts `e` (encoded as `row`) with the prepared [`PUT`]; sends on its
/// first poll.
async fn put(
    tx: &Tx<'_>,
    stmt: &Statement,
    id: &str,
    e: &Event,
    row: &EventRow,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        stmt,
        &[
            &id,
            &row.location,
            &row.version,
            &row.kind,
            &e.name,
            &encode_hash(e.input_hash),
            &e.data,
            &row.error,
            &row.attempts,
            &row.iteration,
            &e.done,
            &now,
            &row.deleted_below,
        ],
    )
    .await?;
    Ok(())
}

/// Deletes the events of a loop's iterations `[from, below)` with the
/// prepared [`FORGET`]; sends on its first poll.
async fn forget(
    tx: &Tx<'_>,
    stmt: &Statement,
    id: &str,
    loop_location: &Location,
    from: u64,
    below: u64,
) -> Result<(), StoreError> {
    let (from, to) = iterations_range(loop_location, from, below);
    tx.execute(stmt, &[&id, &from, &to]).await?;
    Ok(())
}

/// A commit of event writes and deletions alone, in one statement sent
/// outside any transaction: the fence, the deletions and the upserts as
/// data-modifying parts of one `WITH`, so that it costs one message and
/// one statement, as a single-row insert does. The deletions and upserts
/// each read the fence's answer, so the fence runs (and locks the row)
/// before either writes; when it fails, the statement fails and nothing
/// lands. Parameters: `$1`-`$5` the fence's, `$6`/`$7` the deleted key
/// range (none when null), `$8`-`$17` and `$19` the events' columns, `$18`
/// the time. One range as two values, not a list of ranges: a list joined
/// to the table lets a generic plan walk all the workflow's events (and
/// the dead entries of earlier deletions) for every commit.
static ONE_STATEMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH fence (ok) AS ({fence}),
         forgotten AS (
             DELETE FROM events
             WHERE workflow_id = $2 AND location >= $6 AND location < $7
               AND (SELECT ok FROM fence) = 1),
         put AS (
             INSERT INTO events
               (workflow_id, location, version, kind, name, input_hash, data, error, attempts,
                iteration, done, recorded_at, deleted_below)
             SELECT $2, r.location, r.version, r.kind, r.name, r.input_hash, r.data, r.error,
                    r.attempts, r.iteration, r.done, $18, r.deleted_below
             FROM unnest($8::bytea[], $9::int[], $10::int[], $11::text[], $12::bigint[],
                         $13::text[], $14::text[], $15::int[], $16::bigint[], $17::bool[],
                         $19::bigint[])
               AS r (location, version, kind, name, input_hash, data, error, attempts,
                     iteration, done, deleted_below)
             WHERE (SELECT ok FROM fence) = 1
             ON CONFLICT (workflow_id, location) DO UPDATE SET
               version = EXCLUDED.version, kind = EXCLUDED.kind, name = EXCLUDED.name,
               input_hash = EXCLUDED.input_hash, data = EXCLUDED.data, error = EXCLUDED.error,
               attempts = EXCLUDED.attempts, iteration = EXCLUDED.iteration, done = EXCLUDED.done,
               recorded_at = EXCLUDED.recorded_at, deleted_below = EXCLUDED.deleted_below)
         SELECT ok FROM fence",
        fence = leases::FENCE
    )
});

/// The SQL of [`OneStatement`], for the plan checks.
pub(super) fn one_statement_sql() -> &'static str {
    &ONE_STATEMENT
}

/// The columns of the events and the key ranges of one [`ONE_STATEMENT`].
#[derive(Default)]
pub(super) struct OneStatement {
    forget: Option<(Vec<u8>, Vec<u8>)>,
    location: Vec<Vec<u8>>,
    version: Vec<i32>,
    kind: Vec<i32>,
    name: Vec<String>,
    input_hash: Vec<i64>,
    data: Vec<Option<String>>,
    error: Vec<Option<String>>,
    attempts: Vec<i32>,
    iteration: Vec<i64>,
    done: Vec<bool>,
    deleted_below: Vec<i64>,
}

impl OneStatement {
    /// `ops` as one statement, if their order cannot matter: only event
    /// writes and at most one deletion, no two writes to one location, and
    /// no write inside the deleted range (in one statement every part sees
    /// the rows as they were before it). `None` otherwise: [`apply`] keeps
    /// the order. Fails, before anything is sent, on a value no column
    /// holds.
    pub(super) fn of(ops: &[WriteOp]) -> Result<Option<Self>, StoreError> {
        let mut one = OneStatement::default();
        for op in ops {
            match op {
                WriteOp::Put(e) => {
                    let row = EventRow::encode(e)?;
                    one.location.push(row.location);
                    one.version.push(row.version);
                    one.kind.push(row.kind);
                    one.name.push(e.name.clone());
                    one.input_hash.push(encode_hash(e.input_hash));
                    one.data.push(e.data.clone());
                    one.error.push(row.error);
                    one.attempts.push(row.attempts);
                    one.iteration.push(row.iteration);
                    one.done.push(e.done);
                    one.deleted_below.push(row.deleted_below);
                }
                WriteOp::ForgetIterations {
                    loop_location,
                    from,
                    below,
                } => {
                    if one.forget.is_some() {
                        return Ok(None);
                    }
                    one.forget = Some(iterations_range(loop_location, *from, *below));
                }
                WriteOp::AckSignals(_) | WriteOp::SendSignal(_) | WriteOp::CreateWorkflow(_) => {
                    return Ok(None)
                }
            }
        }
        let mut locations: Vec<&Vec<u8>> = one.location.iter().collect();
        locations.sort();
        let repeated = locations.windows(2).any(|w| w[0] == w[1]);
        let deleted = one
            .forget
            .as_ref()
            .is_some_and(|(from, to)| one.location.iter().any(|l| l >= from && l < to));
        Ok((!repeated && !deleted).then_some(one))
    }

    /// Sends the statement, fenced on `lease`, on a connection outside any
    /// transaction: it commits on its own.
    pub(super) async fn send(
        &self,
        tx: &Tx<'_>,
        lease: &Lease,
        now: i64,
    ) -> Result<(), StoreError> {
        let stmt = tx.prepare_cached(&ONE_STATEMENT).await?;
        let id = lease.workflow_id.to_string();
        tx.query_one(
            &stmt,
            &[
                &vec![id.clone()],
                &id,
                &false,
                &lease.owner.to_string(),
                &lease.epoch,
                &self.forget.as_ref().map(|(from, _)| from),
                &self.forget.as_ref().map(|(_, to)| to),
                &self.location,
                &self.version,
                &self.kind,
                &self.name,
                &self.input_hash,
                &self.data,
                &self.error,
                &self.attempts,
                &self.iteration,
                &self.done,
                &now,
                &self.deleted_below,
            ],
        )
        .await
        .map(drop)
        .map_err(|e| leases::fence_error(e, lease))
    }
}

fn decode_event(row: &Row) -> Result<Event, StoreError> {
    let small = |what, i| -> Result<u32, StoreError> {
        let v = decode_count(what, i64::from(row.try_get::<_, i32>(i)?))?;
        Ok(u32::try_from(v).expect("an i32 that is not negative fits a u32"))
    };
    Ok(Event {
        location: decode_location(&row.try_get::<_, Vec<u8>>(0)?)?,
        version: small("version", 1)?,
        kind: decode_kind(i64::from(row.try_get::<_, i32>(2)?))?,
        name: row.try_get(3)?,
        input_hash: decode_hash(row.try_get(4)?),
        data: row.try_get(5)?,
        error: row.try_get(6)?,
        attempts: small("attempts", 7)?,
        iteration: decode_count("iteration", row.try_get(8)?)?,
        done: row.try_get(9)?,
        recorded_at: row.try_get(10)?,
        deleted_below: decode_count("deleted_below", row.try_get(11)?)?,
    })
}
