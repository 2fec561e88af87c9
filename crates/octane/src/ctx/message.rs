//! Publishing ephemeral messages from a workflow.

use std::collections::BTreeMap;

use super::{encode, Step, WorkflowCtx};
use crate::error::Error;
use crate::history::{input_hash, Event, EventKind};
use crate::message::Message;
use crate::store::Broadcast;
use crate::store::WriteOp;

impl WorkflowCtx {
    /// Starts publishing a message: `ctx.msg(m).tags(tags).send().await`.
    pub fn msg<M: Message>(&mut self, message: M) -> MessageSend<'_, M> {
        MessageSend {
            ctx: self,
            message,
            tags: BTreeMap::new(),
        }
    }
}

/// A message about to be published; see [`WorkflowCtx::msg`].
#[must_use = "a message is published by `.send().await`"]
pub struct MessageSend<'c, M> {
    ctx: &'c mut WorkflowCtx,
    message: M,
    tags: BTreeMap<String, String>,
}

impl<M> std::fmt::Debug for MessageSend<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSend")
            .field("workflow_id", &self.ctx.workflow_id())
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl<M: Message> MessageSend<'_, M> {
    /// Tags subscribers filter on.
    pub fn tags<K: Into<String>, V: Into<String>>(
        mut self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.tags
            .extend(tags.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Publishes the message to current subscribers. It is recorded as sent,
    /// so replay does not publish it again.
    ///
    /// # Errors
    /// A step error.
    pub async fn send(self) -> Result<(), Error> {
        let body = encode(&format!("message `{}`", M::NAME), &self.message)?;
        let tags = encode("message tags", &self.tags)?;
        let hash = input_hash(format!("{tags}\n{body}").as_bytes());
        let (step, req) = self.ctx.resolve(EventKind::Message, M::NAME, hash)?;
        if let Step::Live(location) = step {
            let run = self.ctx.run().clone();
            run.publish(Broadcast {
                name: M::NAME.to_string(),
                tags: self.tags,
                body,
            })
            .await?;
            run.defer(WriteOp::Put(
                Event::new(location, &req).finished("null".into()),
            ));
        }
        Ok(())
    }
}
