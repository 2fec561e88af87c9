//! Many worker processes on one PostgreSQL database: work is shared with
//! each step done once, a killed worker's workflows are taken over after
//! its leases expire, and a worker paused past its lease cannot write to a
//! workflow another worker took over.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::{ListFilter, WorkflowState};
use support::process::{child_db, spawn_child};
use support::{eventually, fast_worker, wait_output, TestDb};

/// Appends `key pid` to the log on every execution.
#[derive(Serialize, Deserialize)]
struct Logged {
    log: PathBuf,
    key: String,
    millis: u64,
}

impl Activity for Logged {
    const NAME: &'static str = "logged";
    type Output = u32;
    async fn run(&self, _ctx: &ActivityCtx) -> Result<u32> {
        append(&self.log, &format!("{} {}", self.key, std::process::id()))?;
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        if self.key.ends_with("/slow") {
            append(
                &self.log,
                &format!("{}-end {}", self.key, std::process::id()),
            )?;
        }
        Ok(std::process::id())
    }
    fn retry() -> RetryPolicy {
        RetryPolicy::never()
    }
}

/// One `write` per line: with `O_APPEND` it lands whole even when several
/// processes append at once.
fn append(log: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    f.write_all(format!("{line}\n").as_bytes())
}

#[derive(Serialize, Deserialize, Clone)]
struct JobInput {
    log: PathBuf,
    key: String,
    iterations: u64,
    millis: u64,
}

