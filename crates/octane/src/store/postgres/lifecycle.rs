//! The workflow lifecycle ([`crate::store::lifecycle`]) in PostgreSQL's
//! dialect.

use super::Tx;
use tokio_postgres::types::ToSql;

use super::rows;
use crate::store::lifecycle::{Change, Param, Values};
use crate::store::StoreError;

/// Makes `change` to the rows `target` selects (`$1`, `$2`… in it are
/// `leading`), binding `values`; returns how many rows changed.
pub(super) async fn update(
    tx: &Tx<'_>,
    change: &Change,
    values: &Values<'_>,
    target: &str,
    leading: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let mut params: Vec<Param> = Vec::new();
    let set = change.set_clause(|p| {
        params.push(p);
        format!("${}", leading.len() + params.len())
    });
    let error = values.error.map(rows::without_nul);
    let mut bound: Vec<&(dyn ToSql + Sync)> = leading.to_vec();
    for p in &params {
        bound.push(match p {
            Param::Now => &values.now,
            Param::WakeAt => &values.wake_at,
            Param::Listening => &values.listening,
            Param::Child => &values.child,
            Param::Output => &values.output,
            Param::Error => &error,
            Param::Code => &values.code,
        });
    }
    let stmt = tx
        .prepare_cached(&format!("UPDATE workflows SET {set} WHERE {target}"))
        .await?;
    Ok(tx.execute(&stmt, &bound).await?)
}
