//! Checking live workflows against the code of a deploy before it rolls
//! out: each workflow's active history is replayed in memory against the
//! workflows registered in this engine, up to the first step with no
//! record. No activity runs, nothing is written, no lease is taken, so
//! workers running the same workflows meanwhile are not disturbed.
//!
//! A loop's active history is bounded (its last checkpoint and the
//! iterations since), so a check costs the same however long the loops
//! have run.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::ctx::{panic_message, RunShared, WorkflowCtx};
use crate::engine::Engine;
use crate::error::Error;
use crate::export::WorkflowExport;
use crate::history::{Event, History, Location};
use crate::runtime::{Core, RunError};
use crate::store::{ListFilter, WorkflowId, WorkflowInfo, WorkflowState};

/// How many workflows one check replays at once.
const CONCURRENCY: usize = 16;
/// How many workflows one listing read returns.
const PAGE: usize = 500;

/// What replaying one workflow's history against the new code found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// The code fits the history: replay reached the first step with no
    /// record (`at`; `None` when the code returned, so the workflow would
    /// finish on its next run).
    Compatible {
        /// The step the workflow would take live next.
        at: Option<Location>,
    },
    /// The code asks for another step than the one recorded: the workflow
    /// would be parked with [`Error::HistoryDiverged`].
    Diverged {
        /// Where the recorded event sits.
        location: Location,
        /// The recorded event.
        recorded: String,
        /// What the code asked for.
        requested: String,
    },
    /// A recorded value (the input, an activity's output, a loop's state, a
    /// received signal) does not decode into the new code's type.
    Undecodable {
        /// Where the value is recorded (the root for the input).
        location: Location,
        /// What the value is.
        what: String,
        /// The deserializer's complaint.
        message: String,
    },
    /// Replay went through, but the code returned an error, panicked, or
    /// would be parked for another reason (a loop state over the cap): the
    /// new code would end the workflow where the old one did not.
    Fails {
        /// What it would fail with.
        error: String,
    },
    /// No workflow of this name is registered with the checking engine:
    /// the deploy dropped a workflow type that still has live workflows.
    Unregistered,
}

impl Verdict {
    /// Whether the new code can carry the workflow on.
    pub fn is_compatible(&self) -> bool {
        matches!(self, Verdict::Compatible { .. })
    }

    /// The verdict of a run the engine would park with `error`.
    pub(crate) fn of_park(error: &Error) -> Verdict {
        match error {
            Error::HistoryDiverged {
                location,
                recorded,
                requested,
                ..
            } => Verdict::Diverged {
                location: location.clone(),
                recorded: recorded.clone(),
                requested: requested.clone(),
            },
            Error::Decode {
                location,
                what,
                message,
                ..
            } => Verdict::Undecodable {
                location: location.clone(),
                what: what.clone(),
                message: message.clone(),
            },
            other => Verdict::Fails {
                error: other.to_string(),
            },
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Compatible { at: Some(at) } => write!(f, "compatible (next step at {at})"),
            Verdict::Compatible { at: None } => f.write_str("compatible (would finish)"),
            Verdict::Diverged {
                location,
                recorded,
                requested,
            } => write!(
                f,
                "diverged at {location}: recorded {recorded}, the code asks for {requested}"
            ),
            Verdict::Undecodable {
                location,
                what,
                message,
            } => write!(f, "undecodable: {what} at {location}: {message}"),
            Verdict::Fails { error } => write!(f, "would fail: {error}"),
            Verdict::Unregistered => f.write_str("no such workflow is registered"),
        }
    }
}

/// One workflow's check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayCheck {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// Its name.
    pub name: String,
    /// Its state when it was read.
    pub state: WorkflowState,
    /// What replaying it found.
    pub verdict: Verdict,
}

impl fmt::Display for ReplayCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.workflow_id, self.name, self.state, self.verdict
        )
    }
}

/// The checks of [`Engine::check_replay`], in list order (newest first
/// within each state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Every workflow checked.
    pub checks: Vec<ReplayCheck>,
}

impl ReplayReport {
    /// The workflows the new code cannot carry on.
    pub fn problems(&self) -> impl Iterator<Item = &ReplayCheck> {
        self.checks.iter().filter(|c| !c.verdict.is_compatible())
    }

    /// Whether the new code carries every checked workflow on.
    pub fn is_compatible(&self) -> bool {
        self.problems().next().is_none()
    }
}