/// A loop with an activity per iteration, then a last activity.
struct Job;
impl Workflow for Job {
    const NAME: &'static str = "job";
    type Input = JobInput;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &JobInput) -> Result<u64> {
        let job = input.clone();
        let n = ctx
            .repeat(0u64)
            .commit_every(2)
            .run(move |ctx, i| {
                let job = job.clone();
                async move {
                    let key = format!("{}/{i}", job.key);
                    ctx.activity(Logged {
                        log: job.log,
                        key,
                        millis: job.millis,
                    })
                    .await?;
                    *i += 1;
                    Ok(if *i == job.iterations {
                        Loop::Break(*i)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await?;
        let key = format!("{}/done", input.key);
        ctx.activity(Logged {
            log: input.log.clone(),
            key,
            millis: 0,
        })
        .await?;
        Ok(n)
    }
}

/// One slow activity; returns the pid of the process whose result was
/// recorded.
struct Slow;
impl Workflow for Slow {
    const NAME: &'static str = "slow";
    type Input = PathBuf;
    type Output = u32;
    async fn run(ctx: &mut WorkflowCtx, log: &PathBuf) -> Result<u32> {
        Ok(ctx
            .activity(Logged {
                log: log.clone(),
                key: "x/slow".into(),
                millis: 2_000,
            })
            .await?)
    }
}

fn register(engine: Engine) -> Engine {
    engine.register::<Job>().register::<Slow>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by the multi-worker tests"]
async fn postgres_child_worker() {
    let Some(url) = child_db() else { return };
    let engine = register(Engine::open(&url).await.unwrap());
    let _worker = engine
        .worker()
        .concurrency(32)
        // Long enough that a heartbeat delayed by a busy machine (three
        // workers and the server on two cores) never lets a live worker's
        // lease lapse: then only the killed worker's steps may repeat.
        .lease_ttl(Duration::from_secs(3))
        .poll_interval(Duration::from_millis(50))
        .spawn();
    std::future::pending::<()>().await;
}

/// Child worker processes, killed when dropped.
struct Workers(Vec<Child>);

impl Workers {
    fn start(url: &str, n: usize) -> Workers {
        Workers(
            (0..n)
                .map(|_| spawn_child(url, "postgres_child_worker"))
                .collect(),
        )
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `key -> pids that ran it, in order`.
fn runs(log: &Path) -> HashMap<String, Vec<u32>> {
    let mut out: HashMap<String, Vec<u32>> = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let (key, pid) = line.rsplit_once(' ').unwrap();
        out.entry(key.to_string())
            .or_default()
            .push(pid.parse().unwrap());
    }
    out
}

async fn dispatch_jobs(
    engine: &Engine,
    log: &Path,
    n: usize,
    iterations: u64,
    millis: u64,
) -> Vec<(WorkflowId, String)> {
    let mut ids = Vec::new();
    for j in 0..n {
        let key = format!("job{j}");
        let input = JobInput {
            log: log.to_path_buf(),
            key: key.clone(),
            iterations,
            millis,
        };
        ids.push((engine.dispatch::<Job>(input).await.unwrap(), key));
    }
    ids
}

async fn wait_all_completed(engine: &Engine, n: usize, limit: Duration) {
    eventually("every workflow to complete", limit, || async {
        let done = engine
            .list(
                ListFilter::default()
                    .name("job")
                    .state(WorkflowState::Completed)
                    .limit(n + 1),
            )
            .await
            .unwrap()
            .len();
        (done == n).then_some(())
    })
    .await;
}

async fn three_worker_processes_share_300_workflows_each_step_once(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let engine = register(db.engine().await);
    let _workers = Workers::start(&db.url, 3);
    let ids = dispatch_jobs(&engine, &log, 300, 3, 0).await;
    wait_all_completed(&engine, 300, Duration::from_secs(120)).await;
    for (id, _) in &ids {
        assert_eq!(engine.wait::<Job>(*id).await.unwrap(), 3);
    }
    let runs = runs(&log);
    assert_eq!(runs.len(), 300 * 4, "every step ran");
    assert!(
        runs.values().all(|pids| pids.len() == 1),
        "no step ran twice"
    );
    let per_pid = runs
        .values()
        .fold(HashMap::<u32, usize>::new(), |mut m, p| {
            *m.entry(p[0]).or_default() += 1;
            m
        });
    assert!(per_pid.len() >= 2, "the work was shared: {per_pid:?}");
}

async fn a_killed_workers_workflows_finish_on_the_others(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let engine = register(db.engine().await);
    let mut workers = Workers::start(&db.url, 3);
    let n = 120;
    dispatch_jobs(&engine, &log, n, 5, 20).await;
    eventually("work to be under way", Duration::from_secs(60), || async {
        (runs(&log).len() >= 150).then_some(())
    })
    .await;
    let victim = workers.0[0].id();
    workers.0[0].kill().unwrap();
    workers.0[0].wait().unwrap();
    let killed_at = Instant::now();
    wait_all_completed(&engine, n, Duration::from_secs(120)).await;
    eprintln!(
        "takeover: all {n} workflows done {:?} after the kill",
        killed_at.elapsed()
    );
    let runs = runs(&log);
    assert_eq!(runs.len(), n * 6, "every step ran");
    for (key, pids) in &runs {
        assert!(pids.len() <= 2, "{key} ran {} times", pids.len());
        if pids.len() == 2 {
            assert_eq!(
                pids[0], victim,
                "{key} ran twice, but not because the killed worker was running it"
            );
        }
    }
}

async fn a_worker_paused_past_its_lease_cannot_write_to_a_workflow_taken_over(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let engine = register(db.engine().await);
    let mut paused = Workers::start(&db.url, 1);
    let paused_pid = paused.0[0].id();
    let id = engine.dispatch::<Slow>(log.clone()).await.unwrap();
    eventually(
        "the slow activity to start",
        Duration::from_secs(60),
        || async { runs(&log).contains_key("x/slow").then_some(()) },
    )
    .await;
    signal(paused_pid, "STOP");

    // This process takes over once the paused worker's lease expires.
    let worker = fast_worker(&engine);
    let me = std::process::id();
    eventually("the takeover", Duration::from_secs(30), || async {
        runs(&log)
            .get("x/slow")
            .is_some_and(|p| p.contains(&me))
            .then_some(())
    })
    .await;
    // Resumed while the new owner is still inside the activity: the paused
    // worker finishes its attempt and tries to record it.
    signal(paused_pid, "CONT");
    let recorded = wait_output::<Slow>(&engine, id).await;
    assert_eq!(recorded, me, "the result recorded is the new owner's");
    eventually(
        "the paused worker to finish its attempt",
        Duration::from_secs(30),
        || async {
            runs(&log)
                .get("x/slow-end")
                .is_some_and(|p| p.contains(&paused_pid))
                .then_some(())
        },
    )
    .await;
    let history = engine.history(id).await.unwrap();
    assert_eq!(history.len(), 1, "one record of the activity");
    assert_eq!(history[0].event.data, Some(me.to_string()));
    assert!(
        paused.0[0].try_wait().unwrap().is_none(),
        "the fenced-off worker is still running"
    );
    worker.shutdown().await;
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

// Postgres only: these exercise many processes sharing one server, which
// an embedded SQLite file does not aim at.
support::postgres_tests!(
    three_worker_processes_share_300_workflows_each_step_once,
    a_killed_workers_workflows_finish_on_the_others,
    a_worker_paused_past_its_lease_cannot_write_to_a_workflow_taken_over,
);
