//! The actor's view of the prefix: a fresh read replaces it, each watched change updates
//! it (reports, owners, placements), and what changed drives failover and ownership.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::actor::Actor;
use super::error::FleetError;
use super::keys::Key;
use super::placement;
use super::reports::HostReport;
use super::watch::{Record, SyncNews};
use tokio::sync::oneshot;

impl Actor {
    pub(crate) fn start_sync(&mut self) {
        self.sync_generation += 1;
        let task = tokio::spawn(super::watch::sync(
            self.client.clone(),
            self.keys.root().to_owned(),
            self.sync_generation,
            self.timing,
            self.sync_news.clone(),
        ));
        self.sync_task = Some(task);
    }

    pub(crate) fn sync_news(&mut self, news: SyncNews) {
        match news {
            SyncNews::Snapshot {
                generation,
                records,
                revision,
            } if generation == self.sync_generation => {
                tracing::debug!(revision, keys = records.len(), "fleet: read the prefix");
                self.sync_backoff.reset();
                self.snapshot(records);
            }
            SyncNews::Changes {
                generation,
                records,
            } if generation == self.sync_generation => {
                for record in records {
                    self.change(record);
                }
            }
            SyncNews::Broken { generation, reason } if generation == self.sync_generation => {
                tracing::warn!(reason, "fleet watch broken; reading the prefix again");
                self.sync_task = None;
                self.synced = false;
                self.update_state();
                let delay = self.sync_backoff.next_delay();
                self.retry_at = Some(Instant::now() + delay);
            }
            _ => {}
        }
    }

    /// A fresh read of the whole prefix replaces what the actor knew.
    fn snapshot(&mut self, records: Vec<Record>) {
        let was_alive: BTreeSet<String> = self.reports.keys().cloned().collect();
        let had_view = self.synced || !was_alive.is_empty();
        self.reports.clear();
        self.owners.clear();
        let mut peers = BTreeMap::new();
        for record in records {
            let Some(value) = record.value else { continue };
            match self.keys.parse(&record.key) {
                Some(Key::Host(host)) => {
                    self.reports.insert(host, HostReport::parse(&value));
                }
                Some(Key::Owner(group)) => {
                    self.owners
                        .insert(group, String::from_utf8_lossy(&value).into_owned());
                }
                Some(Key::Peer(group)) => {
                    peers.insert(group, (value, record.mod_revision));
                }
                None => {}
            }
        }
        let (_, problems) = self.placements.store_all(&peers);
        for problem in problems {
            tracing::warn!(%problem, "ignoring a placement in etcd");
        }
        self.synced = true;
        self.update_state();
        if had_view {
            // Hosts that left while the watch was down get the failover they missed.
            let gone: Vec<String> = was_alive
                .into_iter()
                .filter(|h| !self.reports.contains_key(h))
                .collect();
            for host in gone {
                self.host_died(&host);
            }
        }
        self.write_report();
        self.reconcile_all();
    }

    /// One change below the prefix.
    fn change(&mut self, record: Record) {
        match self.keys.parse(&record.key) {
            Some(Key::Host(host)) => match record.value {
                Some(value) => {
                    let parsed = HostReport::parse(&value);
                    if let Err(problem) = &parsed {
                        tracing::warn!(host, problem, "a host's report in etcd is not readable");
                    }
                    let appeared = self.reports.insert(host.clone(), parsed).is_none();
                    if appeared {
                        self.host_appeared(&host);
                    }
                }
                None => {
                    self.reports.remove(&host);
                    if host != self.host {
                        self.host_died(&host);
                    }
                }
            },
            Some(Key::Owner(group)) => match record.value {
                Some(value) => {
                    self.owners
                        .insert(group, String::from_utf8_lossy(&value).into_owned());
                }
                None => {
                    self.owners.remove(&group);
                }
            },
            Some(Key::Peer(group)) => {
                match self
                    .placements
                    .store(&group, record.value.as_deref(), record.mod_revision)
                {
                    Ok(_) => {}
                    Err(FleetError::UnknownGroup(_)) => {
                        tracing::debug!(group, "placement of a group this host does not define");
                    }
                    Err(problem) => tracing::warn!(%problem, "ignoring a placement in etcd"),
                }
                self.try_fail_over(&group);
                self.reconcile(&group);
            }
            None => {}
        }
    }

    /// `MoveGroup`: checked here against the configuration, then written by a transaction
    /// that requires the target host to be alive.
    pub(crate) fn move_group(
        &mut self,
        group: String,
        peer: String,
        reply: oneshot::Sender<Result<(), FleetError>>,
    ) {
        if let Err(error) = placement::check(self.placements.groups(), &group, &peer) {
            let _ = reply.send(Err(error));
            return;
        }
        if self.live_lease().is_none() {
            let _ = reply.send(Err(FleetError::NotConnected(self.state.as_str())));
            return;
        }
        if self.placements.peer(&group) == Some(peer.as_str()) {
            let _ = reply.send(Ok(()));
            return;
        }
        let client = self.client.clone();
        let keys = self.keys.clone();
        let timing = self.timing;
        tokio::spawn(async move {
            let result = placement::write(&client, &keys, &group, &peer, timing).await;
            let _ = reply.send(result);
        });
    }
}
