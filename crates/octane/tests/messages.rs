//! Messages reach subscribers whose tags they carry, and nobody else.

mod support;

use octane::prelude::*;
use support::{fast_worker, wait_output, TestDb};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Progress {
    percent: u8,
}

impl Message for Progress {
    const NAME: &'static str = "progress";
}

struct Reporter;
impl Workflow for Reporter {
    const NAME: &'static str = "reporter";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, room: &String) -> Result<()> {
        for percent in [50, 100] {
            ctx.msg(Progress { percent })
                .tags([("room", room.as_str())])
                .send()
                .await?;
        }
        Ok(())
    }
}

async fn subscribers_receive_messages_with_matching_tags_only(db: TestDb) {
    let engine = db.engine().await.register::<Reporter>();
    let mut room_a = engine.subscribe::<Progress, _, _>([("room", "a")]);
    let mut everyone = engine.subscribe::<Progress, &str, &str>([]);
    let worker = fast_worker(&engine);
    let b = engine.dispatch::<Reporter>("b".into()).await.unwrap();
    wait_output::<Reporter>(&engine, b).await;
    let a = engine.dispatch::<Reporter>("a".into()).await.unwrap();
    wait_output::<Reporter>(&engine, a).await;
    let first = room_a.recv().await.unwrap();
    let second = room_a.recv().await.unwrap();
    assert_eq!(
        [first.percent, second.percent],
        [50, 100],
        "room a saw only its own messages"
    );
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(everyone.recv().await.unwrap().percent);
    }
    assert_eq!(all, [50, 100, 50, 100]);
    assert_eq!(
        engine.history(a).await.unwrap().len(),
        2,
        "each send is recorded, so a replay would not send again"
    );
    worker.shutdown().await;
}

support::store_tests!(subscribers_receive_messages_with_matching_tags_only);
