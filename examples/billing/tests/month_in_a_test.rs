//! A month of the billing service's workflow time, in a test: the clock of
//! `octane::testing::TestEnv` skips to each deadline.

use std::time::{Duration, Instant};

use billing::{Meter, MeterInput, Trial, Usage, HOUR};
use octane::testing::TestEnv;
use octane::WorkflowState;

#[tokio::test]
async fn a_trial_ends_thirty_days_later() {
    let env = TestEnv::start(billing::register).await.unwrap();
    let start = env.now();
    let id = env.engine().dispatch::<Trial>("ada".into()).await.unwrap();

    env.advance(29 * 24 * HOUR).await.unwrap();
    let info = env.engine().get(id).await.unwrap();
    assert_eq!(info.state, WorkflowState::Sleeping, "not yet");

    let real = Instant::now();
    let told = env.run_until_finished::<Trial>(id).await.unwrap();
    assert_eq!(told, "ada: your trial has ended");
    let waited = env.now().duration_since(start).unwrap();
    assert!(waited >= 30 * 24 * HOUR, "{waited:?}");
    println!("the last day of the trial took {:?}", real.elapsed());
}

#[tokio::test]
async fn a_meter_reads_a_thousand_hours() {
    let env = TestEnv::start(billing::register).await.unwrap();
    let real = Instant::now();
    let id = env
        .engine()
        .dispatch::<Meter>(MeterInput {
            customer: "ada".into(),
            hours: 1_000,
        })
        .await
        .unwrap();
    let usage = env.run_until_finished::<Meter>(id).await.unwrap();
    let expected: u64 = (0..1_000).map(|h| h % 7).sum();
    assert_eq!(
        usage,
        Usage {
            hours: 1_000,
            units: expected
        }
    );
    let elapsed = real.elapsed();
    println!("1,000 hourly iterations took {elapsed:?}");
    // Generous, so a slow machine does not fail it: the figure is printed.
    assert!(elapsed < Duration::from_secs(120), "{elapsed:?}");
}
