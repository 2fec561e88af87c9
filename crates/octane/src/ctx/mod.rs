//! Contexts: what workflow code uses to take durable steps.
//!
//! [`WorkflowCtx`] is handed to `Workflow::run`; every method that takes a
//! step first asks the history (through the branch's cursor) whether the
//! step is recorded, and only runs it live when it is not.

mod activity;
mod child;
mod join;
mod listen;
mod message;
pub(crate) mod run;
mod sleep;
mod version;
mod workflow;

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use child::Child;
pub use join::Join;
pub use listen::{SignalDraft, SignalSend};
pub use message::MessageSend;
pub(crate) use run::{error_chain, panic_message, Interrupt, RunConfig, RunEnv, RunShared, Stops};
pub use workflow::Workflow;

use crate::clock::from_ms;
use crate::error::Error;
use crate::history::{Cursor, Event, EventKind, Location, Resolved, StepRequest};
use crate::replay_check::Verdict;
use crate::store::{WorkflowId, WriteOp};

/// The handle workflow code takes its steps through.
///
/// One `WorkflowCtx` walks one branch of history; branches and loop
/// iterations get their own. Steps are taken one at a time (`&mut self`);
/// use [`WorkflowCtx::join`] to run several at once.
pub struct WorkflowCtx {
    run: Arc<RunShared>,
    cursor: Cursor,
    next_version: Option<u32>,
}

impl std::fmt::Debug for WorkflowCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowCtx")
            .field("workflow_id", &self.run.workflow_id)
            .field("branch", self.cursor.branch())
            .finish_non_exhaustive()
    }
}

/// How the history answered a step.
pub(crate) enum Step {
    Replay(Event),
    Live(Location),
}

impl WorkflowCtx {
    pub(crate) fn new(run: Arc<RunShared>, branch: Location) -> Self {
        let cursor = Cursor::new(branch, &run.history);
        WorkflowCtx {
            run,
            cursor,
            next_version: None,
        }
    }

    /// A context for the branch at `location`.
    pub(crate) fn child(&self, location: Location) -> WorkflowCtx {
        WorkflowCtx::new(self.run.clone(), location)
    }

    pub(crate) fn run(&self) -> &Arc<RunShared> {
        &self.run
    }

    /// The id of the running workflow.
    pub fn workflow_id(&self) -> WorkflowId {
        self.run.workflow_id
    }

    /// The location of the branch this context walks.
    pub fn branch_location(&self) -> &Location {
        self.cursor.branch()
    }

    /// Gives the next step version `n` (default 1).
    ///
    /// A step added to code whose workflows have already recorded later
    /// steps must carry a version higher than the recorded step that follows
    /// it: replay then knows the step is new and inserts it between the
    /// recorded ones. Without that, replay reports [`Error::HistoryDiverged`].
    ///
    /// ```no_run
    /// # use octane::prelude::*;
    /// # #[derive(Serialize, Deserialize)] struct Audit;
    /// # impl Activity for Audit { const NAME: &'static str = "audit"; type Output = ();
    /// #   async fn run(&self, _: &ActivityCtx) -> Result<()> { Ok(()) } }
    /// # async fn f(ctx: &mut WorkflowCtx) -> Result<()> {
    /// ctx.v(2).activity(Audit).await?;
    /// # Ok(()) }
    /// ```
    pub fn v(&mut self, n: u32) -> &mut Self {
        self.next_version = Some(n);
        self
    }

    fn take_version(&mut self) -> u32 {
        self.next_version.take().unwrap_or(1)
    }

