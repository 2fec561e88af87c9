//! Failing and panicking activities are retried with backoff, every failed
//! attempt is recorded, and the worker survives all of it.

mod support;

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::Error;
use support::{count, executions, fast_worker, unique, wait_output, TestDb};

static ATTEMPT_TIMES: LazyLock<Mutex<Vec<(String, Instant)>>> = LazyLock::new(Default::default);

/// Fails its first `failures` executions, then returns 7.
#[derive(Serialize, Deserialize)]
struct Flaky {
    key: String,
    failures: u64,
    panic: bool,
}

impl Activity for Flaky {
    const NAME: &'static str = "flaky";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        ATTEMPT_TIMES
            .lock()
            .unwrap()
            .push((self.key.clone(), Instant::now()));
        if count(&self.key) <= self.failures {
            if self.panic {
                panic!("flaky activity panics on purpose");
            }
            anyhow::bail!("flaky failure on purpose");
        }
        Ok(7)
    }
    fn retry() -> RetryPolicy {
        RetryPolicy::attempts(4).with_initial_backoff(Duration::from_millis(50))
    }
}

struct UsesFlaky;
impl Workflow for UsesFlaky {
    const NAME: &'static str = "uses_flaky";
    type Input = Flaky;
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, input: &Flaky) -> Result<String> {
        let flaky = Flaky {
            key: input.key.clone(),
            failures: input.failures,
            panic: input.panic,
        };
        let outcome = match ctx.activity(flaky).await {
            Ok(v) => format!("ok {v}"),
            Err(Error::ActivityFailed {
                attempts, message, ..
            }) => {
                format!("gave up after {attempts}: {message}")
            }
            Err(e) => return Err(e.into()),
        };
        // Leave memory and come back: everything above is replayed, so the
        // output is built from the recorded outcome.
        ctx.sleep(Duration::from_millis(20)).await?;
        Ok(outcome)
    }
}

async fn failing_twice_then_succeeding_is_retried_with_backoff_and_recorded_once(db: TestDb) {
    let (engine, worker) = flaky_engine(&db).await;
    let key = unique("flaky");
    let id = run_flaky(&engine, key.clone(), 2, false).await;
    assert_eq!(wait_output::<UsesFlaky>(&engine, id).await, "ok 7");
    assert_eq!(executions(&key), 3);
    let times: Vec<Instant> = ATTEMPT_TIMES
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == &key)
        .map(|(_, t)| *t)
        .collect();
    // Backoff 50 ms then 100 ms, each shortened by at most 20 % of jitter.
    assert!(
        times[1] - times[0] >= Duration::from_millis(40),
        "{:?}",
        times[1] - times[0]
    );
    assert!(
        times[2] - times[1] >= Duration::from_millis(80),
        "{:?}",
        times[2] - times[1]
    );
    let history = engine.history(id).await.unwrap();
    assert_eq!(
        history.len(),
        2,
        "one activity event (and the sleep), however many attempts"
    );
    let event = &history[0].event;
    assert_eq!(
        (event.attempts, event.done, event.data.as_deref()),
        (3, true, Some("7"))
    );
    worker.shutdown().await;
}

async fn a_panicking_activity_is_retried_and_the_worker_survives(db: TestDb) {
    let (engine, worker) = flaky_engine(&db).await;
    let key = unique("panic");
    let id = run_flaky(&engine, key.clone(), 1, true).await;
    assert_eq!(wait_output::<UsesFlaky>(&engine, id).await, "ok 7");
    assert_eq!(executions(&key), 2);
    // The same worker goes on running other workflows.
    let other = unique("after-panic");
    let id = run_flaky(&engine, other, 0, false).await;
    assert_eq!(wait_output::<UsesFlaky>(&engine, id).await, "ok 7");
    worker.shutdown().await;
}

async fn exhausted_retries_reach_the_workflow_and_replay_identically(db: TestDb) {
    let (engine, worker) = flaky_engine(&db).await;
    let key = unique("exhausted");
    let id = run_flaky(&engine, key.clone(), 100, false).await;
    // The workflow slept after the failure and was replayed from its
    // history: the recorded failure came back, the activity did not rerun.
    let out = wait_output::<UsesFlaky>(&engine, id).await;
    assert_eq!(out, "gave up after 4: flaky failure on purpose");
    assert_eq!(executions(&key), 4);
    let event = engine.history(id).await.unwrap().remove(0).event;
    assert_eq!(event.attempts, 4);
    assert_eq!(event.error.as_deref(), Some("flaky failure on purpose"));
    assert!(event.done);
    worker.shutdown().await;
}

async fn flaky_engine(db: &TestDb) -> (Engine, octane::Worker) {
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<UsesFlaky>();
    let worker = fast_worker(&engine);
    (engine, worker)
}

async fn run_flaky(engine: &Engine, key: String, failures: u64, panic: bool) -> WorkflowId {
    engine
        .dispatch::<UsesFlaky>(Flaky {
            key,
            failures,
            panic,
        })
        .await
        .unwrap()
}

/// Returns a map with non-string keys, which JSON cannot hold: its output
/// can never be recorded.
#[derive(Serialize, Deserialize)]
struct Unrecordable {
    key: String,
}

impl Activity for Unrecordable {
    const NAME: &'static str = "unrecordable";
    type Output = std::collections::HashMap<(u8, u8), u8>;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<Self::Output> {
        count(&self.key);
        Ok([((1, 2), 3)].into())
    }
}

/// Swallows the unrecordable activity's error, takes another step, and
/// leaves memory so that the rest happens in a replay.
struct SwallowsIt;
impl Workflow for SwallowsIt {
    const NAME: &'static str = "swallows_it";
    type Input = String;
    type Output = (String, u64);
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<(String, u64)> {
        let first = match ctx
            .activity(Unrecordable {
                key: format!("{key}/unrecordable"),
            })
            .await
        {
            Ok(_) => "recorded".to_string(),
            Err(e) => e.to_string(),
        };
        let v = ctx
            .activity(support::Step {
                key: format!("{key}/after"),
                value: 5,
            })
            .await?;
        ctx.sleep(Duration::from_millis(30)).await?;
        Ok((first, v))
    }
}

/// An activity whose output cannot be recorded fails, and the failure is
/// recorded: the code that swallows it replays the same way, the activity
/// never runs again, and no step after it shifts.
async fn an_output_that_cannot_be_recorded_fails_the_step_once(db: TestDb) {
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<SwallowsIt>();
    let worker = fast_worker(&engine);
    let key = unique("unrecordable");
    let id = engine.dispatch::<SwallowsIt>(key.clone()).await.unwrap();
    let (first, after) = wait_output::<SwallowsIt>(&engine, id).await;
    assert!(
        first.contains("cannot serialize output of activity `unrecordable`"),
        "{first}"
    );
    assert_eq!(after, 5);
    assert_eq!(executions(&format!("{key}/unrecordable")), 1);
    assert_eq!(executions(&format!("{key}/after")), 1);
    worker.shutdown().await;
}

support::store_tests!(
    an_output_that_cannot_be_recorded_fails_the_step_once,
    failing_twice_then_succeeding_is_retried_with_backoff_and_recorded_once,
    a_panicking_activity_is_retried_and_the_worker_survives,
    exhausted_retries_reach_the_workflow_and_replay_identically,
);
