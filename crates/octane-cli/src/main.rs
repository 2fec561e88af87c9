//! The `octane` command: a demo to watch replay happen, and operator tools
//! for the workflows in a database.

mod db;
mod demo;
mod schedule;
mod wf;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use octane::{Engine, FailureCode, ListFilter, WorkflowState};

#[derive(Parser)]
#[command(
    name = "octane",
    version,
    about = "Durable workflows for Rust: demo and operator tools"
)]
struct Cli {
    /// The database: sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE.
    #[arg(
        long,
        global = true,
        env = "OCTANE_DATABASE_URL",
        default_value = "sqlite://octane.db"
    )]
    db: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an order workflow on embedded SQLite, crash its worker mid-way,
    /// and watch a new worker replay the recorded steps and carry on.
    Demo(demo::Args),
    /// Inspect and steer workflows.
    #[command(subcommand)]
    Wf(Wf),
    /// Delete finished workflows (and their history) older than a duration.
    Prune {
        /// e.g. `7d`, `12h`, `30m`, `0s`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// The database's own health.
    #[command(subcommand)]
    Db(Db),
    /// The schedules that start workflows on a cron expression.
    #[command(subcommand)]
    Schedule(Schedule),
    /// Serve the web dashboard for the database, until Ctrl-C.
    Dashboard {
        /// Where to listen; beyond loopback only with a token.
        #[arg(long, default_value = "127.0.0.1:8233")]
        addr: std::net::SocketAddr,
        /// Required on every request (as `Authorization: Bearer TOKEN`, or
        /// once as `?token=TOKEN`).
        #[arg(long, env = "OCTANE_DASHBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

#[derive(Subcommand)]
enum Schedule {
    /// List schedules with their next tick.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a schedule starting workflows.
    Pause { name: String },
    /// Resume a paused schedule from its next tick after now.
    Resume { name: String },
    /// Delete a schedule (the workflows it started stay).
    Delete { name: String },
}

#[derive(Subcommand)]
enum Db {
    /// Show how the database runs the engine's frequent queries; fails if
    /// one no longer reads its index.
    Plans,
}

#[derive(Subcommand)]
enum Wf {
    /// List workflows, newest first.
    List {
        /// Only this workflow name.
        #[arg(long)]
        name: Option<String>,
        /// Only workflows with this tag (key=value); repeatable.
        #[arg(long = "tag", value_parser = wf::parse_tag)]
        tags: Vec<(String, String)>,
        /// Only this state (pending, running, sleeping, completed, failed, cancelled, parked).
        #[arg(long)]
        state: Option<WorkflowState>,
        /// Only workflows parked with this code (history_diverged,
        /// corrupt_history, corrupt_row, invalid_input, panic, undecodable,
        /// state_too_large, write_rejected).
        #[arg(long)]
        code: Option<FailureCode>,
        /// Only workflows dispatched with this idempotency key.
        #[arg(long)]
        key: Option<String>,
        /// The page after this cursor (printed as `more: --after …` at the
        /// end of a full page).
        #[arg(long)]
        after: Option<octane::ListCursor>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a workflow and its history as a tree.
    Show { id: String },
    /// Print a workflow's active history, name and input as JSON, for
    /// `Engine::check_export` and `octane::testing::check_exports`.
    Export { id: String },
    /// Send a signal (name and JSON body) to a workflow.
    Signal {
        id: String,
        name: String,
        body: String,
    },
    /// Make a parked or sleeping workflow runnable now (after a fix).
    Wake { id: String },
    /// Cancel a workflow.
    Cancel { id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { db, command } = cli;
    match command {
        Command::Demo(args) => demo::run(args).await,
        Command::Wf(cmd) => {
            let engine = open(&db).await?;
            match cmd {
                Wf::List {
                    name,
                    tags,
                    state,
                    code,
                    key,
                    after,
                    limit,
                    json,
                } => {
                    let filter = ListFilter {
                        name,
                        state,
                        code,
                        key,
                        after,
                        tags: tags.into_iter().collect(),
                        limit: Some(limit),
                    };
                    wf::list(&engine, filter, json).await
                }
                Wf::Show { id } => wf::show(&engine, wf::parse_id(&id)?).await,
                Wf::Export { id } => wf::export(&engine, wf::parse_id(&id)?).await,
                Wf::Signal { id, name, body } => {
                    wf::signal(&engine, wf::parse_id(&id)?, &name, &body).await
                }
                Wf::Wake { id } => wf::wake(&engine, wf::parse_id(&id)?).await,
                Wf::Cancel { id } => wf::cancel(&engine, wf::parse_id(&id)?).await,
            }
        }
        Command::Prune { older_than } => wf::prune(&open(&db).await?, older_than).await,
        Command::Db(Db::Plans) => db::plans(&open(&db).await?).await,
        Command::Dashboard { addr, token } => {
            let engine = open(&db).await?;
            let mut dashboard = engine.dashboard();
            if let Some(token) = token {
                dashboard = dashboard.token(token);
            }
            let served = dashboard.serve(addr).await?;
            println!("Dashboard: http://{}/", served.addr());
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Schedule(cmd) => {
            let engine = open(&db).await?;
            match cmd {
                Schedule::List { json } => schedule::list(&engine, json).await,
                Schedule::Pause { name } => schedule::pause(&engine, &name).await,
                Schedule::Resume { name } => schedule::resume(&engine, &name).await,
                Schedule::Delete { name } => schedule::delete(&engine, &name).await,
            }
        }
    }
}

/// Opens an existing database: tools never create one by mistake.
async fn open(url: &str) -> anyhow::Result<Engine> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        anyhow::ensure!(
            std::path::Path::new(path).exists(),
            "no database at `{path}` (from --db {url})"
        );
    }
    let open = Engine::open(url);
    match tokio::time::timeout(Duration::from_secs(10), open).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!(
            "cannot open {}: no answer within 10 s",
            octane::store::mask_password(url)
        ),
    }
}
