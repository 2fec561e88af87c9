//! The life of a workflow row, written once for every backend: for each
//! transition a commit makes, each operator control and each wake-up, the
//! state it moves to, which columns change, and what goes with it (the lease
//! released, pending signals dropped, waiting workflows woken, a wait checked
//! at once). Each backend renders a [`Change`] into its own SQL with
//! [`Change::set_clause`] and binds the [`Values`] it names.

use super::{Control, StoreError, Transition, WorkflowState};

/// A value a change binds; each backend supplies it in its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    /// The commit's clock.
    Now,
    /// A suspended workflow's deadline.
    WakeAt,
    /// The signal names a suspended workflow listens for (JSON).
    Listening,
    /// The child a suspended workflow waits for.
    Child,
    /// A completed workflow's output.
    Output,
    /// The error of a failed, parked or cancelled workflow.
    Error,
    /// Why the engine parked it.
    Code,
}

/// What becomes of one column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Set {
    Keep,
    Clear,
    To(Param),
}

/// One change of a workflow row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub state: WorkflowState,
    pub wake_at: Set,
    pub listening: Set,
    pub waiting_child: Set,
    pub output: Set,
    pub error: Set,
    pub error_code: Set,
    /// The lease is handed back (owner and expiry cleared).
    pub release_lease: bool,
    /// Pending signals are deleted: nobody will consume them.
    pub drop_signals: bool,
    /// The workflows sleeping until this one finishes (its parent, any
    /// other given it by a dispatch key) are made runnable.
    pub wake_waiters: bool,
    /// A wait that already holds (a signal pending, the child finished)
    /// makes the workflow runnable at once, in the same transaction.
    pub check_waits: bool,
}

/// A sleeping workflow made runnable by what it waited for, or a parked
/// one by an operator: pending now, its waits cleared.
pub(crate) const RUNNABLE: Change = Change {
    state: WorkflowState::Pending,
    wake_at: Set::To(Param::Now),
    listening: Set::Clear,
    waiting_child: Set::Clear,
    output: Set::Keep,
    error: Set::Keep,
    error_code: Set::Keep,
    release_lease: false,
    drop_signals: false,
    wake_waiters: false,
    check_waits: false,
};

/// The workflow's own end (complete, fail, cancel): everything a finish
/// does besides its result columns.
const FINISHED: Change = Change {
    state: WorkflowState::Completed,
    wake_at: Set::Clear,
    listening: Set::Clear,
    waiting_child: Set::Clear,
    output: Set::Keep,
    error: Set::Clear,
    error_code: Set::Clear,
    release_lease: true,
    drop_signals: true,
    wake_waiters: true,
    check_waits: false,
};

/// What a commit's transition does to the row; `None` for `Continue`.
pub(crate) fn of_transition(t: &Transition) -> Option<Change> {
    Some(match t {
        Transition::Continue => return None,
        Transition::Suspend(_) => Change {
            state: WorkflowState::Sleeping,
            wake_at: Set::To(Param::WakeAt),
            listening: Set::To(Param::Listening),
            waiting_child: Set::To(Param::Child),
            check_waits: true,
            ..keeps_result(true)
        },
        Transition::Release => Change {
            state: WorkflowState::Pending,
            wake_at: Set::To(Param::Now),
            ..keeps_result(true)
        },
        Transition::Complete { .. } => Change {
            output: Set::To(Param::Output),
            ..FINISHED
        },
        Transition::Fail { .. } => Change {
            state: WorkflowState::Failed,
            error: Set::To(Param::Error),
            ..FINISHED
        },
        // Parked is not finished: the signals stay for the code that will
        // take them after a fix, and the parent keeps waiting.
        Transition::Park { .. } => Change {
            state: WorkflowState::Parked,
            wake_at: Set::Clear,
            listening: Set::Clear,
            waiting_child: Set::Clear,
            error: Set::To(Param::Error),
            error_code: Set::To(Param::Code),
            ..keeps_result(true)
        },
    })
}

