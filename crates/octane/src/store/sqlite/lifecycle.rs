//! The workflow lifecycle ([`crate::store::lifecycle`]) in SQLite's dialect.

use rusqlite::{Connection, ToSql};

use crate::store::lifecycle::{Change, Param, Values};
use crate::store::StoreError;

/// Makes `change` to the rows `target` selects (`?1`, `?2`… in it are
/// `leading`), binding `values`; returns how many rows changed.
pub(super) fn update(
    conn: &Connection,
    change: &Change,
    values: &Values<'_>,
    target: &str,
    leading: &[&dyn ToSql],
) -> Result<usize, StoreError> {
    let mut params: Vec<Param> = Vec::new();
    let set = change.set_clause(|p| {
        params.push(p);
        format!("?{}", leading.len() + params.len())
    });
    let mut bound: Vec<&dyn ToSql> = leading.to_vec();
    bound.extend(params.iter().map(|p| value(values, *p)));
    Ok(conn
        .prepare_cached(&format!("UPDATE workflows SET {set} WHERE {target}"))?
        .execute(bound.as_slice())?)
}

fn value<'v>(v: &'v Values<'_>, p: Param) -> &'v dyn ToSql {
    match p {
        Param::Now => &v.now,
        Param::WakeAt => &v.wake_at,
        Param::Listening => &v.listening,
        Param::Child => &v.child,
        Param::Output => &v.output,
        Param::Error => &v.error,
        Param::Code => &v.code,
    }
}
