//! The data the upcall task keeps. Everything hangs off a (service, resource) pair — its
//! watchers, leases and queue — plus a per-client index, so caps are O(1) and a client
//! leaving the bus is cleaned up without scanning every resource.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::Reply;
use crate::error::{CommandError, CommandResult};

/// One resource of one service: what watches, leases and upcalls are about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct ResourceKey {
    pub service: String,
    pub resource: String,
}

impl ResourceKey {
    pub fn new(service: &str, resource: &str) -> Self {
        ResourceKey {
            service: service.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

/// The kind of a lease: reads share, a write excludes every other client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    Read,
    Write,
}

impl LeaseKind {
    /// Parses the `kind` argument of `AcquireLease`.
    pub fn parse(kind: &str) -> CommandResult<LeaseKind> {
        match kind {
            "read" => Ok(LeaseKind::Read),
            "write" => Ok(LeaseKind::Write),
            other => Err(CommandError::InvalidArgs(format!(
                "unknown lease kind {other:?}; the kinds are \"read\" and \"write\""
            ))),
        }
    }
}

/// A granted lease.
#[derive(Debug)]
pub(super) struct Lease {
    /// The unique bus name that holds it; only it may release it.
    pub client: String,
    pub kind: LeaseKind,
    /// Set once `RecallLease` was sent: the lease is revoked then unless released before.
    pub recall_deadline: Option<Instant>,
}

impl Lease {
    /// Whether this lease stands in the way of `client` getting a `kind` lease. A client's
    /// own leases never do (see the module doc of `upcall`).
    pub fn conflicts_with(&self, client: &str, kind: LeaseKind) -> bool {
        self.client != client && (self.kind == LeaseKind::Write || kind == LeaseKind::Write)
    }
}

/// An acquisition waiting its turn in a resource's queue.
#[derive(Debug)]
pub(super) struct Pending {
    /// The id the lease gets when granted (allocated at request time, so ids never repeat).
    pub id: u64,
    pub client: String,
    pub kind: LeaseKind,
    /// The caller's future resolves when this is answered.
    pub reply: Reply<u64>,
}

/// Everything about one (service, resource).
#[derive(Debug, Default)]
pub(super) struct Resource {
    /// Watching clients, each with the instant its watch expires.
    pub watchers: BTreeMap<String, Instant>,
    /// Granted leases by id.
    pub leases: BTreeMap<u64, Lease>,
    /// Acquisitions in arrival order; only the front one may be granted (FIFO).
    pub queue: VecDeque<Pending>,
}

impl Resource {
    /// Nothing left: the entry can go, so memory follows what clients hold.
    pub fn is_idle(&self) -> bool {
        self.watchers.is_empty() && self.leases.is_empty() && self.queue.is_empty()
    }

    /// Whether a recall is under way; no grants happen until it ends.
    pub fn recalling(&self) -> bool {
        self.leases.values().any(|l| l.recall_deadline.is_some())
    }
}

/// What one client holds, so caps are checked and `client_gone` is done without scans.
#[derive(Debug, Default)]
pub(super) struct ClientState {
    pub watches: BTreeSet<ResourceKey>,
    /// Granted leases.
    pub leases: BTreeSet<u64>,
    /// Acquisitions not yet granted.
    pub pending: BTreeSet<u64>,
}

impl ClientState {
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty() && self.leases.is_empty() && self.pending.is_empty()
    }

    /// What `max_leases_per_client` limits: held plus waiting.
    pub fn lease_count(&self) -> usize {
        self.leases.len() + self.pending.len()
    }
}

/// `from + after`, saturating: a configured duration may be as long as `u64::MAX` seconds,
/// and `Instant + Duration` panics on overflow. A deadline decades away never fires, which
/// is what such a setting means.
pub(super) fn deadline_after(from: Instant, after: Duration) -> Instant {
    const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);
    from.checked_add(after).unwrap_or_else(|| from + FAR_FUTURE)
}

/// A deadline in the task's ordered timer index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A recalled lease was not released in time.
    Revoke(u64),
    /// A watch saw no activity for `upcall_expiry`.
    Expire { key: ResourceKey, client: String },
}