/// What an operator's control does to a workflow in state `before`;
/// `None` when it does not apply.
/// Cancels an unfinished workflow, recording why.
pub(crate) const CANCEL: Change = Change {
    state: WorkflowState::Cancelled,
    error: Set::To(Param::Error),
    ..FINISHED
};

/// The error of a workflow cancelled because its deadline passed.
pub(crate) const DEADLINE_PASSED: &str = "deadline passed";

pub(crate) fn of_control(control: Control, before: WorkflowState) -> Option<Change> {
    match control {
        Control::Cancel if !before.is_finished() => Some(CANCEL),
        Control::Wake if matches!(before, WorkflowState::Parked | WorkflowState::Sleeping) => {
            Some(Change {
                error: Set::Clear,
                error_code: Set::Clear,
                ..RUNNABLE
            })
        }
        _ => None,
    }
}

/// Leaves every result column and wait as it is.
const fn keeps_result(release_lease: bool) -> Change {
    Change {
        state: WorkflowState::Pending,
        wake_at: Set::Keep,
        listening: Set::Keep,
        waiting_child: Set::Keep,
        output: Set::Keep,
        error: Set::Keep,
        error_code: Set::Keep,
        release_lease,
        drop_signals: false,
        wake_waiters: false,
        check_waits: false,
    }
}

impl Change {
    /// Whether workers elsewhere should hear of this change: it leaves the
    /// workflow runnable now, or at a deadline they may need to wake for.
    /// (Only a store shared by processes tells them.)
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(super) fn concerns_workers(&self, values: &Values<'_>) -> bool {
        self.state == WorkflowState::Pending
            || (self.state == WorkflowState::Sleeping && values.wake_at.is_some())
    }

    /// The `SET` list of an `UPDATE workflows` making this change, with
    /// `placeholder` called for each value to bind, in order.
    pub(super) fn set_clause(&self, mut placeholder: impl FnMut(Param) -> String) -> String {
        let mut sets = vec![format!("state = '{}'", self.state.as_str())];
        for (column, set) in [
            ("wake_at", self.wake_at),
            ("listening", self.listening),
            ("waiting_child", self.waiting_child),
            ("output", self.output),
            ("error", self.error),
            ("error_code", self.error_code),
        ] {
            match set {
                Set::Keep => {}
                Set::Clear => sets.push(format!("{column} = NULL")),
                Set::To(p) => sets.push(format!("{column} = {}", placeholder(p))),
            }
        }
        if self.release_lease {
            sets.push("lease_owner = NULL, lease_expires = NULL".into());
        }
        sets.push(format!("updated_at = {}", placeholder(Param::Now)));
        sets.join(", ")
    }
}

/// The values a transition or control binds.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Values<'a> {
    pub now: i64,
    pub wake_at: Option<i64>,
    pub listening: Option<String>,
    pub child: Option<String>,
    pub output: Option<&'a str>,
    pub error: Option<&'a str>,
    pub code: Option<&'static str>,
}

