//! The `octane` binary against databases prepared by the engine: listing,
//! showing a loop's tree, signalling, waking, cancelling, pruning, bad
//! input, and the metrics endpoint of the demo.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use octane::prelude::*;
use octane::{WorkflowState, HISTORY_DIVERGED};
use octane_testkit::{self as support, fast_worker, wait_state, TestDb};

fn octane(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_octane"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run octane")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "octane failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failing run: non-zero exit and exactly one line on stderr.
fn one_line_error(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr).trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[derive(Serialize, Deserialize)]
struct Add(u64);
impl Activity for Add {
    const NAME: &'static str = "add";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        Ok(self.0 + 1)
    }
}

/// 23 iterations checkpointed every 20, keeping 3 forgotten ones, then a
/// long sleep inside the loop.
struct Looper;
impl Workflow for Looper {
    const NAME: &'static str = "looper";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        ctx.repeat(0u64)
            .commit_every(20)
            .retain(3)
            .run(|ctx, n| {
                async move {
                    if *n == 23 {
                        ctx.sleep(Duration::from_secs(3600)).await?;
                    }
                    *n = ctx.activity(Add(*n)).await?;
                    Ok(if *n > 30 {
                        Loop::Break(*n)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

#[derive(Serialize, Deserialize, Signal)]
struct Deposit {
    cents: u64,
}

struct Wallet;
impl Workflow for Wallet {
    const NAME: &'static str = "wallet";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        Ok(ctx.listen::<Deposit>().await?.cents)
    }
}

async fn engine_for(url: &str) -> Engine {
    Engine::open(url)
        .await
        .unwrap()
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Looper>()
        .register::<Wallet>()
}

async fn list_filters_and_show_draws_a_loop_with_its_checkpoint(db: TestDb) {
    let started = std::time::SystemTime::now();
    let engine = engine_for(&db.url).await;
    let worker = fast_worker(&engine);
    let looper = engine
        .dispatch::<Looper>(())
        .tag("tenant", "acme")
        .await
        .unwrap();
    let wallet = engine
        .dispatch::<Wallet>(())
        .tag("tenant", "globex")
        .await
        .unwrap();
    wait_state(&engine, looper, WorkflowState::Sleeping).await;
    wait_state(&engine, wallet, WorkflowState::Sleeping).await;

    let out = stdout(&octane(&db.url, &["wf", "list", "--tag", "tenant=acme"]));
    assert!(
        out.contains(&looper.to_string()) && !out.contains(&wallet.to_string()),
        "{out}"
    );
    let json = stdout(&octane(
        &db.url,
        &["wf", "list", "--name", "wallet", "--json"],
    ));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], wallet.to_string());
    let none = stdout(&octane(&db.url, &["wf", "list", "--state", "completed"]));
    assert!(none.contains("(0 workflows)"), "{none}");

    let tree = stdout(&octane(&db.url, &["wf", "show", &looper.to_string()]));
    assert!(tree.contains("`looper`  sleeping"), "{tree}");
    assert!(
        tree.contains(
            "loop — at iteration 23, checkpoint at iteration 20, 20 iteration(s) forgotten, 3 of them retained"
        ),
        "{tree}"
    );
    assert!(
        tree.contains("state: 20"),
        "the loop state, pretty-printed: {tree}"
    );
    assert!(
        tree.contains("{1, 22, 1}") && tree.contains("activity `add` attempts=1"),
        "{tree}"
    );
    assert!(
        !tree.contains("{1, 19, 1}"),
        "forgotten iterations are not drawn: {tree}"
    );
    let step = tree
        .lines()
        .find(|l| l.contains("{1, 22, 1}"))
        .expect("iteration 22's step");
    let written = step
        .split_whitespace()
        .next()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("the step's line starts with its time: {step}"));
    // RFC 3339 with milliseconds: allow for the truncation.
    assert!(
        written + Duration::from_millis(1) >= started && written <= std::time::SystemTime::now(),
        "the step was written during the test: {step}"
    );
    worker.shutdown().await;
}

async fn export_writes_a_history_that_replays_against_the_code(db: TestDb) {
    let engine = engine_for(&db.url).await;
    let worker = fast_worker(&engine);
    let looper = engine.dispatch::<Looper>(()).await.unwrap();
    wait_state(&engine, looper, WorkflowState::Sleeping).await;
    worker.shutdown().await;

    let json = stdout(&octane(&db.url, &["wf", "export", &looper.to_string()]));
    let export = octane::WorkflowExport::from_json(&json).unwrap();
    assert_eq!(
        (export.workflow_id, export.name.as_str()),
        (looper, "looper")
    );
    let forgotten = export
        .events
        .iter()
        .filter(|e| e.location.to_string().starts_with("{1, 19"))
        .count();
    assert_eq!(forgotten, 0, "forgotten iterations are not exported");
    let check = engine.check_export(&export).await;
    assert!(check.verdict.is_compatible(), "{check}");

    let unknown = WorkflowId::new();
    let err = one_line_error(&octane(&db.url, &["wf", "export", &unknown.to_string()]));
    assert_eq!(err, format!("error: no workflow with id {unknown}"));
}

async fn signal_cancel_and_prune_act_on_the_database(db: TestDb) {
    let engine = engine_for(&db.url).await;
    let worker = fast_worker(&engine);
    let paid = engine.dispatch::<Wallet>(()).await.unwrap();
    let dropped = engine.dispatch::<Wallet>(()).await.unwrap();
    wait_state(&engine, paid, WorkflowState::Sleeping).await;
    wait_state(&engine, dropped, WorkflowState::Sleeping).await;

    let out = stdout(&octane(
        &db.url,
        &[
            "wf",
            "signal",
            &paid.to_string(),
            "deposit",
            r#"{"cents":7}"#,
        ],
    ));
    assert!(out.contains("signal `deposit` sent"), "{out}");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), engine.wait::<Wallet>(paid))
            .await
            .unwrap()
            .unwrap(),
        7
    );

    stdout(&octane(&db.url, &["wf", "cancel", &dropped.to_string()]));
    assert_eq!(
        engine.get(dropped).await.unwrap().state,
        WorkflowState::Cancelled
    );

    let waiting = engine.dispatch::<Wallet>(()).await.unwrap();
    wait_state(&engine, waiting, WorkflowState::Sleeping).await;
    let out = stdout(&octane(&db.url, &["prune", "--older-than", "0s"]));
    assert!(out.contains("pruned 2 finished workflows"), "{out}");
    assert!(engine.get(paid).await.is_err() && engine.get(dropped).await.is_err());
    assert_eq!(
        engine.get(waiting).await.unwrap().state,
        WorkflowState::Sleeping,
        "unfinished work is kept"
    );
    let out = stdout(&octane(&db.url, &["prune", "--older-than", "7d"]));
    assert!(out.contains("pruned 0 finished workflows"), "{out}");
    worker.shutdown().await;
}

