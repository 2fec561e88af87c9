//! Workflow rows: creation, lookup, state transitions and operator control.

use std::collections::BTreeMap;

use std::borrow::Cow;

use super::Tx;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_postgres::{Row, Statement};

use super::leases::{LockSet, LOCK_ROWS};
use super::lifecycle::{update, Update};
use super::rows::{has_all_tags, parse_state};
use super::{note_runnable, signals};
use crate::store::codec::parse_id;
use crate::store::lifecycle::{self, Change, Values, RUNNABLE};
use crate::store::{
    Census, Control, IfFinished, ListFilter, NewWorkflow, Owner, StateCount, StoreError,
    Transition, WorkflowId, WorkflowInfo, WorkflowState,
};

const COLUMNS: &str = "id, name, state, input, output, error, tags,
     CASE WHEN state <> 'running' THEN wake_at END, created_at, updated_at, error_code,
     CASE WHEN state = 'running' THEN lease_owner END,
     (SELECT host FROM workers k WHERE k.id = w.lease_owner),
     (SELECT pid FROM workers k WHERE k.id = w.lease_owner)";

/// The workflow of `$1` holding the key `$2`: the unfinished one if any,
/// else the newest, with whether it finished.
const HOLDER_SQL: &str = "SELECT id, state IN ('completed', 'failed', 'cancelled') FROM workflows
     WHERE name = $1 AND dispatch_key = $2 ORDER BY 2, created_at DESC LIMIT 1";

/// Inserts a workflow and its tags in one statement, unless its key is
/// held (see [`create`]); answers how many workflows it inserted (0 or 1).
pub(super) const INSERT_SQL: &str = "WITH w AS (
         INSERT INTO workflows
           (id, name, input, tags, state, wake_at, created_at, updated_at, parent_id, dispatch_key,
            deadline_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5, $6, $7, $8)
         ON CONFLICT (name, dispatch_key) WHERE dispatch_key IS NOT NULL
             AND state NOT IN ('completed', 'failed', 'cancelled')
         DO NOTHING
         RETURNING id),
     tagged AS (
         INSERT INTO workflow_tags (workflow_id, key, value)
         SELECT w.id, t.key, t.value FROM w, unnest($9::text[], $10::text[]) AS t (key, value))
     SELECT count(*) FROM w";

/// Sends [`INSERT_SQL`] (prepared as `stmt`) for `wf` on its first poll;
/// returns whether it inserted the workflow. Fails, before anything is
/// sent, on tags that do not encode.
pub(super) fn insert<'t>(
    tx: &'t Tx<'_>,
    stmt: &'t Statement,
    wf: &'t NewWorkflow,
) -> Result<impl std::future::Future<Output = Result<bool, StoreError>> + Send + 't, StoreError> {
    let tags = serde_json::to_string(&wf.tags).map_err(|e| StoreError::Corrupt {
        table: "workflows",
        detail: e.to_string(),
    })?;
    let id = wf.id.to_string();
    let parent = wf.parent.map(|p| p.to_string());
    let key = wf.key.as_ref().map(|k| k.key.clone());
    let (keys, values): (Vec<&String>, Vec<&String>) = wf.tags.iter().unzip();
    let sent = async move {
        let row = tx
            .query_one(
                stmt,
                &[
                    &id,
                    &wf.name,
                    &wf.input,
                    &tags,
                    &wf.now,
                    &parent,
                    &key,
                    &wf.deadline_at,
                    &keys,
                    &values,
                ],
            )
            .await?;
        let inserted = row.try_get::<_, i64>(0)? == 1;
        if inserted {
            note_runnable(tx, [&wf.name]);
        }
        Ok(inserted)
    };
    Ok(sent)
}

/// Inserts the workflow, unless its key is held. A concurrent dispatch
/// with the same key meets the unique index `workflows_by_key`: its insert
/// waits for ours, then does nothing, and it returns our workflow.
pub(super) async fn create(tx: &Tx<'_>, wf: &NewWorkflow) -> Result<WorkflowId, StoreError> {
    if let Some(key) = &wf.key {
        if let Some((id, finished)) = holder(tx, &wf.name, &key.key).await? {
            if !finished || key.if_finished == IfFinished::Return {
                return Ok(id);
            }
        }
    }
    let stmt = tx.prepare_cached(INSERT_SQL).await?;
    if insert(tx, &stmt, wf)?.await? {
        return Ok(wf.id);
    }
    let key = &wf
        .key
        .as_ref()
        .expect("only a keyed insert can conflict")
        .key;
    let (holder, _) = holder(tx, &wf.name, key)
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            table: "workflows",
            detail: format!(
                "key `{key}` of `{}` conflicted, yet no workflow holds it",
                wf.name
            ),
        })?;
    Ok(holder)
}

