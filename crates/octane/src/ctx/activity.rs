//! Running activities: replay the record, or run live with retries.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use tracing::Instrument;

use super::{decode, encode, panic_message, RunShared, Step, WorkflowCtx};
use crate::activity::{Activity, ActivityCtx};
use crate::error::Error;
use crate::history::{input_hash, Event, EventKind, Location, StepRequest};
use crate::store::{Transition, WriteOp};

/// An activity step whose location is fixed, ready to execute. Planning is
/// synchronous, so several plans can take consecutive locations in code
/// order and then run concurrently (see `join`).
pub(crate) struct ActivityPlan<A: Activity> {
    run: Arc<RunShared>,
    plan: Plan<A>,
}

enum Plan<A> {
    Recorded {
        location: Location,
        data: Option<String>,
    },
    Failed(Error),
    Live {
        location: Location,
        input: A,
        step: StepRequest,
        attempts: u32,
    },
}

impl WorkflowCtx {
    /// Runs an activity once and records its output; replay returns the
    /// record.
    ///
    /// Failures are retried per the activity's [`RetryPolicy`](crate::RetryPolicy)
    /// (a panic counts as a failure); every failed attempt is recorded with
    /// its error.
    ///
    /// # Errors
    /// [`Error::ActivityFailed`] once the policy gives up (replay returns
    /// the same error); a step error (divergence, yield, store).
    pub async fn activity<A: Activity>(&mut self, input: A) -> Result<A::Output, Error> {
        self.plan_activity(input)?.execute().await
    }

    pub(crate) fn plan_activity<A: Activity>(
        &mut self,
        input: A,
    ) -> Result<ActivityPlan<A>, Error> {
        let bytes = serde_json::to_vec(&input).map_err(|e| Error::Encode {
            what: format!("input of activity `{}`", A::NAME),
            message: e.to_string(),
        })?;
        let (step, req) = self.resolve(EventKind::Activity, A::NAME, input_hash(&bytes))?;
        let plan = match step {
            Step::Replay(e) if e.done && e.error.is_none() => Plan::Recorded {
                location: e.location,
                data: e.data,
            },
            Step::Replay(e) if e.done => Plan::Failed(Error::ActivityFailed {
                workflow_id: self.workflow_id(),
                location: e.location,
                activity: A::NAME.to_string(),
                attempts: e.attempts,
                message: e.error.unwrap_or_default(),
            }),
            Step::Replay(e) => Plan::Live {
                location: e.location,
                input,
                step: req,
                attempts: e.attempts,
            },
            Step::Live(location) => Plan::Live {
                location,
                input,
                step: req,
                attempts: 0,
            },
        };
        Ok(ActivityPlan {
            run: self.run().clone(),
            plan,
        })
    }
}

impl<A: Activity> ActivityPlan<A> {
    pub(crate) async fn execute(self) -> Result<A::Output, Error> {
        match self.plan {
            Plan::Recorded { location, data } => decode(
                &self.run,
                format!("output of activity `{}`", A::NAME),
                &location,
                data.as_deref(),
            ),
            Plan::Failed(e) => Err(e),
            Plan::Live {
                location,
                input,
                step,
                attempts,
            } => run_live(&self.run, location, input, step, attempts).await,
        }
    }
}

async fn run_live<A: Activity>(
    run: &RunShared,
    location: Location,
    input: A,
    step: StepRequest,
    mut attempts: u32,
) -> Result<A::Output, Error> {
    let policy = A::retry();
    let timeout = A::timeout();
    loop {
        attempts += 1;
        let ctx = ActivityCtx {
            workflow_id: run.workflow_id,
            location: location.clone(),
            attempt: attempts,
        };
        let span = tracing::info_span!(
            "activity",
            workflow_id = %run.workflow_id,
            activity = A::NAME,
            location = %location,
            attempt = attempts,
        );
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(timeout, AssertUnwindSafe(input.run(&ctx)).catch_unwind())
                .instrument(span)
                .await;
        metrics::histogram!("octane_activity_seconds", "activity" => A::NAME)
            .record(started.elapsed().as_secs_f64());
        let message = match outcome {
            Ok(Ok(Ok(output))) => {
                let json = match encode(&format!("output of activity `{}`", A::NAME), &output) {
                    Ok(json) => json,
                    // The output can never be recorded: running again would
                    // only do the side effect again. The step fails for
                    // good, and that is recorded, so replay agrees.
                    Err(e) => {
                        return fail_for_good(run, location, &step, attempts, e.to_string()).await
                    }
                };
                let mut event = Event::new(location, &step).finished(json);
                event.attempts = attempts;
                run.commit(vec![WriteOp::Put(event)], Transition::Continue)
                    .await?;
                tracing::debug!(workflow_id = %run.workflow_id, activity = A::NAME, attempts, "activity recorded");
                return Ok(output);
            }
            Ok(Ok(Err(e))) => format!("{e:#}"),
            Ok(Err(panic)) => format!("panicked: {}", panic_message(panic.as_ref())),
            Err(_) => format!("timed out after {timeout:?}"),
        };
        metrics::counter!("octane_activity_errors_total", "activity" => A::NAME).increment(1);
        tracing::warn!(workflow_id = %run.workflow_id, activity = A::NAME, attempt = attempts, error = %message, "activity attempt failed");
        if attempts >= policy.max_attempts {
            return fail_for_good(run, location, &step, attempts, message).await;
        }
        let mut event = Event::new(location.clone(), &step);
        event.attempts = attempts;
        event.error = Some(message);
        run.commit(vec![WriteOp::Put(event)], Transition::Continue)
            .await?;
        metrics::counter!("octane_activity_retries_total", "activity" => A::NAME).increment(1);
        tokio::select! {
            _ = tokio::time::sleep(policy.backoff(attempts)) => {}
            _ = run.drain.cancelled() => {}
            _ = run.lost.cancelled() => {}
        }
        run.boundary()?;
    }
}

/// Records that the activity at `location` failed for good with
/// `message`, and returns that failure as the step's error.
async fn fail_for_good<T>(
    run: &RunShared,
    location: Location,
    step: &StepRequest,
    attempts: u32,
    message: String,
) -> Result<T, Error> {
    let mut event = Event::new(location.clone(), step);
    event.attempts = attempts;
    event.error = Some(message.clone());
    event.done = true;
    run.commit(vec![WriteOp::Put(event)], Transition::Continue)
        .await?;
    Err(Error::ActivityFailed {
        workflow_id: run.workflow_id,
        location,
        activity: step.name.clone(),
        attempts,
        message,
    })
}
