//! The [`Workflow`] trait: deterministic orchestration code.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::WorkflowCtx;

/// A durable workflow.
///
/// `run` is replayed from the top whenever the workflow is loaded into a
/// worker (after a crash, a sleep, an eviction), so it must be
/// deterministic apart from the steps it takes through `ctx`: no clocks,
/// randomness, I/O or global state outside `ctx` — use an activity, or
/// `ctx.now()` / `ctx.uuid()`, which are recorded.
///
/// Implementations may write `async fn run(...)`; the future must be `Send`
/// because workers run workflows on a multi-threaded runtime.
///
/// ```
/// use octane::prelude::*;
///
/// struct Greet;
/// impl Workflow for Greet {
///     const NAME: &'static str = "greet";
///     type Input = String;
///     type Output = String;
///     async fn run(_ctx: &mut WorkflowCtx, name: &String) -> Result<String> {
///         Ok(format!("hello, {name}"))
///     }
/// }
/// ```
pub trait Workflow: Send + Sync + 'static {
    /// The name under which the workflow is stored and dispatched. Changing
    /// it orphans stored workflows of the old name.
    const NAME: &'static str;
    /// The input, stored as JSON at dispatch.
    type Input: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The output, stored as JSON at completion.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The workflow's code.
    fn run(
        ctx: &mut WorkflowCtx,
        input: &Self::Input,
    ) -> impl Future<Output = anyhow::Result<Self::Output>> + Send;
}
