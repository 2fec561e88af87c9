//! Fires the ticks of schedules that are due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::ctx::error_chain;
use crate::runtime::Core;
use crate::schedule::next_tick;
use crate::store::{DispatchKey, IfFinished, NewWorkflow, ScheduleInfo, WorkflowId};

/// How often a worker looks for due ticks: how late, at most, one starts.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Every [`LOOK_EVERY`], fires each due tick. Another worker may fire the
/// same tick at the same moment; the store lets only one of them move the
/// schedule on, and the tick's dispatch key makes its workflow one.
pub(super) async fn run(core: Arc<Core>) {
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        let due = match core.store().due_schedules(core.env.clock.now_ms()).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "looking for due schedules failed");
                continue;
            }
        };
        for schedule in due {
            fire(&core, schedule).await;
        }
    }
}

async fn fire(core: &Core, schedule: ScheduleInfo) {
    let now = core.env.clock.now_ms();
    // The tick fires once; ticks missed meanwhile are skipped, and the
    // schedule carries on from its first tick after now.
    let next_at = match next_tick(
        &schedule.cron,
        &schedule.timezone,
        now.max(schedule.next_at),
    ) {
        Ok(next) => next,
        Err(message) => {
            tracing::error!(
                schedule = schedule.name,
                message,
                "a stored schedule does not parse; skipping it"
            );
            return;
        }
    };
    let due = schedule.next_at;
    let workflow = NewWorkflow {
        id: WorkflowId::new(),
        name: schedule.workflow.clone(),
        input: schedule.input.clone(),
        tags: BTreeMap::from([
            ("schedule".to_string(), schedule.name.clone()),
            ("tick".to_string(), due.to_string()),
        ]),
        now,
        parent: None,
        key: Some(DispatchKey {
            key: format!("schedule:{}@{due}", schedule.name),
            if_finished: IfFinished::Return,
        }),
        deadline_at: None,
    };
    let id = workflow.id;
    match core
        .store()
        .fire_schedule(schedule.name.clone(), due, next_at, workflow)
        .await
    {
        Ok(Some(started)) if started == id => {
            tracing::debug!(schedule = schedule.name, tick = due, %id, "schedule fired");
            metrics::counter!("octane_schedule_runs_total", "schedule" => schedule.name)
                .increment(1);
            core.env.runnable.notify_one();
        }
        Ok(_) => {} // another worker fired it
        Err(e) => {
            tracing::warn!(schedule = schedule.name, error = %error_chain(&e), "firing a schedule failed; retrying")
        }
    }
}
