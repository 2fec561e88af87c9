//! Values that cross the storage seam.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::history::{Event, Location};

/// The id of a workflow: a UUID (version 7: time first, then random bits),
/// printed hyphenated.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(pub uuid::Uuid);

impl WorkflowId {
    /// A fresh id. Ids made later sort later, so a new workflow's rows go
    /// to the end of every index keyed by id, where the pages of the
    /// latest workflows already are: the cost of an insert stays flat as
    /// the tables grow, instead of touching a random page per row.
    pub fn new() -> Self {
        WorkflowId(uuid::Uuid::now_v7())
    }
}

impl Default for WorkflowId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for WorkflowId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(WorkflowId)
    }
}

/// Where a workflow is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Runnable, waiting for a worker.
    Pending,
    /// Leased by a worker (or its lease expired and it awaits takeover).
    Running,
    /// Waiting for a deadline; not in any worker's memory.
    Sleeping,
    /// Finished with an output.
    Completed,
    /// Finished with an error its code returned.
    Failed,
    /// Cancelled from outside.
    Cancelled,
    /// Stopped by the engine because it cannot run as it is (its history
    /// diverged from the code, a recorded value or a signal no longer
    /// decodes, its state outgrew the cap): kept as it was, pending signals
    /// included, until [`Engine::wake`](crate::Engine::wake) after a fix.
    /// Not finished: its parent keeps waiting, and it is never pruned.
    Parked,
}

impl WorkflowState {
    /// The persisted name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Pending => "pending",
            WorkflowState::Running => "running",
            WorkflowState::Sleeping => "sleeping",
            WorkflowState::Completed => "completed",
            WorkflowState::Failed => "failed",
            WorkflowState::Cancelled => "cancelled",
            WorkflowState::Parked => "parked",
        }
    }

    /// Whether the workflow has finished for good.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            WorkflowState::Completed | WorkflowState::Failed | WorkflowState::Cancelled
        )
    }
}

impl fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkflowState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => WorkflowState::Pending,
            "running" => WorkflowState::Running,
            "sleeping" => WorkflowState::Sleeping,
            "completed" => WorkflowState::Completed,
            "failed" => WorkflowState::Failed,
            "cancelled" => WorkflowState::Cancelled,
            "parked" => WorkflowState::Parked,
            other => return Err(format!("unknown workflow state `{other}`")),
        })
    }
}

/// Why the engine stopped a workflow: stored with it, shown by `wf list`
/// and `wf show`, filterable with `wf list --code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureCode {
    /// The code took another step than the history recorded.
    HistoryDiverged,
    /// The stored history does not decode.
    CorruptHistory,
    /// The workflow's stored row does not decode.
    CorruptRow,
    /// The stored input does not deserialize into the workflow's input.
    InvalidInput,
    /// The workflow's code panicked.
    Panic,
    /// A recorded value or a pending signal does not deserialize into the
    /// code's types.
    Undecodable,
    /// A loop's state outgrew the engine's cap.
    StateTooLarge,
    /// The database refused a write of the workflow (a value it cannot
    /// hold).
    WriteRejected,
}

impl FailureCode {
    /// The persisted name of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::HistoryDiverged => "history_diverged",
            FailureCode::CorruptHistory => "corrupt_history",
            FailureCode::CorruptRow => "corrupt_row",
            FailureCode::InvalidInput => "invalid_input",
            FailureCode::Panic => "panic",
            FailureCode::Undecodable => "undecodable",
            FailureCode::StateTooLarge => "state_too_large",
            FailureCode::WriteRejected => "write_rejected",
        }
    }

    /// Every code, for tools that list them.
    pub const ALL: [FailureCode; 8] = [
        FailureCode::HistoryDiverged,
        FailureCode::CorruptHistory,
        FailureCode::CorruptRow,
        FailureCode::InvalidInput,
        FailureCode::Panic,
        FailureCode::Undecodable,
        FailureCode::StateTooLarge,
        FailureCode::WriteRejected,
    ];
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailureCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // How rows written before the codes had one spelling name a
        // diverged history (the code its error message carries).
        if s == "OCTANE-DIVERGED" {
            return Ok(FailureCode::HistoryDiverged);
        }
        FailureCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown failure code `{s}`"))
    }
}

