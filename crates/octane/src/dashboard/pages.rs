//! The pages: the overview, the list, and one workflow.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use maud::{html, Markup};
use serde::Deserialize;

use super::render::{anchor, clip, layout, pretty, sample_of, state, time};
use super::{App, Problem};
use crate::engine::HistoryEntry;
use crate::history::EventKind;
use crate::loop_state::LoopSummary;
use crate::store::{FailureCode, ListCursor, ListFilter, WorkflowId, WorkflowInfo, WorkflowState};

/// The states in the overview's columns.
const STATES: [WorkflowState; 7] = [
    WorkflowState::Pending,
    WorkflowState::Running,
    WorkflowState::Sleeping,
    WorkflowState::Parked,
    WorkflowState::Completed,
    WorkflowState::Failed,
    WorkflowState::Cancelled,
];

type Page = Result<Html<String>, Problem>;

pub(super) async fn overview(State(app): State<Arc<App>>) -> Page {
    let engine = &app.engine;
    let census = engine.census().await?;
    let rates = app.rates(sample_of(&census));
    let mut by_name: BTreeMap<&str, HashMap<WorkflowState, u64>> = BTreeMap::new();
    for c in &census.counts {
        *by_name
            .entry(&c.name)
            .or_default()
            .entry(c.state)
            .or_default() += c.count;
    }
    let recent = |state| {
        engine.list(ListFilter {
            state: Some(state),
            limit: Some(10),
            ..ListFilter::default()
        })
    };
    let failed = recent(WorkflowState::Failed).await?;
    let parked = recent(WorkflowState::Parked).await?;
    let store = engine
        .core()
        .store_url
        .clone()
        .unwrap_or_else(|| "a store opened by the application".into());
    let body = html! {
        h1 { "Overview" }
        p.muted { "Store: " code data-testid="store" { (store) } }
        div #live {
            section {
                h2 { "Throughput" }
                @match rates {
                    Some((completions, iterations)) => {
                        p {
                            strong data-testid="completions-per-minute" { (format!("{completions:.1}")) }
                            " completions/min · "
                            strong data-testid="iterations-per-minute" { (format!("{iterations:.1}")) }
                            " loop iterations/min"
                            span.muted { " (over the last minutes; iterations counted at checkpoints)" }
                        }
                    }
                    None => { p.muted { "Measuring: rates appear after a few seconds." } }
                }
            }
            section {
                h2 { "Workflows by name and state" }
                @if by_name.is_empty() {
                    p.muted { "No workflows yet." }
                } @else {
                    table.counts {
                        thead { tr {
                            th { "name" }
                            @for s in STATES { th { (s.as_str()) } }
                        } }
                        tbody {
                            @for (name, counts) in &by_name {
                                tr {
                                    td { a href={ "/workflows?name=" (urlencode(name)) } { (name) } }
                                    @for s in STATES {
                                        td data-name=(name) data-state=(s.as_str()) {
                                            @match counts.get(&s) {
                                                Some(n) => a href={ "/workflows?name=" (urlencode(name)) "&state=" (s.as_str()) } { (n) },
                                                None => span.muted { "0" },
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Recent failures" }
                @if failed.is_empty() && parked.is_empty() {
                    p.muted { "None." }
                } @else {
                    (rows(&failed.iter().chain(&parked).collect::<Vec<_>>(), true))
                }
            }
        }
    };
    Ok(Html(layout("Overview", body, true).into_string()))
}

/// The list's filters, as the form sends them (empty fields are unset).
#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    name: Option<String>,
    state: Option<String>,
    tag: Option<String>,
    key: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(super) async fn list(State(app): State<Arc<App>>, Query(q): Query<ListQuery>) -> Page {
    let bad = |m: String| Problem::new(StatusCode::BAD_REQUEST, m);
    let mut filter = ListFilter {
        name: given(&q.name).map(str::to_string),
        key: given(&q.key).map(str::to_string),
        limit: Some(q.limit.unwrap_or(50).clamp(1, 500)),
        ..ListFilter::default()
    };
    if let Some(s) = given(&q.state) {
        filter.state = Some(
            s.parse()
                .map_err(|e| bad(format!("`{s}` is not a state: {e}")))?,
        );
    }
    if let Some(t) = given(&q.tag) {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| bad(format!("`{t}` is not a tag; write key=value")))?;
        filter.tags.insert(k.to_string(), v.to_string());
    }
    if let Some(a) = given(&q.after) {
        filter.after = Some(
            a.parse::<ListCursor>()
                .map_err(|e| bad(format!("`{a}` is not a page cursor: {e}")))?,
        );
    }
    let page = app.engine.list_page(filter).await?;
    let next = page.next.map(|cursor| {
        let mut link = format!("/workflows?after={cursor}");
        for (k, v) in [
            ("name", &q.name),
            ("state", &q.state),
            ("tag", &q.tag),
            ("key", &q.key),
        ] {
            if let Some(v) = given(v) {
                link.push_str(&format!("&{k}={}", urlencode(v)));
            }
        }
        if let Some(n) = q.limit {
            link.push_str(&format!("&limit={n}"));
        }
        link
    });
    let body = html! {
        h1 { "Workflows" }
        form.filters method="get" action="/workflows" {
            input name="name" placeholder="name" value=[given(&q.name)];
            select name="state" {
                option value="" { "any state" }
                @for s in STATES {
                    option value=(s.as_str()) selected[given(&q.state) == Some(s.as_str())] { (s.as_str()) }
                }
            }
            input name="tag" placeholder="tag key=value" value=[given(&q.tag)];
            input name="key" placeholder="dispatch key" value=[given(&q.key)];
            button type="submit" { "Filter" }
        }
        div #live {
            (rows(&page.workflows.iter().collect::<Vec<_>>(), false))
            @if let Some(next) = next {
                p { a.next href=(next) data-testid="next-page" { "Next page →" } }
            }
        }
    };
    Ok(Html(layout("Workflows", body, true).into_string()))
}

/// Workflows as table rows, each linking to its page.
fn rows(workflows: &[&WorkflowInfo], with_error: bool) -> Markup {
    html! {
        @if workflows.is_empty() {
            p.muted { "No workflows match." }
        } @else {
            table.workflows {
                thead { tr {
                    th { "id" } th { "name" } th { "state" } th { "tags" } th { "created" }
                    @if with_error { th { "error" } } @else { th { "updated" } }
                } }
                tbody {
                    @for w in workflows {
                        tr data-workflow=(w.id) {
                            td { a href={ "/workflows/" (w.id) } { code { (w.id) } } }
                            td { (w.name) }
                            td { (state(w.state)) }
                            td { (tags(&w.tags)) }
                            td { (time(w.created_at)) }
                            @if with_error {
                                td.error { (clip(w.error.as_deref().unwrap_or(""), 160)) }
                            } @else {
                                td { (time(w.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn tags(tags: &BTreeMap<String, String>) -> Markup {
    html! {
        @for (k, v) in tags { span.tag { (k) "=" (v) } " " }
    }
}

/// The `?notice=` a finished action leaves.
#[derive(Deserialize, Default)]
pub(super) struct WorkflowQuery {
    notice: Option<String>,
}

pub(super) async fn workflow(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<WorkflowQuery>,
) -> Page {
    let id = parse_id(&id)?;
    let engine = &app.engine;
    let info = engine.get(id).await?;
    let history = engine.history(id).await?;
    let loops = LoopSummary::of(&history);
    let pending = engine.pending_signals(id, 100).await?;
    let children: Vec<WorkflowId> = history
        .iter()
        .filter(|h| h.event.kind == EventKind::ChildDispatch)
        .filter_map(|h| serde_json::from_str(h.event.data.as_deref()?).ok())
        .collect();
    let active: Vec<&HistoryEntry> = history.iter().filter(|h| !h.forgotten).collect();
    let locations: BTreeSet<String> = active
        .iter()
        .map(|h| anchor(&h.event.location.to_string()))
        .collect();
    let live = !info.state.is_finished();
    let body = html! {
        @if let Some(notice) = given(&q.notice) {
            p.notice data-testid="notice" { (notice) }
        }
        h1 { "Workflow " code { (info.id) } }
        div #live data-state=(info.state.as_str()) {
            table.facts {
                tr { th { "name" } td { (info.name) } }
                tr { th { "state" } td data-testid="state" { (state(info.state)) } }
                @if let Some(code) = info.code { tr { th { "code" } td { (code.as_str()) } } }
                @if !info.tags.is_empty() { tr { th { "tags" } td { (tags(&info.tags)) } } }
                tr { th { "created" } td { (time(info.created_at)) } }
                tr { th { "last changed" } td { (time(info.updated_at)) } }
                @if let Some(at) = info.wake_at { tr { th { "wakes at" } td { (time(at)) } } }
                @if let Some(owner) = &info.owner { tr { th { "owner" } td { (owner.to_string()) } } }
            }
            h2 { "Input" }
            pre data-testid="input" { (pretty(Some(&info.input))) }
            @if let Some(output) = &info.output {
                h2 { "Output" }
                pre data-testid="output" { (pretty(Some(output))) }
            }
            @if let Some(error) = &info.error {
                h2 { "Error" }
                (error_block(error, info.code, &locations))
            }
            @if !loops.is_empty() {
                h2 { "Loops" }
                @for l in &loops { (loop_panel(l)) }
            }
            h2 { "Pending signals" }
            @if pending.is_empty() {
                p.muted { "None." }
            } @else {
                table.signals {
                    thead { tr { th { "seq" } th { "name" } th { "body" } } }
                    tbody {
                        @for s in &pending {
                            tr data-testid="pending-signal" { td { (s.seq) } td { (s.name) } td { code { (clip(&s.body, 200)) } } }
                        }
                    }
                }
            }
            @if !children.is_empty() {
                h2 { "Children" }
                ul { @for c in &children { li { a href={ "/workflows/" (c) } { code { (c) } } } } }
            }
            h2 { "Timeline" }
            (timeline(&active))
            h2 { "History" }
            (tree(&active))
        }
        @if live { (actions(&app, info.id, info.state)) }
    };
    Ok(Html(
        layout(&format!("Workflow {}", info.id), body, live).into_string(),
    ))
}

pub(super) fn parse_id(s: &str) -> Result<WorkflowId, Problem> {
    s.parse().map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("`{s}` is not a workflow id ({e})"),
        )
    })
}

/// An error; a divergence links to where it happened in the tree.
fn error_block(error: &str, code: Option<FailureCode>, locations: &BTreeSet<String>) -> Markup {
    let at = (code == Some(FailureCode::HistoryDiverged))
        .then(|| {
            let start = error.find(" at {")? + 4;
            let end = start + error[start..].find('}')? + 1;
            Some(&error[start..end])
        })
        .flatten()
        .filter(|loc| locations.contains(&anchor(loc)));
    html! {
        pre.error data-testid="error" { (error) }
        @if let Some(loc) = at {
            p { "Diverged at " a href={ "#" (anchor(loc)) } data-testid="diverged-at" { (loc) } " in the history below." }
        }
    }
}

fn loop_panel(l: &LoopSummary) -> Markup {
    html! {
        div.loop data-testid="loop" data-location=(l.location.to_string()) {
            p {
                "Loop at " a href={ "#" (anchor(&l.location.to_string())) } { (l.location.to_string()) } " — "
                @if l.done {
                    "finished after iteration " span data-testid="loop-iteration" { (l.checkpoint) }
                } @else {
                    "at iteration " strong data-testid="loop-iteration" { (l.current) }
                    ", checkpoint at iteration " span data-testid="loop-checkpoint" { (l.checkpoint) }
                }
            }
            p.muted {
                (l.forgotten) " iteration(s) forgotten, " (l.retained) " of them still stored"
            }
            p { (if l.done { "Output" } else { "State at the checkpoint" }) }
            pre data-testid="loop-state" { (pretty(l.data.as_deref())) }
        }
    }
}

fn timeline(active: &[&HistoryEntry]) -> Markup {
    let times: Vec<i64> = active
        .iter()
        .map(|h| h.event.recorded_at)
        .filter(|t| *t > 0)
        .collect();
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return html! { p.muted { "No timed steps." } };
    };
    let span = (last - first).max(1) as f64;
    html! {
        div.timeline {
            @for h in active.iter().filter(|h| h.event.recorded_at > 0) {
                @let left = (h.event.recorded_at - first) as f64 / span * 100.0;
                a.tick href={ "#" (anchor(&h.event.location.to_string())) }
                    style={ "left: " (format!("{left:.2}")) "%" }
                    title={ (h.event.location.to_string()) " " (h.event.kind) " " (h.event.name) " at " (time(h.event.recorded_at)) } {}
            }
        }
        p.muted { (time(*first)) " → " (time(*last)) }
    }
}

fn tree(active: &[&HistoryEntry]) -> Markup {
    html! {
        ol.tree {
            @for h in active {
                @let e = &h.event;
                @let depth = e.location.coordinates().len().saturating_sub(1);
                li id=(anchor(&e.location.to_string())) style={ "--depth: " (depth) } {
                    span.time { (time(e.recorded_at)) }
                    code.location { (e.location.to_string()) }
                    span.kind { (e.kind) }
                    @if !e.name.is_empty() { " " span.name { "`" (e.name) "`" } }
                    span.muted { " v" (e.version) }
                    @if e.kind == EventKind::Activity {
                        " attempts=" (e.attempts)
                        @if !e.done { " (retrying)" }
                    }
                    @if let Some(err) = &e.error { " " span.error { "last error: " (clip(err, 200)) } }
                    @if e.kind != EventKind::Loop {
                        @if let Some(d) = &e.data { " " code.data { (clip(d, 120)) } }
                    }
                }
            }
        }
    }
}

fn actions(app: &App, id: WorkflowId, state: WorkflowState) -> Markup {
    html! {
        section.actions {
            h2 { "Actions" }
            form method="post" action={ "/workflows/" (id) "/signal" } data-confirm="Send this signal?" data-testid="signal-form" {
                input type="hidden" name="form_token" value=(app.form_token);
                label { "Signal " input name="name" placeholder="name" required; }
                label { "Body (JSON) " textarea name="body" rows="3" { "null" } }
                button type="submit" { "Send signal" }
            }
            @if matches!(state, WorkflowState::Parked | WorkflowState::Sleeping) {
                form method="post" action={ "/workflows/" (id) "/wake" } data-confirm="Wake this workflow now?" {
                    input type="hidden" name="form_token" value=(app.form_token);
                    button type="submit" { "Wake" }
                }
            }
            form method="post" action={ "/workflows/" (id) "/cancel" } data-confirm="Cancel this workflow? This cannot be undone." {
                input type="hidden" name="form_token" value=(app.form_token);
                button.danger type="submit" { "Cancel workflow" }
            }
        }
    }
}

/// `s` for a query string.
pub(super) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
