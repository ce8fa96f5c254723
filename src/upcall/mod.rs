//! Upcalls: the state behind corral's Gluster-style upcall relay (DESIGN.md,
//! `org.corral.Corral1.Upcall`) — cache-invalidation watches and leases with recall. This
//! module holds no D-Bus code: it says *what* must be sent to *whom* as [`Delivery`] values,
//! and the D-Bus layer turns each into a unicast signal.
//!
//! Like the supervisor, it is one task that owns all the state, reached through a cloneable
//! [`UpcallHandle`] (a command over a channel, a reply over a oneshot). The task reacts to
//! commands and to timers: one `sleep_until` for the earliest deadline of an ordered index
//! (watch expiry, lease revocation), never a polling loop.
//!
//! Layout:
//! - `mod.rs` — the API: settings, deliveries, the handle.
//! - `actor.rs` — the task, its loop and timers, services and clients coming and going.
//! - `state.rs` — the data the task keeps per resource and per client.
//! - `watches.rs` — watch, unwatch, invalidate, expiry.
//! - `relay.rs` — services' notifications in, with flow control against slow delivery.
//! - `leases.rs` — acquire, release, recall, revoke, the FIFO queue.
//! - `listener.rs` — keeps the task in step with the configuration on reload.
//!
//! Semantics decided here (the design leaves them open):
//! - A client's own leases never conflict with its own requests: a client holding a read
//!   lease may take a write lease on the same resource (and keep both) without being recalled
//!   by itself. Only *other* clients' leases conflict (read/read shares, anything with a
//!   write conflicts).
//! - Requests for one resource are granted strictly in FIFO order: a read request queued
//!   behind a waiting write waits too, so writers cannot starve.
//! - While any lease of a resource is being recalled, nothing on it is granted; a recall,
//!   once sent, runs to its end (release or revocation at its deadline) even if the request
//!   that caused it goes away — like an NFSv4 delegation recall, it cannot be taken back.
//! - Watch activity is the client calling `watch` again for it, or an invalidation
//!   delivered to it. `unwatch` of something not watched succeeds, since expiry drops
//!   watches silently and a client cannot know.
//! - An acquisition whose caller stopped waiting (its future dropped) is never granted and
//!   recalls nobody when its turn comes; until then it keeps its place and its count.
//! - `set_services` takes every configured service with its `upcall` flag (not only the
//!   enabled ones), so an unknown service (`NoSuchService`) is told apart from one with
//!   `upcall = false` (`InvalidArgs`). Pending callers on a service that goes away get
//!   that same error; lease holders get nothing further.
//! - Pending acquisitions count toward `max_leases_per_client`. Lowering a cap on reload
//!   keeps what exists and refuses only new requests; a new `lease_recall_timeout` applies
//!   to recalls started after it; a new `upcall_expiry` moves every watch's deadline to its
//!   last activity plus the new expiry.

mod actor;
mod leases;
pub mod relay;
mod state;
#[cfg(test)]
mod tests;
mod watches;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use state::LeaseKind;

use crate::config::DaemonSettings;
use crate::error::{CommandError, CommandResult};

/// The `[daemon]` keys the upcall task obeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpcallSettings {
    /// How long a recalled holder has to release before its lease is revoked.
    pub lease_recall_timeout: Duration,
    /// A watch without activity for this long is dropped.
    pub upcall_expiry: Duration,
    /// So one client cannot grow corrald without bound.
    pub max_watches_per_client: u32,
    /// Held leases plus pending acquisitions, per client.
    pub max_leases_per_client: u32,
}

impl From<&DaemonSettings> for UpcallSettings {
    fn from(daemon: &DaemonSettings) -> Self {
        UpcallSettings {
            lease_recall_timeout: daemon.lease_recall_timeout,
            upcall_expiry: daemon.upcall_expiry,
            max_watches_per_client: daemon.max_watches_per_client,
            max_leases_per_client: daemon.max_leases_per_client,
        }
    }
}

/// Something to send to one client (the D-Bus layer sends it as a unicast signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// `resource` of `service` changed; `client` watches it.
    Invalidate {
        client: String,
        service: String,
        resource: String,
        attrs: Vec<String>,
    },
    /// `client` should release `lease`; it is revoked after `lease_recall_timeout`.
    RecallLease {
        client: String,
        lease: u64,
        service: String,
        resource: String,
    },
}

/// How much state the task holds (for tests, benchmarks and status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpcallStats {
    /// Clients with at least one watch, lease or pending acquisition.
    pub clients: usize,
    /// (client, service, resource) watches.
    pub watches: usize,
    /// Granted leases.
    pub leases: usize,
    /// Acquisitions waiting to be granted.
    pub pending: usize,
    /// (service, resource) pairs with any state.
    pub resources: usize,
    /// Armed deadlines (watch expiries and lease revocations).
    pub timers: usize,
}

type Reply<T = ()> = oneshot::Sender<CommandResult<T>>;

