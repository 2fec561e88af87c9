//! Octane's own test support, shared by the library's behaviour tests and
//! the CLI's: fresh databases, fast workers, execution counters, waiting on
//! conditions, store wrappers that crash or inject faults, and child worker
//! processes to kill.
//!
//! Every behaviour test body takes a [`TestDb`] and is instantiated per
//! store by [`store_tests!`]. The Postgres half runs when
//! `OCTANE_TEST_POSTGRES_URL` was set when this crate was built, and shows
//! as ignored (with the reason) otherwise.

pub mod crash;
pub mod faults;
pub mod http;
pub mod process;
pub mod seed;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::store::Store;
use octane::{Worker, WorkflowInfo, WorkflowState};

/// A fresh database for one test: a SQLite file in a temporary directory,
/// or a new schema in the PostgreSQL database `OCTANE_TEST_POSTGRES_URL`
/// names (dropped afterwards).
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

/// The variable naming the PostgreSQL database of the Postgres suite.
pub const POSTGRES_URL: &str = "OCTANE_TEST_POSTGRES_URL";
/// Set (to anything) to run the Postgres tests polling only: no
/// `LISTEN`/`NOTIFY`, no advisory locks, as on a Postgres-compatible
/// database without them.
pub const POSTGRES_POLLING: &str = "OCTANE_TEST_POSTGRES_POLLING";

impl TestDb {
    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("octane.db").display());
        TestDb {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A new schema in the Postgres test database.
    pub async fn postgres() -> TestDb {
        let base = std::env::var(POSTGRES_URL).expect("OCTANE_TEST_POSTGRES_URL");
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("connect to the Postgres test database");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create a test schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        if std::env::var_os(POSTGRES_POLLING).is_some() {
            url.push_str("&notify=off");
        }
        TestDb {
            url,
            _dir: None,
            postgres: Some((base, schema)),
        }
    }

    /// Whether this is the Postgres database.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Runs one SQL statement directly against the database, for tests
    /// that damage data on purpose (`?1`-style parameters are written as
    /// `$1` for Postgres).
    pub async fn execute_sql(&self, sql: &str, param: &str) {
        match self.connect().await {
            Direct::Sqlite(conn) => {
                conn.execute(sql, [param]).unwrap();
            }
            Direct::Postgres(client) => {
                client
                    .execute(&sql.replace("?1", "$1"), &[&param])
                    .await
                    .unwrap();
            }
        }
    }

    /// Runs SQL statements without parameters directly against the
    /// database.
    pub async fn execute_batch(&self, sql: &str) {
        match self.connect().await {
            Direct::Sqlite(conn) => conn.execute_batch(sql).unwrap(),
            Direct::Postgres(client) => client.batch_execute(sql).await.unwrap(),
        }
    }

    /// A connection of the database's own driver, past the store.
    async fn connect(&self) -> Direct {
        if self.postgres.is_none() {
            let path = self.url.strip_prefix("sqlite://").unwrap();
            return Direct::Sqlite(rusqlite::Connection::open(path).unwrap());
        }
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        Direct::Postgres(client)
    }

    /// Opens the database as a store.
    pub async fn store(&self) -> Arc<dyn Store> {
        octane::store::open(&self.url).await.expect("open store")
    }

    /// An engine over this database (no workflows registered yet).
    pub async fn engine(&self) -> Engine {
        Engine::open(&self.url).await.expect("open engine")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.postgres.take() {
            // Drop the schema from a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok((client, connection)) =
                        tokio_postgres::connect(&base, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(connection);
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A test's own connection to its database.
enum Direct {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

/// Runs each named test body once per store: `store_tests!(a, b);` makes
/// `sqlite::a`, `sqlite::b`, `postgres::a` and `postgres::b`. The Postgres
/// half runs when `OCTANE_TEST_POSTGRES_URL` was set at build time, and
/// shows as ignored (with the reason) otherwise.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestDb::sqlite()).await
                }
            )*
        }
        $crate::postgres_tests!($($name),*);
    };
}

/// The Postgres half of [`store_tests!`] alone, for tests of what only a
/// shared server does (many processes on one database): `postgres::name`.
#[macro_export]
macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                $crate::postgres_test! {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::$name($crate::TestDb::postgres().await).await
                    }
                }
            )*
        }
    };
}

/// A test that needs the Postgres test database: as it is when this kit
/// was built with `OCTANE_TEST_POSTGRES_URL` set, ignored with the reason
/// otherwise. (The switch is this crate's own build-time cfg, so the crates
/// whose tests use the kit need no build script.)
#[cfg(octane_postgres_tests)]
#[macro_export]
macro_rules! postgres_test {
    ($($test:tt)*) => { $($test)* };
}

/// A test that needs the Postgres test database: as it is when this kit
/// was built with `OCTANE_TEST_POSTGRES_URL` set, ignored with the reason
/// otherwise.
#[cfg(not(octane_postgres_tests))]
#[macro_export]
macro_rules! postgres_test {
    ($($test:tt)*) => {
        #[ignore = "Postgres suite skipped: set OCTANE_TEST_POSTGRES_URL to run it"]
        $($test)*
    };
}

