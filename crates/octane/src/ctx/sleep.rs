//! Durable timers.

use std::time::{Duration, SystemTime};

use super::{Interrupt, Step, WorkflowCtx};
use crate::clock::{duration_ms, to_ms};
use crate::error::Error;
use crate::history::{Event, EventKind};
use crate::store::{Suspend, WriteOp};

impl WorkflowCtx {
    /// Sleeps durably for `duration`.
    ///
    /// The deadline is recorded on the first run; replay waits for the
    /// recorded deadline, not a new one. A sleep shorter than the worker's
    /// in-memory threshold waits in memory; a longer one evicts the workflow
    /// (the step returns [`Error::Yield`]: propagate it with `?`), and a
    /// worker wakes it at the deadline, even after a restart.
    ///
    /// # Errors
    /// [`Error::Yield`] when the workflow leaves memory; a step error.
    pub async fn sleep(&mut self, duration: Duration) -> Result<(), Error> {
        let clock = self.run().clock.clone();
        self.sleep_step(move || clock.now_ms().saturating_add(duration_ms(duration)))
            .await
    }

    /// Sleeps durably until `deadline`; see [`WorkflowCtx::sleep`].
    ///
    /// # Errors
    /// [`Error::Yield`] when the workflow leaves memory; a step error.
    pub async fn sleep_until(&mut self, deadline: SystemTime) -> Result<(), Error> {
        self.sleep_step(|| to_ms(deadline)).await
    }

    async fn sleep_step(&mut self, deadline: impl FnOnce() -> i64) -> Result<(), Error> {
        let (step, req) = self.resolve(EventKind::Sleep, "", 0)?;
        let deadline: i64 = match step {
            Step::Replay(e) => self.decode("sleep deadline", &e.location, e.data.as_deref())?,
            Step::Live(location) => {
                let d = deadline();
                self.run().defer(WriteOp::Put(
                    Event::new(location, &req).finished(d.to_string()),
                ));
                d
            }
        };
        let run = self.run().clone();
        if run.is_check() {
            // A check waits for nothing: the steps after a recorded sleep
            // tell whether the code still fits.
            return Ok(());
        }
        let remaining =
            Duration::from_millis(u64::try_from(deadline - run.clock.now_ms()).unwrap_or(0));
        if remaining.is_zero() {
            return Ok(());
        }
        if remaining < run.config.sleep_in_memory_below {
            run.kick();
            tokio::select! {
                _ = tokio::time::sleep(remaining) => return Ok(()),
                _ = run.drain.cancelled() => {}
                _ = run.lost.cancelled() => {}
            }
        }
        run.interrupt(Interrupt::Suspend(Suspend {
            wake_at: Some(deadline),
            ..Suspend::default()
        }));
        Err(run.yield_error("sleeping until its deadline"))
    }
}
