//! Services' notifications (`upcall.invalidate`, `upcall.conflict` over their control
//! channels) into the upcall task, with flow control end to end.
//!
//! One invalidation fans out to every watcher, and a service can report changes far faster
//! than the bus carries signals (measured: 10 000 frames to 100 watchers took corrald to
//! 245 MB when nothing pushed back). So nothing here queues without bound: the control
//! channels hand notifications over a bounded channel (a full one stops them reading their
//! socket, which in turn holds the service's writes back), and this relay takes the next
//! notification only while fewer than [`MAX_UNSENT`] invalidation signals are waiting for
//! the bus. The D-Bus layer reports how many it has sent on a `watch` channel.

use tokio::sync::{mpsc, watch};

use super::UpcallHandle;
use crate::control::Notification;

/// Notifications read from control sockets but not yet relayed, over all services.
pub const NOTIFICATION_QUEUE: usize = 64;

/// Invalidation signals queued for the bus but not sent, beyond which the relay waits.
/// About 250 bytes each; one invalidation can overshoot by its number of watchers.
pub const MAX_UNSENT: u64 = 4096;

/// Routes notifications to the upcall task until every sender is gone. `sent` counts the
/// `Invalidate` signals the D-Bus layer has sent. A notification of the wrong shape is
/// logged and dropped.
pub async fn run(
    mut notifications: mpsc::Receiver<Notification>,
    upcalls: UpcallHandle,
    mut sent: watch::Receiver<u64>,
) {
    while let Some(n) = notifications.recv().await {
        let resource = n.params.get("resource").and_then(|r| r.as_str());
        match (n.method.as_str(), resource) {
            ("upcall.invalidate", Some(resource)) => match attrs(&n.params) {
                Some(attrs) => {
                    let queued = upcalls.invalidate(&n.service, resource, attrs).await;
                    // An error means the D-Bus layer is gone (shutting down): nothing
                    // will be sent any more, so there is nothing to wait for.
                    let _ = sent
                        .wait_for(|sent| queued.saturating_sub(*sent) <= MAX_UNSENT)
                        .await;
                }
                None => tracing::warn!(
                    service = n.service,
                    "dropped upcall.invalidate: attrs must be an array of strings"
                ),
            },
            ("upcall.conflict", Some(resource)) => upcalls.conflict(&n.service, resource).await,
            ("upcall.invalidate" | "upcall.conflict", None) => tracing::warn!(
                service = n.service,
                "dropped {}: params must be an object with a string \"resource\"",
                n.method
            ),
            (method, _) => tracing::warn!(
                service = n.service,
                "dropped unknown notification {method:?}"
            ),
        }
    }
}

/// `attrs` of an invalidation: absent means none; anything but an array of strings is
/// malformed (`None`).
fn attrs(params: &serde_json::Value) -> Option<Vec<String>> {
    match params.get("attrs") {
        None => Some(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect(),
        Some(_) => None,
    }
}