/// A test that restarts the Postgres test server: needs
/// `OCTANE_TEST_POSTGRES_CLUSTER` (`VERSION NAME` for `pg_ctlcluster`) as
/// well, when this kit was built.
#[cfg(all(octane_postgres_tests, octane_postgres_restart_tests))]
#[macro_export]
macro_rules! postgres_restart_test {
    ($($test:tt)*) => { $($test)* };
}

/// A test that restarts the Postgres test server: needs
/// `OCTANE_TEST_POSTGRES_CLUSTER` (`VERSION NAME` for `pg_ctlcluster`) as
/// well, when this kit was built.
#[cfg(not(all(octane_postgres_tests, octane_postgres_restart_tests)))]
#[macro_export]
macro_rules! postgres_restart_test {
    ($($test:tt)*) => {
        #[ignore = "Postgres restart test skipped: set OCTANE_TEST_POSTGRES_URL and OCTANE_TEST_POSTGRES_CLUSTER to run it"]
        $($test)*
    };
}

/// Creates a workflow straight in `store` and claims it, as a worker would,
/// for tests that write a history by hand: returns the lease to write under
/// (its `workflow_id` is the new workflow). Its clock reads 1 ms.
pub async fn claim_new(store: &dyn Store, name: &str, input: &str) -> octane::store::Lease {
    let id = WorkflowId::new();
    store
        .catalog()
        .create(octane::store::NewWorkflow {
            id,
            name: name.into(),
            input: input.into(),
            tags: Default::default(),
            now: 1,
            parent: None,
            key: None,
            deadline_at: None,
        })
        .await
        .expect("create the workflow");
    let claimed = store
        .claim(octane::store::ClaimRequest {
            owner: uuid::Uuid::new_v4(),
            names: vec![name.into()],
            limit: 1,
            now: 1,
            expires_at: 1,
        })
        .await
        .expect("claim the workflow");
    claimed.workflows[0].lease.clone()
}

/// A worker tuned for tests: short leases so takeovers after a simulated
/// crash are quick (yet long enough that a heartbeat delayed by a busy
/// machine does not lose one), and frequent polling.
pub fn fast_worker(engine: &Engine) -> Worker {
    engine
        .worker()
        .lease_ttl(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(20))
        .spawn()
}

/// Waits until `check` returns `Some`, polling; panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for a workflow to reach `state`.
pub async fn wait_state(engine: &Engine, id: WorkflowId, state: WorkflowState) -> WorkflowInfo {
    let what = format!("workflow {id} to be {state}");
    eventually(&what, Duration::from_secs(30), || async {
        let info = engine.get(id).await.expect("get workflow");
        (info.state == state).then_some(info)
    })
    .await
}

/// Waits for a workflow's output, with a deadline.
pub async fn wait_output<W: Workflow>(engine: &Engine, id: WorkflowId) -> W::Output {
    tokio::time::timeout(Duration::from_secs(60), engine.wait::<W>(id))
        .await
        .expect("workflow did not finish in time")
        .expect("workflow failed")
}

static COUNTS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);

/// Counts one execution of `key` and returns the new count.
pub fn count(key: &str) -> u64 {
    let mut counts = COUNTS.lock().unwrap();
    let c = counts.entry(key.to_string()).or_default();
    *c += 1;
    *c
}

/// How often `key` was executed.
pub fn executions(key: &str) -> u64 {
    COUNTS.lock().unwrap().get(key).copied().unwrap_or(0)
}

/// Executions of every key starting with `prefix`.
pub fn executions_with_prefix(prefix: &str) -> HashMap<String, u64> {
    COUNTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// A unique key prefix for one test run.
pub fn unique(name: &str) -> String {
    format!("{name}/{}", uuid::Uuid::new_v4())
}

/// A workflow that sleeps an hour: it never finishes within a test.
#[derive(Debug)]
pub struct Sleeper;

impl Workflow for Sleeper {
    const NAME: &'static str = "sleeper";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        ctx.sleep(Duration::from_secs(3600)).await?;
        Ok(())
    }
}

/// An activity that counts its executions under `key` and returns `value`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Step {
    pub key: String,
    pub value: u64,
}

impl Activity for Step {
    const NAME: &'static str = "step";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        count(&self.key);
        Ok(self.value)
    }
}

/// A workflow of `N` [`Step`]s one after the other: step `i` counts under
/// `{key}/{i}` and returns `i`; the workflow returns their sum.
#[derive(Debug)]
pub struct Steps<const N: u64>;

impl<const N: u64> Workflow for Steps<N> {
    const NAME: &'static str = "steps";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let mut total = 0;
        for i in 1..=N {
            total += ctx
                .activity(Step {
                    key: format!("{key}/{i}"),
                    value: i,
                })
                .await?;
        }
        Ok(total)
    }
}
