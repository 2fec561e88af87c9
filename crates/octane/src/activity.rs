//! The [`Activity`] trait: where side effects live.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::history::Location;
use crate::store::WorkflowId;

/// A step with side effects, run at most once per successful record.
///
/// The activity value is its input: it is serialized and hashed, and on
/// replay a recorded activity with the same name and input returns its
/// recorded output without running. An activity that fails is retried per
/// [`Activity::retry`]; a panic counts as a failure. An activity whose
/// result was not yet committed when the worker died runs again, so
/// activities should be idempotent or tolerate a repeat.
///
/// ```
/// use octane::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct AddOne { value: u64 }
///
/// impl Activity for AddOne {
///     const NAME: &'static str = "add_one";
///     type Output = u64;
///     async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> {
///         Ok(self.value + 1)
///     }
/// }
/// ```
pub trait Activity: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The name recorded in history; renaming an activity diverges the
    /// history of running workflows that recorded the old name.
    const NAME: &'static str;
    /// The output, recorded as JSON.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Runs the activity once.
    fn run(&self, ctx: &ActivityCtx) -> impl Future<Output = anyhow::Result<Self::Output>> + Send;

    /// How failures are retried.
    fn retry() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// How long one attempt may take before it counts as failed.
    fn timeout() -> Duration {
        Duration::from_secs(300)
    }
}

/// What an activity knows about the attempt it is making.
#[derive(Clone, Debug)]
pub struct ActivityCtx {
    pub(crate) workflow_id: WorkflowId,
    pub(crate) location: Location,
    pub(crate) attempt: u32,
}

impl ActivityCtx {
    /// The workflow running the activity.
    pub fn workflow_id(&self) -> WorkflowId {
        self.workflow_id
    }

    /// Where the activity sits in the workflow's history.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// Exponential backoff with jitter for failing activities.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The delay after the first failure.
    pub initial_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// Each delay is the previous one times this.
    pub multiplier: f64,
    /// Each delay is shortened by up to this fraction at random, so that
    /// many workflows failing together do not retry in lockstep.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The default policy with `n` attempts in all.
    pub fn attempts(n: u32) -> Self {
        RetryPolicy {
            max_attempts: n.max(1),
            ..Self::default()
        }
    }

    /// This policy with another initial backoff.
    pub fn with_initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// The delay before attempt `failed + 1`, after `failed` failures:
    /// never longer than `max_backoff`, whatever the fields hold. A
    /// multiplier below 1 (or not a number) counts as 1, a jitter outside
    /// `0..=1` is clamped to it (not a number counts as 0).
    pub fn backoff(&self, failed: u32) -> Duration {
        let exp = i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX);
        let multiplier = if self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let base = self.initial_backoff.as_secs_f64() * multiplier.powi(exp);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let factor = 1.0 - rand::thread_rng().gen_range(0.0..=jitter);
        Duration::try_from_secs_f64(capped * factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(800));
        assert_eq!(p.backoff(30), Duration::from_secs(30));
    }

    #[test]
    fn no_policy_makes_backoff_panic() {
        let odd = [
            RetryPolicy {
                max_backoff: Duration::MAX,
                initial_backoff: Duration::MAX,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                multiplier: -3.0,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                multiplier: f64::NAN,
                jitter: f64::NAN,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                multiplier: f64::INFINITY,
                jitter: -1.0,
                ..RetryPolicy::default()
            },
        ];
        for p in odd {
            for failed in [0, 1, 2, 30, u32::MAX] {
                let d = p.backoff(failed);
                assert!(d <= p.max_backoff, "{p:?} after {failed}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_only_shortens() {
        let p = RetryPolicy::default();
        for _ in 0..100 {
            let d = p.backoff(3);
            assert!(d <= Duration::from_millis(400) && d >= Duration::from_millis(320));
        }
    }
}
