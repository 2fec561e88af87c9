//! Fresh databases for each scenario, and the raw commit rate of the store.

use std::time::Instant;

use octane::Engine;

/// Where scenarios get their databases.
pub(crate) enum Stores {
    Sqlite(tempfile::TempDir),
    /// The server's URL, and the prefix of this run's schemas.
    Postgres(String, String),
}

impl Stores {
    pub(crate) fn sqlite() -> anyhow::Result<Stores> {
        Ok(Stores::Sqlite(tempfile::tempdir_in(
            std::env::current_dir()?,
        )?))
    }

    pub(crate) fn postgres(url: String) -> Stores {
        Stores::Postgres(url, format!("bench_{}", uuid::Uuid::new_v4().simple()))
    }

    /// Drops the schemas this run made (a temporary directory cleans up
    /// after itself): a million seeded workflows per run would otherwise
    /// fill the server's disk.
    pub(crate) async fn clean_up(&self) -> anyhow::Result<()> {
        if let Stores::Postgres(base, run) = self {
            let client = connect(base).await?;
            let rows = client
                .query(
                    "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
                    &[run],
                )
                .await?;
            for row in rows {
                let schema: String = row.get(0);
                client
                    .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                    .await?;
            }
        }
        Ok(())
    }

    /// An engine on a database of its own.
    pub(crate) async fn fresh_engine(&self) -> anyhow::Result<Engine> {
        Ok(Engine::open(&self.fresh_url().await?).await?)
    }

    pub(crate) async fn fresh_url(&self) -> anyhow::Result<String> {
        match self {
            Stores::Sqlite(dir) => {
                let name = format!("{}.db", uuid::Uuid::new_v4().simple());
                Ok(format!("sqlite://{}", dir.path().join(name).display()))
            }
            Stores::Postgres(base, run) => {
                let schema = format!("{run}_{}", uuid::Uuid::new_v4().simple());
                let client = connect(base).await?;
                client
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .await?;
                let sep = if base.contains('?') { '&' } else { '?' };
                Ok(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
            }
        }
    }

    /// Single-row durable transactions per second, one writer, on the same
    /// disk or server: the physical limit for a sequential loop.
    pub(crate) async fn raw_commits(&self, n: u32) -> anyhow::Result<RawCommits> {
        match self {
            Stores::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.execute_batch("CREATE TABLE IF NOT EXISTS t (v INTEGER)")?;
                let mut raw = RawCommits::start(n);
                for i in 0..n {
                    conn.execute_batch("BEGIN")?;
                    conn.execute("INSERT INTO t VALUES (?1)", [i])?;
                    conn.execute_batch("COMMIT")?;
                    raw.committed();
                }
                Ok(raw)
            }
            Stores::Postgres(..) => {
                // A regular table: a temporary one skips the WAL, and with it
                // the cost being measured.
                let client = connect(&self.fresh_url().await?).await?;
                client
                    .batch_execute("CREATE TABLE raw_commits (v BIGINT)")
                    .await?;
                let stmt = client
                    .prepare("INSERT INTO raw_commits VALUES ($1)")
                    .await?;
                let mut raw = RawCommits::start(n);
                for i in 0..i64::from(n) {
                    client.execute(&stmt, &[&i]).await?;
                    raw.committed();
                }
                Ok(raw)
            }
        }
    }
}

/// One sample of raw commits: the rate, and each commit's latency.
pub(crate) struct RawCommits {
    start: Instant,
    last: Instant,
    /// Each commit's latency, µs.
    pub latencies_us: Vec<f64>,
}

impl RawCommits {
    fn start(n: u32) -> Self {
        let now = Instant::now();
        RawCommits {
            start: now,
            last: now,
            latencies_us: Vec::with_capacity(n as usize),
        }
    }

    fn committed(&mut self) {
        let now = Instant::now();
        self.latencies_us
            .push((now - self.last).as_secs_f64() * 1e6);
        self.last = now;
    }

    /// Commits per second over the sample.
    pub(crate) fn per_sec(&self) -> f64 {
        self.latencies_us.len() as f64 / (self.last - self.start).as_secs_f64()
    }
}

impl Stores {
    /// Rows per second in durable transactions of 512 rows the size of an
    /// event row, one writer: the physical limit for fan-out, whose
    /// commits share transactions.
    pub(crate) async fn raw_batched_rows_per_sec(&self, transactions: u32) -> anyhow::Result<f64> {
        const ROWS: i64 = 512;
        // A workflow id, an encoded location, a name, a small JSON output.
        let row = |i: i64| {
            (
                format!("{:08x}-0000-4000-8000-000000000000", i / 8),
                i.to_be_bytes().to_vec(),
                "noop",
                format!("{{\"value\":{i}}}"),
            )
        };
        let start = Instant::now();
        match self {
            Stores::Sqlite(dir) => {
                let mut conn = rusqlite::Connection::open(dir.path().join("raw_rows.db"))?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS e (w TEXT, l BLOB, n TEXT, d TEXT,
                     PRIMARY KEY (w, l)) WITHOUT ROWID",
                )?;
                for t in 0..i64::from(transactions) {
                    let tx = conn.transaction()?;
                    {
                        let mut stmt =
                            tx.prepare_cached("INSERT INTO e VALUES (?1, ?2, ?3, ?4)")?;
                        for i in t * ROWS..(t + 1) * ROWS {
                            stmt.execute(row(i))?;
                        }
                    }
                    tx.commit()?;
                }
            }
            Stores::Postgres(..) => {
                let mut client = connect(&self.fresh_url().await?).await?;
                client
                    .batch_execute(
                        "CREATE TABLE e (w TEXT, l BYTEA, n TEXT, d TEXT, PRIMARY KEY (w, l))",
                    )
                    .await?;
                for t in 0..i64::from(transactions) {
                    let tx = client.transaction().await?;
                    let stmt = tx.prepare("INSERT INTO e VALUES ($1, $2, $3, $4)").await?;
                    // Pipelined: the rows go out without waiting on each other.
                    let rows: Vec<_> = (t * ROWS..(t + 1) * ROWS).map(row).collect();
                    let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 4]> = rows
                        .iter()
                        .map(|(w, l, n, d)| [w as _, l as _, n as _, d as _])
                        .collect();
                    let inserts = params.iter().map(|p| tx.execute(&stmt, p));
                    futures::future::try_join_all(inserts).await?;
                    tx.commit().await?;
                }
            }
        }
        Ok((i64::from(transactions) * ROWS) as f64 / start.elapsed().as_secs_f64())
    }
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
