//! A workflow's recorded history as a file: what `octane wf export` writes
//! and [`Engine::check_export`] replays, so real histories can be kept in a
//! repository and replayed against each change in its tests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::Error;
use crate::history::Event;
use crate::store::{WorkflowId, WorkflowState};

/// The format of [`WorkflowExport`] this build writes and reads.
pub const EXPORT_FORMAT: u32 = 1;

/// One workflow's active history with what replaying it needs: its name
/// and input. A loop's checkpoint (iteration and state) is among the
/// events, as the loop's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowExport {
    /// [`EXPORT_FORMAT`] when written.
    pub format: u32,
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// Its registered name.
    pub name: String,
    /// Its state when exported.
    pub state: WorkflowState,
    /// Its input.
    pub input: serde_json::Value,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Its active history (what replay reads), in history order: forgotten
    /// loop iterations are not part of it.
    pub events: Vec<Event>,
}

impl WorkflowExport {
    /// Reads an export from its JSON text.
    ///
    /// # Errors
    /// [`Error::InvalidExport`] when the text is not an export of a format
    /// this build reads.
    pub fn from_json(json: &str) -> Result<WorkflowExport, Error> {
        let export: WorkflowExport =
            serde_json::from_str(json).map_err(|e| Error::InvalidExport {
                message: e.to_string(),
            })?;
        if export.format != EXPORT_FORMAT {
            return Err(Error::InvalidExport {
                message: format!(
                    "format {} (this build reads format {EXPORT_FORMAT})",
                    export.format
                ),
            });
        }
        Ok(export)
    }

    /// The export as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an export always serializes")
    }
}

impl Engine {
    /// The active history of a workflow with its name and input, for
    /// [`Engine::check_export`] (`octane wf export ID > history.json`).
    /// Needs no registered workflow.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; [`Error::InvalidExport`] when its input
    /// is not JSON; a store error.
    pub async fn export(&self, id: WorkflowId) -> Result<WorkflowExport, Error> {
        let info = self.get(id).await?;
        let mut events = self.store().load_history(id).await?;
        events.sort_by(|a, b| a.location.cmp(&b.location));
        let input = serde_json::from_str(&info.input).map_err(|e| Error::InvalidExport {
            message: format!("workflow {id}: its stored input is not JSON: {e}"),
        })?;
        Ok(WorkflowExport {
            format: EXPORT_FORMAT,
            workflow_id: id,
            name: info.name,
            state: info.state,
            input,
            tags: info.tags,
            events,
        })
    }
}
