//! The workflow lifecycle ([`crate::store::lifecycle`]) in PostgreSQL's
//! dialect.

use super::Tx;
use tokio_postgres::types::ToSql;

use super::rows;
use crate::store::lifecycle::{Change, Param, Values};
use crate::store::StoreError;

/// Makes `change` to the rows `target` selects (`$1`, `$2`… in it are
/// `leading`), binding `values`; returns the workflow names of the rows it
/// changed (what a wake-up announces, without reading them again).
pub(super) async fn update(
    tx: &Tx<'_>,
    change: &Change,
    values: &Values<'_>,
    target: &str,
    leading: &[&(dyn ToSql + Sync)],
) -> Result<Vec<String>, StoreError> {
    let update = Update::new(change, target, leading.len(), " RETURNING name");
    let error = update.error(values);
    let bound = update.bind(values, &error, leading);
    let stmt = tx.prepare_cached(&update.sql).await?;
    tx.query(&stmt, &bound)
        .await?
        .iter()
        .map(|row| Ok(row.try_get(0)?))
        .collect()
}

/// The `UPDATE workflows` making a change, with the values it binds after
/// the `leading` ones: prepared ahead of a pipeline, bound when sent.
pub(super) struct Update {
    pub sql: String,
    params: Vec<Param>,
}

impl Update {
    /// `target` selects the rows (`$1`… in it are the leading values);
    /// `tail` ends the statement (a `RETURNING` list).
    pub(super) fn new(change: &Change, target: &str, leading: usize, tail: &str) -> Self {
        let mut params: Vec<Param> = Vec::new();
        let set = change.set_clause(|p| {
            params.push(p);
            format!("${}", leading + params.len())
        });
        Update {
            sql: format!("UPDATE workflows SET {set} WHERE {target}{tail}"),
            params,
        }
    }

    /// The error text as the database takes it (see `rows::without_nul`),
    /// which [`Update::bind`] borrows.
    pub(super) fn error<'v>(&self, values: &Values<'v>) -> Option<std::borrow::Cow<'v, str>> {
        values.error.map(rows::without_nul)
    }

    /// The parameters: `leading`, then the change's values.
    pub(super) fn bind<'v>(
        &self,
        values: &'v Values<'_>,
        error: &'v Option<std::borrow::Cow<'_, str>>,
        leading: &[&'v (dyn ToSql + Sync)],
    ) -> Vec<&'v (dyn ToSql + Sync)> {
        let mut bound: Vec<&(dyn ToSql + Sync)> = leading.to_vec();
        for p in &self.params {
            bound.push(match p {
                Param::Now => &values.now,
                Param::WakeAt => &values.wake_at,
                Param::Listening => &values.listening,
                Param::Child => &values.child,
                Param::Output => &values.output,
                Param::Error => error,
                Param::Code => &values.code,
            });
        }
        bound
    }
}
