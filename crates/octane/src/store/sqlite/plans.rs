//! `EXPLAIN QUERY PLAN` of the store's frequent queries, for
//! [`Catalog::query_plans`](crate::store::Catalog::query_plans).

use std::collections::BTreeMap;

use rusqlite::{Connection, ToSql};

use super::{history, leases, signals, workers, workflows};
use crate::store::{QueryPlan, StoreError};

/// Each frequent query whose table grows with the database's age,
/// explained with sample parameters. (Signals are deleted once taken, so
/// their table holds only pending ones.)
pub(super) fn explain_all(conn: &Connection) -> Result<Vec<QueryPlan>, StoreError> {
    let id = "00000000-0000-0000-0000-000000000000";
    let name = "name";
    let key: &[u8] = &[0x01];
    let (zero, one) = (0_i64, 1_i64);
    let tags = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let (tagged, tag_params) = signals::tagged_sql(&tags);
    let tag_params: Vec<&dyn ToSql> = tag_params.iter().map(|p| p as &dyn ToSql).collect();
    Ok(vec![
        explain(
            conn,
            "claim",
            "USING INDEX workflows_runnable (name=? AND wake_at<?)",
            &leases::claim_sql(1),
            &[&id, &zero, &zero, &one, &name],
        )?,
        explain(
            conn,
            "next wake-up",
            "USING INDEX workflows_runnable (name=?)",
            &leases::next_wake_sql(1),
            &[&name],
        )?,
        explain(
            conn,
            "loop boundaries",
            "USING COVERING INDEX events_loops (workflow_id=?)",
            history::LOOPS_SQL,
            &[&id],
        )?,
        explain(
            conn,
            "active range",
            "USING PRIMARY KEY (workflow_id=? AND location>? AND location<?)",
            &history::range_sql(true),
            &[&id, &key, &key],
        )?,
        explain(
            conn,
            "last active range",
            "USING PRIMARY KEY (workflow_id=? AND location>?)",
            &history::range_sql(false),
            &[&id, &key],
        )?,
        explain(
            conn,
            "signal by tags",
            "SEARCH t0 USING PRIMARY KEY (key=? AND value=?)",
            &tagged,
            &tag_params,
        )?,
        explain(
            conn,
            "prune",
            "USING INDEX workflows_finished (updated_at<?)",
            workflows::PRUNE_SQL,
            &[&zero, &one],
        )?,
        explain(
            conn,
            "waiters",
            "USING INDEX workflows_by_waiting_child (waiting_child=?)",
            &format!("SELECT id FROM workflows WHERE {}", workflows::WAITERS),
            &[&id],
        )?,
        explain(
            conn,
            "deadlines",
            "USING INDEX workflows_deadlines (deadline_at>? AND deadline_at<?)",
            workflows::OVERDUE_SQL,
            &[&zero],
        )?,
        explain(
            conn,
            "lease holders",
            "USING COVERING INDEX workflows_leased (lease_owner=? AND lease_expires>?)",
            workers::LEASE_HOLDERS_SQL,
            &[&id, &zero],
        )?,
        // Rare (a worker died), but in the writer, where a whole-table read
        // would hold up every commit.
        explain(
            conn,
            "dead worker's leases",
            "USING INDEX workflows_leased (lease_owner=? AND lease_expires>?)",
            workers::REAP_SQL,
            &[&id, &zero],
        )?,
    ])
}

fn explain(
    conn: &Connection,
    query: &'static str,
    expects: &'static str,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<QueryPlan, StoreError> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let lines = stmt
        .query_map(params, |r| r.get::<_, String>(3))?
        .collect::<Result<Vec<_>, _>>()?;
    // `SCAN` without an index is a read of the whole table; the json_each
    // of a name list is a table-valued function, not a table.
    let whole_table = lines
        .iter()
        .any(|l| l.starts_with("SCAN ") && !l.contains("INDEX") && !l.contains("json_each"));
    let plan = lines.join("\n");
    Ok(QueryPlan {
        query,
        expects,
        uses_index: plan.contains(expects) && !whole_table,
        plan,
    })
}