/// The first deploy: an activity, a sleep, an activity.
struct V1;
impl Workflow for V1 {
    const NAME: &'static str = "versioned";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        let a = ctx.activity(Add(1)).await?;
        ctx.sleep(Duration::from_millis(100)).await?;
        Ok(a + ctx.activity(Add(10)).await?)
    }
}

/// A deploy that replaced the sleep.
struct Broken;
impl Workflow for Broken {
    const NAME: &'static str = "versioned";
    type Input = ();
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<u64> {
        let a = ctx.activity(Add(1)).await?;
        Ok(a + ctx.activity(Add(10)).await?)
    }
}

async fn wake_revives_a_workflow_parked_on_a_diverged_history_after_the_fix(db: TestDb) {
    let old = Engine::open(&db.url)
        .await
        .unwrap()
        .sleep_in_memory_below(Duration::ZERO)
        .register::<V1>();
    let worker = fast_worker(&old);
    let id = old.dispatch::<V1>(()).await.unwrap();
    wait_state(&old, id, WorkflowState::Sleeping).await;
    worker.shutdown().await;

    let broken = Engine::open(&db.url).await.unwrap().register::<Broken>();
    let worker = fast_worker(&broken);
    wait_state(&broken, id, WorkflowState::Parked).await;
    worker.shutdown().await;
    let parked = stdout(&octane(
        &db.url,
        &[
            "wf",
            "list",
            "--state",
            "parked",
            "--code",
            "history_diverged",
        ],
    ));
    assert!(
        parked.contains(&id.to_string()) && parked.contains("history_diverged"),
        "{parked}"
    );
    let none = stdout(&octane(&db.url, &["wf", "list", "--code", "panic"]));
    assert!(!none.contains(&id.to_string()), "{none}");
    let shown = stdout(&octane(&db.url, &["wf", "show", &id.to_string()]));
    assert!(shown.contains(HISTORY_DIVERGED), "{shown}");

    let fixed = Engine::open(&db.url).await.unwrap().register::<V1>();
    let worker = fast_worker(&fixed);
    let out = stdout(&octane(&db.url, &["wf", "wake", &id.to_string()]));
    assert!(out.contains("runnable again"), "{out}");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), fixed.wait::<V1>(id))
            .await
            .unwrap()
            .unwrap(),
        13
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_clear_line_and_a_failing_exit_code() {
    let db = TestDb::sqlite();
    let engine = engine_for(&db.url).await;
    let err = one_line_error(&octane(&db.url, &["wf", "show", "not-an-id"]));
    assert!(
        err.starts_with("error: `not-an-id` is not a workflow id"),
        "{err}"
    );

    let unknown = WorkflowId::new();
    let err = one_line_error(&octane(&db.url, &["wf", "show", &unknown.to_string()]));
    assert_eq!(err, format!("error: no workflow with id {unknown}"));
    let err = one_line_error(&octane(&db.url, &["wf", "cancel", &unknown.to_string()]));
    assert_eq!(err, format!("error: no workflow with id {unknown}"));

    let wallet = engine.dispatch::<Wallet>(()).await.unwrap();
    let err = one_line_error(&octane(
        &db.url,
        &["wf", "signal", &wallet.to_string(), "deposit", "{cents:"],
    ));
    assert!(
        err.starts_with("error: the body of signal `deposit` is not valid JSON:"),
        "{err}"
    );
    assert!(engine
        .store()
        .catalog()
        .pending_signals(wallet, vec!["deposit".into()], 5)
        .await
        .unwrap()
        .is_empty());

    let err = one_line_error(&octane("sqlite:///no/such/dir/octane.db", &["wf", "list"]));
    assert_eq!(err, "error: no database at `/no/such/dir/octane.db` (from --db sqlite:///no/such/dir/octane.db)");
    let err = one_line_error(&octane(
        "postgres://nobody:x@127.0.0.1:1/none",
        &["wf", "list"],
    ));
    assert!(
        err.starts_with("error: cannot open postgres://nobody:***@127.0.0.1:1/none: "),
        "{err}"
    );
    let err = one_line_error(&octane("mysql://x", &["wf", "list"]));
    assert!(
        err.contains("unsupported database url `mysql://x`"),
        "{err}"
    );
}

