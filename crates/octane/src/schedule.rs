//! Schedules: a workflow started at each tick of a cron expression, read in
//! a time zone. Stored in the database, so a restart loses none; fired by
//! whichever worker looks first, each tick once.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::str::FromStr;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;

use crate::ctx::Workflow;
use crate::error::Error;
use crate::store::ScheduleInfo;
use crate::Engine;

/// The first tick of `cron` (read in `timezone`) strictly after `after_ms`.
pub(crate) fn next_tick(cron: &str, timezone: &str, after_ms: i64) -> Result<i64, String> {
    let schedule = cron::Schedule::from_str(cron).map_err(|e| {
        format!("`{cron}` is not a cron expression (sec min hour day month weekday [year]): {e}")
    })?;
    let tz = Tz::from_str(timezone).map_err(|_| format!("`{timezone}` is not a time zone"))?;
    let after = Utc
        .timestamp_millis_opt(after_ms)
        .single()
        .ok_or_else(|| format!("{after_ms} ms is out of range"))?
        .with_timezone(&tz);
    let next = schedule
        .after(&after)
        .next()
        .ok_or_else(|| format!("`{cron}` has no tick after {after}"))?;
    Ok(next.timestamp_millis())
}

impl Engine {
    /// Starts building a schedule named `name`: a workflow of type `W` with
    /// `input`, started at each tick of `cron` — six or seven fields, with
    /// seconds first (`"0 0 3 * * *"`: every day at 03:00), read in UTC
    /// unless [`ScheduleBuilder::timezone`] says otherwise. Awaiting it
    /// stores the schedule (replacing one of the same name).
    ///
    /// Each tick starts one workflow, however many workers run: a worker
    /// fires a tick by moving the schedule on from it in the same
    /// transaction that creates the workflow, tagged `schedule=<name>` and
    /// `tick=<ms>`. Ticks due while no worker ran are not all made up: the
    /// first worker back starts one run for the earliest missed tick, then
    /// carries on from the next tick after now. Workers look every 250 ms.
    ///
    /// ```no_run
    /// # use octane::prelude::*;
    /// # struct Report;
    /// # impl Workflow for Report {
    /// #     const NAME: &'static str = "report";
    /// #     type Input = String;
    /// #     type Output = ();
    /// #     async fn run(_: &mut WorkflowCtx, _: &String) -> Result<()> { Ok(()) }
    /// # }
    /// # async fn setup(engine: &Engine) -> Result<()> {
    /// engine
    ///     .schedule::<Report>("order-report", "0 0 7 * * Mon-Fri", "orders".into())
    ///     .timezone("Europe/Paris")
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn schedule<W: Workflow>(
        &self,
        name: impl Into<String>,
        cron: impl Into<String>,
        input: W::Input,
    ) -> ScheduleBuilder<'_, W> {
        ScheduleBuilder {
            engine: self,
            name: name.into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            input,
            _type: PhantomData,
        }
    }

    /// Every schedule, by name.
    ///
    /// # Errors
    /// A store error.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>, Error> {
        Ok(self.store().catalog().schedules().await?)
    }

    /// Stops a schedule starting workflows until [`resume_schedule`](Self::resume_schedule).
    ///
    /// # Errors
    /// [`Error::ScheduleNotFound`]; a store error.
    pub async fn pause_schedule(&self, name: &str) -> Result<(), Error> {
        self.set_paused(name, true, 0).await
    }

    /// Resumes a paused schedule from its next tick after now: ticks that
    /// fell in the pause are skipped.
    ///
    /// # Errors
    /// [`Error::ScheduleNotFound`]; [`Error::InvalidSchedule`] if its
    /// stored expression no longer parses; a store error.
    pub async fn resume_schedule(&self, name: &str) -> Result<(), Error> {
        let schedule = self
            .schedules()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::ScheduleNotFound { name: name.into() })?;
        let next = next_tick(&schedule.cron, &schedule.timezone, self.clock().now_ms()).map_err(
            |message| Error::InvalidSchedule {
                name: name.into(),
                message,
            },
        )?;
        self.set_paused(name, false, next).await
    }

    /// Deletes a schedule; the workflows it started stay.
    ///
    /// # Errors
    /// [`Error::ScheduleNotFound`]; a store error.
    pub async fn delete_schedule(&self, name: &str) -> Result<(), Error> {
        if self.store().catalog().delete_schedule(name.into()).await? {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound { name: name.into() })
        }
    }

    async fn set_paused(&self, name: &str, paused: bool, next_at: i64) -> Result<(), Error> {
        let found = self
            .store()
            .catalog()
            .pause_schedule(name.into(), paused, next_at)
            .await?;
        if found {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound { name: name.into() })
        }
    }
}

/// A schedule about to be stored; see [`Engine::schedule`].
#[must_use = "a schedule is stored when awaited"]
pub struct ScheduleBuilder<'e, W: Workflow> {
    engine: &'e Engine,
    name: String,
    cron: String,
    timezone: String,
    input: W::Input,
    _type: PhantomData<fn() -> W>,
}

impl<W: Workflow> std::fmt::Debug for ScheduleBuilder<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleBuilder")
            .field("name", &self.name)
            .field("workflow", &W::NAME)
            .field("cron", &self.cron)
            .field("timezone", &self.timezone)
            .finish_non_exhaustive()
    }
}

impl<W: Workflow> ScheduleBuilder<'_, W> {
    /// Reads the expression in this IANA time zone (`"Europe/Paris"`):
    /// 07:00 stays 07:00 local time across daylight saving changes.
    pub fn timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = timezone.into();
        self
    }
}

impl<'e, W: Workflow> IntoFuture for ScheduleBuilder<'e, W> {
    type Output = Result<ScheduleInfo, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'e>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let next_at = next_tick(&self.cron, &self.timezone, self.engine.clock().now_ms())
                .map_err(|message| Error::InvalidSchedule {
                    name: self.name.clone(),
                    message,
                })?;
            let input = serde_json::to_string(&self.input).map_err(|e| Error::Encode {
                what: format!("input of workflow `{}`", W::NAME),
                message: e.to_string(),
            })?;
            let schedule = ScheduleInfo {
                name: self.name,
                workflow: W::NAME.to_string(),
                input,
                cron: self.cron,
                timezone: self.timezone,
                next_at,
                paused: false,
                last_fired_at: None,
            };
            self.engine
                .store()
                .catalog()
                .put_schedule(schedule.clone())
                .await?;
            Ok(schedule)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::next_tick;

    #[test]
    fn ticks_follow_the_expression_in_its_time_zone() {
        // 2026-03-28 12:00:00 UTC, the day before Paris moves to summer time.
        let t = 1_774_699_200_000;
        let every_second = next_tick("* * * * * *", "UTC", t).unwrap();
        assert_eq!(every_second, t + 1_000, "strictly after");
        // 07:00 in Paris on the 29th is already summer time (UTC+2).
        let seven = next_tick("0 0 7 * * *", "Europe/Paris", t).unwrap();
        assert_eq!(seven, t + 17 * 3_600_000, "2026-03-29 05:00 UTC");
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let err = next_tick("every day", "UTC", 0).unwrap_err();
        assert!(
            err.contains("`every day` is not a cron expression"),
            "{err}"
        );
        let err = next_tick("0 0 7 * * *", "Mars/Olympus", 0).unwrap_err();
        assert!(err.contains("`Mars/Olympus` is not a time zone"), "{err}");
    }
}
