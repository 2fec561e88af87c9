//! Recorded histories kept in the repository are replayed by the current
//! code on every run: a change that breaks workflows recorded by earlier
//! builds (a renamed step, another location scheme, a new encoding) fails
//! here.
//!
//! `OCTANE_WRITE_GOLDEN=1 cargo test --test golden_replay` records the
//! files anew — only for a deliberate, documented break.

mod support;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use octane::history::Event;
use octane::prelude::*;
use octane::store::{Batch, Transition, WriteOp};
use support::{claim_new, count, executions_with_prefix, fast_worker, unique, wait_output, TestDb};

/// Prefix of the execution counters, set per phase (not part of inputs,
/// which are hashed into history).
static PHASE: Mutex<String> = Mutex::new(String::new());

#[derive(Serialize, Deserialize)]
struct Golden {
    name: String,
    value: u64,
}

impl Activity for Golden {
    const NAME: &'static str = "golden";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        let phase = PHASE.lock().unwrap().clone();
        count(&format!("{phase}/{}", self.name));
        Ok(self.value)
    }
}

fn g(name: &str, value: u64) -> Golden {
    Golden {
        name: name.into(),
        value,
    }
}

/// Touches every kind of step the engine records.
struct GoldenOrder;
impl Workflow for GoldenOrder {
    const NAME: &'static str = "golden_order";
    type Input = u64;
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, order: &u64) -> Result<String> {
        let items = ctx.activity(g("reserve", *order)).await?;
        let at = ctx.now()?;
        let token = ctx.uuid()?;
        let (a, b) = ctx.join((g("price_a", 5), g("price_b", 7))).await?;
        let version = ctx.check_version(1)?;
        let inserted = ctx.v(2).activity(g("inserted", 100)).await?;
        let branch = ctx
            .branch(|ctx| async move { Ok(ctx.activity(g("in_branch", 11)).await?) }.boxed())
            .await?;
        let sum = ctx
            .repeat(0u64)
            .commit_every(3)
            .retain(2)
            .run(|ctx, i| {
                async move {
                    ctx.activity(g(&format!("loop_{i}"), *i)).await?;
                    *i += 1;
                    Ok(if *i == 8 {
                        Loop::Break((0..8).sum::<u64>())
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await?;
        ctx.sleep(Duration::from_millis(5)).await?;
        let at = octane::clock::to_ms(at);
        Ok(format!(
            "{items} {a} {b} {version} {inserted} {branch} {sum} {token} {at}"
        ))
    }
}

#[derive(Serialize, Deserialize)]
struct GoldenFile {
    name: String,
    input: String,
    output: String,
    events: Vec<Event>,
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/golden_order.json")
}

async fn record(db: &TestDb) -> GoldenFile {
    *PHASE.lock().unwrap() = unique("record");
    let engine = db.engine().await.register::<GoldenOrder>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<GoldenOrder>(3).await.unwrap();
    let output = wait_output::<GoldenOrder>(&engine, id).await;
    worker.shutdown().await;
    GoldenFile {
        name: GoldenOrder::NAME.into(),
        input: "3".into(),
        output: serde_json::to_string(&output).unwrap(),
        events: engine
            .history(id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.event)
            .collect(),
    }
}

async fn recorded_histories_replay_on_the_current_code(db: TestDb) {
    if std::env::var_os("OCTANE_WRITE_GOLDEN").is_some() {
        let file = record(&db).await;
        std::fs::write(
            golden_path(),
            serde_json::to_string_pretty(&file).unwrap() + "\n",
        )
        .unwrap();
    }
    let text =
        std::fs::read_to_string(golden_path()).expect("golden history file (see module docs)");
    let golden: GoldenFile = serde_json::from_str(&text).expect("golden history decodes");

    // Import the history as an old build left it: the workflow ran every
    // step and was then evicted.
    let store = db.store().await;
    let lease = claim_new(store.as_ref(), &golden.name, &golden.input).await;
    let id = lease.workflow_id;
    let ops = golden.events.iter().cloned().map(WriteOp::Put).collect();
    store
        .commit(
            &lease,
            Batch {
                ops,
                transition: Transition::Release,
                now: 1,
            },
        )
        .await
        .unwrap();

    *PHASE.lock().unwrap() = unique("replay");
    let phase = PHASE.lock().unwrap().clone();
    let engine = db.engine().await.register::<GoldenOrder>();
    let worker = fast_worker(&engine);
    let output = wait_output::<GoldenOrder>(&engine, id).await;
    assert_eq!(
        serde_json::to_string(&output).unwrap(),
        golden.output,
        "the replay returns the recorded output"
    );
    assert!(
        executions_with_prefix(&phase).is_empty(),
        "nothing recorded ran again: {:?}",
        executions_with_prefix(&phase)
    );
    worker.shutdown().await;
}

support::store_tests!(recorded_histories_replay_on_the_current_code);
