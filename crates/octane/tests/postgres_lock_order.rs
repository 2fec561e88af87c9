//! Postgres: transactions that lock several workflow rows — a signal to
//! another workflow, a child finishing and waking its parent, a lease
//! renewal — take them in one order, so workflows that signal each other
//! at the same moment never deadlock; and leases run on the database's
//! clock, so a worker whose clock is wrong steals none.

mod support;

use std::time::{Duration, Instant};

use octane::prelude::*;
use octane::{Error, WorkflowState};
use support::{count, executions, unique, wait_output, TestDb};

/// Deadlocks the server has detected in this database so far. Each backend
/// reports its counters within a second of going idle.
async fn deadlocks(db: &TestDb) -> i64 {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[derive(Serialize, Deserialize, Signal)]
struct Ball {
    round: u64,
}

#[derive(Serialize, Deserialize, Clone)]
struct Side {
    pair: u64,
    me: String,
    partner: String,
    rounds: u64,
}

/// Each round: send the partner a ball, then wait for the partner's — both
/// sides send at the same moment.
struct Player;
impl Workflow for Player {
    const NAME: &'static str = "player";
    type Input = Side;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, side: &Side) -> Result<u64> {
        let side = side.clone();
        ctx.repeat(0u64)
            .commit_every(1)
            .run(move |ctx, round| {
                let side = side.clone();
                async move {
                    ctx.signal(Ball { round: *round })
                        .to_tags([("pair", side.pair.to_string()), ("side", side.partner)])
                        .send()
                        .await?;
                    let ball = ctx.listen::<Ball>().await?;
                    anyhow::ensure!(ball.round == *round, "ball {} in round {round}", ball.round);
                    *round += 1;
                    Ok(if *round == side.rounds {
                        Loop::Break(*round)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

async fn pairs_signalling_each_other_at_once_never_deadlock(db: TestDb) {
    const PAIRS: u64 = 64;
    const ROUNDS: u64 = 20;
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Player>();
    let before = deadlocks(&db).await;
    // Every player is there before the first ball is thrown.
    let mut ids = Vec::new();
    for pair in 0..PAIRS {
        for (me, partner) in [("a", "b"), ("b", "a")] {
            let side = Side {
                pair,
                me: me.into(),
                partner: partner.into(),
                rounds: ROUNDS,
            };
            let id = engine
                .dispatch::<Player>(side)
                .tag("pair", pair.to_string())
                .tag("side", me)
                .await
                .unwrap();
            ids.push(id);
        }
    }
    let started = Instant::now();
    let worker = engine
        .worker()
        .concurrency(2 * PAIRS as usize)
        .lease_ttl(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(50))
        .spawn();
    for id in &ids {
        assert_eq!(wait_output::<Player>(&engine, *id).await, ROUNDS);
    }
    let took = started.elapsed();
    worker.shutdown().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        deadlocks(&db).await - before,
        0,
        "deadlocks detected while {} workflows signalled each other ({took:?})",
        ids.len()
    );
}

#[derive(Serialize, Deserialize, Signal)]
struct Poke;

/// Takes `n` pokes, then finishes.
struct Poked;
impl Workflow for Poked {
    const NAME: &'static str = "poked";
    type Input = u64;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, n: &u64) -> Result<u64> {
        for _ in 0..*n {
            ctx.listen::<Poke>().await?;
        }
        Ok(*n)
    }
}

/// Starts a child and pokes it until it has finished (a poke to a finished
/// child is refused): the child's finish, which locks the parent to wake
/// it, meets the parent's pokes, which lock the child.
struct Poker;
impl Workflow for Poker {
    const NAME: &'static str = "poker";
    type Input = String;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<u64> {
        let child = ctx.workflow::<Poked>(5).dispatch().await?;
        let key = key.clone();
        ctx.repeat(0u64)
            .commit_every(1)
            .run(move |ctx, sent| {
                let key = key.clone();
                async move {
                    count(&format!("{key}/poke"));
                    match ctx.signal(Poke).to(child).send().await {
                        Ok(()) => {
                            *sent += 1;
                            Ok(Loop::Continue)
                        }
                        Err(Error::SignalRejected { .. }) => Ok(Loop::Break(*sent)),
                        Err(e) => Err(e.into()),
                    }
                }
                .boxed()
            })
            .await
    }
}

async fn parents_signalling_finishing_children_never_deadlock(db: TestDb) {
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Poker>()
        .register::<Poked>();
    let before = deadlocks(&db).await;
    let worker = engine
        .worker()
        .concurrency(128)
        .lease_ttl(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(50))
        .spawn();
    let key = unique("poker");
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            engine
                .dispatch::<Poker>(format!("{key}/{i}"))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        assert!(
            wait_output::<Poker>(&engine, *id).await >= 5,
            "pokes until the child finished"
        );
    }
    worker.shutdown().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(deadlocks(&db).await - before, 0);
    assert!(executions(&format!("{key}/0/poke")) >= 6);
}

/// Holds its lease through a long activity.
#[derive(Serialize, Deserialize)]
struct Slow {
    key: String,
}
impl Activity for Slow {
    const NAME: &'static str = "slow";
    type Output = ();
    async fn run(&self, _: &ActivityCtx) -> Result<()> {
        count(&self.key);
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    }
}

struct Patient;
impl Workflow for Patient {
    const NAME: &'static str = "patient";
    type Input = String;
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, key: &String) -> Result<()> {
        ctx.activity(Slow { key: key.clone() }).await?;
        Ok(())
    }
}

async fn a_worker_whose_clock_runs_an_hour_ahead_steals_no_lease(db: TestDb) {
    let engine = db.engine().await.register::<Patient>();
    let honest = engine
        .worker()
        .lease_ttl(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let key = unique("patient");
    let id = engine.dispatch::<Patient>(key.clone()).await.unwrap();
    support::eventually("the activity to start", Duration::from_secs(30), || async {
        (executions(&key) == 1).then_some(())
    })
    .await;
    let ahead = octane::testing::clock_ahead(
        db.engine().await.register::<Patient>(),
        Duration::from_secs(3600),
    );
    let skewed = ahead
        .worker()
        .lease_ttl(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    wait_output::<Patient>(&engine, id).await;
    assert_eq!(
        executions(&key),
        1,
        "the worker ahead took the lease and ran the activity again"
    );
    skewed.shutdown().await;
    honest.shutdown().await;
    assert_eq!(
        engine.get(id).await.unwrap().state,
        WorkflowState::Completed
    );
}

support::postgres_tests!(
    pairs_signalling_each_other_at_once_never_deadlock,
    parents_signalling_finishing_children_never_deadlock,
    a_worker_whose_clock_runs_an_hour_ahead_steals_no_lease,
);
