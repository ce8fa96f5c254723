//! The fleet actor: one task that owns everything the fleet knows (the lease, the
//! placements, the owner keys this host holds, every host's report) and is the only
//! source of [`FleetEvent`]s, so the applier sees them in one consistent order.
//!
//! The actor never awaits etcd itself. Each request runs in a task of its own and reports
//! back through `done`; the lease is kept by the session task and the prefix is followed
//! by the sync task. So the "lost contact" deadline fires on time however slow etcd is.

use std::collections::{BTreeMap, BTreeSet};

use etcd_client::Client;
use tokio::sync::mpsc::{Receiver, UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::error::FleetError;
use super::keys::Keys;
use super::ownership::{Own, Taken};
use super::placement::Placements;
use super::reports::{HostInfo, HostReport, ReportSlot, StoredReports, list_hosts};
use super::session::{Backoff, LeaseNews, Timing};
use super::watch::SyncNews;
use super::{FleetEvent, FleetState};
use crate::config::Group;

/// A request from a [`super::FleetHandle`].
pub(crate) enum Command {
    Report(HostReport),
    Release(String),
    Move {
        group: String,
        peer: String,
        reply: oneshot::Sender<Result<(), FleetError>>,
    },
    Hosts(oneshot::Sender<Result<Vec<HostInfo>, FleetError>>),
    /// The live lease, for a re-exec to hand over.
    Lease(oneshot::Sender<Option<i64>>),
    Groups(BTreeMap<String, Group>),
    Shutdown(oneshot::Sender<()>),
}

/// The answer of a request the actor started.
pub(crate) enum Done {
    Take {
        group: String,
        lease: i64,
        result: Result<Taken, String>,
    },
    Freed {
        group: String,
        result: Result<(), String>,
    },
    GiveBack {
        group: String,
        result: Result<bool, String>,
    },
    FailedOver {
        group: String,
        dead: String,
        to: String,
        result: Result<bool, String>,
    },
    Report {
        report: HostReport,
        lease: i64,
        result: Result<(), String>,
    },
}

/// This host's lease as the session reported it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseView {
    pub id: i64,
    /// It cannot expire before this.
    pub expires: Instant,
    /// Contact was lost: the applier was told to stop every fleet group.
    pub lost: bool,
}

pub(crate) struct Actor {
    pub host: String,
    pub keys: Keys,
    pub client: Client,
    pub timing: Timing,
    pub failover: bool,
    pub placements: Placements,
    /// Where this host stands with each group's owner key.
    pub own: BTreeMap<String, Own>,
    /// What the applier was last told about each group (`Placed`).
    pub shown: BTreeMap<String, String>,
    pub lease: Option<LeaseView>,
    pub state: FleetState,
    pub state_tx: watch::Sender<FleetState>,
    pub events: UnboundedSender<FleetEvent>,
    /// Every host's report, by host: its key exists, so it is alive.
    pub reports: StoredReports,
    /// Who holds each group's owner key.
    pub owners: BTreeMap<String, String>,
    /// Groups whose host died with no live candidate yet: group → dead host.
    pub orphans: BTreeMap<String, String>,
    pub report: ReportSlot,
    /// Whether the current sync task delivered its snapshot: until then the placements
    /// are the configuration's, and nothing is taken.
    pub synced: bool,
    pub sync_generation: u64,
    pub sync_task: Option<JoinHandle<()>>,
    pub sync_news: UnboundedSender<SyncNews>,
    /// When to retry what failed (one timer for everything: a failure is rare).
    pub retry_at: Option<Instant>,
    pub sync_backoff: Backoff,
    pub done: UnboundedSender<Done>,
}

/// The receiving ends the actor's loop selects over.
pub(crate) struct Inbox {
    pub commands: Receiver<Command>,
    pub lease: UnboundedReceiver<LeaseNews>,
    pub sync: UnboundedReceiver<SyncNews>,
    pub done: UnboundedReceiver<Done>,
}

