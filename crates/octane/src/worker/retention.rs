//! Deletes finished workflows once the engine's retention has passed.

use std::sync::Arc;
use std::time::Duration;

use crate::ctx::error_chain;
use crate::runtime::Core;

/// With [`Engine::retain_finished`](crate::Engine::retain_finished) set,
/// prunes every quarter of the retention (between 100 ms and a minute). A
/// failed prune is logged and retried at the next tick: nothing depends on
/// it finishing.
pub(super) async fn run(core: Arc<Core>, retain: Duration) {
    let period = (retain / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::time::sleep(period).await;
        match core.prune(retain, |_| {}).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "finished workflows past retention deleted"),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "pruning finished workflows failed; retrying later")
            }
        }
    }
}
