//! The upcall task: its state, its loop, and what is not about one watch or one lease —
//! services and settings changing, clients leaving, timers firing.

use std::collections::{BTreeSet, HashMap};

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::state::{ClientState, Resource, ResourceKey, Timer};
use super::watches::expire_timer;
use super::{Command, Delivery, UpcallSettings, UpcallStats};
use crate::error::{CommandError, CommandResult};

pub(super) struct Upcalls {
    pub(super) settings: UpcallSettings,
    /// Where deliveries go; a send error only means corrald is shutting down.
    pub(super) deliveries: mpsc::UnboundedSender<Delivery>,
    /// Every configured service and whether it relays upcalls, so an unknown service
    /// (`NoSuchService`) is told apart from one with `upcall = false` (`InvalidArgs`).
    services: HashMap<String, bool>,
    pub(super) resources: HashMap<ResourceKey, Resource>,
    pub(super) clients: HashMap<String, ClientState>,
    /// The resource of every live lease id, granted or pending: releases and revocation
    /// timers name only the id.
    pub(super) lease_home: HashMap<u64, ResourceKey>,
    /// Every armed deadline, earliest first; the loop sleeps until the first one. Ordered
    /// so finding the next deadline is O(log n) and there is never a polling loop.
    pub(super) timers: BTreeSet<(Instant, Timer)>,
    /// The next lease id; ids are never reused within a run.
    next_lease: u64,
    /// `Invalidate` deliveries queued since the start: the relay's flow-control ticket.
    pub(super) invalidations_queued: u64,
}

