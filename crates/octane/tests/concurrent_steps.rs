//! `join` runs steps concurrently at locations fixed in code order;
//! `branch` nests steps under their own location. Both replay exactly.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use octane::prelude::*;
use support::crash::{activity_commits, run_until_crash, CrashAfter};
use support::process::{child_db, executions as logged, log_execution, spawn_child};
use support::{count, eventually, executions, fast_worker, unique, wait_output, Step, TestDb};

/// Sleeps `ms` before returning `value`, so later tuple members can finish
/// first.
#[derive(Serialize, Deserialize)]
struct Delayed {
    key: String,
    ms: u64,
    value: u64,
}

impl Activity for Delayed {
    const NAME: &'static str = "delayed";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        count(&self.key);
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(self.value)
    }
}

struct Fanned;
impl Workflow for Fanned {
    const NAME: &'static str = "fanned";
    type Input = String;
    type Output = (u64, u64, u64, u64);
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<(u64, u64, u64, u64)> {
        let d = |name: &str, ms, value| Delayed {
            key: format!("{key}/{name}"),
            ms,
            value,
        };
        // A version check that records nothing for this new workflow's
        // replays and a removed step that finds nothing must not shift the
        // locations the join takes.
        ctx.removed::<Step>()?;
        let (a, b, c) = ctx
            .join((d("a", 60, 1), d("b", 30, 2), d("c", 0, 3)))
            .await?;
        let inner = ctx
            .branch(|ctx| {
                let key = key.clone();
                async move {
                    let x = ctx
                        .activity(Step {
                            key: format!("{key}/x"),
                            value: 10,
                        })
                        .await?;
                    let y = ctx
                        .activity(Step {
                            key: format!("{key}/y"),
                            value: 20,
                        })
                        .await?;
                    Ok(x + y)
                }
                .boxed()
            })
            .await?;
        ctx.sleep(Duration::from_millis(30)).await?;
        Ok((a, b, c, inner))
    }
}

async fn join_and_branch_record_stable_locations_and_replay(db: TestDb) {
    let key = unique("fanned");
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Fanned>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Fanned>(key.clone()).await.unwrap();
    assert_eq!(wait_output::<Fanned>(&engine, id).await, (1, 2, 3, 30));
    for step in ["a", "b", "c", "x", "y"] {
        assert_eq!(
            executions(&format!("{key}/{step}")),
            1,
            "{step} ran once, and was replayed after the sleep"
        );
    }
    let locations: Vec<String> = engine
        .history(id)
        .await
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}@{}",
                if h.event.name.is_empty() {
                    h.event.kind.to_string()
                } else {
                    h.event.name.clone()
                },
                h.event.location
            )
        })
        .collect();
    assert_eq!(
        locations,
        [
            "delayed@{1}",
            "delayed@{2}",
            "delayed@{3}",
            "branch@{4}",
            "step@{4, 1}",
            "step@{4, 2}",
            "sleep@{5}"
        ]
    );
    let outputs: Vec<Option<String>> = engine
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .take(3)
        .map(|h| h.event.data)
        .collect();
    assert_eq!(
        outputs,
        [Some("1".into()), Some("2".into()), Some("3".into())],
        "each output at its own location"
    );
    worker.shutdown().await;
}

/// A crash after a later member of a join committed, before an earlier one
/// did, leaves a hole at the earlier member's location: replay runs that
/// member there and replays the others from their records.
async fn a_crash_between_join_members_commits_replays_each_member_in_place(db: TestDb) {
    // Members commit in the order they finish: c, then b, then a.
    for crash_at in 1..=2 {
        let key = unique("fanned");
        let store = CrashAfter::new(db.store().await, crash_at, activity_commits());
        let (_, id) = run_until_crash::<Fanned>(store, key.clone()).await;

        let engine = db.engine().await.register::<Fanned>();
        let worker = fast_worker(&engine);
        assert_eq!(
            wait_output::<Fanned>(&engine, id).await,
            (1, 2, 3, 30),
            "crash after join commit {crash_at}"
        );
        assert_eq!(
            executions(&format!("{key}/c")),
            1,
            "c's record landed first"
        );
        let b = executions(&format!("{key}/b"));
        if crash_at == 2 {
            assert_eq!(b, 1, "b's record landed before the crash");
        } else {
            assert!(b <= 2, "b ran at most once more: {b}");
        }
        assert!(executions(&format!("{key}/a")) <= 2);
        for step in ["x", "y"] {
            assert_eq!(executions(&format!("{key}/{step}")), 1);
        }
        worker.shutdown().await;
    }
}

/// Logs `i` to a file when it starts, then takes `ms`.
#[derive(Serialize, Deserialize)]
struct SlowLogged {
    log: PathBuf,
    i: u64,
    ms: u64,
}

impl Activity for SlowLogged {
    const NAME: &'static str = "slow_logged";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        log_execution(&self.log, self.i)?;
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(self.i)
    }
}

/// Joins three activities of 1.5 s, 0.7 s and 0 s.
struct SlowJoin;
impl Workflow for SlowJoin {
    const NAME: &'static str = "slow_join";
    type Input = PathBuf;
    type Output = (u64, u64, u64);
    async fn run(ctx: &mut WorkflowCtx, log: &PathBuf) -> Result<(u64, u64, u64)> {
        let step = |i, ms| SlowLogged {
            log: log.clone(),
            i,
            ms,
        };
        Ok(ctx.join((step(1, 1500), step(2, 700), step(3, 0))).await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by the join kill -9 test"]
async fn slow_join_child_worker() {
    let Some(url) = child_db() else { return };
    let engine = Engine::open(&url).await.unwrap().register::<SlowJoin>();
    let _worker = fast_worker(&engine);
    std::future::pending::<()>().await;
}

/// The same hole made by a real `kill -9`: the process dies once the 0.7 s
/// and 0 s members are recorded, while the 1.5 s one still runs.
async fn kill_9_between_join_members_commits_then_finish(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let engine = db.engine().await.register::<SlowJoin>();
    let id = engine.dispatch::<SlowJoin>(log.clone()).await.unwrap();
    let mut child = spawn_child(&db.url, "slow_join_child_worker");
    eventually(
        "the two short members to be recorded",
        Duration::from_secs(60),
        || async {
            let recorded = engine.history(id).await.ok()?;
            let done = recorded
                .iter()
                .filter(|h| h.event.done && h.event.name == "slow_logged")
                .count();
            (done == 2).then_some(())
        },
    )
    .await;
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");

    let worker = fast_worker(&engine);
    assert_eq!(wait_output::<SlowJoin>(&engine, id).await, (1, 2, 3));
    let runs = logged(&log);
    assert_eq!(runs[&2], 1, "the recorded 0.7 s member never ran again");
    assert_eq!(runs[&3], 1, "the recorded 0 s member never ran again");
    assert_eq!(runs[&1], 2, "the member in flight at the kill ran again");
    worker.shutdown().await;
}

support::store_tests!(
    join_and_branch_record_stable_locations_and_replay,
    a_crash_between_join_members_commits_replays_each_member_in_place,
    kill_9_between_join_members_commits_then_finish
);
