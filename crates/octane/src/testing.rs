//! Testing workflows: an engine on a temporary database whose clock the
//! test moves, so a workflow that sleeps for a month runs in milliseconds,
//! and replay checks of recorded histories (needs the `testing` feature).
//!
//! ```
//! use std::time::Duration;
//! use octane::prelude::*;
//! use octane::testing::TestEnv;
//!
//! struct Reminder;
//! impl Workflow for Reminder {
//!     const NAME: &'static str = "reminder";
//!     type Input = ();
//!     type Output = String;
//!     async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<String> {
//!         ctx.sleep(Duration::from_secs(30 * 86_400)).await?;
//!         Ok("a month later".into())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let env = TestEnv::start(|engine| engine.register::<Reminder>()).await?;
//! let id = env.engine().dispatch::<Reminder>(()).await?;
//! // Time skips to each deadline as soon as every workflow waits for one.
//! assert_eq!(env.run_until_finished::<Reminder>(id).await?, "a month later");
//! # Ok(()) }
//! ```
//!
//! # How time moves
//! The engine of a [`TestEnv`] reads a clock of its own: the system's time
//! plus whatever the test added. Every sleep leaves memory (none waits in a
//! tokio timer), so a deadline is a row in the database that a worker
//! claims once the clock passes it. [`TestEnv::advance`] moves the clock
//! and lets everything that became due run to its next wait;
//! [`TestEnv::run_until_finished`] moves it to the next deadline whenever
//! nothing else can happen. Leases last for years in test time, so a jump
//! never looks like a dead worker.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::clock::{from_ms, Clock};
use crate::ctx::Workflow;
use crate::engine::Engine;
use crate::error::Error;
use crate::export::WorkflowExport;
use crate::replay_check::ReplayReport;
use crate::store::{ListFilter, WorkflowId, WorkflowInfo, WorkflowState};
use crate::worker::Worker;

/// How long [`TestEnv::settle`] waits, in real time, for runnable
/// workflows to reach a wait before it reports them busy.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// More workflows than a test holds: a snapshot reads them all.
const LIST_ALL: usize = 1_000_000;
/// A test's lease: longer than any jump of its clock.
const TEST_LEASE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// What can go wrong in a test environment besides the engine's own
/// errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// An engine call failed.
    #[error(transparent)]
    Engine(#[from] Error),
    /// The temporary database or a fixture could not be read or created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The workflow waits for something no clock brings: every unfinished
    /// workflow waits for a signal or a child without a deadline, or is
    /// parked.
    #[error("workflow {workflow_id} is {state} and nothing is due: it would wait for ever")]
    Stalled {
        /// The workflow waited for.
        workflow_id: WorkflowId,
        /// Its state.
        state: WorkflowState,
    },
    /// Workflows stayed runnable for longer than the limit without
    /// reaching a wait (a loop that never sleeps, a hung activity).
    #[error("workflows {workflows:?} were still runnable after {limit:?} of real time")]
    Busy {
        /// Some of the workflows still runnable.
        workflows: Vec<WorkflowId>,
        /// The limit.
        limit: Duration,
    },
}

/// An engine on a temporary SQLite database with a worker and a clock the
/// test moves; see the [module docs](self). The database is deleted when
/// the environment is dropped.
#[derive(Debug)]
pub struct TestEnv {
    engine: Engine,
    clock: Clock,
    _worker: Worker,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    /// Opens an engine on a fresh temporary database, lets `configure`
    /// register workflows (and set anything else), and starts a worker.
    /// Every sleep then leaves memory, whatever `configure` set, so that
    /// moving the clock wakes it.
    ///
    /// # Errors
    /// [`TestError::Io`] when the temporary directory cannot be made; the
    /// engine's error when the database cannot be opened.
    pub async fn start(configure: impl FnOnce(Engine) -> Engine) -> Result<TestEnv, TestError> {
        let dir = tempfile::tempdir().map_err(|source| TestError::Io {
            what: "creating a temporary directory".into(),
            source,
        })?;
        // A test's database need not survive a power loss: commits skip
        // the fsync.
        let url = format!(
            "sqlite://{}?synchronous=normal",
            dir.path().join("octane.db").display()
        );
        let clock = Clock::skippable();
        let engine = configure(Engine::open(&url).await?.with_clock(clock.clone()))
            .sleep_in_memory_below(Duration::ZERO);
        let worker = engine
            .worker()
            .lease_ttl(TEST_LEASE)
            .poll_interval(Duration::from_millis(20))
            .spawn();
        Ok(TestEnv {
            engine,
            clock,
            _worker: worker,
            _dir: dir,
        })
    }

    /// The engine: dispatch, signal, read and check through it.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The environment's time.
    pub fn now(&self) -> SystemTime {
        from_ms(self.clock.now_ms())
    }

    /// Lets every runnable workflow reach its next wait at the current
    /// time (a workflow just dispatched starts now, not `d` later), moves
    /// the clock `d` forward, and [settles](TestEnv::settle) again: every
    /// workflow whose deadline it passed has run to its next wait when this
    /// returns.
    ///
    /// # Errors
    /// As [`TestEnv::settle`].
    pub async fn advance(&self, d: Duration) -> Result<(), TestError> {
        self.settle().await?;
        self.clock.advance(d);
        self.engine.core().env.runnable.notify_one();
        self.settle().await
    }

