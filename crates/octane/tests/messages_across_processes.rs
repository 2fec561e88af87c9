//! Postgres: a message a workflow publishes reaches subscribers of every
//! process on the database, once each; one too large for `NOTIFY` is an
//! error that says so.

mod support;

use std::time::Duration;

use octane::prelude::*;
use octane::Error;
use support::{fast_worker, TestDb};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Progress {
    percent: u8,
    note: String,
}

impl Message for Progress {
    const NAME: &'static str = "progress";
}

/// Publishes 50% and 100%, with a note of `note_len` bytes.
struct Reporter;
impl Workflow for Reporter {
    const NAME: &'static str = "reporter";
    type Input = usize;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, note_len: &usize) -> Result<()> {
        for percent in [50, 100] {
            ctx.msg(Progress {
                percent,
                note: "n".repeat(*note_len),
            })
            .tags([("job", "j1")])
            .send()
            .await?;
        }
        Ok(())
    }
}

async fn next(sub: &mut octane::Subscription<Progress>) -> Option<u8> {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .ok()
        .flatten()
        .map(|p| p.percent)
}

async fn messages_reach_subscribers_in_every_process_once(db: TestDb) {
    // Two engines, each with its own store and listener, as two processes.
    let sender = db.engine().await.register::<Reporter>();
    let receiver = db.engine().await;
    let mut there = receiver.subscribe::<Progress, _, _>([("job", "j1")]);
    let mut here = sender.subscribe::<Progress, _, _>([("job", "j1")]);
    // The listeners are connected once a wake-up round trip has been seen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let worker = fast_worker(&sender);
    let id = sender.dispatch::<Reporter>(10).await.unwrap();
    sender.wait::<Reporter>(id).await.unwrap();
    assert_eq!(
        [next(&mut there).await, next(&mut there).await],
        [Some(50), Some(100)]
    );
    assert_eq!(
        [next(&mut here).await, next(&mut here).await],
        [Some(50), Some(100)]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), here.recv())
            .await
            .is_err(),
        "the sender's process hears each message once"
    );

    let big = sender.dispatch::<Reporter>(9_000).await.unwrap();
    match sender.wait::<Reporter>(big).await {
        Err(Error::WorkflowFailed { message, .. }) => {
            assert!(message.contains("message `progress`"), "{message}");
            assert!(
                message.contains("the store carries at most 7999"),
                "{message}"
            );
        }
        other => panic!("expected the workflow to fail, got {other:?}"),
    }
    worker.shutdown().await;
}

support::postgres_tests!(messages_reach_subscribers_in_every_process_once);
