//! Postgres failover: a primary with a synchronous standby, workers in two
//! processes on a multi-host URL (`target_session_attrs=read-write`); the
//! primary is killed mid-run and the standby promoted. Every workflow
//! completes, no committed step is lost, and none runs again but the one in
//! flight per workflow.
//!
//! Needs the clusters `.ci/failover-clusters` makes, named by
//! `OCTANE_TEST_POSTGRES_FAILOVER_URL` and `..._CLUSTERS`; without them the
//! test says it is skipped, unless `OCTANE_REQUIRE_FAILOVER` is set.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::{ListFilter, WorkflowState};
use support::eventually;
use support::process::{child_db, executions, spawn_child, LoggedStep};

const WORKFLOWS: u64 = 40;
const STEPS: u64 = 10;

/// `STEPS` logged steps in a loop checkpointed every 2; step `s` of
/// workflow `w` logs `w * 100 + s`.
struct Chain;
impl Workflow for Chain {
    const NAME: &'static str = "chain";
    type Input = (PathBuf, u64);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(PathBuf, u64)) -> Result<u64> {
        let (log, w) = input.clone();
        ctx.repeat(0u64)
            .commit_every(2)
            .run(move |ctx, s| {
                let log = log.clone();
                async move {
                    ctx.activity(LoggedStep {
                        log,
                        i: w * 100 + *s,
                    })
                    .await?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    *s += 1;
                    Ok(if *s == STEPS {
                        Loop::Break(*s)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

/// The child worker process: runs `Chain` on the URL it is given until
/// killed.
#[tokio::test]
#[ignore = "a child worker process of the failover test"]
async fn failover_child() {
    let Some(url) = child_db() else { return };
    let engine = octane::Engine::open(&url)
        .await
        .unwrap()
        .register::<Chain>();
    let _worker = engine
        .worker()
        .lease_ttl(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(50))
        .spawn();
    std::future::pending::<()>().await;
}

fn cluster(args: &[&str]) {
    let status = Command::new("pg_ctlcluster")
        .args(args)
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {args:?}");
}

async fn fresh_schema(url: &str) -> String {
    let schema = format!("f_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the primary");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    format!("{url}&options=-c%20search_path%3D{schema}")
}

fn distinct(log: &Path) -> usize {
    executions(log).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_carry_on_when_the_primary_dies_and_the_standby_takes_over() {
    let (Ok(base), Ok(clusters)) = (
        std::env::var("OCTANE_TEST_POSTGRES_FAILOVER_URL"),
        std::env::var("OCTANE_TEST_POSTGRES_FAILOVER_CLUSTERS"),
    ) else {
        let why = "the failover test needs the clusters .ci/failover-clusters makes";
        assert!(
            std::env::var_os("OCTANE_REQUIRE_FAILOVER").is_none(),
            "{why}"
        );
        eprintln!("SKIPPED: {why}");
        return;
    };
    let clusters: Vec<&str> = clusters.split_whitespace().collect();
    let (primary, standby) = (&clusters[..2], &clusters[2..]);
    let url = fresh_schema(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let engine = octane::Engine::open(&url)
        .await
        .unwrap()
        .register::<Chain>();
    let mut ids = Vec::new();
    for w in 0..WORKFLOWS {
        ids.push(engine.dispatch::<Chain>((log.clone(), w)).await.unwrap());
    }
    let mut children = [
        spawn_child(&url, "failover_child"),
        spawn_child(&url, "failover_child"),
    ];
    eventually("work under way", Duration::from_secs(120), || async {
        (distinct(&log) >= 60).then_some(())
    })
    .await;

    let killed = Instant::now();
    cluster(&[primary[0], primary[1], "stop", "-m", "immediate"]);
    let at_kill = distinct(&log);
    cluster(&[standby[0], standby[1], "promote"]);
    eventually(
        "a step on the new primary",
        Duration::from_secs(120),
        || async { (distinct(&log) > at_kill).then_some(()) },
    )
    .await;
    let first_step = killed.elapsed();

    eventually("every workflow done", Duration::from_secs(180), || async {
        let done = engine
            .list(
                ListFilter::default()
                    .state(WorkflowState::Completed)
                    .limit(WORKFLOWS as usize + 1),
            )
            .await
            .ok()?
            .len() as u64;
        (done == WORKFLOWS).then_some(())
    })
    .await;
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    for id in &ids {
        assert_eq!(engine.wait::<Chain>(*id).await.unwrap(), STEPS);
    }
    let counts = executions(&log);
    assert_eq!(counts.len() as u64, WORKFLOWS * STEPS, "every step ran");
    assert!(counts.values().all(|&c| c <= 2), "a step ran three times");
    let mut repeated_per_workflow = HashMap::<u64, usize>::new();
    for (step, _) in counts.iter().filter(|(_, &c)| c == 2) {
        *repeated_per_workflow.entry(step / 100).or_default() += 1;
    }
    assert!(
        repeated_per_workflow.values().all(|&n| n == 1),
        "a workflow ran again more than its step in flight: {repeated_per_workflow:?}"
    );
    eprintln!(
        "primary killed after {at_kill} steps; first step on the new primary {first_step:?} \
         after the kill; {} steps ran twice",
        repeated_per_workflow.len()
    );
}
