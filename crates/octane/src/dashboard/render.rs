//! What every page shares: the layout, times, JSON, anchors.

use std::time::Instant;

use maud::{html, Markup, DOCTYPE};

use super::Sample;
use crate::store::{Census, WorkflowState};

/// A whole page. `live` pages refresh their `#live` part while open.
pub(super) fn layout(title: &str, body: Markup, live: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Octane" }
                link rel="stylesheet" href="/assets/dashboard.css";
                script src="/assets/dashboard.js" defer {}
            }
            body data-live=(if live { "1" } else { "0" }) {
                header {
                    a.brand href="/" { "Octane" }
                    nav {
                        a href="/" { "Overview" }
                        a href="/workflows" { "Workflows" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A time in ms since the epoch, in UTC to the millisecond; `-` for none.
pub(super) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .filter(|_| ms > 0)
        .map_or_else(
            || "-".to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        )
}

/// JSON text pretty-printed; as it is when it is not JSON.
pub(super) fn pretty(json: Option<&str>) -> String {
    let text = json.unwrap_or("null");
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}

/// The element id of a history location as printed (`{1, 22, 1}` →
/// `loc-1-22-1`), for links into the tree.
pub(super) fn anchor(location: &str) -> String {
    let inner: String = location
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .collect();
    format!("loc-{}", inner.replace(',', "-"))
}

/// The state as a badge.
pub(super) fn state(state: WorkflowState) -> Markup {
    html! { span class={ "state " (state.as_str()) } { (state.as_str()) } }
}

/// The overview's sample of the census.
pub(super) fn sample_of(census: &Census) -> Sample {
    Sample {
        at: Instant::now(),
        completed: census
            .counts
            .iter()
            .filter(|c| c.state == WorkflowState::Completed)
            .map(|c| c.count)
            .sum(),
        iterations: census.loop_iterations,
    }
}

/// The first `n` characters of `s`, with an ellipsis if cut.
pub(super) fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}
