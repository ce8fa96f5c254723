//! Leases with recall. Acquisitions of one resource queue in FIFO order; the front one is
//! granted as soon as no other client holds a conflicting lease. When one does, each such
//! holder gets a `RecallLease` and has `lease_recall_timeout` to release; what is still held
//! then is revoked. The caller's future waits on a oneshot, so the task never blocks and
//! keeps serving everything else meanwhile.

use tokio::time::Instant;

use super::Delivery;
use super::Reply;
use super::actor::Upcalls;
use super::state::{Lease, LeaseKind, Pending, ResourceKey, Timer, deadline_after};
use crate::error::{CommandError, CommandResult};

impl Upcalls {
    /// Queues an acquisition; `reply` is answered when it is granted or dropped.
    pub(super) fn acquire(
        &mut self,
        client: &str,
        key: ResourceKey,
        kind: LeaseKind,
        reply: Reply<u64>,
    ) {
        if let Err(error) = self.check_service(&key.service) {
            let _ = reply.send(Err(error));
            return;
        }
        let cap = self.settings.max_leases_per_client;
        let count = self.clients.get(client).map_or(0, |c| c.lease_count());
        if count >= cap as usize {
            let _ = reply.send(Err(CommandError::QueueFull(format!(
                "client {client} holds or waits for {count} leases and the limit is {cap} \
                 (max_leases_per_client in [daemon]); release some first"
            ))));
            return;
        }
        let id = self.allocate_lease_id();
        self.lease_home.insert(id, key.clone());
        self.clients
            .entry(client.to_owned())
            .or_default()
            .pending
            .insert(id);
        self.resources
            .entry(key.clone())
            .or_default()
            .queue
            .push_back(Pending {
                id,
                client: client.to_owned(),
                kind,
                reply,
            });
        self.pump(&key);
    }

    /// Releases a lease `client` holds; a release ends its recall, if any.
    pub(super) fn release(&mut self, client: &str, id: u64) -> CommandResult {
        let holder = self
            .lease_home
            .get(&id)
            .and_then(|key| self.resources.get(key))
            .map(|resource| {
                resource
                    .leases()
                    .get(&id)
                    .map(|lease| lease.client.as_str())
            });
        match holder {
            Some(Some(holder)) if holder == client => {}
            Some(Some(_)) => {
                return Err(CommandError::InvalidArgs(format!(
                    "lease {id} is held by another client; only its holder can release it"
                )));
            }
            Some(None) => {
                return Err(CommandError::InvalidArgs(format!(
                    "lease {id} has not been granted yet"
                )));
            }
            None => {
                return Err(CommandError::InvalidArgs(format!(
                    "no lease {id}: it was released or revoked, or never granted"
                )));
            }
        }
        if let Some((key, _)) = self.remove_lease(id) {
            self.pump(&key);
            self.forget_if_idle(&key);
        }
        Ok(())
    }

    /// The service needs `key` back: recall every lease on it. Until the recall ends,
    /// nothing on `key` is granted, so the holders cannot be replaced behind its back.
    pub(super) fn conflict(&mut self, key: &ResourceKey) {
        if !self.enabled(&key.service) {
            tracing::debug!(?key, "conflict from a service without upcall = true");
            return;
        }
        let Some(resource) = self.resources.get(key) else {
            return;
        };
        let ids: Vec<u64> = resource.leases().keys().copied().collect();
        for id in ids {
            self.recall(key, id);
        }
    }

    /// A recalled lease was not released in time: drop it and let the queue move.
    pub(super) fn revoke(&mut self, id: u64) {
        if let Some((key, lease)) = self.remove_lease(id) {
            tracing::info!(
                lease = id,
                client = lease.client,
                ?key,
                "lease revoked: not released within lease_recall_timeout"
            );
            self.pump(&key);
            self.forget_if_idle(&key);
        }
    }

    /// Forgets a granted lease everywhere (resource, index, revocation timer). The caller
    /// pumps the queue afterwards.
    pub(super) fn remove_lease(&mut self, id: u64) -> Option<(ResourceKey, Lease)> {
        let key = self.lease_home.get(&id)?.clone();
        let lease = self.resources.get_mut(&key)?.remove_lease(id)?;
        self.lease_home.remove(&id);
        if let Some(deadline) = lease.recall_deadline {
            self.timers.remove(&(deadline, Timer::Revoke(id)));
        }
        self.update_client(&lease.client, |c| {
            c.leases.remove(&id);
        });
        Some((key, lease))
    }

    /// Grants from the front of `key`'s queue while that is possible; when the front
    /// conflicts with other clients' leases, recalls them and stops until that is over.
    pub(super) fn pump(&mut self, key: &ResourceKey) {
        loop {
            let Some(resource) = self.resources.get_mut(key) else {
                return;
            };
            if resource.recalling() {
                return;
            }
            let Some(head) = resource.queue.front() else {
                return;
            };
            if head.reply.is_closed() {
                // Its caller stopped waiting: recalling leases for nobody would only hurt
                // their holders.
                if let Some(abandoned) = resource.queue.pop_front() {
                    self.lease_home.remove(&abandoned.id);
                    self.update_client(&abandoned.client, |c| {
                        c.pending.remove(&abandoned.id);
                    });
                }
                continue;
            }
            if resource.has_conflict(&head.client, head.kind) {
                for id in resource.conflicting(&head.client, head.kind) {
                    self.recall(key, id);
                }
                return;
            }
            let Some(pending) = resource.queue.pop_front() else {
                return;
            };
            self.grant(key, pending);
        }
    }

    /// Turns a pending acquisition into a lease, unless its caller stopped waiting.
    fn grant(&mut self, key: &ResourceKey, pending: Pending) {
        let Pending {
            id,
            client,
            kind,
            reply,
        } = pending;
        self.update_client(&client, |c| {
            c.pending.remove(&id);
        });
        if reply.send(Ok(id)).is_err() {
            // Nobody to tell the id to, so nobody could ever release it.
            self.lease_home.remove(&id);
            return;
        }
        if let Some(resource) = self.resources.get_mut(key) {
            resource.insert_lease(
                id,
                Lease {
                    client: client.clone(),
                    kind,
                    recall_deadline: None,
                },
            );
        }
        self.clients.entry(client).or_default().leases.insert(id);
    }

    /// Sends `RecallLease` to the holder of `id` and arms its revocation; a lease already
    /// being recalled keeps its first deadline (no second message, no extension).
    fn recall(&mut self, key: &ResourceKey, id: u64) {
        let deadline = deadline_after(Instant::now(), self.settings.lease_recall_timeout);
        let Some(client) = self
            .resources
            .get_mut(key)
            .and_then(|resource| resource.start_recall(id, deadline))
        else {
            return;
        };
        self.timers.insert((deadline, Timer::Revoke(id)));
        self.deliver(Delivery::RecallLease {
            client,
            lease: id,
            service: key.service.clone(),
            resource: key.resource.clone(),
        });
    }
}
