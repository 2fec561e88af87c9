//! A mixed workload — loops of activities, joins, signals between
//! workflows, parents waiting on children, retention on — run while the
//! store fails reads and commits at random (commits that landed reported as
//! failed included) and workers are dropped as if their process died. Every
//! workflow completes with the result of an uninterrupted run, none is
//! failed, parked or left asleep, no accepted signal is lost, and no
//! activity whose result was committed runs again.
//!
//! The faults come from a seeded generator (`OCTANE_CHAOS_SEED`, default
//! below), so a failing seed can be run again; the interleaving of
//! concurrent calls still varies from run to run.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::store::Store;
use octane::{ListFilter, WorkflowState};
use support::faults::Faults;
use support::{count, eventually, executions, fast_worker, unique, TestDb};

/// The real store of each test run, by key: what a checked activity looks
/// at to learn whether its own result was already committed.
static STORES: LazyLock<Mutex<HashMap<String, Arc<dyn Store>>>> = LazyLock::new(Default::default);

/// Returns `n` after `ms`, having checked in the real database that no result is
/// recorded at its own location yet.
#[derive(Serialize, Deserialize)]
struct Checked {
    key: String,
    n: u64,
    ms: u64,
}

impl Activity for Checked {
    const NAME: &'static str = "checked";
    type Output = u64;
    async fn run(&self, ctx: &ActivityCtx) -> Result<u64> {
        let store = STORES.lock().unwrap()[&self.key].clone();
        let history = store.load_history(ctx.workflow_id()).await?;
        let recorded = history
            .iter()
            .any(|e| &e.location == ctx.location() && e.done && e.error.is_none());
        if recorded {
            count(&format!("{}/rerun after commit", self.key));
        }
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(self.n)
    }
}

fn checked(key: &str, n: u64) -> Checked {
    Checked {
        key: key.to_string(),
        n,
        ms: 20,
    }
}