impl<'a> Values<'a> {
    /// The values of a commit's transition.
    pub(super) fn of_transition(t: &'a Transition, now: i64) -> Result<Self, StoreError> {
        let mut v = Values {
            now,
            ..Values::default()
        };
        match t {
            Transition::Suspend(s) => {
                v.wake_at = s.wake_at;
                v.listening = (!s.signals.is_empty())
                    .then(|| serde_json::to_string(&s.signals))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt {
                        table: "workflows",
                        detail: e.to_string(),
                    })?;
                v.child = s.child.map(|c| c.to_string());
            }
            Transition::Complete { output } => v.output = Some(output),
            Transition::Fail { error } => v.error = Some(error),
            Transition::Park { error, code } => {
                v.error = Some(error);
                v.code = Some(code.as_str());
            }
            Transition::Continue | Transition::Release => {}
        }
        Ok(v)
    }

    /// Only the clock: what a wake-up binds.
    pub(super) fn at(now: i64) -> Self {
        Values {
            now,
            ..Values::default()
        }
    }

    /// The values of a cancellation at the workflow's deadline.
    pub(super) fn deadline(now: i64) -> Self {
        Values {
            now,
            error: Some(DEADLINE_PASSED),
            ..Values::default()
        }
    }

    /// The values of an operator's control.
    pub(super) fn of_control(control: Control, now: i64) -> Self {
        Values {
            now,
            error: matches!(control, Control::Cancel).then_some("cancelled"),
            ..Values::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FailureCode, Suspend};

    fn sql(change: &Change) -> String {
        let mut n = 1;
        change.set_clause(|p| {
            n += 1;
            format!("${n}:{p:?}")
        })
    }

    #[test]
    fn the_table() {
        let suspend = Transition::Suspend(Suspend::default());
        let complete = Transition::Complete { output: "1".into() };
        let fail = Transition::Fail { error: "e".into() };
        let park = Transition::Park {
            error: "e".into(),
            code: FailureCode::HistoryDiverged,
        };
        // (change, state, releases the lease, drops signals, wakes waiters, checks waits)
        let rows = [
            (
                of_transition(&suspend),
                WorkflowState::Sleeping,
                true,
                false,
                false,
                true,
            ),
            (
                of_transition(&Transition::Release),
                WorkflowState::Pending,
                true,
                false,
                false,
                false,
            ),
            (
                of_transition(&complete),
                WorkflowState::Completed,
                true,
                true,
                true,
                false,
            ),
            (
                of_transition(&fail),
                WorkflowState::Failed,
                true,
                true,
                true,
                false,
            ),
            (
                of_transition(&park),
                WorkflowState::Parked,
                true,
                false,
                false,
                false,
            ),
            (
                of_control(Control::Cancel, WorkflowState::Parked),
                WorkflowState::Cancelled,
                true,
                true,
                true,
                false,
            ),
            (
                of_control(Control::Wake, WorkflowState::Parked),
                WorkflowState::Pending,
                false,
                false,
                false,
                false,
            ),
            (
                Some(RUNNABLE),
                WorkflowState::Pending,
                false,
                false,
                false,
                false,
            ),
        ];
        for (change, state, lease, signals, parent, waits) in rows {
            let c = change.expect("applies");
            assert_eq!(
                (
                    c.state,
                    c.release_lease,
                    c.drop_signals,
                    c.wake_waiters,
                    c.check_waits
                ),
                (state, lease, signals, parent, waits),
                "{c:?}"
            );
        }
        assert_eq!(of_transition(&Transition::Continue), None);
        assert_eq!(of_control(Control::Cancel, WorkflowState::Completed), None);
        assert_eq!(of_control(Control::Wake, WorkflowState::Failed), None);
        assert_eq!(of_control(Control::Wake, WorkflowState::Running), None);
    }

    #[test]
    fn set_clauses_name_each_value_once_in_order() {
        let park = of_transition(&Transition::Park {
            error: "e".into(),
            code: FailureCode::Panic,
        })
        .unwrap();
        assert_eq!(
            sql(&park),
            "state = 'parked', wake_at = NULL, listening = NULL, waiting_child = NULL, \
             error = $2:Error, error_code = $3:Code, lease_owner = NULL, lease_expires = NULL, \
             updated_at = $4:Now"
        );
        let complete = of_transition(&Transition::Complete { output: "1".into() }).unwrap();
        assert_eq!(
            sql(&complete),
            "state = 'completed', wake_at = NULL, listening = NULL, waiting_child = NULL, \
             output = $2:Output, error = NULL, error_code = NULL, lease_owner = NULL, \
             lease_expires = NULL, updated_at = $3:Now"
        );
        assert_eq!(
            sql(&RUNNABLE),
            "state = 'pending', wake_at = $2:Now, listening = NULL, waiting_child = NULL, \
             updated_at = $3:Now"
        );
    }
}