/// A workflow as stored: what `Engine::get` and `Engine::list` return.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInfo {
    /// Its id.
    pub id: WorkflowId,
    /// The registered workflow name.
    pub name: String,
    /// Its state.
    pub state: WorkflowState,
    /// The input, as JSON.
    pub input: String,
    /// The output as JSON, once completed.
    pub output: Option<String>,
    /// The error, once failed or parked.
    pub error: Option<String>,
    /// Why the engine parked it (or, for rows written by older versions,
    /// failed it).
    pub code: Option<FailureCode>,
    /// Tags given at dispatch.
    pub tags: BTreeMap<String, String>,
    /// When it next becomes runnable (ms since the epoch), if scheduled.
    pub wake_at: Option<i64>,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// When it last changed (ms since the epoch).
    pub updated_at: i64,
    /// The worker holding it, while it runs.
    pub owner: Option<Owner>,
}

/// The worker that holds a running workflow's lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The worker's id.
    pub worker: uuid::Uuid,
    /// Its machine and process id, if it registered them.
    pub host: Option<String>,
    /// Its process id there.
    pub pid: Option<u32>,
}

impl Owner {
    pub(crate) fn from_row(
        worker: Option<String>,
        host: Option<String>,
        pid: Option<i64>,
    ) -> Option<Owner> {
        Some(Owner {
            worker: worker?.parse().ok()?,
            host,
            pid: pid.and_then(|p| u32::try_from(p).ok()),
        })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.pid) {
            (Some(host), Some(pid)) => write!(f, "worker {} (pid {pid} on {host})", self.worker),
            _ => write!(f, "worker {}", self.worker),
        }
    }
}

/// A workflow to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWorkflow {
    /// Its id.
    pub id: WorkflowId,
    /// The workflow name.
    pub name: String,
    /// The input, as JSON.
    pub input: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Creation time (ms since the epoch); also when it becomes runnable.
    pub now: i64,
    /// The workflow that started it, woken when it finishes.
    pub parent: Option<WorkflowId>,
    /// Start it only if no workflow of this name holds this key.
    pub key: Option<DispatchKey>,
    /// When it is cancelled if still unfinished (ms since the epoch).
    pub deadline_at: Option<i64>,
}

/// An idempotency key for starting a workflow: a dispatch of the same name
/// and key finds the workflow already started instead of storing another.
/// At most one unfinished workflow of a name holds a key, enforced by a
/// unique index, so concurrent dispatches from any number of processes
/// agree on one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchKey {
    /// The key, e.g. an order number.
    pub key: String,
    /// What a dispatch does when the newest workflow with the key finished.
    pub if_finished: IfFinished,
}

/// What a keyed dispatch does when the workflow holding the key has
/// finished (completed, failed or cancelled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IfFinished {
    /// Return the finished workflow: the key names one run for good (until
    /// retention prunes it). The default: a retried request that already
    /// succeeded must not run again.
    #[default]
    Return,
    /// Start a new workflow with the key: the key names "the current run".
    StartNew,
}

/// A worker's right to write one workflow's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// The worker holding it.
    pub owner: uuid::Uuid,
    /// Incremented on every claim; checked on every write.
    pub epoch: i64,
}

/// What a worker asks of [`Store::claim`](super::Store::claim).
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// The claiming worker.
    pub owner: uuid::Uuid,
    /// Workflow names the worker can run.
    pub names: Vec<String>,
    /// How many workflows at most.
    pub limit: usize,
    /// Now (ms since the epoch).
    pub now: i64,
    /// When the new leases expire unless renewed.
    pub expires_at: i64,
}

/// A worker as the store records it while it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRecord {
    /// The worker's id (the lease owner it writes).
    pub id: uuid::Uuid,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// When it started (ms since the epoch).
    pub started_at: i64,
}

/// Proof that a worker is alive, held for its lifetime: a lock that the
/// operating system or the database server releases when the process dies.
/// Dropping it ends the worker's liveness.
pub trait Liveness: Send + Sync + std::fmt::Debug {
    /// Whether the store still counts the worker alive through this guard.
    /// A guard that lost its hold (the session that held a lock is gone:
    /// the server restarted, or a standby took over) must be replaced, or
    /// other workers take this worker's workflows from under it.
    fn is_held(&self) -> bool {
        true
    }

