//! The data the upcall task keeps. Everything hangs off a (service, resource) pair — its
//! watchers, leases and queue — plus a per-client index, so caps are O(1) and a client
//! leaving the bus is cleaned up without scanning every resource.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
    /// Acquisitions in arrival order; only the front one may be granted (FIFO).
    pub queue: VecDeque<Pending>,
    /// Granted leases by id. Private, and changed only by the methods below, so `tally`
    /// always agrees with it.
    leases: BTreeMap<u64, Lease>,
    tally: Tally,
}

/// Counts kept beside a resource's leases so that each grant decision is O(1) instead of a
/// scan: thousands of readers sharing one resource would otherwise make every new reader
/// cost a pass over all the others.
#[derive(Debug, Default)]
struct Tally {
    /// Leases whose recall is under way.
    recalling: usize,
    /// Write leases.
    writes: usize,
    /// Per holder: (all its leases, its write leases).
    by_client: HashMap<String, (usize, usize)>,
}

impl Resource {
    /// Nothing left: the entry can go, so memory follows what clients hold.
    pub fn is_idle(&self) -> bool {
        self.watchers.is_empty() && self.leases.is_empty() && self.queue.is_empty()
    }

    pub fn leases(&self) -> &BTreeMap<u64, Lease> {
        &self.leases
    }

    /// Whether a recall is under way; no grants happen until it ends.
    pub fn recalling(&self) -> bool {
        self.tally.recalling > 0
    }

    /// Whether any lease of another client stands in the way of `client` getting `kind`.
    pub fn has_conflict(&self, client: &str, kind: LeaseKind) -> bool {
        let (own, own_writes) = self.tally.by_client.get(client).copied().unwrap_or((0, 0));
        match kind {
            LeaseKind::Read => self.tally.writes > own_writes,
            LeaseKind::Write => self.leases.len() > own,
        }
    }

    /// The ids of the leases [`Resource::has_conflict`] is about (a scan: only for recalls).
    pub fn conflicting(&self, client: &str, kind: LeaseKind) -> Vec<u64> {
        self.leases
            .iter()
            .filter(|(_, lease)| lease.conflicts_with(client, kind))
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn insert_lease(&mut self, id: u64, lease: Lease) {
        let counts = self
            .tally
            .by_client
            .entry(lease.client.clone())
            .or_default();
        counts.0 += 1;
        if lease.kind == LeaseKind::Write {
            counts.1 += 1;
            self.tally.writes += 1;
        }
        if lease.recall_deadline.is_some() {
            self.tally.recalling += 1;
        }
        self.leases.insert(id, lease);
    }

    pub fn remove_lease(&mut self, id: u64) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        if let Some(counts) = self.tally.by_client.get_mut(&lease.client) {
            counts.0 -= 1;
            if lease.kind == LeaseKind::Write {
                counts.1 -= 1;
            }
            if counts.0 == 0 {
                self.tally.by_client.remove(&lease.client);
            }
        }
        if lease.kind == LeaseKind::Write {
            self.tally.writes -= 1;
        }
        if lease.recall_deadline.is_some() {
            self.tally.recalling -= 1;
        }
        Some(lease)
    }

    /// Marks lease `id` as recalled until `deadline`; returns its holder, or `None` when
    /// there is no such lease or it is being recalled already.
    pub fn start_recall(&mut self, id: u64, deadline: Instant) -> Option<String> {
        let lease = self.leases.get_mut(&id)?;
        if lease.recall_deadline.is_some() {
            return None;
        }
        lease.recall_deadline = Some(deadline);
        self.tally.recalling += 1;
        Some(lease.client.clone())
    }

    /// Takes the resource apart, for when its service goes away.
    pub fn into_parts(
        self,
    ) -> (
        BTreeMap<String, Instant>,
        BTreeMap<u64, Lease>,
        VecDeque<Pending>,
    ) {
        (self.watchers, self.leases, self.queue)
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
