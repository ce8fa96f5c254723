//! Tests of the upcall task, driven through its handle with deliveries read from the
//! channel; time is paused, so recall timeouts and expiry are measured exactly.

mod leases;
mod relay;
mod tally;
mod watches;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Delivery, UpcallHandle, UpcallSettings, spawn};
use crate::error::{CommandError, CommandResult};

const RECALL: Duration = Duration::from_secs(5);
const EXPIRY: Duration = Duration::from_secs(60);

fn settings() -> UpcallSettings {
    UpcallSettings {
        lease_recall_timeout: RECALL,
        upcall_expiry: EXPIRY,
        max_watches_per_client: 3,
        max_leases_per_client: 3,
    }
}

/// The task under test and what it delivers. `nfs` and `smb` relay upcalls, `cron` exists
/// without `upcall = true`.
struct Rig {
    handle: UpcallHandle,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

impl Rig {
    async fn new() -> Rig {
        Rig::with(settings()).await
    }

    async fn with(settings: UpcallSettings) -> Rig {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let handle = spawn(settings, tx);
        handle
            .set_services(vec![
                ("nfs".into(), true),
                ("smb".into(), true),
                ("cron".into(), false),
            ])
            .await;
        Rig { handle, deliveries }
    }

    /// Everything delivered so far.
    fn drain(&mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Ok(delivery) = self.deliveries.try_recv() {
            out.push(delivery);
        }
        out
    }

    async fn lease(&self, client: &str, resource: &str, kind: &str) -> u64 {
        self.handle
            .acquire_lease(client, "nfs", resource, kind)
            .await
            .expect("lease granted at once")
    }

    /// Starts an acquisition on `nfs` in its own task and returns once the task has queued
    /// (or granted) it, so the order of requests is the order of calls.
    async fn spawn_acquire(
        &self,
        client: &str,
        resource: &str,
        kind: &str,
    ) -> JoinHandle<CommandResult<u64>> {
        let before = self.handle.stats().await;
        let handle = self.handle.clone();
        let (client, resource, kind) = (client.to_owned(), resource.to_owned(), kind.to_owned());
        let task =
            tokio::spawn(
                async move { handle.acquire_lease(&client, "nfs", &resource, &kind).await },
            );
        loop {
            let now = self.handle.stats().await;
            if now.pending + now.leases > before.pending + before.leases {
                return task;
            }
            tokio::task::yield_now().await;
        }
    }
}

fn recall(client: &str, lease: u64, resource: &str) -> Delivery {
    Delivery::RecallLease {
        client: client.into(),
        lease,
        service: "nfs".into(),
        resource: resource.into(),
    }
}

fn invalidation(client: &str, service: &str, resource: &str, attrs: &[&str]) -> Delivery {
    Delivery::Invalidate {
        client: client.into(),
        service: service.into(),
        resource: resource.into(),
        attrs: attrs.iter().map(|a| a.to_string()).collect(),
    }
}

fn is_invalid_args(result: &CommandResult<impl std::fmt::Debug>, needle: &str) -> bool {
    matches!(result, Err(CommandError::InvalidArgs(message)) if message.contains(needle))
}