async fn holder(
    tx: &Tx<'_>,
    name: &str,
    key: &str,
) -> Result<Option<(WorkflowId, bool)>, StoreError> {
    let stmt = tx.prepare_cached(HOLDER_SQL).await?;
    match tx.query_opt(&stmt, &[&name, &key]).await? {
        None => Ok(None),
        Some(r) => Ok(Some((
            parse_id(&r.try_get::<_, String>(0)?)?,
            r.try_get(1)?,
        ))),
    }
}

pub(super) async fn get(tx: &Tx<'_>, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError> {
    let stmt = tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM workflows w WHERE id = $1"))
        .await?;
    tx.query_opt(&stmt, &[&id.to_string()])
        .await?
        .map(|r| decode(&r))
        .transpose()
}

pub(super) async fn list(
    tx: &Tx<'_>,
    filter: &ListFilter,
) -> Result<Vec<WorkflowInfo>, StoreError> {
    let keys: Vec<&String> = filter.tags.keys().collect();
    let values: Vec<&String> = filter.tags.values().collect();
    let n = i64::try_from(filter.tags.len()).unwrap_or(i64::MAX);
    let limit = i64::try_from(filter.limit.unwrap_or(100)).unwrap_or(i64::MAX);
    let state = filter.state.map(|s| s.as_str());
    let code = filter.code.map(|c| c.as_str());
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM workflows w
             WHERE ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR state = $2)
               AND ($7::text IS NULL OR error_code = $7)
               AND ($8::text IS NULL OR dispatch_key = $8)
               AND ($9::bigint IS NULL OR (created_at, id) < ($9, $10::text)) AND {}
             ORDER BY created_at DESC, id DESC LIMIT $6",
            has_all_tags(3)
        ))
        .await?;
    tx.query(
        &stmt,
        &[
            &filter.name,
            &state,
            &keys,
            &values,
            &n,
            &limit,
            &code,
            &filter.key,
            &filter.after.map(|a| a.created_at),
            &filter.after.map(|a| a.id.to_string()),
        ],
    )
    .await?
    .iter()
    .map(decode)
    .collect()
}

/// Applies a commit's transition, as the lifecycle table says; the lease was
/// fenced (and the row locked) just before.
pub(super) async fn transition(
    tx: &Tx<'_>,
    id: WorkflowId,
    transition: &Transition,
    now: i64,
) -> Result<(), StoreError> {
    let Some(change) = lifecycle::of_transition(transition) else {
        return Ok(());
    };
    let values = Values::of_transition(transition, now)?;
    apply(tx, &id.to_string(), &change, &values).await
}

/// Makes `change` to the workflow `id`, and what goes with it.
async fn apply(
    tx: &Tx<'_>,
    id: &str,
    change: &Change,
    values: &Values<'_>,
) -> Result<(), StoreError> {
    let own = update(tx, change, values, "id = $1", &[&id]).await?;
    let now = values.now;
    let mut concerns_workers = change.concerns_workers(values);
    if change.check_waits {
        // The wake-up may already be due: a signal that arrived while the
        // workflow ran, a child that finished meanwhile.
        let signal_due = match &values.listening {
            Some(names) => signals::any_pending(tx, id, names).await?,
            None => false,
        };
        let child_due = match &values.child {
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
            update(tx, &RUNNABLE, &Values::at(now), "id = $1", &[&id]).await?;
            concerns_workers = true;
        }
    }
    if change.drop_signals {
        signals::delete_all(tx, id).await?;
    }
    let mut woken = Vec::new();
    if change.wake_waiters {
        let wake = wake_waiters();
        let stmt = tx.prepare_cached(&wake.sql).await?;
        let at = Values::at(now);
        for row in tx.query(&stmt, &wake.bind(&at, &None, &[&id])).await? {
            woken.push(row.try_get::<_, String>(0)?);
        }
        concerns_workers |= !woken.is_empty();
    }
    if concerns_workers {
        note_runnable(tx, own.iter().chain(&woken));
    }
    Ok(())
}

