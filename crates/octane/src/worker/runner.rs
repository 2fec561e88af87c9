//! Runs one claimed workflow: load history, replay and run its code, record
//! how it stopped.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::WorkerShared;
use crate::ctx::{Interrupt, RunConfig, RunShared, WorkflowCtx};
use crate::engine::RunError;
use crate::error::Error;
use crate::history::{History, Location};
use crate::store::{Batch, ClaimedWorkflow, StoreError, Transition};

pub(super) async fn run(
    shared: Arc<WorkerShared>,
    claimed: ClaimedWorkflow,
    lost: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let id = claimed.lease.workflow_id;
    let epoch = claimed.lease.epoch;
    let span = tracing::info_span!("workflow", workflow_id = %id, name = %claimed.name);
    run_one(&shared, claimed, lost).instrument(span).await;
    let mut leases = shared.leases.lock().expect("leases lock");
    if leases
        .get(&id)
        .is_some_and(|(lease, _)| lease.epoch == epoch)
    {
        leases.remove(&id);
    }
}

async fn run_one(shared: &WorkerShared, claimed: ClaimedWorkflow, lost: CancellationToken) {
    let engine = &shared.engine;
    let store = engine.store().clone();
    let id = claimed.lease.workflow_id;
    let Some(registered) = engine.registered(&claimed.name) else {
        // Claims name only registered workflows; a registry that changed
        // under us leaves the workflow for a worker that knows it.
        return;
    };
    let events = match store.load_history(id).await {
        Ok(events) => events,
        Err(e @ StoreError::Corrupt { .. }) => {
            // Quarantine this workflow alone: it fails visibly, the worker
            // and every other workflow carry on.
            tracing::error!(error = %e, "history does not decode; quarantining the workflow");
            let now = crate::clock::now_ms();
            let batch = Batch {
                transition: Transition::Fail {
                    error: format!("workflow {id}: history does not decode: {e}"),
                    code: Some("corrupt_history".into()),
                },
                now,
                ..Batch::default()
            };
            if let Err(e) = store.commit(&claimed.lease, batch).await {
                tracing::warn!(error = %e, "could not quarantine the workflow");
            }
            engine.inner.finished.notify_waiters();
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "loading history failed; the workflow is retried after its lease expires");
            return;
        }
    };
    let config = engine.config();
    let run = Arc::new(RunShared::new(
        id,
        registered.name,
        History::from_events(events),
        RunConfig {
            max_loop_state: config.max_loop_state,
            sleep_in_memory_below: config.sleep_in_memory_below,
        },
        store,
        claimed.lease,
        shared.drain.child_token(),
        lost,
        engine.inner.bus.clone(),
        engine.inner.runnable.clone(),
    ));
    let ctx = WorkflowCtx::new(run.clone(), Location::root());
    let outcome = AssertUnwindSafe((registered.run)(ctx, claimed.input))
        .catch_unwind()
        .await;
    let transition = match run.take_interrupt() {
        Some(Interrupt::Suspend(suspend)) => Transition::Suspend(suspend),
        Some(Interrupt::Evict) => Transition::Release,
        Some(Interrupt::Abandon { reason }) => {
            tracing::info!(%reason, "run abandoned");
            return;
        }
        Some(Interrupt::Fail { error, code }) => Transition::Fail {
            error,
            code: code.map(str::to_string),
        },
        None => match outcome {
            Ok(Ok(output)) => Transition::Complete { output },
            Ok(Err(RunError::Input(message))) => Transition::Fail {
                error: Error::InvalidInput {
                    workflow: registered.name.to_string(),
                    message,
                }
                .to_string(),
                code: Some("invalid_input".into()),
            },
            Ok(Err(RunError::Workflow(e))) => Transition::Fail {
                error: format!("{e:#}"),
                code: None,
            },
            Err(_) => Transition::Fail {
                error: format!("workflow `{}` panicked", registered.name),
                code: Some("panic".into()),
            },
        },
    };
    let finished = matches!(
        transition,
        Transition::Complete { .. } | Transition::Fail { .. }
    );
    let state = match &transition {
        Transition::Complete { .. } => "completed",
        Transition::Fail { .. } => "failed",
        Transition::Suspend(_) => "suspended",
        _ => "released",
    };
    match run.commit(Vec::new(), transition).await {
        Ok(()) => {
            metrics::counter!("octane_workflow_runs_total", "workflow" => registered.name, "outcome" => state)
                .increment(1);
            if finished {
                engine.inner.finished.notify_waiters();
            } else {
                engine.inner.runnable.notify_one();
            }
        }
        Err(e) => tracing::warn!(error = %e, "recording how the run stopped failed"),
    }
}
