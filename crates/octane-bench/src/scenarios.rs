//! The measured scenarios. Each runs on a fresh database.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use octane::clock::now_ms;
use octane::prelude::*;
use octane::{ListFilter, WorkflowState};

use crate::store::Stores;

use crate::Sizes;

type Figures = BTreeMap<&'static str, f64>;

/// Start of each iteration of a loop that asked to be timed.
static ITERATION_STARTS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

#[derive(Serialize, Deserialize)]
struct Noop(u64);

impl Activity for Noop {
    const NAME: &'static str = "noop";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        Ok(self.0)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct LoopSpec {
    iterations: u64,
    commit_every: u64,
    activity: bool,
    /// Record a `now` per iteration: a deferred event, no commit of its own.
    record_now: bool,
    /// Time each iteration (`ITERATION_STARTS`).
    timed: bool,
    /// Sleep (leaving memory) once, at this iteration.
    park_at: Option<u64>,
}

impl LoopSpec {
    fn new(iterations: u64, commit_every: u64) -> Self {
        LoopSpec {
            iterations,
            commit_every,
            activity: false,
            record_now: false,
            timed: false,
            park_at: None,
        }
    }
}

struct BenchLoop;
impl Workflow for BenchLoop {
    const NAME: &'static str = "bench_loop";
    type Input = LoopSpec;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, spec: &LoopSpec) -> Result<u64> {
        let spec = *spec;
        ctx.repeat(0u64)
            .commit_every(spec.commit_every)
            .run(move |ctx, i| {
                async move {
                    if spec.timed {
                        ITERATION_STARTS.lock().unwrap().push(Instant::now());
                    }
                    if spec.activity {
                        ctx.activity(Noop(*i)).await?;
                    }
                    if spec.record_now {
                        ctx.now()?;
                    }
                    if spec.park_at == Some(*i) {
                        ctx.sleep(Duration::from_millis(300)).await?;
                    }
                    *i += 1;
                    Ok(if *i == spec.iterations {
                        Loop::Break(*i)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

struct ThreeSteps;
impl Workflow for ThreeSteps {
    const NAME: &'static str = "three_steps";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        let mut sum = 0;
        for i in 0..3 {
            sum += ctx.activity(Noop(n + i)).await?;
        }
        Ok(sum)
    }
}

#[derive(Serialize, Deserialize)]
struct Ping(u64);
impl Signal for Ping {
    const NAME: &'static str = "ping";
}

#[derive(Serialize, Deserialize)]
struct Pong(u64);
impl Message for Pong {
    const NAME: &'static str = "pong";
}

struct Echo;
impl Workflow for Echo {
    const NAME: &'static str = "echo";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        let n = *n;
        ctx.repeat(0u64)
            .commit_every(1)
            .run(move |ctx, seen| {
                async move {
                    let Ping(i) = ctx.listen::<Ping>().await?;
                    ctx.msg(Pong(i)).send().await?;
                    *seen += 1;
                    Ok(if *seen == n {
                        Loop::Break(*seen)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

async fn engine(stores: &Stores) -> anyhow::Result<Engine> {
    Ok(stores
        .fresh_engine()
        .await?
        .sleep_in_memory_below(Duration::ZERO)
        .register::<BenchLoop>()
        .register::<ThreeSteps>()
        .register::<Echo>())
}

fn step(progress: &ProgressBar, what: &'static str) {
    progress.set_message(what);
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v
}

/// Runs one loop to completion; returns iterations per second.
async fn loop_rate(stores: &Stores, spec: LoopSpec) -> anyhow::Result<f64> {
    let engine = engine(stores).await?;
    let worker = engine
        .worker()
        .poll_interval(Duration::from_millis(5))
        .spawn();
    let start = Instant::now();
    let id = engine.dispatch::<BenchLoop>(spec).await?;
    let out = engine.wait::<BenchLoop>(id).await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(out == spec.iterations, "loop returned {out}");
    worker.shutdown().await;
    Ok(spec.iterations as f64 / elapsed.as_secs_f64())
}

pub(crate) async fn run_all(
    stores: &Stores,
    sizes: &Sizes,
    progress: &ProgressBar,
    wanted: &dyn Fn(&[&str]) -> bool,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    // The disk's commit latency drifts within a run, so the raw rate is
    // sampled before, between and after the scenarios, and the median kept.
    step(progress, "raw commits");
    let mut raw = vec![stores.raw_commits_per_sec(sizes.raw_commits).await?];
    progress.inc(1);

    for (key, commit_every, activity) in [
        ("loop_empty_c1", 1, false),
        ("loop_empty_c20", 20, false),
        ("loop_activity_c1", 1, true),
        ("loop_activity_c20", 20, true),
    ] {
        let timed = key == "loop_activity_c20";
        let keys: &[&str] = if timed {
            &[key, "loop_iter_p50_us", "loop_iter_p99_us"]
        } else {
            &[key]
        };
        if !wanted(keys) {
            continue;
        }
        step(progress, key);
        let mut spec = LoopSpec::new(sizes.loop_iterations, commit_every);
        spec.activity = activity;
        spec.timed = timed;
        ITERATION_STARTS.lock().unwrap().clear();
        figures.insert(key, loop_rate(stores, spec).await?);
        progress.inc(1);
    }
    let starts = std::mem::take(&mut *ITERATION_STARTS.lock().unwrap());
    if starts.len() > 1 {
        let gaps = sorted(
            starts
                .windows(2)
                .map(|w| (w[1] - w[0]).as_secs_f64() * 1e6)
                .collect(),
        );
        figures.insert("loop_iter_p50_us", percentile(&gaps, 50));
        figures.insert("loop_iter_p99_us", percentile(&gaps, 99));
    }

    step(progress, "raw commits");
    raw.push(stores.raw_commits_per_sec(sizes.raw_commits).await?);

    if wanted(&["fanout_wf_per_sec", "fanout_p50_ms", "fanout_p99_ms"]) {
        step(progress, "fan-out");
        fanout(stores, sizes, figures).await?;
    }
    progress.inc(3);

    if wanted(&["wake_ms_iter10", "wake_ms_iter1m"]) {
        step(progress, "wake-up cost");
        figures.insert("wake_ms_iter10", wake_ms(stores, 10).await?);
        figures.insert("wake_ms_iter1m", wake_ms(stores, sizes.long_loop).await?);
    }
    progress.inc(2);

    if wanted(&["signal_p50_ms", "signal_p99_ms"]) {
        step(progress, "signals");
        signals(stores, sizes.signals, figures).await?;
    }
    progress.inc(2);

    if wanted(&["loop_rows_1k", "loop_rows_1m"]) {
        step(progress, "stored rows");
        figures.insert("loop_rows_1k", loop_rows(stores, 1_000).await?);
        figures.insert("loop_rows_1m", loop_rows(stores, sizes.long_loop).await?);
    }
    progress.inc(4);

    step(progress, "raw commits");
    raw.push(stores.raw_commits_per_sec(sizes.raw_commits).await?);
    figures.insert("raw_commits_per_sec", sorted(raw)[1]);
    Ok(())
}

/// Many workflows at once: throughput, and each workflow's time from
/// dispatch to completion.
async fn fanout(stores: &Stores, sizes: &Sizes, figures: &mut Figures) -> anyhow::Result<()> {
    let engine = engine(stores).await?;
    let worker = engine
        .worker()
        .concurrency(sizes.fanout_concurrency)
        .spawn();
    let start_ms = now_ms();
    let mut dispatches = tokio::task::JoinSet::new();
    for chunk in (0..sizes.fanout_workflows)
        .collect::<Vec<_>>()
        .chunks(sizes.fanout_workflows.div_ceil(64))
    {
        let engine = engine.clone();
        let chunk = chunk.to_vec();
        dispatches.spawn(async move {
            for i in chunk {
                engine.dispatch::<ThreeSteps>(i as u64).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = dispatches.join_next().await {
        r??;
    }
    let done = loop {
        let done = engine
            .list(
                ListFilter::default()
                    .state(WorkflowState::Completed)
                    .limit(sizes.fanout_workflows + 1),
            )
            .await?;
        if done.len() == sizes.fanout_workflows {
            break done;
        }
        // Poll rarely (listing every workflow is not free); the end is
        // taken from the rows' own completion times.
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let end_ms = done.iter().map(|w| w.updated_at).max().unwrap_or(start_ms);
    let elapsed = Duration::from_millis(u64::try_from(end_ms - start_ms)?.max(1));
    worker.shutdown().await;
    figures.insert(
        "fanout_wf_per_sec",
        sizes.fanout_workflows as f64 / elapsed.as_secs_f64(),
    );
    let latencies = sorted(
        done.iter()
            .map(|w| (w.updated_at - w.created_at) as f64)
            .collect(),
    );
    figures.insert("fanout_p50_ms", percentile(&latencies, 50));
    figures.insert("fanout_p99_ms", percentile(&latencies, 99));
    Ok(())
}

/// Time from a parked loop's deadline to its completion: waking it, loading
/// its checkpoint and active history, and replaying to the end.
async fn wake_ms(stores: &Stores, iterations: u64) -> anyhow::Result<f64> {
    let engine = engine(stores).await?;
    let worker = engine
        .worker()
        .poll_interval(Duration::from_secs(5))
        .spawn();
    let mut spec = LoopSpec::new(iterations + 1, 20);
    spec.park_at = Some(iterations);
    let id = engine.dispatch::<BenchLoop>(spec).await?;
    let wake_at = loop {
        let info = engine.get(id).await?;
        if info.state == WorkflowState::Sleeping {
            break info.wake_at.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    engine.wait::<BenchLoop>(id).await?;
    let done = engine.get(id).await?.updated_at;
    worker.shutdown().await;
    Ok((done - wake_at) as f64)
}

/// Latency from `Engine::signal` to the next step of a workflow that
/// waits for each signal out of memory.
async fn signals(stores: &Stores, n: u64, figures: &mut Figures) -> anyhow::Result<()> {
    let engine = engine(stores).await?;
    let worker = engine.worker().spawn();
    let mut pongs = engine.subscribe::<Pong, &str, &str>([]);
    let id = engine.dispatch::<Echo>(n).await?;
    let mut latencies = Vec::new();
    for i in 0..n {
        let start = Instant::now();
        engine.signal(Ping(i)).to(id).await?;
        let Ok(pong) = tokio::time::timeout(Duration::from_secs(10), pongs.recv()).await else {
            let info = engine.get(id).await?;
            let pending = engine
                .store()
                .catalog()
                .pending_signals(id, vec!["ping".into()], 10)
                .await?;
            anyhow::bail!(
                "no answer to signal {i} within 10 s: workflow is {} (wake_at {:?}), {} signal(s) pending",
                info.state,
                info.wake_at,
                pending.len()
            );
        };
        let Pong(j) = pong.ok_or_else(|| anyhow::anyhow!("subscription closed"))?;
        anyhow::ensure!(i == j, "pong {j} for ping {i}");
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
    }
    engine.wait::<Echo>(id).await?;
    worker.shutdown().await;
    let latencies = sorted(latencies);
    figures.insert("signal_p50_ms", percentile(&latencies, 50));
    figures.insert("signal_p99_ms", percentile(&latencies, 99));
    Ok(())
}

/// Stored history rows of a finished loop that recorded an event in every
/// iteration (`commit_every(20)`, default retention).
async fn loop_rows(stores: &Stores, iterations: u64) -> anyhow::Result<f64> {
    let engine = engine(stores).await?;
    let worker = engine.worker().spawn();
    let mut spec = LoopSpec::new(iterations, 20);
    spec.record_now = true;
    let id = engine.dispatch::<BenchLoop>(spec).await?;
    engine.wait::<BenchLoop>(id).await?;
    worker.shutdown().await;
    Ok(engine.history(id).await?.len() as f64)
}