    /// Resolves when the guard loses its hold (never, by default), so the
    /// worker learns of it at once rather than at its next look.
    fn lost(&self) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// A leased workflow, ready to run.
#[derive(Clone, Debug)]
pub struct ClaimedWorkflow {
    /// The lease to write under.
    pub lease: Lease,
    /// The workflow name.
    pub name: String,
    /// The input, as JSON.
    pub input: String,
}

/// The answer to a claim.
#[derive(Clone, Debug, Default)]
pub struct Claimed {
    /// The workflows now leased to the caller.
    pub workflows: Vec<ClaimedWorkflow>,
    /// The earliest time another workflow of these names becomes runnable.
    pub next_wake_at: Option<i64>,
}

/// One history write.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    /// Delete consumed signals (their content is in the event that
    /// recorded them, written in the same transaction).
    AckSignals(Vec<i64>),
    /// Deliver a signal sent by the workflow (recorded in the same
    /// transaction, so it is sent exactly once). Dropped if the target
    /// finished meanwhile.
    SendSignal(NewSignal),
    /// Create a child workflow (recorded in the same transaction).
    CreateWorkflow(NewWorkflow),
    /// Insert or replace the event at its location.
    Put(Event),
    /// Delete the events of iterations `[from, below)` of the loop at
    /// `loop_location`: `from` is where the previous deletion stopped.
    ForgetIterations {
        /// The loop event's location.
        loop_location: Location,
        /// The first iteration deleted.
        from: u64,
        /// Iterations below this one are deleted.
        below: u64,
    },
}

/// What happens to the workflow itself in a commit.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Transition {
    /// Nothing: it keeps running.
    #[default]
    Continue,
    /// It leaves memory until one of its wake-up conditions holds. The store
    /// checks them in the same transaction: if one already holds (a signal
    /// it listens for is pending, or the child it waits for finished), the
    /// workflow is made runnable at once instead, so no wake-up is lost.
    Suspend(Suspend),
    /// It leaves memory and is runnable at once (graceful eviction).
    Release,
    /// It finished with an output (JSON). Its pending signals are deleted
    /// and a parent waiting for it is woken.
    Complete {
        /// The output.
        output: String,
    },
    /// Its code returned an error. Its pending signals are deleted and a
    /// parent waiting for it is woken.
    Fail {
        /// The error message.
        error: String,
    },
    /// The engine cannot run it as it is: it leaves memory and waits for an
    /// operator. Its pending signals stay, its parent is not told, it is
    /// not pruned.
    Park {
        /// The error message.
        error: String,
        /// Why.
        code: FailureCode,
    },
}

impl Transition {
    /// Whether the workflow finishes for good with this transition.
    pub fn is_finished(&self) -> bool {
        matches!(self, Transition::Complete { .. } | Transition::Fail { .. })
    }

    /// What the run came to, as metrics label it.
    pub fn outcome(&self) -> &'static str {
        match self {
            Transition::Continue => "continued",
            Transition::Suspend(_) => "suspended",
            Transition::Release => "released",
            Transition::Complete { .. } => "completed",
            Transition::Fail { .. } => "failed",
            Transition::Park { .. } => "parked",
        }
    }
}

/// The wake-up conditions of a suspended workflow.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Suspend {
    /// Wake at this time (ms since the epoch).
    pub wake_at: Option<i64>,
    /// Wake when a signal of one of these names arrives.
    pub signals: Vec<String>,
    /// Wake when this child workflow finishes.
    pub child: Option<WorkflowId>,
}

/// A signal to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSignal {
    /// Who receives it.
    pub target: SignalTarget,
    /// The signal name.
    pub name: String,
    /// The body, as JSON.
    pub body: String,
    /// Now (ms since the epoch).
    pub now: i64,
}

/// Who a signal goes to.
#[derive(Clone, Debug, PartialEq)]
pub enum SignalTarget {
    /// One workflow by id.
    Id(WorkflowId),
    /// The one unfinished workflow carrying all these tags.
    Tags(BTreeMap<String, String>),
}

/// What became of a signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Stored for this workflow (and it was woken if it listens for it).
    Delivered(WorkflowId),
    /// No workflow has the id.
    NotFound,
    /// The workflow has finished; nothing was stored.
    Finished(WorkflowState),
    /// No unfinished workflow carries the tags.
    NoMatch,
    /// Several unfinished workflows carry the tags; nothing was stored.
    Ambiguous(usize),
}

/// A signal waiting to be consumed.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingSignal {
    /// Its sequence number: signals are consumed in this (send) order.
    pub seq: i64,
    /// The signal name.
    pub name: String,
    /// The body, as JSON.
    pub body: String,
}

/// Writes and a transition applied atomically under a lease.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// History writes, in order.
    pub ops: Vec<WriteOp>,
    /// What happens to the workflow.
    pub transition: Transition,
    /// Now (ms since the epoch).
    pub now: i64,
}

