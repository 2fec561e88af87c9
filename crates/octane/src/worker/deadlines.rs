//! Cancels workflows whose deadline has passed.

use std::sync::Arc;
use std::time::Duration;

use crate::ctx::error_chain;
use crate::runtime::Core;

/// How often a worker looks for workflows past their deadline: how late,
/// at most, a deadline fires (while some worker runs).
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Every [`LOOK_EVERY`], cancels the workflows past their deadline, then
/// wakes those waiting on them (`Engine::wait` callers, parents). A run of
/// such a workflow still in memory anywhere is fenced off at its next write
/// or lease renewal, so no step of it commits after the deadline fired.
pub(super) async fn run(core: Arc<Core>) {
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        match core.store().expire_deadlines(core.env.clock.now_ms()).await {
            Ok(expired) if expired.is_empty() => {}
            Ok(expired) => {
                tracing::info!(workflows = ?expired, "deadline passed: cancelled");
                metrics::counter!("octane_deadlines_expired_total").increment(expired.len() as u64);
                core.finished(&expired);
                // Their parents are runnable now.
                core.env.runnable.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "looking for workflows past their deadline failed")
            }
        }
    }
}
