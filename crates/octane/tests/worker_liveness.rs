//! A worker whose process died is known to be dead at once — its lock (a
//! file lock on SQLite, a session advisory lock on PostgreSQL) is free — so
//! its workflows are taken over without waiting for their leases (30 s by
//! default) to expire. Every worker here runs with default settings.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::WorkflowState;
use support::process::{
    assert_once_but_the_one_in_flight, child_db, executions, spawn_child, LoggedStep,
};
use support::{eventually, wait_output, TestDb};

/// `n` logged steps; returns their sum.
struct Logged;
impl Workflow for Logged {
    const NAME: &'static str = "logged";
    type Input = (PathBuf, u64, u64);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(PathBuf, u64, u64)) -> Result<u64> {
        let (log, from, n) = input.clone();
        let mut sum = 0;
        for i in from..from + n {
            sum += ctx
                .activity(LoggedStep {
                    log: log.clone(),
                    i,
                })
                .await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(sum)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by the liveness tests"]
async fn liveness_child_worker() {
    let Some(url) = child_db() else { return };
    let engine = Engine::open(&url).await.unwrap().register::<Logged>();
    let _worker = engine.worker().spawn();
    std::future::pending::<()>().await;
}

fn logged(log: &std::path::Path) -> usize {
    executions(log).values().sum()
}

/// Waits for the log to grow past `after` steps; returns how long it took.
async fn next_step(log: &std::path::Path, after: usize, since: Instant) -> Duration {
    eventually("the next step", Duration::from_secs(60), || async {
        (logged(log) > after).then_some(())
    })
    .await;
    since.elapsed()
}

/// The process dies mid-workflow and its supervisor starts it again: the
/// new worker takes the workflow over at once, not 30 s later.
async fn a_restarted_process_resumes_its_workflows_at_once(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let engine = db.engine().await.register::<Logged>();
    let n = 200;
    let id = engine
        .dispatch::<Logged>((log.clone(), 0, n))
        .await
        .unwrap();
    let mut child = spawn_child(&db.url, "liveness_child_worker");
    eventually("steps under way", Duration::from_secs(60), || async {
        (logged(&log) >= 5).then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let before = logged(&log);
    let before_distinct = executions(&log).len() as u64;

    let restarted = Instant::now();
    let engine = db.engine().await.register::<Logged>();
    let worker = engine.worker().spawn();
    let took = next_step(&log, before, restarted).await;
    eprintln!("restart to first new step: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the restarted worker waited {took:?} (the lease is 30 s)"
    );
    assert_eq!(
        wait_output::<Logged>(&engine, id).await,
        (0..n).sum::<u64>()
    );
    assert_once_but_the_one_in_flight(&log, n, before_distinct);
    worker.shutdown().await;
}

/// Two worker processes; the one holding the workflows is killed: the
/// other takes them over at its next look (every second), not when the
/// leases expire.
async fn a_live_worker_takes_over_a_killed_ones_workflows_at_once(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let engine = db.engine().await.register::<Logged>();
    let workflows = 5u64;
    let n = 100;
    let mut ids = Vec::new();
    for w in 0..workflows {
        ids.push(
            engine
                .dispatch::<Logged>((log.clone(), w * 1000, n))
                .await
                .unwrap(),
        );
    }
    let mut child = spawn_child(&db.url, "liveness_child_worker");
    eventually(
        "the child to run every workflow",
        Duration::from_secs(60),
        || async {
            let started = executions(&log)
                .keys()
                .map(|i| i / 1000)
                .collect::<std::collections::BTreeSet<_>>();
            (started.len() as u64 == workflows).then_some(())
        },
    )
    .await;
    let survivor = engine.worker().spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    let before = logged(&log);
    let took = next_step(&log, before, killed).await;
    eprintln!("kill to the survivor's first step: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the survivor waited {took:?} (the lease is 30 s)"
    );
    for (w, id) in ids.iter().enumerate() {
        let from = w as u64 * 1000;
        assert_eq!(
            wait_output::<Logged>(&engine, *id).await,
            (from..from + n).sum::<u64>()
        );
    }
    survivor.shutdown().await;
}

/// A worker that left its registration and lock file behind (a crash), with
/// the pid of a live process: its lease is ended at once, since only the
/// lock tells who is alive.
async fn a_stale_registration_never_blocks_takeover(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let engine = db.engine().await.register::<Logged>();
    let id = engine
        .dispatch::<Logged>((log.clone(), 0, 3))
        .await
        .unwrap();
    let ghost = uuid::Uuid::new_v4();
    let in_an_hour = octane::clock::now_ms() + 3_600_000;
    db.execute_sql(
        &format!(
            "UPDATE workflows SET state = 'running', lease_owner = '{ghost}', lease_epoch = 1,
             lease_expires = {in_an_hour} WHERE id = ?1"
        ),
        &id.to_string(),
    )
    .await;
    db.execute_sql(
        &format!(
            "INSERT INTO workers (id, host, pid, started_at) VALUES (?1, 'here', {}, 1)",
            std::process::id()
        ),
        &ghost.to_string(),
    )
    .await;
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        let locks = PathBuf::from(format!("{path}.workers"));
        std::fs::create_dir_all(&locks).unwrap();
        std::fs::write(locks.join(format!("{ghost}.lock")), b"").unwrap();
    }
    assert_eq!(engine.get(id).await.unwrap().state, WorkflowState::Running);
    let worker = engine.worker().spawn();
    let output = tokio::time::timeout(Duration::from_secs(10), engine.wait::<Logged>(id)).await;
    assert_eq!(output.expect("taken over at once").unwrap(), 3);
    worker.shutdown().await;
}

support::store_tests!(
    a_restarted_process_resumes_its_workflows_at_once,
    a_live_worker_takes_over_a_killed_ones_workflows_at_once,
    a_stale_registration_never_blocks_takeover,
);
