//! The replay cursor: which recorded event (if any) answers the next step.
//!
//! Each branch of a running workflow has a [`Cursor`]. For every step the
//! code takes, [`Cursor::resolve`] looks at the next recorded event in the
//! branch and decides, without I/O:
//! - the same step at the same version: replay it;
//! - the code's step has a higher version than the recorded one: the step
//!   was inserted by a newer deploy, so it runs live at a coordinate between
//!   the previous step and the recorded one;
//! - anything else: the history diverged from the code.
//!
//! With nothing recorded after the previous step, the step runs live at the
//! next plain coordinate. So does a step whose plain coordinate is free while
//! later ones are recorded (a hole: concurrent steps commit in the order they
//! finish, and a crash can land between them): the hole is filled, and
//! nothing recorded after it is matched against the wrong step.

use super::{Coordinate, Event, History, Location, StepRequest};

/// How the cursor answered a step.
#[derive(Debug, PartialEq)]
pub enum Resolved<'h> {
    /// The step is recorded: return this event's outcome.
    Replay(&'h Event),
    /// The step is new: run it and record it at this location.
    Live(Location),
}

/// A step that does not match the recorded history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Where the recorded event sits.
    pub location: Location,
    /// The recorded event, described.
    pub recorded: String,
    /// The step the code asked for, described.
    pub requested: String,
}

/// Position of one branch's code in that branch's recorded history.
#[derive(Clone, Debug)]
pub struct Cursor {
    branch: Location,
    recorded: Vec<Coordinate>,
    next: usize,
    prev: Option<Coordinate>,
}

impl Cursor {
    /// A cursor at the start of `branch`.
    pub fn new(branch: Location, history: &History) -> Self {
        Cursor {
            recorded: history.children(&branch).to_vec(),
            branch,
            next: 0,
            prev: None,
        }
    }

    /// The branch this cursor walks.
    pub fn branch(&self) -> &Location {
        &self.branch
    }

    /// Whether every recorded event of the branch has been consumed: from
    /// here on every step runs live.
    pub fn is_live(&self) -> bool {
        self.next >= self.recorded.len()
    }

