//! A loop's last checkpoint read straight from the store: how far an actor
//! has come, for programs that must not replay anything to ask.

use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::history::{Event, Location};
use crate::store::WorkflowId;
use crate::Engine;

/// The last checkpoint of a loop: see [`Engine::loop_state`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopState<S> {
    /// Where the loop is in its workflow's history.
    pub location: Location,
    /// Iterations completed when the checkpoint was taken.
    pub iteration: u64,
    /// The loop's state at that iteration.
    pub state: S,
    /// When the checkpoint was written (ms since the Unix epoch).
    pub recorded_at: i64,
}

impl Engine {
    /// The last checkpoint of the workflow's first unfinished loop (in
    /// history order, so the outermost of nested loops), read from the
    /// store in one query: nothing is replayed, no worker is involved. The
    /// iterations after the checkpoint, if any, are not in it; at most
    /// `commit_every` of them.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; [`Error::NoLoop`] when the workflow has
    /// no unfinished loop; [`Error::Decode`] (naming the loop's location)
    /// when the state does not deserialize into `S`; a store error.
    pub async fn loop_state<S: DeserializeOwned>(
        &self,
        id: WorkflowId,
    ) -> Result<LoopState<S>, Error> {
        let loops = self.loop_events(id).await?;
        let running = loops.iter().find(|e| !e.done);
        match running {
            Some(event) => decode(id, event),
            None => Err(Error::NoLoop {
                workflow_id: id,
                location: None,
            }),
        }
    }

    /// [`loop_state`](Self::loop_state) of the loop at `location`, e.g. an
    /// inner loop (its location as `octane wf show` prints it).
    ///
    /// # Errors
    /// As [`loop_state`](Self::loop_state); [`Error::NoLoop`] also when the
    /// loop at `location` has ended.
    pub async fn loop_state_at<S: DeserializeOwned>(
        &self,
        id: WorkflowId,
        location: &Location,
    ) -> Result<LoopState<S>, Error> {
        let loops = self.loop_events(id).await?;
        match loops.iter().find(|e| &e.location == location && !e.done) {
            Some(event) => decode(id, event),
            None => Err(Error::NoLoop {
                workflow_id: id,
                location: Some(location.clone()),
            }),
        }
    }

    async fn loop_events(&self, id: WorkflowId) -> Result<Vec<Event>, Error> {
        let loops = self.store().catalog().loop_events(id).await?;
        if loops.is_empty() {
            // Tell a workflow without loops from one that does not exist.
            self.get(id).await?;
        }
        Ok(loops)
    }
}

fn decode<S: DeserializeOwned>(id: WorkflowId, event: &Event) -> Result<LoopState<S>, Error> {
    let decode_error = |message: String| Error::Decode {
        workflow_id: id,
        location: event.location.clone(),
        what: "loop state".to_string(),
        message,
    };
    let json = event
        .data
        .as_deref()
        .ok_or_else(|| decode_error("no state is recorded".to_string()))?;
    Ok(LoopState {
        location: event.location.clone(),
        iteration: event.iteration,
        state: serde_json::from_str(json).map_err(|e| decode_error(e.to_string()))?,
        recorded_at: event.recorded_at,
    })
}
