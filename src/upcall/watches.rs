//! Cache-invalidation watches: a client asks to hear about changes of one resource, the
//! service reports changes, and each watcher gets its own `Invalidate` (unicast). Watches
//! without activity expire after `upcall_expiry`, like Gluster's cache-invalidation timeout,
//! so clients that stop caring do not keep corrald's memory forever.

use std::time::Duration;

use tokio::time::Instant;

use super::Delivery;
use super::actor::Upcalls;
use super::state::{ResourceKey, Timer, deadline_after};
use crate::error::{CommandError, CommandResult};

impl Upcalls {
    /// Adds a watch, or renews it (activity) when `client` already watches `key`.
    pub(super) fn watch(&mut self, client: &str, key: ResourceKey) -> CommandResult {
        self.check_service(&key.service)?;
        let cap = self.settings.max_watches_per_client;
        let (count, renewing) = self
            .clients
            .get(client)
            .map_or((0, false), |c| (c.watches.len(), c.watches.contains(&key)));
        if !renewing && count >= cap as usize {
            return Err(CommandError::QueueFull(format!(
                "client {client} has {count} upcall watches and the limit is {cap} \
                 (max_watches_per_client in [daemon]); unwatch some first"
            )));
        }
        let deadline = deadline_after(Instant::now(), self.settings.upcall_expiry);
        self.set_watch_deadline(client, &key, deadline);
        self.clients
            .entry(client.to_owned())
            .or_default()
            .watches
            .insert(key);
        Ok(())
    }

    /// Removes a watch; succeeds when there was none, since expiry drops watches silently
    /// and the client cannot know.
    pub(super) fn unwatch(&mut self, client: &str, key: ResourceKey) -> CommandResult {
        self.check_service(&key.service)?;
        self.remove_watch(client, &key);
        Ok(())
    }

    /// Forgets one watch, its expiry timer, and whatever entries it leaves empty.
    pub(super) fn remove_watch(&mut self, client: &str, key: &ResourceKey) {
        if let Some(resource) = self.resources.get_mut(key)
            && let Some(deadline) = resource.watchers.remove(client)
        {
            self.timers.remove(&(deadline, expire_timer(key, client)));
        }
        self.update_client(client, |c| {
            c.watches.remove(key);
        });
        self.forget_if_idle(key);
    }

    /// Sends one `Invalidate` to each watcher of exactly `key`, renewing their watches.
    /// Reports from services that do not relay upcalls are dropped.
    pub(super) fn invalidate(&mut self, key: ResourceKey, attrs: Vec<String>) {
        if !self.enabled(&key.service) {
            tracing::debug!(?key, "invalidation from a service without upcall = true");
            return;
        }
        let Some(resource) = self.resources.get(&key) else {
            return;
        };
        let watchers: Vec<String> = resource.watchers.keys().cloned().collect();
        let deadline = deadline_after(Instant::now(), self.settings.upcall_expiry);
        for client in watchers {
            self.deliver(Delivery::Invalidate {
                client: client.clone(),
                service: key.service.clone(),
                resource: key.resource.clone(),
                attrs: attrs.clone(),
            });
            self.set_watch_deadline(&client, &key, deadline);
            self.invalidations_queued += 1;
        }
    }

    /// After `upcall_expiry` changed: every watch now expires at its last activity plus the
    /// new expiry (the last activity is its old deadline minus the old expiry).
    pub(super) fn reschedule_expiry(&mut self, old: Duration, new: Duration) {
        let watches: Vec<(ResourceKey, String, Instant)> = self
            .resources
            .iter()
            .flat_map(|(key, resource)| {
                resource
                    .watchers
                    .iter()
                    .map(move |(client, at)| (key.clone(), client.clone(), *at))
            })
            .collect();
        for (key, client, deadline) in watches {
            // Unknown when the old deadline was saturated (or the clock is younger than
            // `old`, early at boot): count from now.
            let last_activity = deadline.checked_sub(old).unwrap_or_else(Instant::now);
            self.set_watch_deadline(&client, &key, deadline_after(last_activity, new));
        }
    }

    /// Creates or moves the watch of `client` on `key` and its entry in the timer index.
    fn set_watch_deadline(&mut self, client: &str, key: &ResourceKey, deadline: Instant) {
        let resource = self.resources.entry(key.clone()).or_default();
        if let Some(old) = resource.watchers.insert(client.to_owned(), deadline) {
            self.timers.remove(&(old, expire_timer(key, client)));
        }
        self.timers.insert((deadline, expire_timer(key, client)));
    }
}

/// The index entry of `client`'s watch on `key`.
pub(super) fn expire_timer(key: &ResourceKey, client: &str) -> Timer {
    Timer::Expire {
        key: key.clone(),
        client: client.to_owned(),
    }
}
