//! Recorded events and the description of a step the code asks for.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Location;

/// What kind of step an event records.
///
/// The numeric values are persisted: never renumber a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// An activity and its outcome.
    Activity,
    /// A durable sleep; the data holds the deadline (ms since the epoch).
    Sleep,
    /// A branch of history opened by `ctx.branch`.
    Branch,
    /// A loop: its checkpoint `(iteration, state)`, or its output once done.
    Loop,
    /// The answer of `ctx.check_version`.
    VersionCheck,
    /// A value of `ctx.now()`.
    Now,
    /// A value of `ctx.uuid()`.
    Uuid,
    /// Signals consumed by `ctx.listen` (or its timeout).
    Signal,
    /// A signal sent by the workflow, and what became of it.
    SignalSend,
    /// A message published by the workflow.
    Message,
    /// A child workflow started; the data holds its id.
    ChildDispatch,
    /// A child workflow's outcome.
    ChildOutput,
}

impl EventKind {
    /// The persisted code of this kind.
    pub fn code(self) -> i64 {
        match self {
            EventKind::Activity => 1,
            EventKind::Sleep => 2,
            EventKind::Branch => 3,
            EventKind::Loop => 4,
            EventKind::VersionCheck => 5,
            EventKind::Now => 6,
            EventKind::Uuid => 7,
            EventKind::Signal => 8,
            EventKind::SignalSend => 9,
            EventKind::Message => 10,
            EventKind::ChildDispatch => 11,
            EventKind::ChildOutput => 12,
        }
    }

    /// The kind persisted as `code`, if any.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => EventKind::Activity,
            2 => EventKind::Sleep,
            3 => EventKind::Branch,
            4 => EventKind::Loop,
            5 => EventKind::VersionCheck,
            6 => EventKind::Now,
            7 => EventKind::Uuid,
            8 => EventKind::Signal,
            9 => EventKind::SignalSend,
            10 => EventKind::Message,
            11 => EventKind::ChildDispatch,
            12 => EventKind::ChildOutput,
            _ => return None,
        })
    }

    /// A lowercase name for messages and tools.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Activity => "activity",
            EventKind::Sleep => "sleep",
            EventKind::Branch => "branch",
            EventKind::Loop => "loop",
            EventKind::VersionCheck => "version_check",
            EventKind::Now => "now",
            EventKind::Uuid => "uuid",
            EventKind::Signal => "signal",
            EventKind::SignalSend => "signal_send",
            EventKind::Message => "message",
            EventKind::ChildDispatch => "child_dispatch",
            EventKind::ChildOutput => "child_output",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded step of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Where the step sits in the history.
    pub location: Location,
    /// The version the code gave the step (1 unless `ctx.v(n)` raised it).
    pub version: u32,
    /// What kind of step it is.
    pub kind: EventKind,
    /// The activity's (or other named step's) name; empty when unnamed.
    pub name: String,
    /// Hash of the step's serialized input; 0 when the kind has no input.
    pub input_hash: u64,
    /// JSON payload: an activity's output, a loop's state (or output once
    /// done), a sleep's deadline, a recorded value.
    pub data: Option<String>,
    /// The last error of a failing activity.
    pub error: Option<String>,
    /// How many attempts an activity has made.
    pub attempts: u32,
    /// A loop's checkpoint iteration.
    pub iteration: u64,
    /// A loop's iterations below this one are deleted from the store (the
    /// forgotten ones from here to `iteration` are kept for inspection); the
    /// next deletion starts here instead of at iteration 0, so it never
    /// walks what earlier ones removed. 0 for other kinds, and for loop
    /// events stored before the column existed.
    #[serde(default)]
    pub deleted_below: u64,
    /// Finished: an activity that succeeded or failed for good, a loop that
    /// broke. An unfinished activity is one still being retried.
    pub done: bool,
    /// When the store last wrote the event (ms since the epoch), for
    /// operators; replay never reads it. Set by the store from the commit's
    /// clock, so a new event carries 0 until it is read back; events stored
    /// before the column existed read as 0.
    #[serde(default)]
    pub recorded_at: i64,
}

impl Event {
    /// A new, unfinished event at `location` for the step `step`.
    pub fn new(location: Location, step: &StepRequest) -> Self {
        Event {
            location,
            version: step.version,
            kind: step.kind,
            name: step.name.clone(),
            input_hash: step.input_hash,
            data: None,
            error: None,
            attempts: 0,
            iteration: 0,
            deleted_below: 0,
            done: false,
            recorded_at: 0,
        }
    }

    /// This event with `data` set and marked done.
    pub fn finished(mut self, data: String) -> Self {
        self.data = Some(data);
        self.done = true;
        self
    }

    /// Describes the event the way [`StepRequest`]'s `Display` does, so a
    /// divergence message shows both sides alike.
    pub fn describe(&self) -> String {
        describe(self.kind, &self.name, self.input_hash, self.version)
    }
}

/// A step the workflow code asks for, to be matched against history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRequest {
    /// The kind of step.
    pub kind: EventKind,
    /// The step's name (activity name), or empty.
    pub name: String,
    /// Hash of the serialized input, or 0.
    pub input_hash: u64,
    /// The version the code gives this step.
    pub version: u32,
}

impl StepRequest {
    /// A step of `kind` named `name` with an input hash, at `version`.
    pub fn new(kind: EventKind, name: impl Into<String>, input_hash: u64, version: u32) -> Self {
        StepRequest {
            kind,
            name: name.into(),
            input_hash,
            version,
        }
    }

    /// Whether `event` records this step (kind, name and input agree).
    pub fn matches(&self, event: &Event) -> bool {
        self.kind == event.kind && self.name == event.name && self.input_hash == event.input_hash
    }
}

impl fmt::Display for StepRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(
            self.kind,
            &self.name,
            self.input_hash,
            self.version,
        ))
    }
}

fn describe(kind: EventKind, name: &str, input_hash: u64, version: u32) -> String {
    let mut s = kind.to_string();
    if !name.is_empty() {
        s.push_str(&format!(" `{name}`"));
    }
    if input_hash != 0 {
        s.push_str(&format!(" (input {input_hash:016x})"));
    }
    s.push_str(&format!(" v{version}"));
    s
}

/// Hash of a step's serialized input, stable across builds and platforms.
pub fn input_hash(serialized: &[u8]) -> u64 {
    // 0 means "no input" in history; an input that hashes to 0 is shifted.
    xxhash_rust::xxh3::xxh3_64(serialized).max(1)
}
