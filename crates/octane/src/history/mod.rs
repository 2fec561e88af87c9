//! Workflow history: locations, events and the replay cursor.
//!
//! Everything here is pure: no store, no runtime. The contexts use it to
//! decide, for each step the code takes, whether the answer is recorded.
//!
//! Public for tools that read histories (`Engine::history`) and for store
//! wrappers; like [`store`](crate::store) it is the engine's internals and
//! may change in any release (semver-exempt).

mod cursor;
mod event;
mod forgotten;
mod location;

use std::collections::HashMap;

pub use cursor::{Cursor, Mismatch, Resolved};
pub use event::{input_hash, Event, EventKind, StepRequest};
pub use forgotten::{
    active_ranges, forgotten_ranges, is_forgotten, iteration_location, iteration_of,
    iterations_range, KeyRange, LoopBoundary,
};
pub use location::{Coordinate, Location};

/// The active history of one workflow, indexed for replay.
#[derive(Debug, Default)]
pub struct History {
    events: HashMap<Location, Event>,
    children: HashMap<Location, Vec<Coordinate>>,
}

impl History {
    /// Indexes `events` (in any order).
    pub fn from_events(events: Vec<Event>) -> Self {
        let mut h = History::default();
        for e in events {
            if let Some((parent, coord)) = e.location.split_last() {
                h.children.entry(parent).or_default().push(coord.clone());
            }
            h.events.insert(e.location.clone(), e);
        }
        for v in h.children.values_mut() {
            v.sort();
        }
        h
    }

    /// The event at `location`, if recorded.
    pub fn get(&self, location: &Location) -> Option<&Event> {
        self.events.get(location)
    }

    /// The coordinates recorded directly inside `branch`, in order.
    pub fn children(&self, branch: &Location) -> &[Coordinate] {
        self.children.get(branch).map_or(&[], Vec::as_slice)
    }

    /// How many events are held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
