//! Applies the schema's migrations at open.

use rusqlite::Connection;

use super::schema::MIGRATIONS;
use crate::store::StoreError;

/// Brings the database up to the newest schema version, one transaction per
/// migration, so a crash leaves it at some whole version.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS octane_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    for &(version, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let applied: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM octane_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if applied {
            continue;
        }
        tx.execute_batch(sql).map_err(|e| StoreError::Migration {
            version,
            detail: e.to_string(),
        })?;
        tx.execute(
            "INSERT INTO octane_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, crate::clock::now_ms()),
        )?;
        tx.commit()?;
    }
    Ok(())
}
