//! Checking live workflows against new code before a deploy: a replay of
//! each active history in memory that says whether the code carries it on,
//! runs nothing and writes nothing; and the same check of histories kept as
//! files.

mod support;

use octane::history::{iteration_location, Coordinate, Location};
use octane::prelude::*;
use octane::{Error, ListFilter, ReplayCheck, Verdict, WorkflowExport, WorkflowState};
use support::{executions_with_prefix, unique, wait_output, wait_state, Step, TestDb};

#[derive(Serialize, Deserialize, Clone)]
struct Tally {
    total: u64,
}

/// The loop state of a later version: a field added without
/// `#[serde(default)]`, so stored checkpoints no longer decode.
#[derive(Serialize, Deserialize, Clone)]
struct TallyWithNote {
    total: u64,
    note: String,
}

#[derive(Serialize, Deserialize)]
struct Finish;
impl Signal for Finish {
    const NAME: &'static str = "finish";
}

/// The deployed step, renamed in a later version.
#[derive(Serialize, Deserialize)]
struct Counted {
    key: String,
}
impl Activity for Counted {
    const NAME: &'static str = "counted";
    type Output = u64;
    async fn run(&self, _: &ActivityCtx) -> Result<u64> {
        support::count(&self.key);
        Ok(1)
    }
}

/// A step a later version adds at the top of each iteration.
#[derive(Serialize, Deserialize)]
struct Audit {
    key: String,
}
impl Activity for Audit {
    const NAME: &'static str = "audit";
    type Output = ();
    async fn run(&self, _: &ActivityCtx) -> Result<()> {
        support::count(&self.key);
        Ok(())
    }
}

/// The iterations before the wait.
const WAITS_AT: u64 = 57;

/// How a version of the `tally` workflow takes iteration `i`'s step.
#[derive(Clone, Copy)]
enum Version {
    Deployed,
    Renamed,
    Audited,
}

/// Counts to [`WAITS_AT`] with a step per iteration, checkpointing every
/// 10, then waits for `finish` inside iteration 57.
async fn tally(ctx: &mut WorkflowCtx, key: &str, version: Version) -> Result<u64> {
    let key = key.to_string();
    ctx.repeat(Tally { total: 0 })
        .commit_every(10)
        .run(move |ctx, t| {
            let key = format!("{key}/{}", t.total);
            async move {
                if t.total == WAITS_AT {
                    ctx.listen::<Finish>().await?;
                    return Ok(Loop::Break(t.total));
                }
                t.total += match version {
                    Version::Deployed => ctx.activity(Step { key, value: 1 }).await?,
                    Version::Renamed => ctx.activity(Counted { key }).await?,
                    Version::Audited => {
                        ctx.v(2)
                            .activity(Audit {
                                key: format!("audit/{key}"),
                            })
                            .await?;
                        ctx.activity(Step { key, value: 1 }).await?
                    }
                };
                Ok(Loop::Continue)
            }
            .boxed()
        })
        .await
}

struct Deployed;
impl Workflow for Deployed {
    const NAME: &'static str = "tally";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        tally(ctx, key, Version::Deployed).await
    }
}

struct Renamed;
impl Workflow for Renamed {
    const NAME: &'static str = "tally";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        tally(ctx, key, Version::Renamed).await
    }
}

struct Audited;
impl Workflow for Audited {
    const NAME: &'static str = "tally";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        tally(ctx, key, Version::Audited).await
    }
}

struct Reshaped;
impl Workflow for Reshaped {
    const NAME: &'static str = "tally";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, _: &String) -> Result<u64> {
        ctx.repeat(TallyWithNote {
            total: 0,
            note: String::new(),
        })
        .commit_every(10)
        .run(|_, t| async move { Ok(Loop::Break(t.total)) }.boxed())
        .await
    }
}

/// The only check of a report, which must be of `id`.
fn only(checks: &[ReplayCheck], id: WorkflowId) -> &Verdict {
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].workflow_id, id);
    &checks[0].verdict
}