/// Makes the workflows waiting on `$1` runnable, returning their names.
/// The fence locked those it saw; one that went to sleep while the fence
/// waited for this row is locked by this statement (see `leases`, "Waiting
/// on a workflow").
fn wake_waiters() -> Update {
    Update::new(&RUNNABLE, WAITERS, 1, " RETURNING name")
}

/// Finishing a workflow (completing or failing it) as statements that need
/// no answer before the next, for a group commit: the row's change, its
/// pending signals dropped, and the workflows waiting on it woken (whose
/// rows the group has locked, in id order, before any job's writes).
pub(super) struct Finish<'a> {
    id: String,
    values: Values<'a>,
    error: Option<Cow<'a, str>>,
    change: Update,
    wake: Update,
    woken_at: Values<'static>,
}

/// The prepared statements of a [`Finish`].
pub(super) struct FinishStatements {
    change: Statement,
    drop_signals: Statement,
    wake: Statement,
}

impl<'a> Finish<'a> {
    /// What `transition` does to `id`, if it finishes it; `None` for any
    /// other transition.
    pub(super) fn of(
        id: WorkflowId,
        transition: &'a Transition,
        now: i64,
    ) -> Result<Option<Self>, StoreError> {
        let Some(change) = lifecycle::of_transition(transition) else {
            return Ok(None);
        };
        if !change.state.is_finished() {
            return Ok(None);
        }
        let values = Values::of_transition(transition, now)?;
        let update = Update::new(&change, "id = $1", 1, "");
        let error = update.error(&values);
        Ok(Some(Finish {
            id: id.to_string(),
            values,
            error,
            change: update,
            wake: wake_waiters(),
            woken_at: Values::at(now),
        }))
    }

    /// Prepares the statements, before anything of the pipeline is sent.
    pub(super) async fn prepare(&self, tx: &Tx<'_>) -> Result<FinishStatements, StoreError> {
        Ok(FinishStatements {
            change: tx.prepare_cached(&self.change.sql).await?,
            drop_signals: tx.prepare_cached(signals::DELETE_ALL).await?,
            wake: tx.prepare_cached(&self.wake.sql).await?,
        })
    }

    /// The statements, each sent on its first poll; the last returns the
    /// names of the workflows it woke.
    pub(super) fn send<'t>(
        &'t self,
        tx: &'t Tx<'_>,
        stmts: &'t FinishStatements,
    ) -> [BoxFuture<'t, Result<Vec<String>, StoreError>>; 3] {
        let id: &(dyn tokio_postgres::types::ToSql + Sync) = &self.id;
        let change = self.change.bind(&self.values, &self.error, &[id]);
        const NO_ERROR: Option<Cow<'static, str>> = None;
        let wake = self.wake.bind(&self.woken_at, &NO_ERROR, &[id]);
        [
            async move {
                tx.execute(&stmts.change, &change).await?;
                Ok(Vec::new())
            }
            .boxed(),
            async move {
                tx.execute(&stmts.drop_signals, &[id]).await?;
                Ok(Vec::new())
            }
            .boxed(),
            async move {
                let rows = tx.query(&stmts.wake, &wake).await?;
                rows.iter()
                    .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
                    .collect()
            }
            .boxed(),
        ]
    }
}

/// The workflows asleep until `$1` finishes: its parent, and any other
/// workflow given it by a dispatch key. Only a sleeping workflow has a
/// `waiting_child` (going to sleep on a workflow sets it; every change out
/// of sleeping, a claim included, clears it), so the predicate needs no
/// state, and it matches the partial index `workflows_by_waiting_child`.
pub(super) const WAITERS: &str = "waiting_child = $1";

/// The oldest finished workflows last changed before `$1`, at most `$2`,
/// with how many events each has. `SKIP LOCKED`: two pruners (workers with
/// retention on) split the work instead of queueing behind each other's
/// row locks.
pub(super) const PRUNE_SQL: &str = "SELECT id,
         (SELECT COUNT(*) FROM events e WHERE e.workflow_id = workflows.id)
     FROM workflows
     WHERE state IN ('completed', 'failed', 'cancelled') AND updated_at < $1
     ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED";

