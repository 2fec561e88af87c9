//! Postgres without `LISTEN`/`NOTIFY` or advisory locks (`notify=off`, as a
//! Postgres-compatible database that lacks them): nothing is notified,
//! workers in other processes still find their work by polling.

mod support;

use std::time::Duration;

use futures::StreamExt;
use octane::store::postgres::PostgresStore;
use support::{wait_output, Steps, TestDb};

/// How many notifications on `octane_runnable` arrive while `during` runs.
async fn notifications_during<F: std::future::Future>(db: &TestDb, during: F) -> usize {
    let (client, mut connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let drive = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.channel().to_string());
            }
        }
    });
    client
        .batch_execute("LISTEN octane_runnable")
        .await
        .unwrap();
    during.await;
    // Notifications of the last commits are on their way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drive.abort();
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

fn url_with(db: &TestDb, notify: &str) -> String {
    let base = db.url.replace("&notify=off", "");
    format!("{base}&notify={notify}")
}

async fn work_is_found_by_polling_when_notifications_are_off(db: TestDb) {
    let polling = url_with(&db, "off");
    assert!(!PostgresStore::open(&polling).await.unwrap().notifies());
    assert!(
        PostgresStore::open(&url_with(&db, "on"))
            .await
            .unwrap()
            .notifies(),
        "the server supports them: the probe finds them"
    );
    let err = PostgresStore::open(&url_with(&db, "sometimes"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("notify=on or notify=off"), "{err}");

    // One engine works, another (as another process would) dispatches: only
    // polling can tell the worker.
    let worker_side = octane::Engine::open(&polling)
        .await
        .unwrap()
        .register::<Steps<3>>();
    let client_side = octane::Engine::open(&polling)
        .await
        .unwrap()
        .register::<Steps<3>>();
    let worker = worker_side
        .worker()
        .poll_interval(Duration::from_millis(50))
        .spawn();
    let run = async {
        for i in 0..5 {
            let id = client_side
                .dispatch::<Steps<3>>(support::unique(&format!("poll{i}")))
                .await
                .unwrap();
            assert_eq!(wait_output::<Steps<3>>(&client_side, id).await, 6);
        }
    };
    assert_eq!(notifications_during(&db, run).await, 0, "nothing notified");
    worker.shutdown().await;

    // With notifications on, the same work is announced.
    let notifying = octane::Engine::open(&url_with(&db, "on"))
        .await
        .unwrap()
        .register::<Steps<3>>();
    let run = async {
        let id = notifying
            .dispatch::<Steps<3>>(support::unique("notified"))
            .await
            .unwrap();
        let worker = notifying.worker().spawn();
        wait_output::<Steps<3>>(&notifying, id).await;
        worker.shutdown().await;
    };
    assert!(notifications_during(&db, run).await > 0);
}

support::postgres_tests!(work_is_found_by_polling_when_notifications_are_off);