/// Which workflows `Engine::list` returns.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only this workflow name.
    pub name: Option<String>,
    /// Only this state.
    pub state: Option<WorkflowState>,
    /// Only workflows the engine parked (or, for rows written by older
    /// versions, failed) with this code.
    pub code: Option<FailureCode>,
    /// Only workflows carrying all these tags.
    pub tags: BTreeMap<String, String>,
    /// Only workflows dispatched with this key.
    pub key: Option<String>,
    /// Only workflows after this one in list order (newest first): the
    /// next page after a page that ended there.
    pub after: Option<ListCursor>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

impl ListFilter {
    /// Filter by workflow name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Filter by state.
    pub fn state(mut self, state: WorkflowState) -> Self {
        self.state = Some(state);
        self
    }

    /// Filter by failure code.
    pub fn code(mut self, code: FailureCode) -> Self {
        self.code = Some(code);
        self
    }

    /// Start after `cursor` (keyset pagination: as fast on the last page of
    /// a million workflows as on the first).
    pub fn after(mut self, cursor: ListCursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// Filter by dispatch key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Filter by a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Return at most `n` workflows.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
}

/// An operator's action on a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop it for good; its worker's next write is fenced off.
    Cancel,
    /// Make a parked or sleeping workflow runnable now.
    Wake,
}

#[cfg(test)]
mod tests {
    use super::FailureCode;

    #[test]
    fn failure_codes_read_back_and_the_old_spelling_of_divergence_too() {
        for code in FailureCode::ALL {
            assert_eq!(code.as_str().parse::<FailureCode>(), Ok(code));
        }
        assert_eq!(
            crate::error::HISTORY_DIVERGED.parse::<FailureCode>(),
            Ok(FailureCode::HistoryDiverged)
        );
        assert!("nonsense".parse::<FailureCode>().is_err());
    }
}

/// A message a workflow publishes (see `ctx.msg`): its name, tags and JSON
/// body, as subscribers in any process receive it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// The message type's name.
    pub name: String,
    /// Tags subscribers filter on.
    pub tags: BTreeMap<String, String>,
    /// The message, as JSON.
    pub body: String,
}

/// How many workflows of one name are in one state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateCount {
    /// The workflow name.
    pub name: String,
    /// The state.
    pub state: WorkflowState,
    /// How many.
    pub count: u64,
}

/// The figures of an overview of the database: see
/// [`Catalog::census`](super::Catalog::census).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Census {
    /// Workflows by name and state (only the pairs that occur), sorted.
    pub counts: Vec<StateCount>,
    /// The iterations at every stored loop's checkpoint, summed: how much
    /// it grew over a while is how many loop iterations were done in it,
    /// to the checkpoint interval.
    pub loop_iterations: u64,
}

/// How the database runs one of a store's frequent queries: see
/// [`Catalog::query_plans`](super::Catalog::query_plans).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPlan {
    /// What the query is for, e.g. `"claim"`.
    pub query: &'static str,
    /// The part of the plan that shows the query reading its index by key.
    pub expects: &'static str,
    /// The plan, as the database's `EXPLAIN` prints it.
    pub plan: String,
    /// Whether the plan contains `expects` and reads no table whole; when
    /// false, the query's cost grows with the table.
    pub uses_index: bool,
}

/// A position in list order (newest first, then by id): where a page
/// ended. Printed as `CREATED_AT.ID` and parsed back, for URLs and the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListCursor {
    /// The `created_at` of the last workflow of the page.
    pub created_at: i64,
    /// Its id.
    pub id: WorkflowId,
}

impl ListCursor {
    /// The cursor just after `workflow`.
    pub fn after(workflow: &WorkflowInfo) -> Self {
        ListCursor {
            created_at: workflow.created_at,
            id: workflow.id,
        }
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
    }
}

impl std::str::FromStr for ListCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a list cursor (CREATED_AT.ID)");
        let (at, id) = s.split_once('.').ok_or_else(bad)?;
        Ok(ListCursor {
            created_at: at.parse().map_err(|_| bad())?,
            id: WorkflowId(id.parse().map_err(|_| bad())?),
        })
    }
}

/// A schedule as stored: a workflow started at each tick of a cron
/// expression. See [`Engine::schedule`](crate::Engine::schedule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScheduleInfo {
    /// Its name, unique in the database.
    pub name: String,
    /// The workflow it starts.
    pub workflow: String,
    /// That workflow's input, as JSON.
    pub input: String,
    /// The cron expression (with seconds: `sec min hour day month weekday`).
    pub cron: String,
    /// The time zone the expression is read in (IANA name).
    pub timezone: String,
    /// The next tick (ms since the epoch).
    pub next_at: i64,
    /// Paused schedules start nothing.
    pub paused: bool,
    /// When it last started a workflow, if it has.
    pub last_fired_at: Option<i64>,
}