    /// Waits, without moving the clock, until no workflow can run: each
    /// unfinished one sleeps until a later deadline, waits for a signal or
    /// a child, or is parked.
    ///
    /// # Errors
    /// [`TestError::Busy`] when some stay runnable for 30 s of real time.
    pub async fn settle(&self) -> Result<(), TestError> {
        let started = Instant::now();
        let stopped = &self.engine.core().stopped;
        loop {
            // Armed before the read, so a run that stops after it is not
            // missed.
            let next_stop = stopped.notified();
            tokio::pin!(next_stop);
            next_stop.as_mut().enable();
            let busy: Vec<WorkflowId> = self.runnable(&self.snapshot().await?).collect();
            if busy.is_empty() {
                return Ok(());
            }
            if started.elapsed() > SETTLE_LIMIT {
                return Err(TestError::Busy {
                    workflows: busy,
                    limit: SETTLE_LIMIT,
                });
            }
            // Runs report when they stop; the timeout covers a workflow made
            // runnable from outside that no worker has claimed yet.
            let _ = tokio::time::timeout(Duration::from_millis(10), next_stop).await;
        }
    }

    /// Runs the workflow to its end and returns its output, moving the
    /// clock to the next deadline whenever nothing else can happen.
    ///
    /// # Errors
    /// The workflow's own error (as [`Engine::wait`]);
    /// [`TestError::Stalled`] when it waits for something no deadline
    /// brings; [`TestError::Busy`] as [`TestEnv::settle`].
    pub async fn run_until_finished<W: Workflow>(
        &self,
        id: WorkflowId,
    ) -> Result<W::Output, TestError> {
        loop {
            self.settle().await?;
            let all = self.snapshot().await?;
            let Some(target) = all.iter().find(|w| w.id == id) else {
                return Err(Error::WorkflowNotFound { workflow_id: id }.into());
            };
            if target.state.is_finished() {
                return Ok(self.engine.wait::<W>(id).await?);
            }
            if self.runnable(&all).next().is_some() {
                // Something became runnable since the settle (a signal
                // from outside): let it run first.
                continue;
            }
            let next = all
                .iter()
                .filter(|w| w.state == WorkflowState::Sleeping)
                .filter_map(|w| w.wake_at)
                .min();
            let Some(at) = next else {
                return Err(TestError::Stalled {
                    workflow_id: id,
                    state: target.state,
                });
            };
            let skip = u64::try_from(at - self.clock.now_ms()).unwrap_or(0);
            self.clock.advance(Duration::from_millis(skip));
            self.engine.core().env.runnable.notify_one();
        }
    }

    /// Every workflow, read at one moment: states read one by one could
    /// miss a workflow moving from one to another in between.
    async fn snapshot(&self) -> Result<Vec<WorkflowInfo>, TestError> {
        Ok(self
            .engine
            .list(ListFilter {
                limit: Some(LIST_ALL),
                ..ListFilter::default()
            })
            .await?)
    }

    /// The workflows of `all` that can run now: pending, running, or
    /// sleeping past their deadline.
    fn runnable<'a>(&self, all: &'a [WorkflowInfo]) -> impl Iterator<Item = WorkflowId> + 'a {
        let now = self.clock.now_ms();
        all.iter()
            .filter(move |w| match w.state {
                WorkflowState::Pending | WorkflowState::Running => true,
                WorkflowState::Sleeping => w.wake_at.is_some_and(|at| at <= now),
                _ => false,
            })
            .map(|w| w.id)
    }
}

/// `engine` reading a clock that runs `ahead` of the system's: a stand-in
/// for a machine whose clock is wrong, for tests of what such a worker may
/// and may not do. Call it before spawning workers of the engine.
pub fn clock_ahead(engine: Engine, ahead: Duration) -> Engine {
    let clock = Clock::skippable();
    clock.advance(ahead);
    engine.with_clock(clock)
}

/// Replays every `*.json` export (`octane wf export ID > FILE`) in `dir`
/// against the workflows registered in `engine`, for a `#[test]` that
/// keeps real histories as fixtures:
///
/// ```no_run
/// # async fn f(engine: octane::Engine) -> Result<(), octane::testing::TestError> {
/// let report = octane::testing::check_exports(&engine, "tests/histories").await?;
/// assert!(report.is_compatible(), "{report}");
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`TestError::Io`] when the directory or a file cannot be read; the
/// engine's [`Error::InvalidExport`] when a file is not an export.
pub async fn check_exports(
    engine: &Engine,
    dir: impl AsRef<Path>,
) -> Result<ReplayReport, TestError> {
    let dir = dir.as_ref();
    let io = |what: String| move |source| TestError::Io { what, source };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))? {
        let path = entry
            .map_err(io(format!("reading {}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut report = ReplayReport::default();
    for path in paths {
        let json =
            std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
        let export = WorkflowExport::from_json(&json).map_err(|e| match e {
            Error::InvalidExport { message } => Error::InvalidExport {
                message: format!("{}: {message}", path.display()),
            },
            other => other,
        })?;
        report.checks.push(engine.check_export(&export).await);
    }
    Ok(report)
}