    /// Resolves the next step against history. A mismatch parks the
    /// workflow as diverged.
    pub(crate) fn resolve(
        &mut self,
        kind: EventKind,
        name: &str,
        input_hash: u64,
    ) -> Result<(Step, StepRequest), Error> {
        self.run.boundary()?;
        let step = StepRequest::new(kind, name, input_hash, self.take_version());
        let run = self.run.clone();
        match self.cursor.resolve(&run.history, &step) {
            // A check stops where the code would do something live: at a
            // step with no record, or at one recorded unfinished (an
            // activity between attempts, a wait). A loop's record is its
            // checkpoint, unfinished while the loop runs: replay goes on.
            Ok(Resolved::Live(location)) if run.is_check() => {
                Err(run.conclude(Verdict::Compatible { at: Some(location) }))
            }
            Ok(Resolved::Replay(e)) if run.is_check() && !e.done && e.kind != EventKind::Loop => {
                Err(run.conclude(Verdict::Compatible {
                    at: Some(e.location.clone()),
                }))
            }
            Ok(Resolved::Replay(e)) => {
                tracing::debug!(
                    target: "octane::replay",
                    workflow_id = %run.workflow_id,
                    location = %e.location,
                    kind = %e.kind,
                    name = %e.name,
                    iteration = e.iteration,
                    "replayed from history"
                );
                Ok((Step::Replay(e.clone()), step))
            }
            Ok(Resolved::Live(location)) => Ok((Step::Live(location), step)),
            Err(m) => Err(self.run.park(Error::HistoryDiverged {
                workflow_id: self.run.workflow_id,
                location: m.location,
                recorded: m.recorded,
                requested: m.requested,
            })),
        }
    }

    /// Deserializes a recorded value; a failure parks the workflow.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        what: impl Into<String>,
        location: &Location,
        json: Option<&str>,
    ) -> Result<T, Error> {
        decode(&self.run, what, location, json)
    }

    /// Runs `f` in a new branch of history, as one step.
    ///
    /// Steps inside the branch get locations under the branch's own, so
    /// code that varies in how many steps it takes can be fenced into a
    /// branch without shifting the locations of the steps after it.
    ///
    /// # Errors
    /// What `f` returns, or a step error.
    pub async fn branch<T, F>(&mut self, f: F) -> anyhow::Result<T>
    where
        F: for<'a> FnOnce(&'a mut WorkflowCtx) -> BoxFuture<'a, anyhow::Result<T>>,
    {
        let (step, req) = self.resolve(EventKind::Branch, "", 0)?;
        let location = match step {
            Step::Replay(e) => e.location,
            Step::Live(location) => {
                self.run.defer(WriteOp::Put(
                    Event::new(location.clone(), &req).finished("null".into()),
                ));
                location
            }
        };
        let mut child = self.child(location);
        f(&mut child).await
    }

    /// The current time, recorded: replay returns the first run's value.
    ///
    /// # Errors
    /// A step error (divergence, yield).
    pub fn now(&mut self) -> Result<SystemTime, Error> {
        let clock = self.run.clock.clone();
        let ms: i64 = self.recorded_value(EventKind::Now, move || clock.now_ms())?;
        Ok(from_ms(ms))
    }

    /// A random UUID, recorded: replay returns the first run's value.
    ///
    /// # Errors
    /// A step error (divergence, yield).
    pub fn uuid(&mut self) -> Result<uuid::Uuid, Error> {
        self.recorded_value(EventKind::Uuid, uuid::Uuid::new_v4)
    }

    fn recorded_value<T: Serialize + DeserializeOwned>(
        &mut self,
        kind: EventKind,
        make: impl FnOnce() -> T,
    ) -> Result<T, Error> {
        let (step, req) = self.resolve(kind, "", 0)?;
        match step {
            Step::Replay(e) => self.decode(kind.as_str(), &e.location, e.data.as_deref()),
            Step::Live(location) => {
                let value = make();
                let json = encode(kind.as_str(), &value)?;
                self.run
                    .defer(WriteOp::Put(Event::new(location, &req).finished(json)));
                Ok(value)
            }
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(
    run: &RunShared,
    what: impl Into<String>,
    location: &Location,
    json: Option<&str>,
) -> Result<T, Error> {
    serde_json::from_str(json.unwrap_or("null")).map_err(|e| {
        run.park(Error::Decode {
            workflow_id: run.workflow_id,
            location: location.clone(),
            what: what.into(),
            message: e.to_string(),
        })
    })
}

pub(crate) fn encode<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Encode {
        what: what.to_string(),
        message: e.to_string(),
    })
}
