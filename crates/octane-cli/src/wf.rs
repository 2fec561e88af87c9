//! `octane wf …` and `octane prune`: inspect and steer stored workflows.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use octane::history::EventKind;
use octane::{Engine, HistoryEntry, ListFilter, LoopSummary, WorkflowId};

/// Parses a workflow id, naming the bad input.
pub(crate) fn parse_id(s: &str) -> anyhow::Result<WorkflowId> {
    s.parse()
        .map_err(|e| anyhow::anyhow!("`{s}` is not a workflow id ({e}); ids look like 0f4c3b9e-…"))
}

/// `key=value`, for `--tag`.
pub(crate) fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not a tag; write key=value"))
}

pub(crate) async fn list(engine: &Engine, filter: ListFilter, json: bool) -> anyhow::Result<()> {
    let page = engine.list_page(filter).await?;
    let workflows = page.workflows;
    if json {
        println!("{}", serde_json::to_string_pretty(&workflows)?);
        return Ok(());
    }
    println!(
        "{:<36}  {:<20}  {:<9}  {:<16}  {:<20}  tags",
        "id", "name", "state", "code", "owner"
    );
    for w in &workflows {
        let tags: Vec<String> = w.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let code = w.code.map(|c| c.as_str()).unwrap_or("-");
        let owner = match &w.owner {
            Some(o) => match (&o.host, o.pid) {
                (Some(host), Some(pid)) => format!("{pid}@{host}"),
                _ => o.worker.to_string(),
            },
            None => "-".into(),
        };
        println!(
            "{:<36}  {:<20}  {:<9}  {:<16}  {:<20}  {}",
            w.id,
            w.name,
            w.state,
            code,
            owner,
            tags.join(",")
        );
    }
    println!(
        "({} workflow{})",
        workflows.len(),
        if workflows.len() == 1 { "" } else { "s" }
    );
    if let Some(next) = page.next {
        println!("more: --after {next}");
    }
    Ok(())
}

pub(crate) async fn show(engine: &Engine, id: WorkflowId) -> anyhow::Result<()> {
    let info = engine.get(id).await?;
    println!("workflow {}  `{}`  {}", info.id, info.name, info.state);
    if !info.tags.is_empty() {
        let tags: Vec<String> = info.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("tags      {}", tags.join(", "));
    }
    println!("input     {}", info.input);
    if let Some(out) = &info.output {
        println!("output    {out}");
    }
    if let Some(code) = info.code {
        println!("code      {code}");
    }
    if let Some(owner) = &info.owner {
        println!("owner     {owner}");
    }
    if let Some(err) = &info.error {
        println!("error     {err}");
    }
    println!(
        "created   {}, last changed {}",
        time(info.created_at),
        time(info.updated_at)
    );
    if let Some(at) = info.wake_at {
        println!("wake at   {}", time(at));
    }
    let history = engine.history(id).await?;
    println!("history ({} stored events)", history.len());
    for line in render_tree(&history) {
        println!("{line}");
    }
    Ok(())
}

/// A time in ms since the epoch, as RFC 3339 in UTC; `-` for 0 (an event
/// stored before events carried their time).
fn time(ms: i64) -> String {
    if ms > 0 {
        humantime::format_rfc3339_millis(octane::clock::from_ms(ms)).to_string()
    } else {
        "-".to_string()
    }
}

/// One line per active event: when it was written, then the step indented
/// by depth. A loop's line tells the iteration it is at, its checkpoint, and
/// how many iterations are forgotten and how many of those are still
/// stored; its state follows, pretty-printed.
pub(crate) fn render_tree(history: &[HistoryEntry]) -> Vec<String> {
    let loops = LoopSummary::of(history);
    let mut lines = Vec::new();
    for entry in history.iter().filter(|h| !h.forgotten) {
        let e = &entry.event;
        let depth = e.location.coordinates().len().saturating_sub(1);
        let indent = "  ".repeat(depth + 1);
        let mut line = format!(
            "{:<24}{indent}{:<12} v{} {}",
            time(e.recorded_at),
            e.location.to_string(),
            e.version,
            e.kind
        );
        if !e.name.is_empty() {
            line.push_str(&format!(" `{}`", e.name));
        }
        match e.kind {
            EventKind::Loop => {
                let Some(l) = loops.iter().find(|l| l.location == e.location) else {
                    continue;
                };
                if l.done {
                    line.push_str(&format!(" — finished at iteration {}", l.checkpoint));
                } else {
                    line.push_str(&format!(
                        " — at iteration {}, checkpoint at iteration {}",
                        l.current, l.checkpoint
                    ));
                }
                line.push_str(&format!(
                    ", {} iteration(s) forgotten, {} of them retained",
                    l.forgotten, l.retained
                ));
                lines.push(line);
                let label = if l.done { "output" } else { "state" };
                for (i, text) in pretty(l.data.as_deref()).lines().enumerate() {
                    let head = if i == 0 {
                        format!("{label}: ")
                    } else {
                        "       ".to_string()
                    };
                    lines.push(format!("{:<24}{indent}  {head}{text}", ""));
                }
                continue;
            }
            EventKind::Activity => {
                line.push_str(&format!(" attempts={}", e.attempts));
                if let Some(err) = &e.error {
                    line.push_str(&format!(" last_error={err:?}"));
                }
                if !e.done {
                    line.push_str(" (retrying)");
                } else if let Some(d) = &e.data {
                    line.push_str(&format!(" → {d}"));
                }
            }
            _ => {
                if let Some(d) = &e.data {
                    line.push_str(&format!(" {d}"));
                }
            }
        }
        lines.push(line);
    }
    lines
}

fn pretty(json: Option<&str>) -> String {
    let text = json.unwrap_or("null");
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}

pub(crate) async fn signal(
    engine: &Engine,
    id: WorkflowId,
    name: &str,
    body: &str,
) -> anyhow::Result<()> {
    serde_json::from_str::<serde_json::Value>(body)
        .with_context(|| format!("the body of signal `{name}` is not valid JSON"))?;
    engine.signal_json(id, name, body).await?;
    println!("signal `{name}` sent to {id}");
    Ok(())
}

pub(crate) async fn export(engine: &Engine, id: WorkflowId) -> anyhow::Result<()> {
    println!("{}", engine.export(id).await?.to_json());
    Ok(())
}

pub(crate) async fn wake(engine: &Engine, id: WorkflowId) -> anyhow::Result<()> {
    engine.wake(id).await?;
    println!("workflow {id} is runnable again");
    Ok(())
}

pub(crate) async fn cancel(engine: &Engine, id: WorkflowId) -> anyhow::Result<()> {
    engine.cancel(id).await?;
    println!("workflow {id} cancelled");
    Ok(())
}

/// Prunes in batches; on a terminal, a running count shows how far it got.
pub(crate) async fn prune(engine: &Engine, older_than: Duration) -> anyhow::Result<()> {
    let terminal = std::io::stderr().is_terminal();
    let n = engine
        .prune_with_progress(older_than, |total| {
            if terminal {
                eprint!("\rpruning… {total} deleted so far");
            }
        })
        .await;
    if terminal {
        eprint!("\r\x1b[2K");
    }
    let n = n?;
    println!(
        "pruned {n} finished workflow{} older than {}",
        if n == 1 { "" } else { "s" },
        humantime::format_duration(older_than)
    );
    Ok(())
}