async fn the_check_says_which_code_carries_a_live_loop_on(db: TestDb) {
    let deployed = db.engine().await.register::<Deployed>();
    let worker = support::fast_worker(&deployed);
    let key = unique("tally");
    let id = deployed.dispatch::<Deployed>(key.clone()).await.unwrap();
    wait_state(&deployed, id, WorkflowState::Sleeping).await;
    worker.shutdown().await;
    assert_eq!(executions_with_prefix(&key).len() as u64, WAITS_AT);
    let before = deployed.get(id).await.unwrap();
    let history_before = deployed.history(id).await.unwrap();

    let loop_at = Location::root().child(Coordinate::new(1));
    let iteration = |i| iteration_location(&loop_at, i);
    let filter = ListFilter::default().name("tally");

    // Unchanged code: replay reaches the wait of iteration 57.
    let report = deployed.check_replay(filter.clone()).await.unwrap();
    assert!(report.is_compatible(), "{report}");
    match only(&report.checks, id) {
        Verdict::Compatible { at: Some(at) } => {
            assert!(at.starts_with(&iteration(WAITS_AT)), "{at}")
        }
        other => panic!("expected compatible, got {other:?}"),
    }
    assert_eq!(report.checks[0].state, WorkflowState::Sleeping);

    // The step renamed: diverged at the first step replay reads, iteration
    // 50's (the checkpoint's) activity.
    let renamed = db.engine().await.register::<Renamed>();
    let report = renamed.check_replay(filter.clone()).await.unwrap();
    assert!(!report.is_compatible());
    match only(&report.checks, id) {
        Verdict::Diverged {
            location,
            recorded,
            requested,
        } => {
            assert_eq!(location, &iteration(50).child(Coordinate::new(1)));
            assert!(recorded.contains("step"), "{recorded}");
            assert!(requested.contains("counted"), "{requested}");
        }
        other => panic!("expected diverged, got {other:?}"),
    }
    assert!(
        report.to_string().contains(&id.to_string()),
        "the report names the workflow: {report}"
    );

    // A step inserted under a higher version: the code carries on, the new
    // step is the first it would take live.
    let audited = db.engine().await.register::<Audited>();
    let report = audited.check_replay(filter.clone()).await.unwrap();
    match only(&report.checks, id) {
        Verdict::Compatible { at: Some(at) } => {
            assert!(at.starts_with(&iteration(50)), "{at}")
        }
        other => panic!("expected compatible, got {other:?}"),
    }

    // A field added to the loop state: its checkpoint does not decode.
    let reshaped = db.engine().await.register::<Reshaped>();
    let report = reshaped.check_replay(filter.clone()).await.unwrap();
    match only(&report.checks, id) {
        Verdict::Undecodable {
            location,
            what,
            message,
        } => {
            assert_eq!((location, what.as_str()), (&loop_at, "loop state"));
            assert!(message.contains("note"), "{message}");
        }
        other => panic!("expected undecodable, got {other:?}"),
    }

    // A deploy that no longer registers the workflow at all.
    let dropped = db.engine().await.register::<support::Sleeper>();
    let report = dropped.check_replay(filter.clone()).await.unwrap();
    assert_eq!(only(&report.checks, id), &Verdict::Unregistered);

    // No check ran an activity or wrote a row.
    assert_eq!(executions_with_prefix(&key).len() as u64, WAITS_AT);
    assert!(executions_with_prefix(&key).values().all(|&n| n == 1));
    assert!(executions_with_prefix(&format!("audit/{key}")).is_empty());
    let after = deployed.get(id).await.unwrap();
    assert_eq!(
        (after.state, after.updated_at, after.owner),
        (before.state, before.updated_at, before.owner)
    );
    assert_eq!(deployed.history(id).await.unwrap(), history_before);

    // Finished workflows are not checked; the checked one still runs on.
    let worker = support::fast_worker(&deployed);
    deployed.signal(Finish).to(id).await.unwrap();
    assert_eq!(wait_output::<Deployed>(&deployed, id).await, WAITS_AT);
    worker.shutdown().await;
    assert!(deployed
        .check_replay(filter)
        .await
        .unwrap()
        .checks
        .is_empty());
}

