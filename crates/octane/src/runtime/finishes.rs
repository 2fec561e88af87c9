//! Who waits for which workflow to finish: [`crate::Engine::wait`] callers
//! are woken when their own workflow finishes — in this process, or in
//! another one whose announcement the store passes on — and not whenever
//! any workflow does, so a finish costs one read for each of its waiters
//! rather than one for every waiter of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::store::WorkflowId;

/// The waiters of one workflow, and how many there are.
struct Waiting {
    notify: Arc<Notify>,
    waiters: usize,
}

/// The workflows waited for in this process.
#[derive(Default)]
pub(crate) struct Finishes {
    waiting: Mutex<HashMap<WorkflowId, Waiting>>,
}

impl Finishes {
    /// Starts watching for `id` to finish, until the watch is dropped.
    pub(crate) fn watch(&self, id: WorkflowId) -> Watch<'_> {
        let mut waiting = self.waiting.lock().expect("finishes lock");
        let entry = waiting.entry(id).or_insert_with(|| Waiting {
            notify: Arc::new(Notify::new()),
            waiters: 0,
        });
        entry.waiters += 1;
        Watch {
            finishes: self,
            id,
            notify: entry.notify.clone(),
        }
    }

    /// Wakes the waiters of `id`, which has finished.
    pub(crate) fn wake(&self, id: WorkflowId) {
        if let Some(w) = self.waiting.lock().expect("finishes lock").get(&id) {
            w.notify.notify_waiters();
        }
    }

    /// Wakes every waiter: some finish may have gone unheard.
    pub(crate) fn wake_all(&self) {
        for w in self.waiting.lock().expect("finishes lock").values() {
            w.notify.notify_waiters();
        }
    }
}

/// A watch on one workflow (see [`Finishes::watch`]).
pub(crate) struct Watch<'a> {
    finishes: &'a Finishes,
    id: WorkflowId,
    notify: Arc<Notify>,
}

impl Watch<'_> {
    /// Resolves at the next wake-up of this workflow's waiters, counted
    /// from this call (not from the first poll): call it before reading
    /// the workflow, so that a finish just after the read is not missed.
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut waiting = self.finishes.waiting.lock().expect("finishes lock");
        if let Some(w) = waiting.get_mut(&self.id) {
            w.waiters -= 1;
            if w.waiters == 0 {
                waiting.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn woken(n: Notified<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), n)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_finish_wakes_only_its_own_waiters() {
        let finishes = Finishes::default();
        let (a, b) = (WorkflowId::new(), WorkflowId::new());
        let (watch_a, watch_b) = (finishes.watch(a), finishes.watch(b));
        let (on_a, on_b) = (watch_a.notified(), watch_b.notified());
        finishes.wake(a);
        assert!(woken(on_a).await);
        assert!(!woken(on_b).await);
        let on_b = watch_b.notified();
        finishes.wake_all();
        assert!(woken(on_b).await);
    }

    #[test]
    fn a_workflow_is_forgotten_when_its_last_waiter_leaves() {
        let finishes = Finishes::default();
        let id = WorkflowId::new();
        let first = finishes.watch(id);
        let second = finishes.watch(id);
        drop(first);
        assert_eq!(finishes.waiting.lock().unwrap().len(), 1);
        drop(second);
        assert!(finishes.waiting.lock().unwrap().is_empty());
    }
}
