//! `octane-bench`: measures the engine against the raw commit rate of the
//! same store, in one run.
//!
//! ```text
//! cargo run --release -p octane-bench -- --store sqlite [--quick] [--json FILE]
//! cargo run --release -p octane-bench -- --store postgres --url postgres://… [--quick]
//! ```
//!
//! Prints a table (each figure also as a ratio to `raw_commits_per_sec`)
//! and writes the figures as JSON with fixed keys.

mod scenarios;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Parser)]
#[command(name = "octane-bench", about = "Octane's benchmark harness")]
struct Args {
    /// Which store to measure.
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreKind,
    /// PostgreSQL server (`--store postgres`); defaults to OCTANE_TEST_POSTGRES_URL.
    #[arg(long)]
    url: Option<String>,
    /// Smaller sizes, for a quick look (the figures are then not the ones
    /// the targets speak of).
    #[arg(long)]
    quick: bool,
    /// Also write the figures to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only the scenarios whose figures' keys contain this text (and
    /// the raw rate, for the ratios): to profile one scenario alone.
    #[arg(long)]
    only: Option<String>,
    /// Run as a worker process of the multi-process scenario on this
    /// database, until killed (not for direct use).
    #[arg(long, hide = true)]
    worker: Option<String>,
}

/// How big each scenario is.
#[derive(Debug)]
pub struct Sizes {
    pub loop_iterations: u64,
    pub fanout_workflows: usize,
    pub fanout_concurrency: usize,
    pub long_loop: u64,
    pub signals: u64,
    pub raw_commits: u32,
    pub aged_finished: u64,
    pub in_memory_workflows: u64,
    pub asleep_workflows: u64,
    pub checked_workflows: u64,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                loop_iterations: 2_000,
                fanout_workflows: 1_000,
                fanout_concurrency: 200,
                long_loop: 100_000,
                signals: 100,
                raw_commits: 500,
                aged_finished: 100_000,
                in_memory_workflows: 2_000,
                asleep_workflows: 10_000,
                checked_workflows: 1_000,
            }
        } else {
            Sizes {
                loop_iterations: 10_000,
                fanout_workflows: 10_000,
                fanout_concurrency: 1_000,
                long_loop: 1_000_000,
                signals: 1_000,
                raw_commits: 2_000,
                aged_finished: 1_000_000,
                in_memory_workflows: 10_000,
                asleep_workflows: 100_000,
                checked_workflows: 10_000,
            }
        }
    }
}

/// The JSON keys, in table order; each is measured by `scenarios`.
const KEYS: &[&str] = &[
    "raw_commits_per_sec",
    "raw_batched_rows_per_sec",
    "loop_empty_c1",
    "loop_empty_c20",
    "loop_activity_c1",
    "loop_activity_c20",
    "fanout_wf_per_sec",
    "fanout_p50_ms",
    "fanout_p99_ms",
    "fanout_3proc_wf_per_sec",
    "aged_fanout_wf_per_sec",
    "commit_p99_ms",
    "aged_commit_p99_ms",
    "dashboard_list_ms_aged",
    "dashboard_workflow_ms_aged",
    "wake_ms_iter10",
    "wake_ms_iter1m",
    "wake_ms_retain100k",
    "loop_state_ms_iter1m",
    "check_replay_wf_per_sec",
    "check_replay_aged_wf_per_sec",
    "signal_p50_ms",
    "signal_p99_ms",
    "loop_rows_1k",
    "loop_rows_1m",
    "loop_iter_p50_us",
    "loop_iter_p99_us",
    "raw_commit_p50_us",
    "raw_commit_p99_us",
    "rss_kb_per_wf_in_memory",
    "rss_mb_asleep_in_db",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.worker {
        return scenarios::worker_process(url).await;
    }
    let sizes = Sizes::new(args.quick);
    let stores = match args.store {
        StoreKind::Sqlite => store::Stores::sqlite()?,
        StoreKind::Postgres => {
            let url = args
                .url
                .clone()
                .or_else(|| std::env::var("OCTANE_TEST_POSTGRES_URL").ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("--store postgres needs --url or OCTANE_TEST_POSTGRES_URL")
                })?;
            store::Stores::postgres(url)
        }
    };
    let progress = ProgressBar::new(KEYS.len() as u64);
    progress.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")?);
    let mut figures = BTreeMap::new();
    let wanted = |keys: &[&str]| {
        args.only
            .as_deref()
            .is_none_or(|only| keys.iter().any(|k| k.contains(only)))
    };
    let measured = scenarios::run_all(&stores, &sizes, &progress, &wanted, &mut figures).await;
    progress.finish_and_clear();
    stores.clean_up().await?;
    measured?;

    let raw = figures["raw_commits_per_sec"];
    println!("{:<22} {:>14} {:>10}", "figure", "value", "÷ raw");
    for key in KEYS {
        if let Some(v) = figures.get(*key) {
            println!("{key:<22} {v:>14.2} {:>10.4}", v / raw);
        }
    }
    println!(
        "store {:?}, {} sizes, {} cores",
        args.store,
        if args.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Some(path) = args.json {
        let ordered: serde_json::Map<String, serde_json::Value> = KEYS
            .iter()
            .filter_map(|k| Some((k.to_string(), serde_json::json!(figures.get(*k)?))))
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&ordered)? + "\n")?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
