//! `join` runs steps concurrently at locations fixed in code order;
//! `branch` nests steps under their own location. Both replay exactly.

mod support;

use std::time::Duration;

use octane::prelude::*;
use support::{count, executions, fast_worker, unique, wait_output, Step, TestDb};

/// Sleeps `ms` before returning `value`, so later tuple members can finish
/// first.
#[derive(Serialize, Deserialize)]
struct Delayed {
    key: String,
    ms: u64,
    value: u64,
}

impl Activity for Delayed {
    const NAME: &'static str = "delayed";
    type Output = u64;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
        count(&self.key);
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(self.value)
    }
}

struct Fanned;
impl Workflow for Fanned {
    const NAME: &'static str = "fanned";
    type Input = String;
    type Output = (u64, u64, u64, u64);
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<(u64, u64, u64, u64)> {
        let d = |name: &str, ms, value| Delayed {
            key: format!("{key}/{name}"),
            ms,
            value,
        };
        // A version check that records nothing for this new workflow's
        // replays and a removed step that finds nothing must not shift the
        // locations the join takes.
        ctx.removed::<Step>()?;
        let (a, b, c) = ctx
            .join((d("a", 60, 1), d("b", 30, 2), d("c", 0, 3)))
            .await?;
        let inner = ctx
            .branch(|ctx| {
                let key = key.clone();
                async move {
                    let x = ctx
                        .activity(Step {
                            key: format!("{key}/x"),
                            value: 10,
                        })
                        .await?;
                    let y = ctx
                        .activity(Step {
                            key: format!("{key}/y"),
                            value: 20,
                        })
                        .await?;
                    Ok(x + y)
                }
                .boxed()
            })
            .await?;
        ctx.sleep(Duration::from_millis(30)).await?;
        Ok((a, b, c, inner))
    }
}

async fn join_and_branch_record_stable_locations_and_replay(db: TestDb) {
    let key = unique("fanned");
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Fanned>();
    let worker = fast_worker(&engine);
    let id = engine.dispatch::<Fanned>(key.clone()).await.unwrap();
    assert_eq!(wait_output::<Fanned>(&engine, id).await, (1, 2, 3, 30));
    for step in ["a", "b", "c", "x", "y"] {
        assert_eq!(
            executions(&format!("{key}/{step}")),
            1,
            "{step} ran once, and was replayed after the sleep"
        );
    }
    let locations: Vec<String> = engine
        .history(id)
        .await
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}@{}",
                if h.event.name.is_empty() {
                    h.event.kind.to_string()
                } else {
                    h.event.name.clone()
                },
                h.event.location
            )
        })
        .collect();
    assert_eq!(
        locations,
        [
            "delayed@{1}",
            "delayed@{2}",
            "delayed@{3}",
            "branch@{4}",
            "step@{4, 1}",
            "step@{4, 2}",
            "sleep@{5}"
        ]
    );
    let outputs: Vec<Option<String>> = engine
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .take(3)
        .map(|h| h.event.data)
        .collect();
    assert_eq!(
        outputs,
        [Some("1".into()), Some("2".into()), Some("3".into())],
        "each output at its own location"
    );
    worker.shutdown().await;
}

store_tests!(join_and_branch_record_stable_locations_and_replay);
