//! Throughput of 1 vs 3 worker processes sharing one PostgreSQL database:
//! `cargo run --release -p octane --example postgres_workers -- postgres://USER:PASS@HOST/DB`.
//!
//! For each worker count, three runs: 1,000 workflows of 3 activities are
//! dispatched, worker processes (this binary again, with `--worker`) are
//! started, and the time until every workflow completed gives
//! workflows/s. Each run uses a fresh schema. Prints the medians.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::{ListFilter, WorkflowState};

const WORKFLOWS: usize = 1_000;

#[derive(Serialize, Deserialize)]
struct Step(u64);

impl Activity for Step {
    const NAME: &'static str = "step";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        Ok(self.0)
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
            sum += ctx.activity(Step(n + i)).await?;
        }
        Ok(sum)
    }
}

async fn worker(url: &str) -> anyhow::Result<()> {
    let engine = Engine::open(url).await?.register::<ThreeSteps>();
    let _worker = engine
        .worker()
        .concurrency(256)
        .poll_interval(Duration::from_millis(100))
        .spawn();
    std::future::pending::<()>().await;
    Ok(())
}

async fn fresh_schema(base: &str) -> anyhow::Result<String> {
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

async fn run(base: &str, processes: usize) -> anyhow::Result<f64> {
    let url = fresh_schema(base).await?;
    let engine = Engine::open(&url).await?.register::<ThreeSteps>();
    for i in 0..WORKFLOWS {
        engine.dispatch::<ThreeSteps>(u64::try_from(i)?).await?;
    }
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut children: Vec<Child> = (0..processes)
        .map(|_| Command::new(&exe).args(["--worker", &url]).spawn())
        .collect::<Result<_, _>>()?;
    loop {
        let done = engine
            .list(
                ListFilter::default()
                    .state(WorkflowState::Completed)
                    .limit(WORKFLOWS + 1),
            )
            .await?
            .len();
        if done == WORKFLOWS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    for c in &mut children {
        c.kill()?;
        c.wait()?;
    }
    Ok(WORKFLOWS as f64 / elapsed.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        return worker(&args[2]).await;
    }
    let base = args
        .get(1)
        .cloned()
        .or_else(|| std::env::var("OCTANE_TEST_POSTGRES_URL").ok())
        .ok_or_else(|| anyhow::anyhow!("usage: postgres_workers postgres://USER:PASS@HOST/DB"))?;
    for processes in [1, 3] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            rates.push(run(&base, processes).await?);
        }
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{processes} worker process(es): {:.0} workflows/s (median of 3: {:?})",
            rates[1],
            rates.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
    }
    Ok(())
}
