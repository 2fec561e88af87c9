//! Messages: ephemeral broadcasts from workflows to subscribers.
//!
//! A message is not durable: a subscriber that is not listening, or falls
//! too far behind, misses it. Sending is recorded in the sender's history,
//! so replay does not send again (a crash before that record commits may
//! send a message twice).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::Broadcast;

/// An ephemeral message.
///
/// ```
/// use octane::prelude::*;
///
/// #[derive(Serialize, Deserialize, Message)]
/// struct Progress { percent: u8 }
/// assert_eq!(Progress::NAME, "progress");
/// ```
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The name messages of this type are published under.
    const NAME: &'static str;
}

/// The in-process channel messages travel on.
#[derive(Clone)]
pub(crate) struct MessageBus {
    tx: broadcast::Sender<Arc<Broadcast>>,
}

impl MessageBus {
    pub(crate) fn new() -> Self {
        MessageBus {
            tx: broadcast::channel(4096).0,
        }
    }

    pub(crate) fn publish(&self, message: Broadcast) {
        // No subscriber is not an error: messages are ephemeral.
        let _ = self.tx.send(Arc::new(message));
    }

    pub(crate) fn subscribe<M: Message>(&self, tags: BTreeMap<String, String>) -> Subscription<M> {
        Subscription {
            rx: self.tx.subscribe(),
            tags,
            _type: PhantomData,
        }
    }
}

/// Messages of type `M` whose tags include the subscription's; from
/// `Engine::subscribe`.
pub struct Subscription<M> {
    rx: broadcast::Receiver<Arc<Broadcast>>,
    tags: BTreeMap<String, String>,
    _type: PhantomData<fn() -> M>,
}

impl<M: Message> std::fmt::Debug for Subscription<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("message", &M::NAME)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl<M: Message> Subscription<M> {
    /// The next matching message; `None` once the engine is gone. Messages
    /// missed because this subscriber fell behind are skipped, as are
    /// bodies that do not decode into `M`.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<M> {
        loop {
            match self.rx.recv().await {
                Ok(m) => {
                    let matches = m.name == M::NAME
                        && self.tags.iter().all(|(k, v)| m.tags.get(k) == Some(v));
                    if matches {
                        match serde_json::from_str(&m.body) {
                            Ok(v) => return Some(v),
                            Err(e) => {
                                tracing::warn!(message = %m.name, error = %e, "message body does not decode; skipped")
                            }
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "message subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
