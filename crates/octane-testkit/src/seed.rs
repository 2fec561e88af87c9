//! Databases that look old: many finished workflows written straight into
//! the tables, far faster than running them, for tests and benchmarks of
//! how the engine's costs grow with a database's age.

use octane::history::{Coordinate, EventKind, Location};

/// Steps recorded per seeded workflow.
pub const EVENTS_PER_WORKFLOW: u64 = 3;

/// Inserts `n` completed workflows named `name`, each tagged
/// `order=<its number>` and with [`EVENTS_PER_WORKFLOW`] activity events, finished at the epoch (so
/// retention would prune them first), then refreshes the planner's
/// statistics as the database's own upkeep would (`ANALYZE`; on
/// PostgreSQL `VACUUM ANALYZE`, as autovacuum does, which also marks the
/// pages all-visible for index-only scans).
///
/// # Panics
/// When the database refuses the inserts.
pub async fn finished_workflows(url: &str, name: &str, n: u64, events: u64) {
    // Ids are `<8 hex: i>-0000-4000-8000-<12 hex: this batch>`, distinct
    // across batches seeded into one database.
    let batch = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let n = i64::try_from(n).expect("a seed count fits in i64");
    let locations: Vec<Vec<u8>> = (0..events)
        .map(|i| Location::root().child(Coordinate::new(i)).encode())
        .collect();
    let kind = EventKind::Activity.code();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2)
             INSERT INTO workflows (id, name, input, tags, state, output, created_at, updated_at)
             SELECT printf('%08x-0000-4000-8000-', i) || ?3, ?1, 'null',
                    json_object('order', printf('%d', i)), 'completed', '0', i + o, i + o
             FROM n, (SELECT COUNT(*) AS o FROM workflows)",
            rusqlite::params![name, n, batch],
        )
        .expect("seed workflows");
        for location in &locations {
            conn.execute(
                "INSERT INTO events
                 (workflow_id, location, version, kind, name, input_hash, data, attempts, done)
                 SELECT id, ?1, 1, ?2, 'seeded', 0, '0', 1, 1 FROM workflows
                 WHERE id LIKE '%-' || ?3",
                rusqlite::params![location, kind, batch],
            )
            .expect("seed events");
        }
        conn.execute(
            "INSERT INTO workflow_tags (workflow_id, key, value)
             SELECT id, 'order', json_extract(tags, '$.order') FROM workflows
             WHERE id LIKE '%-' || ?1",
            [&batch],
        )
        .expect("seed tags");
        conn.execute_batch("ANALYZE").expect("analyze");
    } else {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to Postgres");
        tokio::spawn(connection);
        client
            .execute(
                "INSERT INTO workflows (id, name, input, tags, state, output, created_at, updated_at)
                 SELECT lpad(to_hex(i), 8, '0') || '-0000-4000-8000-' || $3, $1, 'null',
                        json_build_object('order', i::text)::text, 'completed', '0', i + o, i + o
                 FROM generate_series(0, $2::bigint - 1) AS i,
                      (SELECT COUNT(*) AS o FROM workflows) AS offset_",
                &[&name, &n, &batch],
            )
            .await
            .expect("seed workflows");
        for location in &locations {
            client
                .execute(
                    "INSERT INTO events
                     (workflow_id, location, version, kind, name, input_hash, data, attempts, done)
                     SELECT id, $1, 1, $2, 'seeded', 0, '0', 1, TRUE FROM workflows
                     WHERE id LIKE '%-' || $3",
                    &[location, &i32::try_from(kind).unwrap(), &batch],
                )
                .await
                .expect("seed events");
        }
        client
            .execute(
                "INSERT INTO workflow_tags (workflow_id, key, value)
                 SELECT id, 'order', tags::json->>'order' FROM workflows WHERE id LIKE '%-' || $1",
                &[&batch],
            )
            .await
            .expect("seed tags");
        client
            .batch_execute("VACUUM ANALYZE workflows, events, workflow_tags")
            .await
            .expect("vacuum analyze");
    }
}