    /// The next recorded event, without consuming it.
    pub fn peek<'h>(&self, history: &'h History) -> Option<&'h Event> {
        let c = self.recorded.get(self.next)?;
        history.get(&self.branch.child(c.clone()))
    }

    /// Consumes the next recorded event (after a `peek` said it is the one).
    pub fn skip(&mut self) {
        if let Some(c) = self.recorded.get(self.next) {
            self.prev = Some(c.clone());
            self.next += 1;
        }
    }

    /// Takes the next coordinate for a live step that has no recorded
    /// counterpart (appended after the last recorded step).
    pub fn append(&mut self) -> Location {
        let c = Coordinate::after(self.prev.as_ref());
        self.prev = Some(c.clone());
        self.branch.child(c)
    }

    /// Decides how the step `step` is answered, and moves past it.
    pub fn resolve<'h>(
        &mut self,
        history: &'h History,
        step: &StepRequest,
    ) -> Result<Resolved<'h>, Mismatch> {
        let Some(next) = self.recorded.get(self.next) else {
            return Ok(Resolved::Live(self.append()));
        };
        let own = Coordinate::after(self.prev.as_ref());
        if own < *next {
            // Later steps are recorded but this step's own coordinate holds
            // nothing: an earlier run took it and its record never landed (a
            // `join` member overtaken by a later member's commit, then a
            // crash; a step whose error the code swallowed). The step runs
            // live there, so the records after it keep their places.
            self.prev = Some(own.clone());
            return Ok(Resolved::Live(self.branch.child(own)));
        }
        let location = self.branch.child(next.clone());
        let Some(event) = history.get(&location) else {
            // A child coordinate exists only because an event exists there.
            unreachable!("history lists {location} as a child but holds no event there");
        };
        if step.version > event.version {
            let c = Coordinate::between(self.prev.as_ref(), next);
            self.prev = Some(c.clone());
            return Ok(Resolved::Live(self.branch.child(c)));
        }
        if step.version == event.version && step.matches(event) {
            self.prev = Some(next.clone());
            self.next += 1;
            return Ok(Resolved::Replay(event));
        }
        Err(Mismatch {
            location,
            recorded: event.describe(),
            requested: step.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventKind;

    fn act(name: &str, version: u32) -> StepRequest {
        StepRequest::new(EventKind::Activity, name, 7, version)
    }

    fn record(history: &mut Vec<Event>, cursor: &mut Cursor, h: &History, step: StepRequest) {
        match cursor.resolve(h, &step).unwrap() {
            Resolved::Live(loc) => history.push(Event::new(loc, &step).finished("1".into())),
            Resolved::Replay(_) => {}
        }
    }

    fn run(events: &[Event], steps: &[StepRequest]) -> Vec<Event> {
        let h = History::from_events(events.to_vec());
        let mut out = events.to_vec();
        let mut cursor = Cursor::new(Location::root(), &h);
        for s in steps {
            record(&mut out, &mut cursor, &h, s.clone());
        }
        out.sort_by(|a, b| a.location.cmp(&b.location));
        out
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{}@{}", e.name, e.location))
            .collect()
    }

    #[test]
    fn fresh_steps_take_plain_coordinates() {
        let h = run(&[], &[act("a", 1), act("b", 1), act("c", 1)]);
        assert_eq!(names(&h), ["a@{1}", "b@{2}", "c@{3}"]);
    }

    #[test]
    fn replay_consumes_recorded_steps_then_goes_live() {
        let first = run(&[], &[act("a", 1), act("b", 1)]);
        let h = History::from_events(first.clone());
        let mut cursor = Cursor::new(Location::root(), &h);
        assert!(matches!(
            cursor.resolve(&h, &act("a", 1)),
            Ok(Resolved::Replay(_))
        ));
        assert!(matches!(
            cursor.resolve(&h, &act("b", 1)),
            Ok(Resolved::Replay(_))
        ));
        assert!(cursor.is_live());
        let live = cursor.resolve(&h, &act("c", 1)).unwrap();
        assert_eq!(
            live,
            Resolved::Live(Location::root().child(Coordinate::new(3)))
        );
    }

    #[test]
    fn higher_version_inserts_between_recorded_steps() {
        let first = run(&[], &[act("a", 1), act("b", 1)]);
        let second = run(
            &first,
            &[act("a", 1), act("x", 2), act("y", 2), act("b", 1)],
        );
        assert_eq!(names(&second), ["a@{1}", "x@{1.1}", "y@{1.2}", "b@{2}"]);
        // The inserted steps replay on the next run, and a v3 step can go
        // before the very first event.
        let third = run(
            &second,
            &[
                act("z", 3),
                act("a", 1),
                act("x", 2),
                act("y", 2),
                act("b", 1),
            ],
        );
        assert_eq!(
            names(&third),
            ["z@{0.1}", "a@{1}", "x@{1.1}", "y@{1.2}", "b@{2}"]
        );
        let fourth = run(
            &third,
            &[
                act("w", 4),
                act("z", 3),
                act("a", 1),
                act("x", 2),
                act("y", 2),
                act("b", 1),
            ],
        );
        assert_eq!(fourth.len(), 6);
        assert_eq!(names(&fourth)[0], "w@{0.0.1}");
    }

    #[test]
    fn same_version_other_step_is_a_mismatch() {
        let first = run(&[], &[act("a", 1), act("b", 1)]);
        let h = History::from_events(first);
        let mut cursor = Cursor::new(Location::root(), &h);
        cursor.resolve(&h, &act("a", 1)).unwrap();
        let err = cursor.resolve(&h, &act("c", 1)).unwrap_err();
        assert_eq!(err.location.to_string(), "{2}");
        assert!(err.recorded.contains("`b`"), "{}", err.recorded);
        assert!(err.requested.contains("`c`"), "{}", err.requested);
    }

    #[test]
    fn lower_version_than_recorded_is_a_mismatch() {
        let first = run(&[], &[act("a", 2)]);
        let h = History::from_events(first);
        let mut cursor = Cursor::new(Location::root(), &h);
        let err = cursor.resolve(&h, &act("a", 1)).unwrap_err();
        assert!(err.recorded.contains("v2") && err.requested.contains("v1"));
    }

    #[test]
    fn a_hole_left_by_a_lost_record_runs_live_in_place() {
        // A join of a, b, c where b and c committed and a's record never
        // landed; b has the same name and input as a.
        let full = run(&[], &[act("a", 1), act("a", 1), act("c", 1)]);
        let holed: Vec<Event> = full[1..].to_vec();
        let h = History::from_events(holed);
        let mut cursor = Cursor::new(Location::root(), &h);
        assert_eq!(
            cursor.resolve(&h, &act("a", 1)).unwrap(),
            Resolved::Live(Location::root().child(Coordinate::new(1))),
            "the first member runs at its own coordinate, not as the second's replay"
        );
        match cursor.resolve(&h, &act("a", 1)).unwrap() {
            Resolved::Replay(e) => assert_eq!(e.location.to_string(), "{2}"),
            other => panic!("the second member replays its record: {other:?}"),
        }
        match cursor.resolve(&h, &act("c", 1)).unwrap() {
            Resolved::Replay(e) => assert_eq!(e.location.to_string(), "{3}"),
            other => panic!("the third member replays its record: {other:?}"),
        }
        assert!(cursor.is_live());
    }

    #[test]
    fn holes_between_and_after_inserted_steps_fill_in_place() {
        // a{1} x{1.1} (inserted) b{2} c{3}: b's record lost.
        let full = run(&[], &[act("a", 1), act("b", 1), act("c", 1)]);
        let with_x = run(&full, &[act("a", 1), act("x", 2), act("b", 1), act("c", 1)]);
        assert_eq!(names(&with_x), ["a@{1}", "x@{1.1}", "b@{2}", "c@{3}"]);
        let holed: Vec<Event> = with_x.into_iter().filter(|e| e.name != "b").collect();
        let again = run(
            &holed,
            &[act("a", 1), act("x", 2), act("b", 1), act("c", 1)],
        );
        assert_eq!(names(&again), ["a@{1}", "x@{1.1}", "b@{2}", "c@{3}"]);
    }

    #[test]
    fn other_input_is_a_mismatch() {
        let first = run(&[], &[act("a", 1)]);
        let h = History::from_events(first);
        let mut cursor = Cursor::new(Location::root(), &h);
        let other = StepRequest::new(EventKind::Activity, "a", 8, 1);
        assert!(cursor.resolve(&h, &other).is_err());
    }
}