#[test]
fn the_demo_serves_loop_metrics_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_octane"))
        .args(["demo", "--file"])
        .arg(dir.path().join("demo.db"))
        .args(["--metrics-addr", &addr, "--hold"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let finished = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("Serving metrics until Ctrl-C"));
    assert!(finished, "the demo ran to the end");
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    demo.kill().unwrap();
    demo.wait().unwrap();
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name) && l.contains("workflow=\"order\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` for the order workflow in:\n{body}"))
    };
    assert!(value("octane_loop_iterations_total") >= 12.0);
    assert!(value("octane_loop_checkpoints_total") >= 2.0);
    assert!(value("octane_loop_iteration_seconds_count") >= 12.0);
}

/// Holds its worker for a minute.
#[derive(Serialize, Deserialize)]
struct Hold;
impl Activity for Hold {
    const NAME: &'static str = "hold";
    type Output = ();
    async fn run(&self, _ctx: &ActivityCtx) -> Result<()> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    }
}

struct Held;
impl Workflow for Held {
    const NAME: &'static str = "held";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        Ok(ctx.activity(Hold).await?)
    }
}

async fn show_and_list_name_the_worker_running_a_workflow(db: TestDb) {
    let engine = Engine::open(&db.url).await.unwrap().register::<Held>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Held>(()).await.unwrap();
    wait_state(&engine, id, WorkflowState::Running).await;
    let pid = std::process::id();
    let shown = support::eventually("the owner to show", Duration::from_secs(30), || async {
        let shown = stdout(&octane(&db.url, &["wf", "show", &id.to_string()]));
        shown
            .contains(&format!("owner     worker {} (pid {pid} on ", worker.id()))
            .then_some(shown)
    })
    .await;
    assert!(shown.contains("`held`  running"), "{shown}");
    let listed = stdout(&octane(&db.url, &["wf", "list", "--state", "running"]));
    assert!(
        listed.contains(&id.to_string()) && listed.contains(&format!("{pid}@")),
        "{listed}"
    );
    // The activity holds on for a minute: stop as a crash would.
    drop(worker);
}

