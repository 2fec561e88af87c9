//! `octane schedule …`: the schedules stored in the database.

use octane::Engine;

pub(crate) async fn list(engine: &Engine, json: bool) -> anyhow::Result<()> {
    let schedules = engine.schedules().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&schedules)?);
        return Ok(());
    }
    println!(
        "{:<24}  {:<20}  {:<22}  {:<16}  {:<7}  next tick",
        "name", "workflow", "cron", "time zone", "state"
    );
    for s in &schedules {
        println!(
            "{:<24}  {:<20}  {:<22}  {:<16}  {:<7}  {}",
            s.name,
            s.workflow,
            s.cron,
            s.timezone,
            if s.paused { "paused" } else { "active" },
            humantime::format_rfc3339_millis(octane::clock::from_ms(s.next_at))
        );
    }
    println!(
        "({} schedule{})",
        schedules.len(),
        if schedules.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

pub(crate) async fn pause(engine: &Engine, name: &str) -> anyhow::Result<()> {
    engine.pause_schedule(name).await?;
    println!("schedule `{name}` paused");
    Ok(())
}

pub(crate) async fn resume(engine: &Engine, name: &str) -> anyhow::Result<()> {
    engine.resume_schedule(name).await?;
    println!("schedule `{name}` resumed");
    Ok(())
}

pub(crate) async fn delete(engine: &Engine, name: &str) -> anyhow::Result<()> {
    engine.delete_schedule(name).await?;
    println!("schedule `{name}` deleted");
    Ok(())
}
