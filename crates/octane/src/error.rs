//! The engine's error type.

use std::collections::BTreeMap;

use crate::history::Location;
use crate::store::{Delivery, FailureCode, SignalTarget, StoreError, WorkflowId, WorkflowState};

/// The stable code carried by every [`Error::HistoryDiverged`] message.
pub const HISTORY_DIVERGED: &str = "OCTANE-DIVERGED";

/// Errors returned by the engine and by workflow steps.
///
/// Steps inside a workflow return this type; `?` turns it into the
/// workflow's `anyhow::Error`. Let step errors propagate: the engine reads
/// the cause of a workflow's stop from its own records, so swallowing an
/// [`Error::Yield`] or [`Error::HistoryDiverged`] does not change what
/// happens, but code after it would run for nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The code took a different step than the one recorded at `location`.
    /// The workflow is parked, its history untouched; deploy code
    /// that matches (or insert the new step with a higher `ctx.v(n)`), then
    /// wake it.
    #[error(
        "[{HISTORY_DIVERGED}] workflow {workflow_id} diverged from its history at {location}: \
         recorded {recorded}, but the code asked for {requested}"
    )]
    HistoryDiverged {
        /// The workflow.
        workflow_id: WorkflowId,
        /// Where the recorded event sits.
        location: Location,
        /// The recorded event.
        recorded: String,
        /// What the code asked for.
        requested: String,
    },

    /// An activity failed on every attempt its retry policy allows. The
    /// workflow may handle it; replay returns the same error.
    #[error("activity `{activity}` at {location} of workflow {workflow_id} failed after {attempts} attempt(s): {message}")]
    ActivityFailed {
        /// The workflow.
        workflow_id: WorkflowId,
        /// Where the activity sits.
        location: Location,
        /// The activity name.
        activity: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        message: String,
    },

    /// Not a failure: the workflow must stop here because it sleeps, is
    /// being evicted by a shutting-down worker, or lost its lease. Return it
    /// with `?`; the worker records what happens next.
    #[error("workflow {workflow_id} yields: {reason}")]
    Yield {
        /// The workflow.
        workflow_id: WorkflowId,
        /// Why.
        reason: &'static str,
    },

    /// No workflow has this id.
    #[error("no workflow with id {workflow_id}")]
    WorkflowNotFound {
        /// The id asked for.
        workflow_id: WorkflowId,
    },

    /// The workflow finished with an error.
    #[error("workflow {workflow_id} (`{name}`) failed: {message}")]
    WorkflowFailed {
        /// The workflow.
        workflow_id: WorkflowId,
        /// Its name.
        name: String,
        /// Its error.
        message: String,
    },

    /// The workflow was cancelled: by request, or because its deadline
    /// passed.
    #[error("workflow {workflow_id} was cancelled: {reason}")]
    WorkflowCancelled {
        /// The workflow.
        workflow_id: WorkflowId,
        /// Why, as recorded: `cancelled` or `deadline passed`.
        reason: String,
    },

    /// The id belongs to a workflow of another type than the caller named.
    #[error("workflow {workflow_id} is a `{actual}`, not a `{expected}`")]
    WrongWorkflow {
        /// The workflow.
        workflow_id: WorkflowId,
        /// The name the caller expected.
        expected: &'static str,
        /// Its actual name.
        actual: String,
    },

    /// No workflow of this name is registered with the engine.
    #[error("unknown workflow `{name}`; registered: [{}]", registered.join(", "))]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// The names the engine knows.
        registered: Vec<String>,
    },

    /// A workflow input that does not deserialize into the workflow's input
    /// type. Nothing was stored.
    #[error("invalid input for workflow `{workflow}`: {message}")]
    InvalidInput {
        /// The workflow name.
        workflow: String,
        /// Why it does not deserialize.
        message: String,
    },

    /// A recorded value (input, output, loop state) or a pending signal no
    /// longer deserializes into the type the code expects. The workflow is
    /// parked.
    #[error("workflow {workflow_id}: recorded {what} at {location} does not decode: {message}")]
    Decode {
        /// The workflow.
        workflow_id: WorkflowId,
        /// Where the value is recorded.
        location: Location,
        /// What the value is.
        what: String,
        /// The deserializer's complaint.
        message: String,
    },

    /// A value could not be serialized.
    #[error("cannot serialize {what}: {message}")]
    Encode {
        /// What the value is.
        what: String,
        /// The serializer's complaint.
        message: String,
    },

    /// A loop's state serialized to more bytes than the configured cap.
    /// Keep large data in your own storage and the key in the loop state.
    #[error("loop at {location} of workflow {workflow_id} has a state of {size} bytes, over the cap of {cap} bytes")]
    LoopStateTooLarge {
        /// The workflow.
        workflow_id: WorkflowId,
        /// The loop's location.
        location: Location,
        /// The serialized state's size.
        size: usize,
        /// The cap.
        cap: usize,
    },

    /// A schedule's cron expression or time zone does not parse.
    #[error("schedule `{name}`: {message}")]
    InvalidSchedule {
        /// The schedule.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// No schedule has this name.
    #[error("no schedule named `{name}`")]
    ScheduleNotFound {
        /// The name asked for.
        name: String,
    },

    /// The workflow has no unfinished loop (at the location asked for).
    #[error("workflow {workflow_id} has no unfinished loop{}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    NoLoop {
        /// The workflow.
        workflow_id: WorkflowId,
        /// The location asked for, if one was.
        location: Option<Location>,
    },

    /// A workflow export (from `octane wf export`) that cannot be read or
    /// written.
    #[error("invalid workflow export: {message}")]
    InvalidExport {
        /// What is wrong with it.
        message: String,
    },

    /// The workflow is not in a state the operation applies to.
    #[error("workflow {workflow_id} is {state}: cannot {operation}")]
    InvalidState {
        /// The workflow.
        workflow_id: WorkflowId,
        /// Its state.
        state: WorkflowState,
        /// What was attempted.
        operation: &'static str,
    },

    /// A child workflow failed or was cancelled. The parent may handle it;
    /// replay returns the same error.
    #[error("child workflow {child} (`{name}`) of workflow {workflow_id} failed: {message}")]
    ChildFailed {
        /// The parent.
        workflow_id: WorkflowId,
        /// The child.
        child: WorkflowId,
        /// The child's workflow name.
        name: &'static str,
        /// The child's error.
        message: String,
    },

    /// A signal to a workflow that has finished; nothing was stored.
    #[error("signal `{signal}` to workflow {workflow_id} rejected: the workflow is {state}")]
    SignalRejected {
        /// The recipient.
        workflow_id: WorkflowId,
        /// The signal name.
        signal: String,
        /// The recipient's state.
        state: WorkflowState,
    },

    /// A signal by tags that matches no unfinished workflow.
    #[error("signal `{signal}`: no unfinished workflow has the tags {tags:?}")]
    NoSignalTarget {
        /// The signal name.
        signal: String,
        /// The tags asked for.
        tags: BTreeMap<String, String>,
    },

    /// A signal by tags that matches several unfinished workflows; nothing
    /// was stored. Add tags until one workflow matches.
    #[error(
        "signal `{signal}`: {count} unfinished workflows have the tags {tags:?}, expected one"
    )]
    AmbiguousSignalTarget {
        /// The signal name.
        signal: String,
        /// The tags asked for.
        tags: BTreeMap<String, String>,
        /// How many workflows match.
        count: usize,
    },

    /// The metrics endpoint could not be started (address in use, or a
    /// recorder already installed).
    #[error("cannot serve metrics on {addr}: {message}")]
    MetricsEndpoint {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        message: String,
    },

    /// A message too large for the store to carry to other processes
    /// (PostgreSQL's `NOTIFY` takes under 8,000 bytes). Nothing was sent.
    #[error("workflow {workflow_id}: message `{message}` is {size} bytes as sent; the store carries at most {limit}")]
    MessageTooLarge {
        /// The sending workflow.
        workflow_id: WorkflowId,
        /// The message's name.
        message: String,
        /// Its size as sent.
        size: usize,
        /// The most the store carries.
        limit: usize,
    },

    /// The dashboard could not be started.
    #[error("cannot serve the dashboard on {addr}: {message}")]
    Dashboard {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it failed.
        message: String,
    },

    /// The workflow is parked: the engine stopped it because it cannot run
    /// as it is (see [`WorkflowState::Parked`]). Not final: deploy code that
    /// fits, [`Engine::wake`](crate::Engine::wake) it, and wait again.
    #[error("workflow {workflow_id} (`{name}`) is parked{}: {message}", code.map(|c| format!(" ({c})")).unwrap_or_default())]
    WorkflowParked {
        /// The workflow.
        workflow_id: WorkflowId,
        /// Its name.
        name: String,
        /// Why the engine parked it.
        code: Option<FailureCode>,
        /// The error that parked it.
        message: String,
    },

    /// The database refused a write of the workflow for what it holds (a
    /// value it cannot store): the workflow is parked rather than retried
    /// for ever.
    #[error("workflow {workflow_id}: the database rejected its write")]
    StoreRejected {
        /// The workflow.
        workflow_id: WorkflowId,
        /// What the database said.
        #[source]
        source: StoreError,
    },

    /// The database could not be opened (the URL is shown with its
    /// password masked).
    #[error("cannot open {url}")]
    Open {
        /// The database URL, password masked.
        url: String,
        /// Why.
        #[source]
        source: StoreError,
    },

    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of a signal delivery as the caller sees it.
