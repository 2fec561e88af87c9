//! Signal-to-wake latency on SQLite:
//! `cargo run --release -p octane --example signal_latency`.
//!
//! A loop workflow waits for a signal (leaving memory each time), then
//! publishes a message. The time from `Engine::signal` to that message is
//! the latency from a signal to the workflow's next step, including the
//! wake-up, the claim, loading history and replay. Prints p50/p99 over
//! 1,000 signals, one at a time.

use std::time::{Duration, Instant};

use octane::prelude::*;

#[derive(Serialize, Deserialize)]
struct Ping(u64);
impl Signal for Ping {
    const NAME: &'static str = "ping";
}

#[derive(Serialize, Deserialize, Clone)]
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = 1_000;
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let url = format!("sqlite://{}", dir.path().join("latency.db").display());
    let engine = Engine::open(&url).await?.register::<Echo>();
    let worker = engine.worker().spawn();
    let mut pongs = engine.subscribe::<Pong, &str, &str>([]);
    let id = engine.dispatch::<Echo>(n).await?;
    let mut latencies = Vec::with_capacity(usize::try_from(n)?);
    for i in 0..n {
        let start = Instant::now();
        engine.signal(Ping(i)).to(id).await?;
        let Pong(j) = tokio::time::timeout(Duration::from_secs(10), pongs.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscription closed"))?;
        anyhow::ensure!(i == j, "pong {j} for ping {i}");
        latencies.push(start.elapsed());
    }
    anyhow::ensure!(engine.wait::<Echo>(id).await? == n);
    worker.shutdown().await;
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "signal_to_next_step over {n} signals: p50 {:?}, p99 {:?}, max {:?}",
        pct(50),
        pct(99),
        latencies[latencies.len() - 1]
    );
    Ok(())
}
