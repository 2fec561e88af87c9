//! Child workflows: start one, or start one and wait for its output.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use super::{encode, Interrupt, Step, WorkflowCtx};
use crate::clock::duration_ms;
use crate::ctx::Workflow;
use crate::error::Error;
use crate::history::{input_hash, Event, EventKind};
use crate::store::{
    DispatchKey, IfFinished, NewWorkflow, Suspend, Transition, WorkflowId, WorkflowState, WriteOp,
};

impl WorkflowCtx {
    /// Starts building a child workflow of type `W`:
    /// `ctx.workflow::<W>(input).tag(k, v).output().await`.
    pub fn workflow<W: Workflow>(&mut self, input: W::Input) -> Child<'_, W> {
        Child {
            ctx: self,
            input,
            tags: BTreeMap::new(),
            key: None,
            deadline: None,
            _type: PhantomData,
        }
    }
}

/// A child workflow about to start; see [`WorkflowCtx::workflow`].
#[must_use = "a child starts with `.dispatch().await` or `.output().await`"]
pub struct Child<'c, W: Workflow> {
    ctx: &'c mut WorkflowCtx,
    input: W::Input,
    tags: BTreeMap<String, String>,
    key: Option<String>,
    deadline: Option<std::time::Duration>,
    _type: PhantomData<fn() -> W>,
}

