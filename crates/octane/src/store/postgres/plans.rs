//! `EXPLAIN` of the store's frequent queries, for
//! [`Catalog::query_plans`](crate::store::Catalog::query_plans).

use super::Tx;
use tokio_postgres::types::ToSql;

use super::{history, leases, signals, workers, workflows};
use crate::store::{QueryPlan, StoreError};

/// Each frequent query whose table grows with the database's age,
/// explained with sample parameters. (Signals are deleted once taken, so
/// their table holds only pending ones.)
pub(super) async fn explain_all(tx: &Tx<'_>) -> Result<Vec<QueryPlan>, StoreError> {
    let id = "00000000-0000-0000-0000-000000000000";
    let names = vec!["name".to_string()];
    let key: &[u8] = &[0x01];
    let (zero, one) = (0_i64, 1_i64);
    let (k, v) = ("k".to_string(), "v".to_string());
    let (keys, values) = (vec![k.clone()], vec![v.clone()]);
    // The columns of one event, for the one-statement commit.
    let (ids, no, blobs) = (vec![id.to_string()], false, vec![key.to_vec()]);
    let (ints, bigints, bools) = (vec![0_i32], vec![0_i64], vec![false]);
    let (texts, maybe) = (vec![k.clone()], vec![None::<String>]);
    let checks: [(&'static str, &'static str, String, Vec<&(dyn ToSql + Sync)>); 11] = [
        (
            "claim",
            "Index Cond: ((name = n.name) AND (wake_at <=",
            leases::claim_sql(),
            vec![&id, &zero, &zero, &one, &names],
        ),
        (
            "next wake-up",
            "Index Cond: (name = n.name)",
            leases::NEXT_WAKE_SQL.to_string(),
            vec![&names],
        ),
        (
            "loop boundaries",
            "Index Only Scan using events_loops",
            history::LOOPS_SQL.to_string(),
            vec![&id],
        ),
        (
            "active range",
            "AND (location >= '\\x01'::bytea) AND (location < '\\x01'::bytea))",
            history::range_sql(true),
            vec![&id, &key, &key],
        ),
        (
            "last active range",
            "AND (location >= '\\x01'::bytea))",
            history::range_sql(false),
            vec![&id, &key],
        ),
        (
            "signal by tags",
            "Index Cond: ((key = 'k'::text) AND (value = 'v'::text))",
            signals::tagged_sql(),
            vec![&k, &v, &keys, &values, &one],
        ),
        (
            "prune",
            "Index Cond: (updated_at <",
            workflows::PRUNE_SQL.to_string(),
            vec![&zero, &one],
        ),
        (
            "waiters",
            "using workflows_by_waiting_child",
            format!("SELECT id FROM workflows WHERE {}", workflows::WAITERS),
            vec![&id],
        ),
        (
            "deadlines",
            "workflows_deadlines",
            workflows::OVERDUE_SQL.to_string(),
            vec![&zero],
        ),
        (
            "one-statement commit",
            "AND (location >= '\\x01'::bytea) AND (location < '\\x01'::bytea))",
            history::one_statement_sql().to_string(),
            vec![
                &ids, &id, &no, &id, &one, &key, &key, &blobs, &ints, &ints, &texts, &bigints,
                &maybe, &maybe, &ints, &bigints, &bools, &zero, &bigints,
            ],
        ),
        (
            "lease holders",
            "Index Cond: ((lease_owner = w.id) AND (lease_expires >",
            workers::lease_holders_sql(),
            vec![&id],
        ),
    ];
    let mut plans = Vec::with_capacity(checks.len());
    for (query, expects, sql, params) in checks {
        let lines: Vec<String> = tx
            .query(&format!("EXPLAIN {sql}"), &params)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let whole_table = lines.iter().any(|l| l.contains("Seq Scan on "));
        let plan = lines.join("\n");
        plans.push(QueryPlan {
            query,
            expects,
            uses_index: plan.contains(expects) && !whole_table,
            plan,
        });
    }
    Ok(plans)
}
