//! The store's frequent queries read their indexes by key, on a fresh
//! database and on one holding many finished workflows: their cost does
//! not grow as a deployment ages.

mod support;

use octane::store::Store;
use support::{seed, TestDb};

async fn check_plans(store: &dyn Store, when: &str) {
    let plans = store.catalog().query_plans().await.unwrap();
    // Both stores explain the same ten; each also one of its own (SQLite
    // the end of a dead worker's leases, in its single writer; Postgres
    // the one-statement commit).
    assert_eq!(plans.len(), 11, "{plans:#?}");
    for plan in &plans {
        assert!(
            plan.uses_index,
            "{when}: the {} query does not use its index (expected `{}`):\n{}",
            plan.query, plan.expects, plan.plan
        );
    }
}

async fn frequent_queries_use_their_indexes_however_many_workflows_finished(db: TestDb) {
    // Also before the tables have statistics: PostgreSQL would plan a table
    // it holds none for as a few pages, best read whole, and a connection
    // would keep that plan for a statement however large the table grew.
    let fresh = db.store().await;
    check_plans(&*fresh, "fresh database").await;
    seed::finished_workflows(&db.url, "counter", 20_000, 3).await;
    // A store opened now plans with the statistics the seeding gathered.
    check_plans(&*db.store().await, "20,000 finished workflows").await;
}

support::store_tests!(frequent_queries_use_their_indexes_however_many_workflows_finished);
