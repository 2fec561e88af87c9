//! The measured scenarios. Each runs on a fresh database.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use octane::clock::now_ms;
use octane::prelude::*;
use octane::WorkflowState;

use crate::store::{RawCommits, Stores};

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
    /// Keep this many forgotten iterations stored (`Repeat::retain`).
    retain: Option<u64>,
    /// How long the parked sleep lasts.
    park_ms: u64,
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
            retain: None,
            park_ms: 300,
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
        let mut repeat = ctx.repeat(0u64).commit_every(spec.commit_every);
        if let Some(n) = spec.retain {
            repeat = repeat.retain(n);
        }
        repeat
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
                        ctx.sleep(Duration::from_millis(spec.park_ms)).await?;
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

/// Workflows that have reached their wait.
static WAITING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One step, then a wait: in memory when short (`sleep_in_memory_below`),
/// in the database when long.
struct Waiter;
impl Workflow for Waiter {
    const NAME: &'static str = "waiter";
    type Input = u64;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, secs: &u64) -> Result<()> {
        ctx.activity(Noop(*secs)).await?;
        WAITING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.sleep(Duration::from_secs(*secs)).await?;
        Ok(())
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
    Ok(registered(stores.fresh_engine().await?))
}

/// An engine on a database that already holds `finished` finished
/// workflows of the fan-out's name (inserted directly, not timed).
async fn aged_engine(stores: &Stores, finished: u64) -> anyhow::Result<Engine> {
    let url = stores.fresh_url().await?;
    Engine::open(&url).await?;
    octane_testkit::seed::finished_workflows(&url, ThreeSteps::NAME, finished, 3).await;
    Ok(registered(Engine::open(&url).await?))
}