/// One line per problem, then a summary line.
impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut problems = 0;
        for check in self.problems() {
            writeln!(f, "{check}")?;
            problems += 1;
        }
        write!(
            f,
            "{} workflow(s) checked: {} compatible, {problems} not",
            self.checks.len(),
            self.checks.len() - problems
        )
    }
}

impl Engine {
    /// Replays the active history of every unfinished workflow (pending,
    /// running, sleeping or parked) that matches `filter` against the
    /// workflows registered in this engine, and says of each whether this
    /// code carries it on. Run it from a build of the new code, against the
    /// production database, before deploying that build.
    ///
    /// Nothing runs and nothing is written: no activity, no lease, no
    /// event. A filter's `state` narrows the check to that state (a
    /// finished state checks nothing); its `limit` and `after` are ignored:
    /// every match is checked.
    ///
    /// ```no_run
    /// # use octane::{Engine, ListFilter};
    /// # async fn f(engine: Engine) -> anyhow::Result<()> {
    /// let report = engine.check_replay(ListFilter::default()).await?;
    /// if !report.is_compatible() {
    ///     eprintln!("{report}");
    ///     std::process::exit(1);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A store error while listing or reading histories.
    pub async fn check_replay(&self, filter: ListFilter) -> Result<ReplayReport, Error> {
        let states = match filter.state {
            Some(state) if state.is_finished() => Vec::new(),
            Some(state) => vec![state],
            None => vec![
                WorkflowState::Pending,
                WorkflowState::Running,
                WorkflowState::Sleeping,
                WorkflowState::Parked,
            ],
        };
        let core = self.core();
        let mut report = ReplayReport::default();
        for state in states {
            let mut page_filter = ListFilter {
                state: Some(state),
                limit: Some(PAGE),
                after: None,
                ..filter.clone()
            };
            loop {
                let page = self.list_page(page_filter.clone()).await?;
                let checks: Vec<ReplayCheck> = futures::stream::iter(page.workflows)
                    .map(|info| check_stored(core, info))
                    .buffered(CONCURRENCY)
                    .try_collect()
                    .await?;
                report.checks.extend(checks);
                match page.next {
                    Some(next) => page_filter.after = Some(next),
                    None => break,
                }
            }
        }
        Ok(report)
    }

    /// Checks a recorded history (from `octane wf export`) against the
    /// workflows registered in this engine, as [`Engine::check_replay`]
    /// checks a stored one. The engine's store is not touched: histories
    /// kept as files in a repository can be replayed in its tests.
    pub async fn check_export(&self, export: &WorkflowExport) -> ReplayCheck {
        let verdict = check(
            self.core(),
            export.workflow_id,
            &export.name,
            export.input.to_string(),
            export.events.clone(),
        )
        .await;
        ReplayCheck {
            workflow_id: export.workflow_id,
            name: export.name.clone(),
            state: export.state,
            verdict,
        }
    }
}

async fn check_stored(core: &Arc<Core>, info: WorkflowInfo) -> Result<ReplayCheck, Error> {
    let events = core.store().load_history(info.id).await?;
    let verdict = check(core, info.id, &info.name, info.input, events).await;
    Ok(ReplayCheck {
        workflow_id: info.id,
        name: info.name,
        state: info.state,
        verdict,
    })
}

/// Replays `events` against the registered workflow `name`.
async fn check(
    core: &Core,
    id: WorkflowId,
    name: &str,
    input: String,
    events: Vec<Event>,
) -> Verdict {
    let Some(registered) = core.registry.get(name) else {
        return Verdict::Unregistered;
    };
    let run = Arc::new(RunShared::checking(
        &core.env,
        id,
        registered.name,
        History::from_events(events),
    ));
    let ctx = WorkflowCtx::new(run.clone(), Location::root());
    let outcome = AssertUnwindSafe((registered.run)(ctx, input))
        .catch_unwind()
        .await;
    if let Some(verdict) = run.take_verdict() {
        return verdict;
    }
    match outcome {
        Ok(Ok(_)) => Verdict::Compatible { at: None },
        Ok(Err(RunError::Input(message))) => Verdict::Undecodable {
            location: Location::root(),
            what: "input".into(),
            message,
        },
        Ok(Err(RunError::Workflow(e))) => Verdict::Fails {
            error: format!("{e:#}"),
        },
        Err(panic) => Verdict::Fails {
            error: format!(
                "workflow `{name}` panicked: {}",
                panic_message(panic.as_ref())
            ),
        },
    }
}
