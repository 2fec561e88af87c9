//! `octane demo`: an order workflow whose worker crashes mid-way.
//!
//! Activities print when they execute; the engine's replay trace prints
//! when a step is answered from history instead. After the crash a new
//! worker replays what was recorded — nothing runs twice except the one
//! step that was in flight — and finishes the order.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use octane::prelude::*;
use octane::WorkflowState;
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Options of `octane demo`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The SQLite file to use; it is recreated on every run (so the demo
    /// never touches the database `--db` names).
    #[arg(long, default_value = "octane-demo.db")]
    file: PathBuf,
    /// The tracking update during which the first worker crashes.
    #[arg(long, default_value_t = 8)]
    crash_at: u64,
    /// Serve the engine's metrics for Prometheus at http://ADDR/metrics.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// With --metrics-addr: keep serving after the demo, until Ctrl-C.
    #[arg(long, requires = "metrics_addr")]
    hold: bool,
    /// After the order, serve the dashboard here and keep a wallet actor
    /// running (a loop that waits for `deposit` signals), until Ctrl-C.
    #[arg(long)]
    dashboard_addr: Option<std::net::SocketAddr>,
}

static CRASH_ARMED: AtomicBool = AtomicBool::new(true);
static CRASH_NOW: Notify = Notify::const_new();
static CRASH_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(8);

/// Prints a line from inside a workflow or the tracing layer. A closed
/// stdout must not panic there: the panic would park the workflow.
fn out(line: impl fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn say(what: impl fmt::Display) {
    out(format_args!("  ▶ executing {what}"));
}

#[derive(Serialize, Deserialize)]
struct ReserveStock {
    order: String,
}

impl Activity for ReserveStock {
    const NAME: &'static str = "reserve_stock";
    type Output = u32;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u32> {
        say(format_args!("reserve_stock for {}", self.order));
        Ok(3)
    }
}

#[derive(Serialize, Deserialize)]
struct ChargeCard {
    order: String,
    cents: u64,
}

impl Activity for ChargeCard {
    const NAME: &'static str = "charge_card";
    type Output = String;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<String> {
        say(format_args!(
            "charge_card: {} cents for {}",
            self.cents, self.order
        ));
        Ok(format!("receipt-{}", self.order))
    }
}

#[derive(Serialize, Deserialize)]
struct TrackingUpdate {
    order: String,
    n: u64,
}

impl Activity for TrackingUpdate {
    const NAME: &'static str = "tracking_update";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        say(format_args!(
            "tracking_update #{} for {}",
            self.n, self.order
        ));
        if self.n == CRASH_AT.load(Ordering::SeqCst) && CRASH_ARMED.swap(false, Ordering::SeqCst) {
            CRASH_NOW.notify_one();
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok(self.n * 10)
    }
}