/// A request to the upcall task.
pub(crate) enum Command {
    SetServices(Vec<(String, bool)>, oneshot::Sender<()>),
    UpdateSettings(UpcallSettings, oneshot::Sender<()>),
    Watch {
        client: String,
        service: String,
        resource: String,
        reply: Reply,
    },
    Unwatch {
        client: String,
        service: String,
        resource: String,
        reply: Reply,
    },
    Acquire {
        client: String,
        service: String,
        resource: String,
        kind: LeaseKind,
        reply: Reply<u64>,
    },
    Release {
        client: String,
        lease: u64,
        reply: Reply,
    },
    ClientGone(String, oneshot::Sender<()>),
    Invalidate {
        service: String,
        resource: String,
        attrs: Vec<String>,
        done: oneshot::Sender<u64>,
    },
    Conflict {
        service: String,
        resource: String,
        done: oneshot::Sender<()>,
    },
    Stats(oneshot::Sender<UpcallStats>),
}

/// A cheap, cloneable handle on the upcall task.
#[derive(Clone)]
pub struct UpcallHandle {
    commands: mpsc::Sender<Command>,
}

/// Starts the upcall task; it runs until every [`UpcallHandle`] is dropped. Whatever must be
/// sent to clients goes to `deliveries`, in the order it happened.
pub fn spawn(
    settings: UpcallSettings,
    deliveries: mpsc::UnboundedSender<Delivery>,
) -> UpcallHandle {
    let (commands, rx) = mpsc::channel(1024);
    tokio::spawn(actor::Upcalls::new(settings, deliveries).run(rx));
    UpcallHandle { commands }
}

impl UpcallHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn ask_result<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> CommandResult<T> {
        self.ask(make)
            .await
            .unwrap_or(Err(CommandError::ShuttingDown))
    }

    /// Every configured service with its `upcall` flag. Services missing from it, or with
    /// the flag off, lose all their watches, leases and pending acquisitions.
    pub async fn set_services(&self, services: Vec<(String, bool)>) {
        self.ask(|done| Command::SetServices(services, done)).await;
    }

    pub async fn update_settings(&self, settings: UpcallSettings) {
        self.ask(|done| Command::UpdateSettings(settings, done))
            .await;
    }

    /// `client` wants invalidations of `resource`; calling it again keeps the watch alive.
    pub async fn watch(&self, client: &str, service: &str, resource: &str) -> CommandResult {
        self.ask_result(|reply| Command::Watch {
            client: client.to_owned(),
            service: service.to_owned(),
            resource: resource.to_owned(),
            reply,
        })
        .await
    }

    pub async fn unwatch(&self, client: &str, service: &str, resource: &str) -> CommandResult {
        self.ask_result(|reply| Command::Unwatch {
            client: client.to_owned(),
            service: service.to_owned(),
            resource: resource.to_owned(),
            reply,
        })
        .await
    }

    /// Resolves with the lease id once granted — after recalling (and, past
    /// `lease_recall_timeout`, revoking) conflicting leases of other clients.
    pub async fn acquire_lease(
        &self,
        client: &str,
        service: &str,
        resource: &str,
        kind: &str,
    ) -> CommandResult<u64> {
        let kind = LeaseKind::parse(kind)?;
        self.ask_result(|reply| Command::Acquire {
            client: client.to_owned(),
            service: service.to_owned(),
            resource: resource.to_owned(),
            kind,
            reply,
        })
        .await
    }

    /// Only the holder may release a lease.
    pub async fn release_lease(&self, client: &str, lease: u64) -> CommandResult {
        self.ask_result(|reply| Command::Release {
            client: client.to_owned(),
            lease,
            reply,
        })
        .await
    }

    /// `client` left the bus: drop all its watches, leases and pending acquisitions.
    pub async fn client_gone(&self, client: &str) {
        self.ask(|done| Command::ClientGone(client.to_owned(), done))
            .await;
    }

    /// The service reports that `resource` changed: every watcher gets an `Invalidate`.
    /// Returns how many `Invalidate` deliveries have been queued since the task started,
    /// this one's included (0 when shutting down): once the D-Bus layer has sent that
    /// many, this invalidation is out (see [`relay`]).
    pub async fn invalidate(&self, service: &str, resource: &str, attrs: Vec<String>) -> u64 {
        self.ask(|done| Command::Invalidate {
            service: service.to_owned(),
            resource: resource.to_owned(),
            attrs,
            done,
        })
        .await
        .unwrap_or(0)
    }

    /// The service needs `resource` back: recall every lease on it, revoke at the timeout.
    pub async fn conflict(&self, service: &str, resource: &str) {
        self.ask(|done| Command::Conflict {
            service: service.to_owned(),
            resource: resource.to_owned(),
            done,
        })
        .await;
    }

    pub async fn stats(&self) -> UpcallStats {
        self.ask(Command::Stats).await.unwrap_or_default()
    }
}
