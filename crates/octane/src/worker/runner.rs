//! Runs one claimed workflow: load history, replay and run its code, record
//! how it stopped.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::leases::LeaseGuard;
use crate::ctx::{error_chain, panic_message, Interrupt, RunShared, Stops, WorkflowCtx};
use crate::error::Error;
use crate::history::{History, Location};
use crate::runtime::{Core, RunError};
use crate::store::{Batch, ClaimedWorkflow, FailureCode, Lease, StoreError, Transition};

/// Runs `claimed` to a stop. The lease guard and the worker slot are held
/// until this task ends, however it ends.
pub(super) async fn run(
    core: Arc<Core>,
    drain: CancellationToken,
    claimed: ClaimedWorkflow,
    guard: LeaseGuard,
    _slot: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!(
        "workflow",
        workflow_id = %claimed.lease.workflow_id,
        name = %claimed.name
    );
    run_one(&core, drain, claimed, &guard)
        .instrument(span)
        .await;
    core.stopped.notify_waiters();
}

async fn run_one(
    core: &Core,
    drain: CancellationToken,
    claimed: ClaimedWorkflow,
    guard: &LeaseGuard,
) {
    let store = core.store();
    let lease = guard.lease().clone();
    let id = lease.workflow_id;
    let Some(registered) = core.registry.get(&claimed.name) else {
        // Claims name only this core's workflows; hand anything else back.
        release(core, &lease).await;
        return;
    };
    let events = match store.load_history(id).await {
        Ok(events) => events,
        Err(e @ StoreError::Corrupt { .. }) => {
            // Quarantine this workflow alone: it is parked visibly, the
            // worker and every other workflow carry on.
            tracing::error!(error = %e, "history does not decode; parking the workflow");
            let transition = Transition::Park {
                error: format!("workflow {id}: history does not decode: {e}"),
                code: FailureCode::CorruptHistory,
            };
            match store.commit(&lease, batch(core, transition)).await {
                Ok(()) => core.finished(&[id]),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "could not park the workflow")
                }
            }
            return;
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "loading history failed; handing the workflow back");
            release(core, &lease).await;
            return;
        }
    };
    let run = Arc::new(RunShared::new(
        &core.env,
        lease.clone(),
        registered.name,
        History::from_events(events),
        Stops {
            drain,
            lost: guard.lost(),
        },
    ));
    let ctx = WorkflowCtx::new(run.clone(), Location::root());
    let outcome = AssertUnwindSafe((registered.run)(ctx, claimed.input))
        .catch_unwind()
        .await;
    let transition = match run.take_interrupt() {
        Some(Interrupt::Suspend(suspend)) => Transition::Suspend(suspend),
        Some(Interrupt::Evict) => Transition::Release,
        Some(Interrupt::Abandon {
            reason,
            release: mine,
        }) => {
            tracing::info!(%reason, "run abandoned; the workflow will be replayed");
            if mine {
                release(core, &lease).await;
            }
            return;
        }
        Some(Interrupt::Park { error, code }) => Transition::Park { error, code },
        None => match outcome {
            Ok(Ok(output)) => Transition::Complete { output },
            Ok(Err(RunError::Input(message))) => Transition::Park {
                error: Error::InvalidInput {
                    workflow: registered.name.to_string(),
                    message,
                }
                .to_string(),
                code: FailureCode::InvalidInput,
            },
            Ok(Err(RunError::Workflow(e))) => Transition::Fail {
                error: format!("{e:#}"),
            },
            Err(panic) => Transition::Park {
                error: format!(
                    "workflow `{}` panicked: {}",
                    registered.name,
                    panic_message(panic.as_ref())
                ),
                code: FailureCode::Panic,
            },
        },
    };
    let outcome = transition.outcome();
    let leaves_waiters = transition.is_finished() || matches!(transition, Transition::Park { .. });
    match run.finish(transition).await {
        Ok(()) => {
            metrics::counter!("octane_workflow_runs_total", "workflow" => registered.name, "outcome" => outcome)
                .increment(1);
            if leaves_waiters {
                core.finished(&[lease.workflow_id]);
            } else {
                core.env.runnable.notify_one();
            }
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "recording how the run stopped failed");
            if let Some(Interrupt::Abandon { release: true, .. }) = run.take_interrupt() {
                release(core, &lease).await;
            }
        }
    }
}

fn batch(core: &Core, transition: Transition) -> Batch {
    Batch {
        transition,
        now: core.env.clock.now_ms(),
        ..Batch::default()
    }
}

/// Hands a workflow back, runnable at once, so that it is replayed without
/// waiting for the lease to expire. Nothing else is written: what the run
/// did that landed is what the replay will find. If the database is still
/// away, the lease simply runs out.
async fn release(core: &Core, lease: &Lease) {
    match core
        .store()
        .commit(lease, batch(core, Transition::Release))
        .await
    {
        Ok(()) | Err(StoreError::LeaseLost { .. }) => {}
        Err(e) => tracing::warn!(
            error = %error_chain(&e),
            "handing the workflow back failed; it is taken over when its lease expires"
        ),
    }
}