struct Order;
impl Workflow for Order {
    const NAME: &'static str = "order";
    type Input = String;
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, order: &String) -> Result<String> {
        let items = ctx
            .activity(ReserveStock {
                order: order.clone(),
            })
            .await?;
        let receipt = ctx
            .activity(ChargeCard {
                order: order.clone(),
                cents: 1999 * u64::from(items),
            })
            .await?;
        let order = order.clone();
        let km = ctx
            .repeat(0u64)
            .commit_every(5)
            .run(move |ctx, n| {
                let order = order.clone();
                async move {
                    *n += 1;
                    let km = ctx.activity(TrackingUpdate { order, n: *n }).await?;
                    Ok(if *n == 12 {
                        Loop::Break(km)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await?;
        Ok(format!("{items} items, {receipt}, delivered after {km} km"))
    }
}

/// A deposit into the wallet: `{"cents": 500}`.
#[derive(Serialize, Deserialize, Signal)]
struct Deposit {
    cents: u64,
}

/// What the wallet holds.
#[derive(Serialize, Deserialize, Default)]
struct Balance {
    cents: u64,
    deposits: u64,
}

/// An actor that lives for ever: each iteration waits (out of memory) for
/// a deposit and adds it to the balance, its loop state.
struct Wallet;
impl Workflow for Wallet {
    const NAME: &'static str = "wallet";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _owner: &String) -> Result<()> {
        ctx.repeat(Balance::default())
            .commit_every(1)
            .run(|ctx, balance| {
                async move {
                    let Deposit { cents } = ctx.listen::<Deposit>().await?;
                    balance.cents += cents;
                    balance.deposits += 1;
                    Ok(Loop::<()>::Continue)
                }
                .boxed()
            })
            .await
    }
}

/// Prints each step the engine answers from history.
struct ReplayPrinter;

#[derive(Default)]
struct ReplayFields {
    location: String,
    kind: String,
    name: String,
    iteration: String,
}

impl Visit for ReplayFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let v = format!("{value:?}");
        match field.name() {
            "location" => self.location = v,
            "kind" => self.kind = v,
            "name" => self.name = v,
            "iteration" => self.iteration = v,
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for ReplayPrinter {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "octane::replay" {
            return;
        }
        let mut f = ReplayFields::default();
        event.record(&mut f);
        if f.kind == "loop" {
            out(format_args!(
                "  ↺ resumed   loop at {} from its checkpoint at iteration {}",
                f.location, f.iteration
            ));
            return;
        }
        let what = if f.name.is_empty() {
            f.kind
        } else {
            format!("{} `{}`", f.kind, f.name)
        };
        out(format_args!(
            "  ↺ replayed  {what} at {} (recorded result, not run again)",
            f.location
        ));
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    CRASH_AT.store(args.crash_at, Ordering::SeqCst);
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("octane::replay", tracing::Level::DEBUG);
    let subscriber = tracing_subscriber::registry().with(ReplayPrinter.with_filter(filter));
    tracing::subscriber::set_global_default(subscriber)?;

    for suffix in ["", "-wal", "-shm"] {
        let mut p = args.file.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let url = format!("sqlite://{}", args.file.display());
    println!("Octane demo — database {url}\n");
    let engine = Engine::open(&url)
        .await?
        .register::<Order>()
        .register::<Wallet>();
    if let Some(addr) = args.metrics_addr {
        engine.serve_metrics(addr)?;
        println!("Metrics: http://{addr}/metrics\n");
    }
    let lease = Duration::from_secs(1);

    println!("Worker 1 starts and runs order #1:");
    let worker = engine.worker().lease_ttl(lease).spawn();
    let id = engine
        .dispatch::<Order>("order-1".into())
        .tag("demo", "yes")
        .await?;
    CRASH_NOW.notified().await;
    drop(worker);
    println!(
        "\n  💥 worker 1 crashed while tracking update #{} was in flight.\n     \
         Every step before it is committed; that one is not, so it will run again.\n",
        args.crash_at
    );
    let info = engine.get(id).await?;
    println!(
        "Workflow {id} is still `{}` in the database; its lease expires in {lease:?}.\n",
        info.state
    );

    println!("Worker 2 starts, takes the workflow over and replays it:");
    let worker = engine.worker().lease_ttl(lease).spawn();
    let output = tokio::time::timeout(Duration::from_secs(60), engine.wait::<Order>(id)).await??;
    worker.shutdown().await;
    println!("\nOrder finished: {output}\n");

    println!(
        "Its history (the loop checkpoints every 5 iterations; older iterations are forgotten):"
    );
    for entry in engine.history(id).await? {
        let e = &entry.event;
        let what = match e.kind {
            octane::history::EventKind::Loop => {
                format!("loop  iteration {} done={}", e.iteration, e.done)
            }
            _ => format!("{} {}", e.kind, e.name),
        };
        let mark = if entry.forgotten { " (forgotten)" } else { "" };
        println!("  {:<10} {what}{mark}", e.location.to_string());
    }
    let state = engine.get(id).await?.state;
    anyhow::ensure!(
        state == WorkflowState::Completed,
        "the order did not complete: {state}"
    );
    if let Some(addr) = args.dashboard_addr {
        return serve_wallet(&engine, addr).await;
    }
    if args.hold {
        println!("\nServing metrics until Ctrl-C.");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}

/// Starts a wallet actor with three deposits, and serves the dashboard
/// beside a worker until Ctrl-C.
async fn serve_wallet(engine: &Engine, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let worker = engine.worker().spawn();
    let wallet = engine
        .dispatch::<Wallet>("ada".into())
        .tag("demo", "yes")
        .await?;
    for cents in [100, 250, 50] {
        engine.signal(Deposit { cents }).to(wallet).await?;
    }
    let dashboard = engine.serve_dashboard(addr).await?;
    println!(
        "\nWallet {wallet} is a loop that waits for `deposit` signals; send one from its page."
    );
    println!("Dashboard: http://{}/", dashboard.addr());
    tokio::signal::ctrl_c().await?;
    worker.shutdown().await;
    Ok(())
}
