//! A loop workflow shared by the loop tests, and helpers to inspect loops.

use std::collections::BTreeSet;

use octane::history::{iteration_of, Coordinate, Location};
use octane::prelude::*;

use super::Step;

/// What `CountingLoop` does.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Counting {
    /// Counter key prefix; iteration `i`'s activity counts under `{key}/{i}`.
    pub key: String,
    /// Iterations before `Break`.
    pub iterations: u64,
    pub commit_every: u64,
    pub retain: u64,
    /// Iteration `i` runs an activity when `i % active_every == 0`.
    pub active_every: u64,
}

impl Counting {
    pub(crate) fn new(key: &str, iterations: u64, commit_every: u64) -> Self {
        Counting {
            key: key.to_string(),
            iterations,
            commit_every,
            retain: 0,
            active_every: 1,
        }
    }

    /// The output of an uninterrupted run.
    pub(crate) fn expected(&self) -> u64 {
        (0..self.iterations)
            .filter(|i| i % self.active_every == 0)
            .sum()
    }

    /// The counter keys of every activity the loop runs.
    pub(crate) fn activity_keys(&self) -> Vec<String> {
        (0..self.iterations)
            .filter(|i| i % self.active_every == 0)
            .map(|i| format!("{}/{i}", self.key))
            .collect()
    }
}

/// Sums `i` over its iterations, one activity per active iteration.
pub(crate) struct CountingLoop;

impl Workflow for CountingLoop {
    const NAME: &'static str = "counting_loop";
    type Input = Counting;
    type Output = u64;
    async fn run(ctx: &mut WorkflowCtx, input: &Counting) -> Result<u64> {
        let c = input.clone();
        ctx.repeat((0u64, 0u64))
            .commit_every(c.commit_every)
            .retain(c.retain)
            .run(move |ctx, (i, sum)| {
                let c = c.clone();
                async move {
                    if *i % c.active_every == 0 {
                        *sum += ctx
                            .activity(Step {
                                key: format!("{}/{i}", c.key),
                                value: *i,
                            })
                            .await?;
                    }
                    *i += 1;
                    Ok(if *i == c.iterations {
                        Loop::Break(*sum)
                    } else {
                        Loop::Continue
                    })
                }
                .boxed()
            })
            .await
    }
}

/// The location of a workflow's first root step (where a top-level loop
/// sits).
pub(crate) fn first_step() -> Location {
    Location::root().child(Coordinate::new(1))
}

/// The iterations of the loop at `loop_location` that have events in the
/// active (not forgotten) history.
pub(crate) async fn active_iterations(
    engine: &Engine,
    id: WorkflowId,
    loop_location: &Location,
) -> BTreeSet<u64> {
    engine
        .history(id)
        .await
        .unwrap()
        .iter()
        .filter(|h| !h.forgotten)
        .filter_map(|h| iteration_of(loop_location, &h.event.location))
        .collect()
}
