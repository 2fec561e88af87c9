use std::collections::BTreeMap;

use super::PostgresStore;
use crate::history::{Coordinate, Event, EventKind, Location, StepRequest};
use crate::store::{Batch, ClaimRequest, NewWorkflow, Store, Transition, WriteOp};
use crate::WorkflowId;

// Commits fence their workflow's row with a statement whose generic plan
// Postgres prices above the custom plans of its first runs once the
// workflows table holds a few thousand rows (it cannot see how many ids the
// locked list holds): left to choose, it planned the fence anew at every
// commit, which under a fan-out cost the server more than running it. A
// connection plans its commit statements once.
octane_testkit::postgres_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_are_not_planned_anew_each_time() {
        let db = octane_testkit::TestDb::postgres().await;
        let store = PostgresStore::open(&db.url).await.unwrap();
        store
            .pool
            .get()
            .await
            .unwrap()
            .batch_execute(
                "INSERT INTO workflows (id, name, input, state, created_at, updated_at)
                 SELECT 'other-' || i, 'other', 'null', 'completed', 1, 1
                 FROM generate_series(1, 10000) AS i",
            )
            .await
            .unwrap();
        const COMMITS: i64 = 60;
        for i in 0..COMMITS {
            let id = WorkflowId::new();
            let name = format!("planned-{i}");
            store
                .catalog()
                .create(NewWorkflow {
                    id,
                    name: name.clone(),
                    input: "null".into(),
                    tags: BTreeMap::new(),
                    now: 1,
                    parent: None,
                    key: None,
                    deadline_at: None,
                })
                .await
                .unwrap();
            let claimed = store
                .claim(ClaimRequest {
                    owner: uuid::Uuid::new_v4(),
                    names: vec![name],
                    limit: 1,
                    now: 1,
                    expires_at: 60_000,
                })
                .await
                .unwrap();
            let step = StepRequest::new(EventKind::Activity, "step", 0, 1);
            let event =
                Event::new(Location::root().child(Coordinate::new(0)), &step).finished("1".into());
            let batch = Batch {
                ops: vec![WriteOp::Put(event)],
                transition: Transition::Complete {
                    output: "1".into(),
                },
                now: 2,
            };
            store
                .commit(&claimed.workflows[0].lease, batch)
                .await
                .unwrap();
        }
        // Every connection of the pool at once, so each is looked at.
        let mut connections = Vec::new();
        while connections.len() < store.pool.status().size {
            connections.push(store.pool.get().await.unwrap());
        }
        let (mut runs, mut planned, mut holders) = (0, 0, 0);
        for client in &connections {
            for row in client
                .query(
                    "SELECT generic_plans + custom_plans, custom_plans FROM pg_prepared_statements
                     WHERE statement LIKE '%lease lost%'",
                    &[],
                )
                .await
                .unwrap()
            {
                holders += 1;
                runs += row.get::<_, i64>(0);
                planned += row.get::<_, i64>(1);
            }
        }
        assert!(runs >= COMMITS, "the fence ran {runs} times for {COMMITS} commits");
        // Postgres tries custom plans for a statement's first five runs on
        // a connection before it may settle on the generic one.
        assert!(
            planned <= 5 * holders,
            "the fence was planned for {planned} of its {runs} runs on {holders} connections"
        );
    }
}