/// Sums 1..=ITERATIONS, one activity an iteration, checkpointing every third.
struct Counter;
impl Workflow for Counter {
    const NAME: &'static str = "counter";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        ctx.repeat((0u64, 0u64))
            .commit_every(3)
            .retain(2)
            .run(move |ctx, (i, sum)| {
                let key = key.clone();
                async move {
                    *i += 1;
                    *sum += ctx.activity(checked(&key, *i)).await?;
                    Ok(if *i == ITERATIONS {
                        Loop::Break(*sum)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

/// Joins three activities of different lengths, so that they commit in
/// the reverse of their order.
struct Fan;
impl Workflow for Fan {
    const NAME: &'static str = "fan";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let slow = |n, ms| Checked {
            ms,
            ..checked(key, n)
        };
        let (a, b, c) = ctx
            .join((slow(1, 300), slow(20, 150), slow(300, 0)))
            .await?;
        Ok(a + b + c)
    }
}

#[derive(Serialize, Deserialize, Signal)]
struct Ping(u64);

const PINGS: u64 = 4;
const ITERATIONS: u64 = 150;

/// Adds up the pings it is sent until it has had `PINGS` from each of its
/// `senders`.
struct Inbox;
impl Workflow for Inbox {
    const NAME: &'static str = "inbox";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, senders: &u64) -> Result<u64> {
        let expected = senders * PINGS;
        ctx.repeat((0u64, 0u64))
            .commit_every(2)
            .run(move |ctx, (got, sum)| {
                async move {
                    *sum += ctx.listen::<Ping>().await?.0;
                    *got += 1;
                    Ok(if *got == expected {
                        Loop::Break(*sum)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

/// Sends `PINGS` pings to an inbox, an activity before each.
struct Sender;
impl Workflow for Sender {
    const NAME: &'static str = "sender";
    type Input = (String, WorkflowId, u64);
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, input: &(String, WorkflowId, u64)) -> Result<()> {
        let (key, inbox, base) = input.clone();
        for p in 0..PINGS {
            let v = ctx.activity(checked(&key, base + p)).await?;
            ctx.signal(Ping(v)).to(inbox).send().await?;
        }
        Ok(())
    }
}

/// Runs a `Counter` as a child and adds one to its output.
struct Parent;
impl Workflow for Parent {
    const NAME: &'static str = "parent";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        Ok(ctx.workflow::<Counter>(key.clone()).output().await? + 1)
    }
}

const DEFAULT_SEED: u64 = 0x0c7a_4e5e;

/// How many of `ids` have completed.
async fn completed(engine: &Engine, ids: &[(WorkflowId, String)]) -> usize {
    let mut done = 0;
    for (id, _) in ids {
        let info = engine.get(*id).await;
        if info.is_ok_and(|i| i.state == WorkflowState::Completed) {
            done += 1;
        }
    }
    done
}

async fn a_mixed_workload_survives_random_faults_and_crashes(db: TestDb) {
    let seed = std::env::var("OCTANE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let key = unique("chaos");
    let real = db.store().await;
    STORES.lock().unwrap().insert(key.clone(), real.clone());
    let faults = Faults::new(real);
    let engine = Engine::with_store(faults.clone())
        .retain_finished(Duration::from_secs(30))
        .register::<Counter>()
        .register::<Fan>()
        .register::<Inbox>()
        .register::<Sender>()
        .register::<Parent>();
    let observer = db.engine().await;

    let mut expected: Vec<(WorkflowId, String)> = Vec::new();
    for _ in 0..6 {
        let id = engine.dispatch::<Counter>(key.clone()).await.unwrap();
        expected.push((id, (1..=ITERATIONS).sum::<u64>().to_string()));
        let id = engine.dispatch::<Parent>(key.clone()).await.unwrap();
        expected.push((id, ((1..=ITERATIONS).sum::<u64>() + 1).to_string()));
    }
    for _ in 0..3 {
        let senders = 3;
        let inbox = engine.dispatch::<Inbox>(senders).await.unwrap();
        let mut sum = 0;
        for s in 0..senders {
            let base = 1000 * (s + 1);
            sum += (base..base + PINGS).sum::<u64>();
            let id = engine
                .dispatch::<Sender>((key.clone(), inbox, base))
                .await
                .unwrap();
            expected.push((id, "null".into()));
        }
        expected.push((inbox, sum.to_string()));
    }

    eprintln!("chaos seed {seed}");
    faults.chaos(seed, 0.1);
    let chaos_until = Instant::now() + Duration::from_secs(8);
    let mut crashes = 0;
    let mut done = 0;
    // Joins keep starting, and workers die after a seeded while, so that
    // crashes land between the commits of a join's members.
    let mut lifetimes = {
        use rand::SeedableRng;
        rand::rngs::StdRng::seed_from_u64(seed)
    };
    while Instant::now() < chaos_until && done < expected.len() {
        let worker = fast_worker(&engine);
        for _ in 0..3 {
            let id = engine.dispatch::<Fan>(key.clone()).await.unwrap();
            expected.push((id, "321".into()));
        }
        let lifetime = rand::Rng::gen_range(&mut lifetimes, 100..700);
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        drop(worker);
        crashes += 1;
        done = completed(&observer, &expected).await;
    }
    faults.chaos(seed, 0.0);
    eprintln!(
        "{done} of {} workflows completed under chaos",
        expected.len()
    );
    let worker = fast_worker(&engine);

    for (id, output) in &expected {
        let info = eventually(
            "every workflow to complete",
            Duration::from_secs(90),
            || async {
                let info = observer.get(*id).await.ok()?;
                assert!(
                    !matches!(info.state, WorkflowState::Failed | WorkflowState::Parked),
                    "seed {seed}: {} {id} is {}: {:?}",
                    info.name,
                    info.state,
                    info.error
                );
                (info.state == WorkflowState::Completed).then_some(info)
            },
        )
        .await;
        assert_eq!(
            info.output.as_deref(),
            Some(output.as_str()),
            "seed {seed}: {} {id}",
            info.name
        );
    }
    let children = observer
        .list(ListFilter::default().name("counter").limit(1000))
        .await
        .unwrap();
    assert!(children.iter().all(|c| c.state == WorkflowState::Completed));
    assert_eq!(
        executions(&format!("{key}/rerun after commit")),
        0,
        "seed {seed}: an activity ran again after its result was committed"
    );
    assert!(
        faults.injected() > 20,
        "the chaos was real: {} faults",
        faults.injected()
    );
    assert!(crashes >= 3);
    eprintln!(
        "{} faults injected, {crashes} worker crashes",
        faults.injected()
    );
    worker.shutdown().await;
}

support::store_tests!(a_mixed_workload_survives_random_faults_and_crashes);
