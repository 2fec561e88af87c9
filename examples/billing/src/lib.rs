//! The workflows of an example billing service: a free trial that ends
//! after 30 days, and a meter read every hour for ever (here, for a given
//! number of hours).
//!
//! `tests/` shows how a service tests such workflows with
//! `octane::testing` (a month of workflow time in milliseconds), and
//! `billing check-deploy` how it checks a new build against the live
//! workflows in production before rolling it out.

use std::time::Duration;

use octane::prelude::*;
use octane::Engine;

/// An hour of workflow time.
pub const HOUR: Duration = Duration::from_secs(3600);

/// Registers every workflow of the service: the one list both the workers
/// and `check-deploy` use, so the check sees exactly the deployed code.
pub fn register(engine: Engine) -> Engine {
    engine.register::<Trial>().register::<Meter>()
}

/// Tells a customer their trial ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrialEnded {
    /// The customer.
    pub customer: String,
}

impl Activity for TrialEnded {
    const NAME: &'static str = "trial_ended";
    type Output = String;
    async fn run(&self, _: &ActivityCtx) -> Result<String> {
        Ok(format!("{}: your trial has ended", self.customer))
    }
}

/// A free trial: 30 days, then the customer is told.
#[derive(Debug)]
pub struct Trial;

impl Workflow for Trial {
    const NAME: &'static str = "trial";
    type Input = String;
    type Output = String;
    async fn run(ctx: &mut WorkflowCtx, customer: &String) -> Result<String> {
        ctx.sleep(30 * 24 * HOUR).await?;
        ctx.activity(TrialEnded {
            customer: customer.clone(),
        })
        .await
        .map_err(Into::into)
    }
}

/// Reads a customer's meter.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadMeter {
    /// The customer.
    pub customer: String,
    /// The hour of the reading.
    pub hour: u64,
}

impl Activity for ReadMeter {
    const NAME: &'static str = "read_meter";
    type Output = u64;
    async fn run(&self, _: &ActivityCtx) -> Result<u64> {
        // A stand-in for a call to the metering service.
        Ok(self.hour % 7)
    }
}

/// What a meter has read so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Hours read.
    pub hours: u64,
    /// Units used.
    pub units: u64,
}

/// How long a meter runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeterInput {
    /// The customer.
    pub customer: String,
    /// Hours to read before the workflow ends.
    pub hours: u64,
}

/// Reads the meter every hour, checkpointing daily and keeping two days of
/// history.
#[derive(Debug)]
pub struct Meter;

impl Workflow for Meter {
    const NAME: &'static str = "meter";
    type Input = MeterInput;
    type Output = Usage;
    async fn run(ctx: &mut WorkflowCtx, input: &MeterInput) -> Result<Usage> {
        let input = input.clone();
        ctx.repeat(Usage::default())
            .commit_every(24)
            .retain(48)
            .run(move |ctx, usage| {
                let customer = input.customer.clone();
                let hours = input.hours;
                async move {
                    if usage.hours == hours {
                        return Ok(Loop::Break(usage.clone()));
                    }
                    ctx.sleep(HOUR).await?;
                    usage.units += ctx
                        .activity(ReadMeter {
                            customer,
                            hour: usage.hours,
                        })
                        .await?;
                    usage.hours += 1;
                    Ok(Loop::Continue)
                }
                .boxed()
            })
            .await
    }
}
