//! Changing the code of running workflows: version checks and removed steps.

use super::{Step, WorkflowCtx};
use crate::activity::Activity;
use crate::error::Error;
use crate::history::{Event, EventKind};
use crate::store::WriteOp;

impl WorkflowCtx {
    /// Lets old and new workflows take different paths after a code change.
    ///
    /// Returns `latest` for a workflow that reaches this point live (and
    /// records it, so its replays return `latest` too), the recorded value
    /// for one that recorded a check here, and `1` for one that recorded
    /// other steps here before the check existed. Nothing is recorded or
    /// consumed in that last case, so the old path replays untouched.
    ///
    /// ```no_run
    /// # use octane::prelude::*;
    /// # async fn f(ctx: &mut WorkflowCtx) -> Result<()> {
    /// if ctx.check_version(2)? >= 2 {
    ///     // new path
    /// } else {
    ///     // the path workflows started before the change still take
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A step error (yield).
    pub fn check_version(&mut self, latest: u32) -> Result<u32, Error> {
        self.run().boundary()?;
        let run = self.run().clone();
        match self.cursor.peek(&run.history) {
            Some(e) if e.kind == EventKind::VersionCheck => {
                let location = e.location.clone();
                let data = e.data.clone();
                self.cursor.skip();
                self.decode("version check", &location, data.as_deref())
            }
            Some(_) => Ok(1),
            None => {
                let (step, req) = self.resolve(EventKind::VersionCheck, "", 0)?;
                if let Step::Live(location) = step {
                    self.run().defer(WriteOp::Put(
                        Event::new(location, &req).finished(latest.to_string()),
                    ));
                }
                Ok(latest)
            }
        }
    }

    /// Stands in for an activity step deleted from the code, so that
    /// workflows that recorded it still replay.
    ///
    /// Consumes the recorded activity `A` if it is the next recorded step;
    /// otherwise does nothing (and takes no location).
    ///
    /// # Errors
    /// A step error (yield).
    pub fn removed<A: Activity>(&mut self) -> Result<(), Error> {
        self.run().boundary()?;
        let run = self.run().clone();
        if let Some(e) = self.cursor.peek(&run.history) {
            if e.kind == EventKind::Activity && e.name == A::NAME {
                self.cursor.skip();
            }
        }
        Ok(())
    }
}
