//! Notifications, sent after the transactions they announce and batched:
//! wake-ups, finished workflows (for `Engine::wait` in other processes)
//! and messages.
//!
//! A transaction that sends `NOTIFY` takes a lock every such transaction in
//! the database shares, and holds it through its commit, WAL flush
//! included: notifying transactions commit one at a time, at most one per
//! flush — the server's raw commit rate, whatever else could have run
//! alongside. So no transaction of the engine's notifies. One that makes a
//! workflow runnable (a dispatch, a signal, a finished child waking its
//! waiters) notes the workflow's name; once it has committed the names go
//! to the announcer, which sends everything queued meanwhile — wake-ups
//! and messages — in one statement of its own, one transaction for many.
//!
//! Wake-ups are hints: the state they announce has committed before they
//! are sent, and should one be lost (the process dies between the commit
//! and the announcement) workers still find the work by polling.

use std::collections::BTreeSet;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{CHANNEL, FINISHED, MAX_PAYLOAD, MESSAGES};
use crate::store::{StoreError, WorkflowId};

/// Notifications queued at once: more wait for the next statement.
const MAX_BATCH: usize = 2_000;

enum Note {
    /// Workflows of these names became runnable.
    Runnable(Vec<String>),
    /// These workflows finished.
    Finished(Vec<WorkflowId>),
    /// A message (its JSON), and who waits to hear it went out.
    Message(String, oneshot::Sender<Result<(), StoreError>>),
}

/// The queue of notifications to send; dropping it stops its task once
/// the queued ones are sent.
pub(super) struct Announcer {
    notes: mpsc::UnboundedSender<Note>,
}

impl Announcer {
    /// Starts the task that sends notifications on `pool`.
    pub(super) fn spawn(pool: Pool) -> Self {
        let (notes, queue) = mpsc::unbounded_channel();
        tokio::spawn(announce(pool, queue));
        Announcer { notes }
    }

    /// Announces that workflows of these names became runnable (in a
    /// transaction that has committed).
    pub(super) fn runnable(&self, names: Vec<String>) {
        if !names.is_empty() {
            // A stopped announcer (the runtime is shutting down) loses
            // only hints.
            let _ = self.notes.send(Note::Runnable(names));
        }
    }

    /// Announces that these workflows finished (in transactions that have
    /// committed).
    pub(super) fn finished(&self, ids: &[WorkflowId]) {
        if !ids.is_empty() {
            let _ = self.notes.send(Note::Finished(ids.to_vec()));
        }
    }

    /// Sends a message; returns once it is out.
    pub(super) async fn message(&self, payload: String) -> Result<(), StoreError> {
        let (sent, outcome) = oneshot::channel();
        self.notes
            .send(Note::Message(payload, sent))
            .map_err(|_| StoreError::Closed)?;
        outcome.await.unwrap_or(Err(StoreError::Closed))
    }
}

async fn announce(pool: Pool, mut queue: mpsc::UnboundedReceiver<Note>) {
    while let Some(first) = queue.recv().await {
        let mut names = BTreeSet::new();
        let mut finished = Vec::new();
        let mut messages = Vec::new();
        let mut waiting = Vec::new();
        let mut take = |note| match note {
            Note::Runnable(n) => names.extend(n),
            Note::Finished(ids) => finished.extend(ids),
            Note::Message(payload, sent) => {
                messages.push(payload);
                waiting.push(sent);
            }
        };
        take(first);
        for _ in 1..MAX_BATCH {
            match queue.try_recv() {
                Ok(note) => take(note),
                Err(_) => break,
            }
        }
        // Wake-ups first, then finishes, then the messages in the order
        // they were sent.
        let mut payloads: Vec<String> = names.into_iter().collect();
        let mut channels = vec![CHANNEL; payloads.len()];
        for ids in id_lists(&finished) {
            payloads.push(ids);
            channels.push(FINISHED);
        }
        channels.extend(std::iter::repeat_n(MESSAGES, messages.len()));
        payloads.append(&mut messages);
        let sent = send(&pool, &channels, &payloads).await;
        if let Err(e) = &sent {
            tracing::warn!(error = %e, notifications = payloads.len(),
                "sending notifications failed; workers find their work by polling");
        }
        for w in waiting {
            let _ = w.send(sent.clone());
        }
    }
}

/// `ids` as comma-separated lists, each short enough for one `NOTIFY`.
fn id_lists(ids: &[WorkflowId]) -> Vec<String> {
    let mut lists = Vec::new();
    let mut list = String::new();
    for id in ids {
        let id = id.to_string();
        if !list.is_empty() && list.len() + 1 + id.len() > MAX_PAYLOAD {
            lists.push(std::mem::take(&mut list));
        }
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(&id);
    }
    if !list.is_empty() {
        lists.push(list);
    }
    lists
}

/// Sends the notifications in one transaction that does not wait for its
/// commit to be flushed: notifications are not durable anyway (a listener
/// that is away misses them), and a wake-up should not wait for a disk.
async fn send(pool: &Pool, channels: &[&str], payloads: &[String]) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY
             AS n (c, p, i) ORDER BY i",
        )
        .await?;
    // One round trip: the server runs them in order, and the `COMMIT` ends
    // the transaction whatever happened before it.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&channels, &payloads];
    let (begun, notified, committed) = futures::join!(
        client.batch_execute("BEGIN; SET LOCAL synchronous_commit TO off"),
        client.execute(&stmt, &params),
        client.batch_execute("COMMIT"),
    );
    begun?;
    notified?;
    committed?;
    Ok(())
}
