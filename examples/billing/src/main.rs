//! `billing check-deploy --db URL`: replays every live workflow in the
//! database against the workflows this build registers, before the build
//! is deployed. Exits 0 when this code carries every one of them on, 1
//! when some would diverge or no longer decode (each is listed), 2 when the
//! check itself failed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use octane::{Engine, ListFilter};

#[derive(Parser)]
#[command(about = "The billing service's operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check this build against the live workflows in a database.
    CheckDeploy {
        /// The production database (or a copy of it).
        #[arg(long, env = "BILLING_DB")]
        db: String,
        /// Only workflows of this name.
        #[arg(long)]
        name: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let Command::CheckDeploy { db, name } = Cli::parse().command;
    match check_deploy(&db, name).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn check_deploy(db: &str, name: Option<String>) -> anyhow::Result<bool> {
    let engine = billing::register(Engine::open(db).await?);
    let filter = ListFilter {
        name,
        ..ListFilter::default()
    };
    let report = engine.check_replay(filter).await?;
    println!("{report}");
    Ok(report.is_compatible())
}
