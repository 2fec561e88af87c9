//! Wall-clock time as stored: milliseconds since the Unix epoch.
//!
//! Every time Octane hands out — a workflow's `created_at`, `updated_at`
//! and `wake_at`, an event's `recorded_at` — is in this form; these convert
//! to and from [`SystemTime`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// `t` in milliseconds since the Unix epoch (negative before it).
pub fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The clock an engine reads workflow time from: deadlines, wake-ups,
/// leases. The system's, unless a test moves it forward (see
/// `octane::testing`): every part of one engine — its dispatches, its
/// workers, its runs — reads the same one, so time skips for all of them at
/// once and for no other engine in the process.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clock {
    /// Milliseconds added to the system's time; only ever grows.
    skew: Option<std::sync::Arc<std::sync::atomic::AtomicI64>>,
}

impl Clock {
    /// A clock that starts at the system's time and can be moved forward.
    #[cfg(feature = "testing")]
    pub(crate) fn skippable() -> Self {
        Clock {
            skew: Some(std::sync::Arc::default()),
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        let skew = self
            .skew
            .as_ref()
            .map_or(0, |s| s.load(std::sync::atomic::Ordering::Acquire));
        now_ms().saturating_add(skew)
    }

    /// Moves a skippable clock `d` forward; the system's does not move.
    #[cfg(feature = "testing")]
    pub(crate) fn advance(&self, d: Duration) {
        if let Some(skew) = &self.skew {
            skew.fetch_add(duration_ms(d), std::sync::atomic::Ordering::AcqRel);
        }
    }
}
