//! Signals: delivery (with the wake-up of a listening workflow in the same
//! transaction), lookup of pending ones, acknowledgement, cleanup.

use super::Tx;

use super::lifecycle::update;
use super::note_runnable;
use super::rows::{has_all_tags, parse_state};
use crate::store::codec::parse_id;
use crate::store::lifecycle::{Values, RUNNABLE};
use crate::store::{Delivery, NewSignal, PendingSignal, SignalTarget, StoreError, WorkflowId};

/// Where a signal to `target` would go.
pub(super) async fn resolve(tx: &Tx<'_>, target: &SignalTarget) -> Result<Delivery, StoreError> {
    match target {
        SignalTarget::Id(id) => state_of(tx, *id, false).await,
        // No tags would match every workflow: a target that names nobody.
        SignalTarget::Tags(tags) if tags.is_empty() => Ok(Delivery::NoMatch),
        SignalTarget::Tags(tags) => {
            let keys: Vec<&String> = tags.keys().collect();
            let values: Vec<&String> = tags.values().collect();
            let n = i64::try_from(tags.len()).unwrap_or(i64::MAX);
            let stmt = tx.prepare_cached(&tagged_sql()).await?;
            let rows = tx
                .query(&stmt, &[&keys[0], &values[0], &keys, &values, &n])
                .await?;
            Ok(match rows.as_slice() {
                [] => Delivery::NoMatch,
                [one] => Delivery::Delivered(parse_id(&one.try_get::<_, String>(0)?)?),
                many => Delivery::Ambiguous(many.len()),
            })
        }
    }
}

/// The unfinished workflows carrying every tag: `$1`/`$2` the first tag,
/// `$3`/`$4` all of them as parallel arrays, `$5` how many. The search
/// starts from the first tag's index entries, so its cost is the number of
/// workflows with that tag, not the number of workflows in the database.
pub(super) fn tagged_sql() -> String {
    format!(
        "SELECT w.id FROM workflow_tags t0 JOIN workflows w ON w.id = t0.workflow_id
         WHERE t0.key = $1 AND t0.value = $2
           AND w.state NOT IN ('completed', 'failed', 'cancelled') AND {}",
        has_all_tags(3)
    )
}

/// Stores the signal for its target, if the target is there and
/// unfinished, and wakes the target if it listens for this name.
///
/// The target's row is locked before anything else. A workflow going to
/// sleep holds the same lock while it checks for pending signals, so one
/// of the two transactions waits for the other and then sees its effect:
/// either the suspension finds this signal, or this delivery finds the
/// workflow asleep. Without the lock, under READ COMMITTED, each could miss
/// the other's uncommitted write and leave the workflow asleep for ever.
pub(super) async fn deliver(tx: &Tx<'_>, signal: &NewSignal) -> Result<Delivery, StoreError> {
    let mut delivery = resolve(tx, &signal.target).await?;
    if let Delivery::Delivered(id) = delivery {
        delivery = state_of(tx, id, true).await?;
    }
    if let Delivery::Delivered(id) = delivery {
        let id = id.to_string();
        let insert = tx
            .prepare_cached(
                "INSERT INTO signals (workflow_id, name, body, created_at) VALUES ($1, $2, $3, $4)",
            )
            .await?;
        tx.execute(&insert, &[&id, &signal.name, &signal.body, &signal.now])
            .await?;
        let woken = update(
            tx,
            &RUNNABLE,
            &Values::at(signal.now),
            "id = $1 AND state = 'sleeping' AND (listening::jsonb) ? $2",
            &[&id, &signal.name],
        )
        .await?;
        note_runnable(tx, &woken);
    }
    Ok(delivery)
}

/// Where a signal to `id` goes, from the workflow's state; with `lock`,
/// the row is locked first and read under the lock.
async fn state_of(tx: &Tx<'_>, id: WorkflowId, lock: bool) -> Result<Delivery, StoreError> {
    let sql = if lock {
        "SELECT state FROM workflows WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT state FROM workflows WHERE id = $1"
    };
    let stmt = tx.prepare_cached(sql).await?;
    let Some(row) = tx.query_opt(&stmt, &[&id.to_string()]).await? else {
        return Ok(Delivery::NotFound);
    };
    let state = parse_state(&row)?;
    Ok(if state.is_finished() {
        Delivery::Finished(state)
    } else {
        Delivery::Delivered(id)
    })
}

/// A workflow's pending signals of some names, oldest first.
const PENDING_SQL: &str = "SELECT seq, name, body FROM signals
     WHERE workflow_id = $1 AND name = ANY($2) ORDER BY seq LIMIT $3";
/// [`PENDING_SQL`] for every name (`$2`, empty, unused but bound alike).
const PENDING_ANY_SQL: &str = "SELECT seq, name, body FROM signals
     WHERE workflow_id = $1 AND cardinality($2::text[]) = 0 ORDER BY seq LIMIT $3";

pub(super) async fn pending(
    tx: &Tx<'_>,
    id: WorkflowId,
    names: &[String],
    limit: usize,
) -> Result<Vec<PendingSignal>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = if names.is_empty() {
        PENDING_ANY_SQL
    } else {
        PENDING_SQL
    };
    let stmt = tx.prepare_cached(sql).await?;
    tx.query(&stmt, &[&id.to_string(), &names, &limit])
        .await?
        .iter()
        .map(|r| {
            Ok(PendingSignal {
                seq: r.try_get(0)?,
                name: r.try_get(1)?,
                body: r.try_get(2)?,
            })
        })
        .collect()
}

/// Whether a signal of one of `names` (a JSON array) is pending.
pub(super) async fn any_pending(
    tx: &Tx<'_>,
    id: &str,
    names_json: &str,
) -> Result<bool, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM signals
             WHERE workflow_id = $1 AND name IN (SELECT jsonb_array_elements_text($2::text::jsonb)))",
        )
        .await?;
    Ok(tx.query_one(&stmt, &[&id, &names_json]).await?.try_get(0)?)
}

pub(super) async fn ack(tx: &Tx<'_>, id: WorkflowId, seqs: &[i64]) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("DELETE FROM signals WHERE seq = ANY($1) AND workflow_id = $2")
        .await?;
    tx.execute(&stmt, &[&seqs, &id.to_string()]).await?;
    Ok(())
}

/// Deletes every pending signal of the workflow `$1` (finished).
pub(super) const DELETE_ALL: &str = "DELETE FROM signals WHERE workflow_id = $1";

/// Deletes every pending signal of a finished workflow.
pub(super) async fn delete_all(tx: &Tx<'_>, id: &str) -> Result<(), StoreError> {
    let stmt = tx.prepare_cached(DELETE_ALL).await?;
    tx.execute(&stmt, &[&id]).await?;
    Ok(())
}