pub(crate) fn delivery_result(
    signal: &str,
    target: &SignalTarget,
    delivery: Delivery,
) -> Result<WorkflowId, Error> {
    let tags = || match target {
        SignalTarget::Tags(t) => t.clone(),
        SignalTarget::Id(_) => BTreeMap::new(),
    };
    match (delivery, target) {
        (Delivery::Delivered(id), _) => Ok(id),
        (Delivery::NotFound, SignalTarget::Id(id)) => {
            Err(Error::WorkflowNotFound { workflow_id: *id })
        }
        (Delivery::Finished(state), SignalTarget::Id(id)) => Err(Error::SignalRejected {
            workflow_id: *id,
            signal: signal.to_string(),
            state,
        }),
        (Delivery::Ambiguous(count), _) => Err(Error::AmbiguousSignalTarget {
            signal: signal.to_string(),
            tags: tags(),
            count,
        }),
        _ => Err(Error::NoSignalTarget {
            signal: signal.to_string(),
            tags: tags(),
        }),
    }
}

impl Error {
    /// Whether the same call may succeed later (the database was busy or
    /// briefly unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_retryable())
    }

    /// The stable code of errors that have one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Error::HistoryDiverged { .. } => Some(HISTORY_DIVERGED),
            _ => None,
        }
    }

    /// Why a workflow that met this error is parked, for the errors that
    /// park it.
    pub fn failure_code(&self) -> Option<FailureCode> {
        Some(match self {
            Error::HistoryDiverged { .. } => FailureCode::HistoryDiverged,
            Error::Decode { .. } => FailureCode::Undecodable,
            Error::LoopStateTooLarge { .. } => FailureCode::StateTooLarge,
            Error::InvalidInput { .. } => FailureCode::InvalidInput,
            Error::StoreRejected { .. } => FailureCode::WriteRejected,
            _ => return None,
        })
    }
}