/// Deletes finished workflows last changed before `before`, oldest first,
/// with their events, tags and signals, until about `max_rows` rows are
/// gone (events counted ahead, so that the deletes go out as one batch).
pub(super) async fn prune(tx: &Tx<'_>, before: i64, max_rows: usize) -> Result<u64, StoreError> {
    let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let mut ids: Vec<String> = Vec::new();
    let mut rows = 0;
    for row in tx.query(PRUNE_SQL, &[&before, &max_rows]).await? {
        ids.push(row.try_get(0)?);
        // The workflow row, its events, and a tag or so.
        rows += 2 + row.try_get::<_, i64>(1)?;
        if rows >= max_rows {
            break;
        }
    }
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

/// Unfinished workflows whose deadline is at or before `$1`.
pub(super) const OVERDUE_SQL: &str = "SELECT id FROM workflows
     WHERE deadline_at <= $1 AND deadline_at IS NOT NULL
       AND state NOT IN ('completed', 'failed', 'cancelled')
     ORDER BY deadline_at LIMIT 500";

/// Up to 500 workflows past their deadline, to cancel one by one.
pub(super) async fn overdue(tx: &Tx<'_>, now: i64) -> Result<Vec<WorkflowId>, StoreError> {
    tx.query(OVERDUE_SQL, &[&now])
        .await?
        .iter()
        .map(|row| parse_id(&row.try_get::<_, String>(0)?))
        .collect()
}

/// Cancels `id` if it is still unfinished and past its deadline: its row
/// and its waiters' locked in id order first (cancelling wakes them).
/// Returns whether it did.
pub(super) async fn expire(tx: &Tx<'_>, id: WorkflowId, now: i64) -> Result<bool, StoreError> {
    let Some(state) = lock_with_waiters(tx, id).await? else {
        return Ok(false);
    };
    let check = tx
        .prepare_cached("SELECT deadline_at <= $2 FROM workflows WHERE id = $1")
        .await?;
    let due: Option<bool> = tx
        .query_one(&check, &[&id.to_string(), &now])
        .await?
        .try_get(0)?;
    if state.is_finished() || due != Some(true) {
        return Ok(false);
    }
    apply(
        tx,
        &id.to_string(),
        &lifecycle::CANCEL,
        &Values::deadline(now),
    )
    .await?;
    Ok(true)
}

/// Locks `id`'s row and its waiters', in id order; returns `id`'s state.
async fn lock_with_waiters(
    tx: &Tx<'_>,
    id: WorkflowId,
) -> Result<Option<WorkflowState>, StoreError> {
    let stmt = tx.prepare_cached(LOCK_ROWS).await?;
    let rows = LockSet {
        id: id.to_string(),
        others: Vec::new(),
        with_waiters: true,
        stmt: &stmt,
    };
    rows.lock(tx)
        .await?
        .map(|(_, _, state)| crate::store::codec::parse_state(&state))
        .transpose()
}

pub(super) async fn control(
    tx: &Tx<'_>,
    id: WorkflowId,
    control: Control,
    now: i64,
) -> Result<Option<WorkflowState>, StoreError> {
    // Cancelling wakes the workflows waiting on it: all rows, in id order.
    let Some(before) = lock_with_waiters(tx, id).await? else {
        return Ok(None);
    };
    if let Some(change) = lifecycle::of_control(control, before) {
        apply(
            tx,
            &id.to_string(),
            &change,
            &Values::of_control(control, now),
        )
        .await?;
    }
    Ok(Some(before))
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
        state: crate::store::codec::parse_state(&row.try_get::<_, String>(2)?)?,
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
        owner: Owner::from_row(row.try_get(11)?, row.try_get(12)?, row.try_get(13)?),
    })
}

/// Workflows by name and state, and the loops' checkpointed iterations.
pub(super) async fn census(tx: &Tx<'_>) -> Result<Census, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT state, name, COUNT(*) FROM workflows GROUP BY name, state ORDER BY name, state",
        )
        .await?;
    let counts = tx
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(StateCount {
                state: parse_state(r)?,
                name: r.try_get(1)?,
                count: r.try_get::<_, i64>(2)?.unsigned_abs(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let stmt = tx
        .prepare_cached("SELECT COALESCE(SUM(iteration), 0)::bigint FROM events WHERE kind = 4")
        .await?;
    let loop_iterations: i64 = tx.query_one(&stmt, &[]).await?.try_get(0)?;
    Ok(Census {
        counts,
        loop_iterations: loop_iterations.unsigned_abs(),
    })
}
