//! The applier's side of the fleet, carried out by the reloader task: the contract of
//! [`crate::fleet`]'s module doc ("What the applier does with it").
//!
//! The link keeps the configuration as the files have it and where the fleet placed each
//! group; the reloader applies [`FleetLink::effective`] — the files' configuration with
//! the fleet's placements — after each batch of placements exactly as a reload (same diff,
//! same order, same signals), and after every reload. So fleet changes and file reloads
//! are serialised by the one task that owns the applier. Once an applied configuration no
//! longer serves a group this host was given, its owner key is released.
//!
//! A lost contact's deadline (`stop_by`) does not wait for the reloader, which may be
//! busy with a long reload: a relay task between the fleet and the link arms a timer per
//! group, and when it fires the supervisor kills what is left of the group's services
//! ([`crate::supervisor::Handle::kill_group`]). The timer is disarmed when the group is
//! placed here again, which the fleet only does after the release, i.e. after the stop.
//!
//! Without the `fleet` cargo feature the link cannot exist (an empty enum), and the
//! reloader's fleet paths compile to nothing.

#[cfg(feature = "fleet")]
pub use imp::FleetLink;

#[cfg(not(feature = "fleet"))]
pub use off::FleetLink;

#[cfg(feature = "fleet")]
mod imp {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
    use tokio::sync::watch;
    use tokio::task::AbortHandle;

    use crate::config::Config;
    use crate::fleet::{FleetEvent, FleetHandle, config_hash, effective_config};
    use crate::supervisor::Handle;

    /// The fleet as the reloader task holds it.
    pub struct FleetLink {
        fleet: FleetHandle,
        /// The fleet's events, after the deadline relay.
        events: UnboundedReceiver<FleetEvent>,
        /// The configuration as the files have it (the last valid one read).
        file: Config,
        /// Where the fleet last placed each group.
        placed: BTreeMap<String, String>,
        /// Groups the fleet placed here since they were last released: each is released
        /// once an applied configuration no longer serves it.
        owed: BTreeSet<String>,
        /// [`config_hash`] of `file`, for this host's reports.
        hash: watch::Sender<String>,
    }

    impl FleetLink {
        /// Takes over the fleet's events. What [`crate::fleet::Fleet::start`] queued is
        /// taken at once, so [`FleetLink::effective`] is complete before `Up`.
        pub fn new(
            fleet: FleetHandle,
            mut events: UnboundedReceiver<FleetEvent>,
            file: Config,
            supervisor: Handle,
        ) -> FleetLink {
            let host = file.daemon.host.clone();
            let (hash, _) = watch::channel(config_hash(&file));
            let mut link = FleetLink {
                fleet,
                events: unbounded_channel().1,
                file,
                placed: BTreeMap::new(),
                owed: BTreeSet::new(),
                hash,
            };
            while let Ok(event) = events.try_recv() {
                link.take(event);
            }
            let (relayed, relay_rx) = unbounded_channel();
            tokio::spawn(relay(host, events, supervisor, relayed));
            link.events = relay_rx;
            link
        }

        /// The configuration to apply: the files', with the fleet's placements.
        pub fn effective(&self) -> Config {
            effective_config(&self.file, &self.placed)
        }

        /// The hash of the files' configuration, as it changes (for the reports).
        pub fn config_hash(&self) -> watch::Receiver<String> {
            self.hash.subscribe()
        }

        /// Waits for the fleet's next events and takes every one queued (cancel-safe).
        /// Never returns once the fleet is gone.
        pub async fn next(&mut self) {
            match self.events.recv().await {
                Some(event) => self.take(event),
                None => std::future::pending().await,
            }
            while let Ok(event) = self.events.try_recv() {
                self.take(event);
            }
        }

        fn take(&mut self, event: FleetEvent) {
            if let FleetEvent::Placed { group, peer, .. } = event {
                if peer == self.file.daemon.host {
                    self.owed.insert(group.clone());
                }
                self.placed.insert(group, peer);
            }
        }

        /// A reload read `config`: the fleet checks its placements against it first (a
        /// group it removes counts as stopping). Returns what to apply.
        pub async fn reloaded(&mut self, config: Config) -> Config {
            if config.fleet != self.file.fleet {
                tracing::warn!(
                    "[fleet] changed: the new settings take effect when corrald restarts"
                );
            }
            self.fleet.update_config(&config).await;
            self.placed
                .retain(|group, _| config.groups.contains_key(group));
            self.hash.send_replace(config_hash(&config));
            self.file = config;
            self.effective()
        }

        /// After `applied` was applied: releases every group placed here that it does not
        /// serve here, so the fleet can give its owner key to the next host.
        pub async fn release_stopped(&mut self, applied: &Config) {
            let host = &applied.daemon.host;
            let stopped: Vec<String> = self
                .owed
                .iter()
                .filter(|group| applied.groups.get(*group).is_none_or(|g| &g.peer != host))
                .cloned()
                .collect();
            for group in stopped {
                tracing::info!(group, "stopped serving the group: releasing its owner key");
                self.owed.remove(&group);
                self.fleet.release(&group).await;
            }
        }

        /// Leaves the fleet: gives the lease back. After every group was released.
        pub async fn shutdown(&mut self) {
            self.fleet.shutdown().await;
        }
    }

    /// Passes the fleet's events on, arming a timer for each lost-contact deadline: when
    /// it fires, the group's services are killed, however far the reloader got.
    async fn relay(
        host: String,
        mut events: UnboundedReceiver<FleetEvent>,
        supervisor: Handle,
        out: UnboundedSender<FleetEvent>,
    ) {
        let mut deadlines: HashMap<String, AbortHandle> = HashMap::new();
        while let Some(event) = events.recv().await {
            if let FleetEvent::Placed {
                group,
                peer,
                stop_by,
            } = &event
            {
                if *peer == host {
                    // Placed here again: released (so stopped) before, nothing to enforce.
                    if let Some(timer) = deadlines.remove(group) {
                        timer.abort();
                    }
                } else if let Some(stop_by) = *stop_by
                    && !deadlines.contains_key(group)
                {
                    let (supervisor, name) = (supervisor.clone(), group.clone());
                    let timer = tokio::spawn(async move {
                        tokio::time::sleep_until(stop_by.into()).await;
                        supervisor.kill_group(&name).await;
                    });
                    deadlines.insert(group.clone(), timer.abort_handle());
                }
            }
            if out.send(event).is_err() {
                return;
            }
        }
    }
}

#[cfg(not(feature = "fleet"))]
mod off {
    use crate::config::Config;

    /// No fleet in this build: there is never a link.
    pub enum FleetLink {}

    impl FleetLink {
        pub fn effective(&self) -> Config {
            match *self {}
        }

        pub async fn next(&mut self) {
            match *self {}
        }

        pub async fn reloaded(&mut self, _config: Config) -> Config {
            match *self {}
        }

        pub async fn release_stopped(&mut self, _applied: &Config) {
            match *self {}
        }

        pub async fn shutdown(&mut self) {
            match *self {}
        }
    }
}