fn registered(engine: Engine) -> Engine {
    engine
        .sleep_in_memory_below(Duration::ZERO)
        .register::<BenchLoop>()
        .register::<ThreeSteps>()
        .register::<Echo>()
        .register::<Waiter>()
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
    let mut raw = vec![stores.raw_commits(sizes.raw_commits).await?];
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
    raw.push(stores.raw_commits(sizes.raw_commits).await?);

    if wanted(&["fanout_wf_per_sec", "fanout_p50_ms", "fanout_p99_ms"]) {
        step(progress, "fan-out");
        let [wf_per_sec, p50, p99] = fanout(&engine(stores).await?, sizes).await?;
        figures.insert("fanout_wf_per_sec", wf_per_sec);
        figures.insert("fanout_p50_ms", p50);
        figures.insert("fanout_p99_ms", p99);
    }
    progress.inc(3);
    if wanted(&["fanout_3proc_wf_per_sec"]) {
        step(progress, "fan-out over 3 worker processes");
        figures.insert(
            "fanout_3proc_wf_per_sec",
            fanout_processes(stores, sizes, 3).await?,
        );
    }
    progress.inc(1);
    if wanted(&["commit_p99_ms"]) {
        step(progress, "commit latency");
        figures.insert(
            "commit_p99_ms",
            commit_p99_ms(&engine(stores).await?).await?,
        );
    }
    progress.inc(1);
    if wanted(&[
        "aged_fanout_wf_per_sec",
        "aged_commit_p99_ms",
        "dashboard_list_ms_aged",
        "dashboard_workflow_ms_aged",
    ]) {
        step(progress, "seeding an aged database");
        let aged = aged_engine(stores, sizes.aged_finished).await?;
        step(progress, "fan-out on an aged database");
        figures.insert("aged_fanout_wf_per_sec", fanout(&aged, sizes).await?[0]);
        step(progress, "commit latency on an aged database");
        figures.insert("aged_commit_p99_ms", commit_p99_ms(&aged).await?);
        step(progress, "dashboard pages on an aged database");
        let [list, workflow] = dashboard_ms(&aged).await?;
        figures.insert("dashboard_list_ms_aged", list);
        figures.insert("dashboard_workflow_ms_aged", workflow);
    }
    progress.inc(4);

    if wanted(&["wake_ms_iter10", "wake_ms_iter1m", "wake_ms_retain100k"]) {
        step(progress, "wake-up cost");
        let plain = |n| LoopSpec::new(n, 20);
        figures.insert("wake_ms_iter10", wake_ms(stores, plain(10)).await?);
        figures.insert(
            "wake_ms_iter1m",
            wake_ms(stores, plain(sizes.long_loop)).await?,
        );
        // Every iteration records an event, and the last 100,000 forgotten
        // ones stay stored: a wake-up must read around them.
        let mut retained = plain(sizes.long_loop);
        retained.record_now = true;
        retained.retain = Some(100_000);
        figures.insert("wake_ms_retain100k", wake_ms(stores, retained).await?);
    }
    progress.inc(3);

    if wanted(&["loop_state_ms_iter1m"]) {
        step(progress, "loop state");
        figures.insert(
            "loop_state_ms_iter1m",
            loop_state_ms(stores, sizes.long_loop).await?,
        );
    }
    progress.inc(1);

    if wanted(&["check_replay_wf_per_sec", "check_replay_aged_wf_per_sec"]) {
        step(progress, "replay check");
        let n = sizes.checked_workflows;
        figures.insert(
            "check_replay_wf_per_sec",
            check_replay(stores, n, 10).await?,
        );
        step(progress, "replay check of aged loops");
        figures.insert(
            "check_replay_aged_wf_per_sec",
            check_replay(stores, n / 5, 1_010).await?,
        );
    }
    progress.inc(2);

    if wanted(&["rss_kb_per_wf_in_memory", "rss_mb_asleep_in_db"]) {
        step(progress, "memory");
        rss(stores, sizes, figures).await?;
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
    raw.push(stores.raw_commits(sizes.raw_commits).await?);
    figures.insert(
        "raw_commits_per_sec",
        sorted(raw.iter().map(RawCommits::per_sec).collect())[1],
    );
    // The spread of a raw commit's latency, over all three samples: what
    // the disk or server gives a loop iteration's tail before any engine.
    let latencies = sorted(raw.into_iter().flat_map(|r| r.latencies_us).collect());
    figures.insert("raw_commit_p50_us", percentile(&latencies, 50));
    figures.insert("raw_commit_p99_us", percentile(&latencies, 99));
    if wanted(&["raw_batched_rows_per_sec"]) {
        step(progress, "raw batched rows");
        figures.insert(
            "raw_batched_rows_per_sec",
            stores
                .raw_batched_rows_per_sec(sizes.raw_commits / 10)
                .await?,
        );
    }
    progress.inc(1);
    Ok(())
}

/// A worker process of [`fanout_processes`]: runs the fan-out's workflows
/// on `url` until killed.
pub(crate) async fn worker_process(url: &str) -> anyhow::Result<()> {
    let engine = registered(Engine::open(url).await?);
    let _worker = engine.worker().concurrency(1_000).spawn();
    std::future::pending::<()>().await;
    Ok(())
}

/// Workflows per second when the fan-out's workflows, all dispatched
/// first, are run by `processes` worker processes sharing the database
/// (this binary again, with `--worker`). Timed from the processes' start
/// to the last completion; their start-up counts.
async fn fanout_processes(stores: &Stores, sizes: &Sizes, processes: usize) -> anyhow::Result<f64> {
    let url = stores.fresh_url().await?;
    let engine = registered(Engine::open(&url).await?);
    let mut ids = Vec::with_capacity(sizes.fanout_workflows);
    for i in 0..sizes.fanout_workflows {
        ids.push(engine.dispatch::<ThreeSteps>(i as u64).await?);
    }
    let start = Instant::now();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..processes {
        children.push(
            std::process::Command::new(&exe)
                .args(["--worker", &url])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?,
        );
    }
    let waited = async {
        for id in &ids {
            engine.wait::<ThreeSteps>(*id).await?;
        }
        anyhow::Ok(())
    }
    .await;
    let elapsed = start.elapsed();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    waited?;
    Ok(ids.len() as f64 / elapsed.as_secs_f64())
}

/// Many workflows at once: throughput, and the median and 99th percentile
/// of each workflow's time from dispatch to completion (ms).
async fn fanout(engine: &Engine, sizes: &Sizes) -> anyhow::Result<[f64; 3]> {
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
            let mut ids = Vec::with_capacity(chunk.len());
            for i in chunk {
                ids.push(engine.dispatch::<ThreeSteps>(i as u64).await?);
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(sizes.fanout_workflows);
    while let Some(r) = dispatches.join_next().await {
        ids.extend(r??);
    }
    // Waiting on each is cheap (a finished one answers at once) and, unlike
    // listing completed workflows, blind to those an aged database holds.
    for id in &ids {
        engine.wait::<ThreeSteps>(*id).await?;
    }
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        done.push(engine.get(id).await?);
    }
    let end_ms = done.iter().map(|w| w.updated_at).max().unwrap_or(start_ms);
    let elapsed = Duration::from_millis(u64::try_from(end_ms - start_ms)?.max(1));
    worker.shutdown().await;
    let latencies = sorted(
        done.iter()
            .map(|w| (w.updated_at - w.created_at) as f64)
            .collect(),
    );
    Ok([
        sizes.fanout_workflows as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50),
        percentile(&latencies, 99),
    ])
}

