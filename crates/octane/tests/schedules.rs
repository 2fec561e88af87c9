//! Schedules: one run per tick however many workers look, none lost to a
//! `kill -9` beyond the catch-up policy, and operators can pause, resume
//! and delete them.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use octane::prelude::*;
use octane::{Error, ListFilter};
use support::process::{child_db, spawn_child};
use support::{fast_worker, TestDb};

/// Returns its input.
struct Tick;
impl Workflow for Tick {
    const NAME: &'static str = "tick";
    type Input = String;
    type Output = String;
    async fn run(_ctx: &mut WorkflowCtx, input: &String) -> Result<String> {
        Ok(input.clone())
    }
}

const EVERY_SECOND: &str = "* * * * * *";

/// The runs a schedule started: `(tick, created_at)` by tick.
async fn runs(engine: &Engine, schedule: &str) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = engine
        .list(
            ListFilter::default()
                .tag("schedule", schedule)
                .limit(10_000),
        )
        .await
        .unwrap()
        .iter()
        .map(|w| (w.tags["tick"].parse().unwrap(), w.created_at))
        .collect();
    runs.sort();
    runs
}

fn assert_once_each_and_never_early(runs: &[(i64, i64)]) {
    let ticks: BTreeSet<i64> = runs.iter().map(|(t, _)| *t).collect();
    assert_eq!(ticks.len(), runs.len(), "a tick started twice: {runs:?}");
    for (tick, created) in runs {
        assert!(created >= tick, "started before its tick: {runs:?}");
        assert_eq!(tick % 1_000, 0, "ticks are whole seconds: {runs:?}");
    }
}

async fn three_workers_start_one_run_per_tick(db: TestDb) {
    let engine = db.engine().await.register::<Tick>();
    let schedule = engine
        .schedule::<Tick>("every-second", EVERY_SECOND, "hello".into())
        .await
        .unwrap();
    assert_eq!(schedule.workflow, "tick");
    let mut engines = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..3 {
        // Each its own store: as three processes would be.
        let e = db.engine().await.register::<Tick>();
        workers.push(fast_worker(&e));
        engines.push(e);
    }
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    for w in workers {
        w.shutdown().await;
    }
    let runs = runs(&engine, "every-second").await;
    assert_once_each_and_never_early(&runs);
    // A worker late by more than a tick (a loaded machine) skips it, by
    // the catch-up policy; in the usual case there is one run a second.
    assert!(runs.len() >= 3, "about one a second: {runs:?}");
    let listed = engine.schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_fired_at.is_some());
}

async fn a_killed_worker_loses_no_tick_beyond_one_catch_up_run(db: TestDb) {
    let engine = db.engine().await.register::<Tick>();
    engine
        .schedule::<Tick>("every-second", EVERY_SECOND, "hello".into())
        .await
        .unwrap();
    let mut child = spawn_child(&db.url, "schedule_child_worker");
    support::eventually("three ticks", Duration::from_secs(60), || async {
        (runs(&engine, "every-second").await.len() >= 3).then_some(())
    })
    .await;
    child.kill().expect("SIGKILL the only worker");
    child.wait().unwrap();
    let before = runs(&engine, "every-second").await;
    // Down for about three ticks.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let restarted = octane::clock::now_ms();
    let worker = fast_worker(&engine);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    worker.shutdown().await;

    let after = runs(&engine, "every-second").await;
    assert_once_each_and_never_early(&after);
    let last_before = before.last().unwrap().0;
    let resumed: Vec<_> = after.iter().filter(|(t, _)| *t > last_before).collect();
    // The first tick missed while down runs once, when the worker is back;
    // the others missed are skipped; then one a second again.
    let (catch_up, started) = *resumed[0];
    assert_eq!(catch_up, last_before + 1_000, "{after:?}");
    assert!(started >= restarted, "{after:?}");
    assert!(resumed.len() >= 2, "ticking again: {after:?}");
    assert!(
        resumed[1].0 > restarted,
        "the ticks missed after the first are skipped: {after:?}"
    );

    // Every run completed with the schedule's input.
    for w in engine
        .list(
            ListFilter::default()
                .tag("schedule", "every-second")
                .limit(1_000),
        )
        .await
        .unwrap()
    {
        assert_eq!(engine.wait::<Tick>(w.id).await.unwrap(), "hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by the schedule kill -9 test"]
async fn schedule_child_worker() {
    let Some(url) = child_db() else { return };
    let engine = Engine::open(&url).await.unwrap().register::<Tick>();
    let _worker = fast_worker(&engine);
    std::future::pending::<()>().await;
}

async fn paused_schedules_start_nothing_and_bad_ones_are_refused(db: TestDb) {
    let engine = db.engine().await.register::<Tick>();
    let worker = fast_worker(&engine);
    engine
        .schedule::<Tick>("paused", EVERY_SECOND, "x".into())
        .await
        .unwrap();
    engine.pause_schedule("paused").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    // A tick may have fired before the pause landed; none after it.
    let while_paused = runs(&engine, "paused").await.len();
    assert!(while_paused <= 1, "{while_paused}");
    assert!(engine.schedules().await.unwrap()[0].paused);
    engine.resume_schedule("paused").await.unwrap();
    support::eventually(
        "a tick after the resume",
        Duration::from_secs(30),
        || async { (runs(&engine, "paused").await.len() > while_paused).then_some(()) },
    )
    .await;
    engine.delete_schedule("paused").await.unwrap();
    assert!(engine.schedules().await.unwrap().is_empty());
    worker.shutdown().await;

    let err = engine
        .schedule::<Tick>("bad", "every day", "x".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSchedule { name, .. } if name == "bad"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("`every day` is not a cron expression"),
        "{err}"
    );
    let err = engine
        .schedule::<Tick>("bad", EVERY_SECOND, "x".into())
        .timezone("Mars/Olympus")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`Mars/Olympus` is not a time zone"),
        "{err}"
    );
    assert!(
        engine.schedules().await.unwrap().is_empty(),
        "nothing stored"
    );
    for result in [
        engine.pause_schedule("missing").await,
        engine.resume_schedule("missing").await,
        engine.delete_schedule("missing").await,
    ] {
        assert!(
            matches!(&result, Err(Error::ScheduleNotFound { name }) if name == "missing"),
            "{result:?}"
        );
    }
}

support::store_tests!(
    three_workers_start_one_run_per_tick,
    a_killed_worker_loses_no_tick_beyond_one_catch_up_run,
    paused_schedules_start_nothing_and_bad_ones_are_refused,
);
