//! The registered workflows, with their types erased: what a worker needs
//! to run a workflow it knows only by name.

use std::collections::HashMap;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::ctx::Workflow;
use crate::ctx::WorkflowCtx;

/// How a registered workflow's run failed before or after its code.
pub(crate) enum RunError {
    /// The stored input does not deserialize.
    Input(String),
    /// The code returned an error (or the output does not serialize).
    Workflow(anyhow::Error),
}

type RunFn = fn(WorkflowCtx, String) -> BoxFuture<'static, Result<String, RunError>>;
type CheckFn = fn(&str) -> Result<(), String>;

#[derive(Clone, Copy)]
pub(crate) struct Registered {
    pub name: &'static str,
    pub run: RunFn,
    pub check_input: CheckFn,
}

/// Workflows by name.
#[derive(Clone, Default)]
pub(crate) struct Registry(HashMap<&'static str, Registered>);

impl Registry {
    pub(crate) fn insert<W: Workflow>(&mut self) {
        self.0.insert(
            W::NAME,
            Registered {
                name: W::NAME,
                run: run_erased::<W>,
                check_input: check_input::<W>,
            },
        );
    }

    pub(crate) fn get(&self, name: &str) -> Option<Registered> {
        self.0.get(name).copied()
    }

    /// The registered names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    }
}

fn run_erased<W: Workflow>(
    mut ctx: WorkflowCtx,
    input: String,
) -> BoxFuture<'static, Result<String, RunError>> {
    async move {
        let input: W::Input =
            serde_json::from_str(&input).map_err(|e| RunError::Input(e.to_string()))?;
        let output = W::run(&mut ctx, &input).await.map_err(RunError::Workflow)?;
        serde_json::to_string(&output).map_err(|e| RunError::Workflow(e.into()))
    }
    .boxed()
}

fn check_input<W: Workflow>(json: &str) -> Result<(), String> {
    serde_json::from_str::<W::Input>(json)
        .map(drop)
        .map_err(|e| e.to_string())
}