/// The 99th percentile of a loop iteration that commits one activity
/// (`commit_every(1)`): a commit's latency as the worker's other work
/// (claims, polling) competes with it. Over 10,000 commits, so that the
/// percentile is not decided by the handful of WAL checkpoints (or the
/// server's) that a shorter run happens to meet.
async fn commit_p99_ms(engine: &Engine) -> anyhow::Result<f64> {
    let worker = engine.worker().spawn();
    let mut spec = LoopSpec::new(10_000, 1);
    spec.activity = true;
    spec.timed = true;
    ITERATION_STARTS.lock().unwrap().clear();
    let id = engine.dispatch::<BenchLoop>(spec).await?;
    engine.wait::<BenchLoop>(id).await?;
    worker.shutdown().await;
    let starts = std::mem::take(&mut *ITERATION_STARTS.lock().unwrap());
    let gaps = sorted(
        starts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
            .collect(),
    );
    Ok(percentile(&gaps, 99))
}

/// Reading the checkpoint of a loop parked at iteration `iterations` with
/// `Engine::loop_state` (no worker involved): the median of 100 reads, ms.
async fn loop_state_ms(stores: &Stores, iterations: u64) -> anyhow::Result<f64> {
    let engine = engine(stores).await?;
    let worker = engine.worker().spawn();
    let mut spec = LoopSpec::new(iterations + 1, 20);
    spec.park_at = Some(iterations);
    spec.park_ms = 600_000;
    let id = engine.dispatch::<BenchLoop>(spec).await?;
    while engine.get(id).await?.state != WorkflowState::Sleeping {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.shutdown().await;
    let mut reads = Vec::with_capacity(100);
    for _ in 0..100 {
        let start = Instant::now();
        let state: octane::LoopState<u64> = engine.loop_state(id).await?;
        reads.push(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            state.iteration == iterations && state.state == iterations,
            "checkpoint at {} with state {}",
            state.iteration,
            state.state
        );
    }
    Ok(percentile(&sorted(reads), 50))
}

/// Milliseconds the dashboard takes to answer (median of 20 requests each,
/// over HTTP on loopback): the slowest of the list pages (first page,
/// filtered by name and state, the page after the first), and the page of
/// a loop workflow with 30 iterations of history.
async fn dashboard_ms(engine: &Engine) -> anyhow::Result<[f64; 2]> {
    let worker = engine.worker().spawn();
    let mut spec = LoopSpec::new(31, 20);
    spec.activity = true;
    spec.park_at = Some(30);
    spec.park_ms = 3_600_000;
    let id = engine.dispatch::<BenchLoop>(spec).await?;
    while engine.get(id).await?.state != WorkflowState::Sleeping {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    let dashboard = engine
        .serve_dashboard("127.0.0.1:0".parse().expect("an address"))
        .await?;
    let addr = dashboard.addr();
    let first = octane::ListFilter::default().limit(50);
    let cursor = engine
        .list_page(first)
        .await?
        .next
        .ok_or_else(|| anyhow::anyhow!("one page only"))?;
    let median = |path: String| async move {
        let mut times = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let r = octane_testkit::http::get(addr, &path, &[]).await;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(r.status == 200, "{path}: {}", r.status);
        }
        Ok::<f64, anyhow::Error>(percentile(&sorted(times), 50))
    };
    let mut list: f64 = 0.0;
    for path in [
        "/workflows".to_string(),
        format!("/workflows?name={}&state=completed", ThreeSteps::NAME),
        format!("/workflows?after={cursor}"),
    ] {
        list = list.max(median(path).await?);
    }
    let workflow = median(format!("/workflows/{id}")).await?;
    Ok([list, workflow])
}

/// Workflows per second `Engine::check_replay` checks: `n` live loops, each
/// asleep in iteration `age` with an activity in each iteration since its
/// last checkpoint (every 20). The median of 3 checks.
async fn check_replay(stores: &Stores, n: u64, age: u64) -> anyhow::Result<f64> {
    let engine = engine(stores).await?;
    let worker = engine.worker().concurrency(1_000).spawn();
    let mut spec = LoopSpec::new(age + 1, 20);
    spec.activity = true;
    spec.park_at = Some(age);
    spec.park_ms = 3_600_000;
    for _ in 0..n {
        engine.dispatch::<BenchLoop>(spec).await?;
    }
    let asleep = octane::ListFilter::default()
        .state(WorkflowState::Sleeping)
        .limit(n as usize);
    while (engine.list(asleep.clone()).await?.len() as u64) < n {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.shutdown().await;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let report = engine.check_replay(octane::ListFilter::default()).await?;
        let elapsed = start.elapsed();
        anyhow::ensure!(
            report.checks.len() as u64 == n && report.is_compatible(),
            "{report}"
        );
        rates.push(n as f64 / elapsed.as_secs_f64());
    }
    Ok(sorted(rates)[1])
}

/// The resident memory of this process, in KiB (Linux).
fn rss_kb() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// Memory per workflow waiting in memory (a 10-minute sleep held in memory),
/// and the growth while many more are asleep in the database.
async fn rss(stores: &Stores, sizes: &Sizes, figures: &mut Figures) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    for (key, n, in_memory) in [
        ("rss_kb_per_wf_in_memory", sizes.in_memory_workflows, true),
        ("rss_mb_asleep_in_db", sizes.asleep_workflows, false),
    ] {
        let engine = engine(stores).await?.sleep_in_memory_below(if in_memory {
            Duration::from_secs(3_600)
        } else {
            Duration::ZERO
        });
        let worker = engine.worker().concurrency(n as usize + 1).spawn();
        WAITING.store(0, Ordering::Relaxed);
        let before = rss_kb()?;
        for _ in 0..n {
            engine.dispatch::<Waiter>(600).await?;
        }
        while WAITING.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The last few reach their sleep just after the counter.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let grown = rss_kb()? - before;
        figures.insert(
            key,
            if in_memory {
                grown / n as f64
            } else {
                grown / 1024.0
            },
        );
        drop(worker);
    }
    Ok(())
}

/// Time from a parked loop's deadline to its completion: waking it, loading
/// its checkpoint and active history, and replaying to the end.
async fn wake_ms(stores: &Stores, mut spec: LoopSpec) -> anyhow::Result<f64> {
    let engine = engine(stores).await?;
    let worker = engine
        .worker()
        .poll_interval(Duration::from_secs(5))
        .spawn();
    spec.park_at = Some(spec.iterations);
    spec.iterations += 1;
    // A loop that records an event per iteration runs ahead of its writes;
    // the 2 s sleep lets them all land before the deadline, so the figure
    // is the wake-up alone. (Seen asleep only after the deadline, it counts
    // from then.)
    spec.park_ms = 2_000;
    let id = engine.dispatch::<BenchLoop>(spec).await?;
    let due = loop {
        let info = engine.get(id).await?;
        if info.state == WorkflowState::Sleeping {
            break info.wake_at.unwrap_or_default().max(now_ms());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    engine.wait::<BenchLoop>(id).await?;
    let done = engine.get(id).await?.updated_at;
    worker.shutdown().await;
    Ok((done - due) as f64)
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
