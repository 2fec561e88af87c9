//! A loop's last checkpoint read straight from the store: how far an actor
//! has come, for programs that must not replay anything to ask.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use crate::engine::HistoryEntry;
use crate::error::Error;
use crate::history::{iteration_of, Event, EventKind, Location};
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

/// One loop as a workflow's stored history tells it: where it is, how much
/// of it is forgotten, its state. What `octane wf show` and the dashboard
/// print; see [`LoopSummary::of`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoopSummary {
    /// Where the loop is in its workflow's history.
    pub location: Location,
    /// Whether it has ended (then `data` is its output).
    pub done: bool,
    /// The iteration of its checkpoint (its last, once done).
    pub checkpoint: u64,
    /// The iteration under way: the last one that recorded a step since the
    /// checkpoint, or the checkpoint's own.
    pub current: u64,
    /// Iterations forgotten: every one before the checkpoint.
    pub forgotten: u64,
    /// How many of the forgotten iterations are still stored (`retain`).
    pub retained: u64,
    /// The state at the checkpoint (the output once done), as JSON.
    pub data: Option<String>,
}

impl LoopSummary {
    /// The loops of a history as [`Engine::history`] returns it, in history
    /// order.
    pub fn of(history: &[HistoryEntry]) -> Vec<LoopSummary> {
        history
            .iter()
            .filter(|h| !h.forgotten && h.event.kind == EventKind::Loop)
            .map(|h| {
                let e = &h.event;
                let iterations = |forgotten: bool| {
                    history
                        .iter()
                        .filter(move |o| o.forgotten == forgotten)
                        .filter_map(|o| iteration_of(&e.location, &o.event.location))
                };
                let retained: BTreeSet<u64> = iterations(true).collect();
                let current = if e.done {
                    e.iteration
                } else {
                    iterations(false)
                        .max()
                        .unwrap_or(e.iteration)
                        .max(e.iteration)
                };
                LoopSummary {
                    location: e.location.clone(),
                    done: e.done,
                    checkpoint: e.iteration,
                    current,
                    forgotten: e.iteration,
                    retained: retained.len() as u64,
                    data: e.data.clone(),
                }
            })
            .collect()
    }
}