impl Actor {
    /// Runs until a `Shutdown` command or until every handle is gone; then gives the lease
    /// back, so the other hosts see this one leave at once instead of a TTL later.
    pub async fn run(mut self, mut inbox: Inbox, session: JoinHandle<()>) {
        let shutdown_reply = loop {
            let lost_at = self
                .lease
                .filter(|lease| !lease.lost)
                .map(|lease| self.timing.lost_at(lease.expires));
            let retry_at = self.retry_at;
            tokio::select! {
                command = inbox.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => break Some(reply),
                    Some(command) => self.command(command),
                    None => break None,
                },
                Some(news) = inbox.lease.recv() => self.lease_news(news),
                Some(news) = inbox.sync.recv() => self.sync_news(news),
                Some(done) = inbox.done.recv() => self.done(done),
                _ = sleep_until(lost_at.unwrap_or_else(Instant::now)), if lost_at.is_some() => {
                    self.lose_contact();
                }
                _ = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.retry_at = None;
                    self.retry();
                }
            }
        };
        session.abort();
        if let Some(task) = self.sync_task.take() {
            task.abort();
        }
        if let Some(lease) = self.lease.take() {
            let mut leases = self.client.lease_client();
            let revoked = timeout(self.timing.request_timeout(), leases.revoke(lease.id)).await;
            if !matches!(revoked, Ok(Ok(_))) {
                tracing::warn!("could not give the fleet lease back; it expires by itself");
            }
        }
        self.set_state(FleetState::Off);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Report(report) => {
                self.report.set(report);
                self.write_report();
            }
            Command::Release(group) => self.released(&group),
            Command::Lease(reply) => drop(reply.send(self.live_lease())),
            Command::Move { group, peer, reply } => self.move_group(group, peer, reply),
            Command::Hosts(reply) => {
                let answer = if self.synced {
                    let mut known: BTreeSet<String> = BTreeSet::new();
                    for (name, group) in self.placements.groups() {
                        known.extend(group.peers.iter().cloned());
                        known.insert(group.peer.clone());
                        known.extend(self.placements.peer(name).map(str::to_owned));
                    }
                    known.retain(|h| !h.is_empty());
                    Ok(list_hosts(&self.reports, &known, &self.owners))
                } else {
                    Err(FleetError::NotConnected(self.state.as_str()))
                };
                let _ = reply.send(answer);
            }
            Command::Groups(groups) => {
                self.placements.set_groups(groups);
                let names: BTreeSet<String> =
                    self.own.keys().chain(self.shown.keys()).cloned().collect();
                for group in names {
                    if self.placements.peer(&group).is_none() {
                        // Gone from the configuration: the reload stops its services and
                        // the applier releases it; nothing is shown for it any more.
                        self.shown.remove(&group);
                        if let Some(Own::Serving(lease)) = self.own.get(&group) {
                            let lease = *lease;
                            self.own.insert(group.clone(), Own::Stopping(Some(lease)));
                        }
                    }
                }
                self.reconcile_all();
            }
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    fn done(&mut self, done: Done) {
        match done {
            Done::Take {
                group,
                lease,
                result,
            } => self.taken(group, lease, result),
            Done::Freed { group, result } => self.freed(group, result),
            Done::GiveBack { group, result } => self.given_back(group, result),
            Done::FailedOver {
                group,
                dead,
                to,
                result,
            } => self.failed_over(group, dead, to, result),
            Done::Report {
                report,
                lease,
                result,
            } => {
                let current = self.lease_id() == Some(lease);
                if let Err(error) = &result {
                    tracing::warn!(error, "cannot write this host's report; retrying");
                    self.retry_soon();
                }
                self.report.finished(report, result.is_ok() && current);
                self.write_report();
            }
        }
    }

    /// The current lease, whether or not contact is lost.
    pub fn lease_id(&self) -> Option<i64> {
        self.lease.map(|lease| lease.id)
    }

    /// The lease, when it is live and the placements are etcd's: the condition to take
    /// owner keys and write.
    pub fn live_lease(&self) -> Option<i64> {
        self.lease
            .filter(|lease| !lease.lost && self.synced)
            .map(|lease| lease.id)
    }

    /// Tells the applier where `group` runs now, if that changed.
    pub fn show(&mut self, group: &str, peer: &str, stop_by: Option<Instant>) {
        if self.shown.get(group).map(String::as_str) == Some(peer) {
            return;
        }
        self.shown.insert(group.to_owned(), peer.to_owned());
        let _ = self.events.send(FleetEvent::Placed {
            group: group.to_owned(),
            peer: peer.to_owned(),
            stop_by: stop_by.map(Instant::into_std),
        });
    }

    pub fn retry_soon(&mut self) {
        let at = Instant::now() + std::time::Duration::from_secs(1);
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
    }

    fn retry(&mut self) {
        if self.sync_task.is_none() && self.lease.is_some() {
            self.start_sync();
        }
        self.write_report();
        let orphans: Vec<String> = self.orphans.keys().cloned().collect();
        for group in orphans {
            self.try_fail_over(&group);
        }
        self.reconcile_all();
    }

    pub fn reconcile_all(&mut self) {
        let groups: Vec<String> = self.placements.iter().map(|(g, _)| g.clone()).collect();
        for group in groups {
            self.reconcile(&group);
        }
    }

    fn set_state(&mut self, state: FleetState) {
        if self.state != state {
            tracing::info!(state = state.as_str(), "fleet");
            self.state = state;
            self.state_tx.send_replace(state);
            let _ = self.events.send(FleetEvent::State(state));
        }
    }

    pub(crate) fn update_state(&mut self) {
        let state = match self.lease {
            Some(lease) if lease.lost => FleetState::Lost,
            Some(_) if self.synced => FleetState::Connected,
            _ => FleetState::Connecting,
        };
        self.set_state(state);
    }

    fn lease_news(&mut self, news: LeaseNews) {
        match news {
            LeaseNews::Granted { id, expires } => {
                self.lease = Some(LeaseView {
                    id,
                    expires,
                    lost: false,
                });
                self.report.forget_written();
                self.write_report();
                if self.sync_task.is_none() {
                    self.start_sync();
                }
                self.update_state();
                self.regained();
            }
            LeaseNews::Renewed { id, expires } => {
                let Some(lease) = self.lease.as_mut().filter(|lease| lease.id == id) else {
                    return;
                };
                lease.expires = lease.expires.max(expires);
                if lease.lost && self.timing.lost_at(lease.expires) > Instant::now() {
                    lease.lost = false;
                    tracing::info!("fleet contact is back, the lease survived");
                    self.update_state();
                    self.regained();
                }
            }
            LeaseNews::Gone { id } => {
                if self.lease_id() != Some(id) {
                    return;
                }
                tracing::warn!(
                    lease = id,
                    "the fleet lease expired: every owner key under it is gone"
                );
                self.lose_contact();
                self.lease = None;
                for own in self.own.values_mut() {
                    if let Own::Stopping(Some(lease)) = own
                        && *lease == id
                    {
                        *own = Own::Stopping(None);
                    }
                }
                self.update_state();
                self.reconcile_all();
            }
            LeaseNews::Trouble(message) => {
                tracing::warn!(message, "fleet session");
            }
        }
    }

    /// The lease is live again (same or new): resume what waits for it.
    fn regained(&mut self) {
        let orphans: Vec<String> = self.orphans.keys().cloned().collect();
        for group in orphans {
            self.try_fail_over(&group);
        }
        self.reconcile_all();
    }

    /// No keep-alive was acknowledged in time: every group this host serves must stop
    /// before the lease can expire (see `session`).
    fn lose_contact(&mut self) {
        let Some(lease) = self.lease.as_mut() else {
            return;
        };
        if lease.lost {
            return;
        }
        lease.lost = true;
        let stop_by = self.timing.stop_by(lease.expires);
        tracing::warn!(
            "lost contact with etcd: stopping every fleet group before the lease can expire"
        );
        self.update_state();
        let serving: Vec<(String, i64)> = self
            .own
            .iter()
            .filter_map(|(group, own)| match own {
                Own::Serving(lease) => Some((group.clone(), *lease)),
                _ => None,
            })
            .collect();
        for (group, lease) in serving {
            self.own.insert(group.clone(), Own::Stopping(Some(lease)));
            self.show(&group, "", Some(stop_by));
        }
        self.reconcile_all();
    }

    /// Writes this host's report if it changed and no write is in flight.
    pub(crate) fn write_report(&mut self) {
        let Some(lease) = self.lease.filter(|lease| !lease.lost).map(|lease| lease.id) else {
            return;
        };
        let Some(report) = self.report.next_write() else {
            return;
        };
        let client = self.client.clone();
        let key = self.keys.host(&self.host);
        let timing = self.timing;
        let done = self.done.clone();
        tokio::spawn(async move {
            let options = etcd_client::PutOptions::new().with_lease(lease);
            let mut kv = client.kv_client();
            let put = kv.put(key, report.to_json(), Some(options));
            let result = match timeout(timing.request_timeout(), put).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("etcd did not answer in time".to_owned()),
            };
            let _ = done.send(Done::Report {
                report,
                lease,
                result,
            });
        });
    }
}
