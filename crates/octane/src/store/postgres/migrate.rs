//! Applies the schema's migrations at open.

use deadpool_postgres::Client;

use super::schema::MIGRATIONS;
use crate::store::StoreError;

/// Brings the schema up to the newest version in one transaction (DDL is
/// transactional in Postgres, so a crash leaves the old version whole).
/// Processes opening the database at once queue on an advisory lock, or
/// (`advisory` false: a database without them) on the migrations table.
pub(super) async fn migrate(client: &mut Client, advisory: bool) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    if advisory {
        tx.execute("SELECT pg_advisory_xact_lock(7246413)", &[])
            .await?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS octane_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at BIGINT NOT NULL
         )",
    )
    .await?;
    if !advisory {
        tx.batch_execute("LOCK TABLE octane_migrations IN EXCLUSIVE MODE")
            .await?;
    }
    for &(version, sql) in MIGRATIONS {
        let applied = tx
            .query_opt(
                "SELECT 1 FROM octane_migrations WHERE version = $1",
                &[&version],
            )
            .await?
            .is_some();
        if applied {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Migration {
                version,
                detail: e.to_string(),
            })?;
        tx.execute(
            "INSERT INTO octane_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &crate::clock::now_ms()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