impl Upcalls {
    pub(super) fn new(
        settings: UpcallSettings,
        deliveries: mpsc::UnboundedSender<Delivery>,
    ) -> Self {
        Upcalls {
            settings,
            deliveries,
            services: HashMap::new(),
            resources: HashMap::new(),
            clients: HashMap::new(),
            lease_home: HashMap::new(),
            timers: BTreeSet::new(),
            next_lease: 1,
            invalidations_queued: 0,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let next = self.timers.first().map(|(at, _)| *at);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        // Deadlines that passed before this command arrived come first,
                        // whichever branch `select!` happened to pick.
                        self.fire_due(Instant::now());
                        self.handle(command);
                    }
                    None => break,
                },
                () = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.fire_due(Instant::now());
                }
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::SetServices(services, done) => {
                self.set_services(services);
                let _ = done.send(());
            }
            Command::UpdateSettings(settings, done) => {
                self.update_settings(settings);
                let _ = done.send(());
            }
            Command::Watch {
                client,
                service,
                resource,
                reply,
            } => {
                let key = ResourceKey::new(&service, &resource);
                let _ = reply.send(self.watch(&client, key));
            }
            Command::Unwatch {
                client,
                service,
                resource,
                reply,
            } => {
                let key = ResourceKey::new(&service, &resource);
                let _ = reply.send(self.unwatch(&client, key));
            }
            Command::Acquire {
                client,
                service,
                resource,
                kind,
                reply,
            } => self.acquire(&client, ResourceKey::new(&service, &resource), kind, reply),
            Command::Release {
                client,
                lease,
                reply,
            } => {
                let _ = reply.send(self.release(&client, lease));
            }
            Command::ClientGone(client, done) => {
                self.client_gone(&client);
                let _ = done.send(());
            }
            Command::Invalidate {
                service,
                resource,
                attrs,
                done,
            } => {
                self.invalidate(ResourceKey::new(&service, &resource), attrs);
                let _ = done.send(self.invalidations_queued);
            }
            Command::Conflict {
                service,
                resource,
                done,
            } => {
                self.conflict(&ResourceKey::new(&service, &resource));
                let _ = done.send(());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
        }
    }

    /// Handles every timer due at `now`, earliest first.
    fn fire_due(&mut self, now: Instant) {
        while let Some((at, _)) = self.timers.first()
            && *at <= now
        {
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Revoke(lease) => self.revoke(lease),
                Timer::Expire { key, client } => {
                    tracing::debug!(client, ?key, "upcall watch expired");
                    self.remove_watch(&client, &key);
                }
            }
        }
    }

    /// `Ok` when `service` relays upcalls.
    pub(super) fn check_service(&self, service: &str) -> CommandResult {
        match self.services.get(service) {
            Some(true) => Ok(()),
            Some(false) => Err(CommandError::InvalidArgs(format!(
                "service {service} does not relay upcalls: set upcall = true"
            ))),
            None => Err(CommandError::NoSuchService(service.to_owned())),
        }
    }

    pub(super) fn enabled(&self, service: &str) -> bool {
        self.services.get(service).copied().unwrap_or(false)
    }

    pub(super) fn allocate_lease_id(&mut self) -> u64 {
        let id = self.next_lease;
        self.next_lease += 1;
        id
    }

    /// Applies `change` to `client`'s index and forgets the client once it holds nothing.
    pub(super) fn update_client(&mut self, client: &str, change: impl FnOnce(&mut ClientState)) {
        if let Some(state) = self.clients.get_mut(client) {
            change(state);
            if state.is_empty() {
                self.clients.remove(client);
            }
        }
    }

    /// Drops the entry of a resource nobody watches, holds or waits for.
    pub(super) fn forget_if_idle(&mut self, key: &ResourceKey) {
        if self.resources.get(key).is_some_and(Resource::is_idle) {
            self.resources.remove(key);
        }
    }

    pub(super) fn deliver(&self, delivery: Delivery) {
        let _ = self.deliveries.send(delivery);
    }

    fn set_services(&mut self, services: Vec<(String, bool)>) {
        self.services = services.into_iter().collect();
        let gone: Vec<ResourceKey> = self
            .resources
            .keys()
            .filter(|key| !self.enabled(&key.service))
            .cloned()
            .collect();
        for key in gone {
            // A pending caller learns why (removed, or upcall turned off); holders of
            // leases get nothing further: there is no service left to hold it against.
            if let Err(why) = self.check_service(&key.service) {
                self.drop_resource(&key, &why);
            }
        }
    }

    /// Forgets everything about `key`, answering its pending acquisitions with `why`.
    fn drop_resource(&mut self, key: &ResourceKey, why: &CommandError) {
        let Some(resource) = self.resources.remove(key) else {
            return;
        };
        let (watchers, leases, queue) = resource.into_parts();
        for (client, deadline) in watchers {
            self.timers.remove(&(deadline, expire_timer(key, &client)));
            self.update_client(&client, |c| {
                c.watches.remove(key);
            });
        }
        for (id, lease) in leases {
            self.lease_home.remove(&id);
            if let Some(deadline) = lease.recall_deadline {
                self.timers.remove(&(deadline, Timer::Revoke(id)));
            }
            self.update_client(&lease.client, |c| {
                c.leases.remove(&id);
            });
        }
        for pending in queue {
            self.lease_home.remove(&pending.id);
            self.update_client(&pending.client, |c| {
                c.pending.remove(&pending.id);
            });
            let _ = pending.reply.send(Err(why.clone()));
        }
    }

    fn update_settings(&mut self, settings: UpcallSettings) {
        let old_expiry = self.settings.upcall_expiry;
        let new_expiry = settings.upcall_expiry;
        self.settings = settings;
        if old_expiry != new_expiry {
            self.reschedule_expiry(old_expiry, new_expiry);
        }
    }

    fn client_gone(&mut self, client: &str) {
        let Some(state) = self.clients.remove(client) else {
            return;
        };
        let mut touched: BTreeSet<ResourceKey> = BTreeSet::new();
        for key in state.watches {
            if let Some(resource) = self.resources.get_mut(&key)
                && let Some(deadline) = resource.watchers.remove(client)
            {
                self.timers.remove(&(deadline, expire_timer(&key, client)));
            }
            touched.insert(key);
        }
        let why = CommandError::InvalidArgs(format!("client {client} left the bus"));
        for id in state.pending {
            if let Some(key) = self.lease_home.remove(&id) {
                if let Some(resource) = self.resources.get_mut(&key)
                    && let Some(at) = resource.queue.iter().position(|p| p.id == id)
                    && let Some(pending) = resource.queue.remove(at)
                {
                    let _ = pending.reply.send(Err(why.clone()));
                }
                touched.insert(key);
            }
        }
        for id in state.leases {
            if let Some((key, _)) = self.remove_lease(id) {
                touched.insert(key);
            }
        }
        // Leaving may unblock acquisitions queued behind this client's leases or requests.
        for key in touched {
            self.pump(&key);
            self.forget_if_idle(&key);
        }
    }

    fn stats(&self) -> UpcallStats {
        let mut stats = UpcallStats {
            clients: self.clients.len(),
            resources: self.resources.len(),
            timers: self.timers.len(),
            ..UpcallStats::default()
        };
        for resource in self.resources.values() {
            stats.watches += resource.watchers.len();
            stats.leases += resource.leases().len();
            stats.pending += resource.queue.len();
        }
        stats
    }
}