async fn db_plans_reports_each_query_reading_its_index(db: TestDb) {
    engine_for(&db.url).await;
    support::seed::finished_workflows(&db.url, "wallet", 2_000, 3).await;
    let out = stdout(&octane(&db.url, &["db", "plans"]));
    for query in [
        "claim",
        "next wake-up",
        "active range",
        "signal by tags",
        "prune",
        "waiters",
        "lease holders",
    ] {
        assert!(out.contains(&format!("ok   {query}\n")), "{query}: {out}");
    }
    assert!(!out.contains("SLOW"), "{out}");

    // An index gone (a bad manual migration, say) is reported, and fails.
    db.execute_batch("DROP INDEX workflows_finished").await;
    let out = octane(&db.url, &["db", "plans"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SLOW prune"),
        "{out:?}"
    );
    let err = one_line_error(&out);
    assert!(
        err.contains("1 of 11 queries do not use their index: prune"),
        "{err}"
    );
}

async fn schedule_commands_list_pause_resume_and_delete(db: TestDb) {
    let engine = engine_for(&db.url).await;
    engine
        .schedule::<Wallet>("nightly-wallet", "0 0 3 * * *", ())
        .timezone("Europe/Paris")
        .await
        .unwrap();
    let out = stdout(&octane(&db.url, &["schedule", "list"]));
    let row = out
        .lines()
        .find(|l| l.starts_with("nightly-wallet"))
        .unwrap_or_else(|| panic!("{out}"));
    for field in ["wallet", "0 0 3 * * *", "Europe/Paris", "active"] {
        assert!(row.contains(field), "{field}: {row}");
    }
    assert!(out.contains("(1 schedule)"), "{out}");

    let out = stdout(&octane(&db.url, &["schedule", "pause", "nightly-wallet"]));
    assert!(out.contains("schedule `nightly-wallet` paused"), "{out}");
    let listed = stdout(&octane(&db.url, &["schedule", "list", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(json[0]["paused"], true, "{listed}");
    stdout(&octane(&db.url, &["schedule", "resume", "nightly-wallet"]));
    assert!(!engine.schedules().await.unwrap()[0].paused);
    stdout(&octane(&db.url, &["schedule", "delete", "nightly-wallet"]));
    assert!(engine.schedules().await.unwrap().is_empty());
    let err = one_line_error(&octane(&db.url, &["schedule", "pause", "nightly-wallet"]));
    assert!(err.contains("no schedule named `nightly-wallet`"), "{err}");
}

support::store_tests!(
    export_writes_a_history_that_replays_against_the_code,
    schedule_commands_list_pause_resume_and_delete,
    db_plans_reports_each_query_reading_its_index,
    show_and_list_name_the_worker_running_a_workflow,
    list_filters_and_show_draws_a_loop_with_its_checkpoint,
    signal_cancel_and_prune_act_on_the_database,
    wake_revives_a_workflow_parked_on_a_diverged_history_after_the_fix,
);
