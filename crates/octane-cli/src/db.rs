//! `octane db …`: the database's own health, for operators.

use octane::Engine;

/// Prints how the database runs each of the store's frequent queries, and
/// fails if one no longer reads its index (its cost then grows with the
/// table: missing statistics, a dropped index, an unexpected planner).
pub(crate) async fn plans(engine: &Engine) -> anyhow::Result<()> {
    let plans = engine.store().catalog().query_plans().await?;
    let mut bad = Vec::new();
    for plan in &plans {
        let mark = if plan.uses_index { "ok  " } else { "SLOW" };
        println!("{mark} {}", plan.query);
        for line in plan.plan.lines() {
            println!("       {line}");
        }
        if !plan.uses_index {
            bad.push(plan.query);
        }
    }
    anyhow::ensure!(
        bad.is_empty(),
        "{} of {} queries do not use their index: {}",
        bad.len(),
        plans.len(),
        bad.join(", ")
    );
    Ok(())
}