impl<W: Workflow> std::fmt::Debug for Child<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("parent", &self.ctx.workflow_id())
            .field("workflow", &W::NAME)
            .field("tags", &self.tags)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<W: Workflow> Child<'_, W> {
    /// Adds a tag to the child.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Starts the child only if no workflow of type `W` holds `key`, as
    /// [`Dispatch::key`](crate::Dispatch::key) does with the default
    /// [`IfFinished::Return`](crate::IfFinished::Return): the step's id is
    /// then the holder's, whichever workflow started it, finished or not.
    /// Any number of parents (or callers of `Engine::dispatch`) asking for
    /// one key share one child, and each that waits on its
    /// [`output`](Self::output) is woken when it finishes.
    ///
    /// The keyed child is created when the step first runs, before the
    /// step is recorded: a parent that crashes in between asks again on
    /// replay and is given the same child.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Cancels the child if it has not finished `after` from its start, as
    /// [`Dispatch::deadline`](crate::Dispatch::deadline) does; waiting on
    /// it then returns [`Error::ChildFailed`] saying the deadline passed.
    pub fn deadline(mut self, after: std::time::Duration) -> Self {
        self.deadline = Some(after);
        self
    }

    /// Adds tags to the child.
    pub fn tags<K: Into<String>, V: Into<String>>(
        mut self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.tags
            .extend(tags.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Starts the child and returns its id. The start is recorded together
    /// with the child's creation, so replay never starts it twice.
    ///
    /// # Errors
    /// A step error.
    pub async fn dispatch(self) -> Result<WorkflowId, Error> {
        let Child {
            ctx,
            input,
            tags,
            key,
            deadline,
            ..
        } = self;
        dispatch::<W>(ctx, input, tags, key, deadline).await
    }

    /// Starts the child and waits for its output. The outcome is recorded in
    /// this workflow's history when first seen, so replay never reads the
    /// child again (it may have been pruned).
    ///
    /// # Errors
    /// [`Error::ChildFailed`] when the child failed or was cancelled;
    /// [`Error::Yield`] while waiting; a step error.
    pub async fn output(self) -> Result<W::Output, Error> {
        let Child {
            ctx,
            input,
            tags,
            key,
            deadline,
            ..
        } = self;
        let child = dispatch::<W>(ctx, input, tags, key, deadline).await?;
        let (step, req) = ctx.resolve(EventKind::ChildOutput, W::NAME, 0)?;
        let location = match step {
            Step::Replay(e) if e.done => {
                if let Some(message) = e.error {
                    return Err(Error::ChildFailed {
                        workflow_id: ctx.workflow_id(),
                        child,
                        name: W::NAME,
                        message,
                    });
                }
                return ctx.decode(
                    format!("output of child `{}`", W::NAME),
                    &e.location,
                    e.data.as_deref(),
                );
            }
            Step::Replay(e) => e.location,
            Step::Live(location) => location,
        };
        let run = ctx.run().clone();
        let Some(info) = run.workflow(child).await? else {
            // The child's creation has landed (reads wait for it), so a
            // child that is not there was deleted — pruned before this
            // workflow got to record its outcome. That is its outcome.
            let message = format!(
                "child workflow {child} no longer exists: it was deleted before this workflow \
                 recorded its outcome (keep finished workflows longer than a parent may take \
                 to pick up its children's outcomes)"
            );
            let mut event = Event::new(location, &req);
            event.done = true;
            event.error = Some(message.clone());
            run.commit(vec![WriteOp::Put(event)], Transition::Continue)
                .await?;
            return Err(Error::ChildFailed {
                workflow_id: ctx.workflow_id(),
                child,
                name: W::NAME,
                message,
            });
        };
        if !info.state.is_finished() {
            run.interrupt(Interrupt::Suspend(Suspend {
                child: Some(child),
                ..Suspend::default()
            }));
            return Err(run.yield_error("waiting for a child workflow"));
        }
        let mut event = Event::new(location.clone(), &req);
        event.done = true;
        let outcome = match info.state {
            WorkflowState::Completed => {
                event.data = info.output.clone();
                Ok(())
            }
            state => {
                let message = info.error.clone().unwrap_or_else(|| state.to_string());
                event.error = Some(message.clone());
                Err(message)
            }
        };
        run.commit(vec![WriteOp::Put(event)], Transition::Continue)
            .await?;
        match outcome {
            Ok(()) => ctx.decode(
                format!("output of child `{}`", W::NAME),
                &location,
                info.output.as_deref(),
            ),
            Err(message) => Err(Error::ChildFailed {
                workflow_id: ctx.workflow_id(),
                child,
                name: W::NAME,
                message,
            }),
        }
    }
}

async fn dispatch<W: Workflow>(
    ctx: &mut WorkflowCtx,
    input: W::Input,
    tags: BTreeMap<String, String>,
    key: Option<String>,
    deadline: Option<std::time::Duration>,
) -> Result<WorkflowId, Error> {
    let input = encode(&format!("input of workflow `{}`", W::NAME), &input)?;
    let (step, req) = ctx.resolve(
        EventKind::ChildDispatch,
        W::NAME,
        input_hash(input.as_bytes()),
    )?;
    let location = match step {
        Step::Replay(e) => {
            return ctx.decode("child workflow id", &e.location, e.data.as_deref());
        }
        Step::Live(location) => location,
    };
    let run = ctx.run();
    let now = run.clock.now_ms();
    let child = NewWorkflow {
        id: WorkflowId::new(),
        name: W::NAME.to_string(),
        input,
        tags,
        now,
        parent: Some(run.workflow_id),
        key: key.map(|key| DispatchKey {
            key,
            if_finished: IfFinished::Return,
        }),
        deadline_at: deadline.map(|d| now.saturating_add(duration_ms(d))),
    };
    let record = |id: &WorkflowId| -> Result<WriteOp, Error> {
        Ok(WriteOp::Put(
            Event::new(location.clone(), &req).finished(encode("child workflow id", id)?),
        ))
    };
    if child.key.is_none() {
        // Created in the commit that records the step: replay finds the
        // step, so it never starts the child twice.
        let id = child.id;
        run.defer(record(&id)?);
        run.defer(WriteOp::CreateWorkflow(child));
        run.kick();
        return Ok(id);
    }
    // A keyed child is created now, because the step must record the
    // holder's id, which only the store knows. The key makes asking again
    // after a crash safe: it returns the same holder.
    let id = run.create_keyed(child).await?;
    run.defer(record(&id)?);
    run.kick();
    Ok(id)
}
