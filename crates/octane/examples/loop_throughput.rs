//! Loop throughput on SQLite, against the raw durable commit rate of the
//! same disk: `cargo run --release -p octane --example loop_throughput`.
//!
//! Prints, for 10,000-iteration loops with an empty body or one activity
//! per iteration and `commit_every` 1 or 20, the median iterations/s of
//! three runs, and each as a ratio to single-row durable transactions per
//! second measured in the same run.

use std::time::{Duration, Instant};

use octane::prelude::*;

const ITERATIONS: u64 = 10_000;
const RUNS: usize = 3;

#[derive(Serialize, Deserialize)]
struct Noop {
    i: u64,
}

impl Activity for Noop {
    const NAME: &'static str = "noop";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        Ok(self.i)
    }
}

struct Bench;
impl Workflow for Bench {
    const NAME: &'static str = "bench_loop";
    /// (iterations, commit_every, one activity per iteration)
    type Input = (u64, u64, bool);
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &(u64, u64, bool)) -> Result<u64> {
        let (n, commit_every, activity) = *input;
        ctx.repeat(0u64)
            .commit_every(commit_every)
            .run(move |ctx, i| {
                async move {
                    if activity {
                        ctx.activity(Noop { i: *i }).await?;
                    }
                    *i += 1;
                    Ok(if *i == n {
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

fn raw_commits_per_sec(dir: &std::path::Path) -> anyhow::Result<f64> {
    let path = dir.join("raw.db");
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE t (v INTEGER)")?;
    let n = 2_000;
    let start = Instant::now();
    for i in 0..n {
        conn.execute_batch("BEGIN")?;
        conn.execute("INSERT INTO t VALUES (?1)", [i])?;
        conn.execute_batch("COMMIT")?;
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

async fn loop_per_sec(
    dir: &std::path::Path,
    run: usize,
    commit_every: u64,
    activity: bool,
) -> anyhow::Result<f64> {
    let path = dir.join(format!("loop-{run}-{commit_every}-{activity}.db"));
    let engine = Engine::open(&format!("sqlite://{}", path.display()))
        .await?
        .register::<Bench>();
    let worker = engine
        .worker()
        .poll_interval(Duration::from_millis(5))
        .spawn();
    let start = Instant::now();
    let id = engine
        .dispatch::<Bench>((ITERATIONS, commit_every, activity))
        .await?;
    let out = engine.wait::<Bench>(id).await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(out == ITERATIONS, "loop returned {out}");
    worker.shutdown().await;
    Ok(ITERATIONS as f64 / elapsed.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let cases = [
        ("loop_empty_c1", 1, false),
        ("loop_empty_c20", 20, false),
        ("loop_activity_c1", 1, true),
        ("loop_activity_c20", 20, true),
    ];
    let mut raw = Vec::new();
    let mut figures = vec![Vec::new(); cases.len()];
    for run in 0..RUNS {
        raw.push(raw_commits_per_sec(
            &dir.path().join(format!("r{run}")).tap_mkdir()?,
        )?);
        for (i, (_, commit_every, activity)) in cases.iter().enumerate() {
            figures[i].push(loop_per_sec(dir.path(), run, *commit_every, *activity).await?);
        }
    }
    let raw = median(raw);
    println!("{:<20} {:>14} {:>10}", "figure", "per second", "× raw");
    println!("{:<20} {:>14.0} {:>10.2}", "raw_commits_per_sec", raw, 1.0);
    for ((name, _, _), values) in cases.iter().zip(figures) {
        let m = median(values);
        println!("{name:<20} {m:>14.0} {:>10.2}", m / raw);
    }
    println!("(median of {RUNS} runs, {ITERATIONS} iterations each, synchronous=FULL)");
    Ok(())
}

trait TapMkdir: Sized {
    fn tap_mkdir(self) -> std::io::Result<Self>;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> std::io::Result<Self> {
        std::fs::create_dir_all(&self)?;
        Ok(self)
    }
}