async fn exported_histories_replay_as_stored_ones_do(db: TestDb) {
    let deployed = db.engine().await.register::<Deployed>();
    let worker = support::fast_worker(&deployed);
    let id = deployed
        .dispatch::<Deployed>(unique("tally"))
        .await
        .unwrap();
    wait_state(&deployed, id, WorkflowState::Sleeping).await;
    worker.shutdown().await;

    // The export needs no registered workflow and survives its JSON form.
    let bare = db.engine().await;
    let export = bare.export(id).await.unwrap();
    assert_eq!((export.workflow_id, export.name.as_str()), (id, "tally"));
    let loop_record = export
        .events
        .iter()
        .find(|e| e.kind == octane::history::EventKind::Loop)
        .expect("the loop's checkpoint is exported");
    assert_eq!(loop_record.iteration, 50);
    let json = export.to_json();
    assert_eq!(WorkflowExport::from_json(&json).unwrap(), export);

    let renamed = db.engine().await.register::<Renamed>();
    for engine in [&deployed, &renamed] {
        let stored = engine
            .check_replay(ListFilter::default())
            .await
            .unwrap()
            .checks;
        assert_eq!(engine.check_export(&export).await, stored[0]);
    }

    // Fixtures in a directory, as a user's test keeps them.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tally.json"), &json).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a fixture").unwrap();
    let report = octane::testing::check_exports(&deployed, dir.path())
        .await
        .unwrap();
    assert!(report.is_compatible(), "{report}");
    assert_eq!(report.checks.len(), 1);
    let report = octane::testing::check_exports(&renamed, dir.path())
        .await
        .unwrap();
    assert!(!report.is_compatible(), "{report}");

    // A file that is not an export is an error naming it, not a verdict.
    std::fs::write(dir.path().join("broken.json"), "{\"format\": 1}").unwrap();
    let err = octane::testing::check_exports(&deployed, dir.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("broken.json"), "{err}");
    let err =
        WorkflowExport::from_json(&json.replace("\"format\": 1", "\"format\": 99")).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidExport { message } if message.contains("format 99")),
        "{err}"
    );
    assert!(matches!(
        bare.export(WorkflowId::new()).await,
        Err(Error::WorkflowNotFound { .. })
    ));
}

/// A slow step, so the worker is mid-run while the check reads.
#[derive(Serialize, Deserialize)]
struct Slow {
    key: String,
}
impl Activity for Slow {
    const NAME: &'static str = "slow";
    type Output = u64;
    async fn run(&self, _: &ActivityCtx) -> Result<u64> {
        support::count(&self.key);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        Ok(1)
    }
}

struct Busy;
impl Workflow for Busy {
    const NAME: &'static str = "busy";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let key = key.clone();
        ctx.repeat(0u64)
            .commit_every(4)
            .retain(8)
            .run(move |ctx, n| {
                let key = format!("{key}/{n}");
                async move {
                    *n += ctx.activity(Slow { key }).await?;
                    Ok(if *n == 40 {
                        Loop::Break(*n)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

async fn the_check_runs_beside_a_busy_worker_without_disturbing_it(db: TestDb) {
    let engine = db.engine().await.register::<Busy>();
    let prefix = unique("busy");
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            engine
                .dispatch::<Busy>(format!("{prefix}/{i}"))
                .await
                .unwrap(),
        );
    }
    let worker = support::fast_worker(&engine);
    let checker = db.engine().await.register::<Busy>();
    let mut checked_live = 0;
    loop {
        let report = checker.check_replay(ListFilter::default()).await.unwrap();
        assert!(report.is_compatible(), "{report}");
        checked_live += report.checks.len();
        if report.checks.is_empty() {
            break;
        }
    }
    assert!(checked_live > 0, "the check saw the workflows running");
    for id in &ids {
        assert_eq!(wait_output::<Busy>(&engine, *id).await, 40);
    }
    worker.shutdown().await;
    let executions = executions_with_prefix(&prefix);
    assert_eq!(executions.len(), 12 * 40);
    assert!(
        executions.values().all(|&n| n == 1),
        "every step ran once: {executions:?}"
    );
}

support::store_tests!(
    the_check_says_which_code_carries_a_live_loop_on,
    exported_histories_replay_as_stored_ones_do,
    the_check_runs_beside_a_busy_worker_without_disturbing_it,
);
