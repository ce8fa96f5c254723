//! The fleet: several corrald hosts coordinated through etcd v3 (DESIGN.md "Fleet").
//!
//! Without `[fleet]` none of this runs. With it, [`Fleet::start`] spawns one actor that
//! keeps a lease (`session`), follows every key below the prefix (`watch`), decides
//! where each group runs (`placement`), holds the owner keys of the groups this host
//! serves (`ownership`), fails groups over from dead hosts (`failover`) and publishes
//! this host's report (`reports`). The key layout is in `keys`.
//!
//! # What the applier does with it
//!
//! The fleet decides *where* groups run; the applier (transitions + supervisor) still
//! does all starting and stopping, as reloads. Its contract:
//!
//! 1. Keep the file configuration and a map `group → peer` from [`FleetEvent::Placed`];
//!    the configuration it applies is the file's with each group's `peer` replaced by
//!    the map's ([`effective_config`]). Every `Placed` is applied like a reload of that
//!    configuration (same diff, same order, same signals: `GroupMoved`, `ServiceUnserved`,
//!    `ServiceServed`). `Fleet::start` queues a `Placed` for every group first, so the map
//!    is complete before the first `Up`.
//! 2. `Placed { peer == this host }` comes only once this host holds the group's owner
//!    key: only then are its services served here.
//! 3. When a group stops being served here (placed elsewhere, `peer == ""` after lost
//!    contact, or removed by a reload), stop its services, **then** call
//!    [`FleetHandle::release`]. The owner key is deleted only then, and only then can the
//!    next host take it and start the services. A `stop_by` deadline (lost contact) means
//!    the services must be gone by that instant, so stop them with
//!    `min(stop_timeout, stop_by − now)` before SIGKILL.
//! 4. Before applying a reload, [`FleetHandle::update_config`] with the new
//!    configuration (a group it removes then counts as stopping, and its `release` after
//!    the reload gives its key back). After each applied reload or service state change,
//!    [`FleetHandle::report`] the host's state.
//! 5. At shutdown, stop everything (releasing each group) and call
//!    [`FleetHandle::shutdown`], which gives the lease back.

mod actor;
mod error;
mod failover;
mod keys;
mod ownership;
mod placement;
mod reports;
mod session;
mod view;
mod watch;

use std::collections::BTreeMap;

use etcd_client::{Client, ConnectOptions};
use tokio::sync::mpsc::{self, UnboundedReceiver, unbounded_channel};
use tokio::sync::{oneshot, watch as watch_channel};

pub use error::FleetError;
pub use reports::{HostInfo, HostReport, ServiceReport, config_hash};

use crate::config::{Config, FleetSettings};
use actor::{Actor, Command, Inbox};
use session::{Backoff, Timing};

/// The Manager's `Fleet` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetState {
    /// No `[fleet]`: one host, its files, no network.
    Off,
    /// No lease yet, or the watch is being (re)established.
    Connecting,
    /// Lease live and the placements are etcd's.
    Connected,
    /// Keep-alives went unanswered: every fleet group was told to stop.
    Lost,
}

impl FleetState {
    pub fn as_str(self) -> &'static str {
        match self {
            FleetState::Off => "off",
            FleetState::Connecting => "connecting",
            FleetState::Connected => "connected",
            FleetState::Lost => "lost",
        }
    }
}

/// What the fleet tells the applier, in the order it must be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEvent {
    /// `group` runs on `peer` now, as this host sees it. `peer` is this host only when it
    /// holds the owner key; `""` when nobody may serve it as far as this host knows (it lost
    /// contact). `stop_by`: the services must be gone by then (lost contact).
    Placed {
        group: String,
        peer: String,
        stop_by: Option<std::time::Instant>,
    },
    /// The fleet's state changed (for the `Fleet` property).
    State(FleetState),
}

/// The fleet, as the applier and the D-Bus layer use it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FleetHandle {
    commands: mpsc::Sender<Command>,
    state: watch_channel::Receiver<FleetState>,
}

/// Starts the fleet.
pub struct Fleet;

impl Fleet {
    /// Starts the fleet for `config` (whose `fleet` must be set) on the current tokio
    /// runtime. Returns at once: etcd is contacted in the background, and retried for as
    /// long as it does not answer (state `connecting`). The event receiver already holds a
    /// `Placed` for every group of `config`: its `peer`, or `""` where that is this host
    /// (not served until the owner key is held).
    ///
    /// `inherited_lease`: the lease of the corrald this one re-executed from. It is kept
    /// alive on (if etcd still has it), so this host keeps its report and owner keys.
    pub fn start(
        settings: &FleetSettings,
        config: &Config,
        inherited_lease: Option<i64>,
    ) -> (FleetHandle, UnboundedReceiver<FleetEvent>) {
        let host = config.daemon.host.clone();
        let timing = Timing {
            ttl: settings.lease_ttl,
        };
        let (events_tx, events) = unbounded_channel();
        let (state_tx, state) = watch_channel::channel(FleetState::Connecting);
        let _ = events_tx.send(FleetEvent::State(FleetState::Connecting));
        let mut shown = BTreeMap::new();
        for (group, peer) in initial_placements(config) {
            let _ = events_tx.send(FleetEvent::Placed {
                group: group.clone(),
                peer: peer.clone(),
                stop_by: None,
            });
            shown.insert(group, peer);
        }
        let (commands_tx, commands) = mpsc::channel(64);
        let settings = settings.clone();
        let groups = config.groups.clone();
        tokio::spawn(async move {
            let client = connect(&settings, timing).await;
            let (lease_tx, lease) = unbounded_channel();
            let (sync_tx, sync) = unbounded_channel();
            let (done_tx, done) = unbounded_channel();
            let session = tokio::spawn(session::keep_lease(
                client.clone(),
                timing,
                lease_tx,
                inherited_lease,
            ));
            let actor = Actor {
                host,
                keys: keys::Keys::new(&settings.prefix),
                client,
                timing,
                failover: settings.failover,
                placements: placement::Placements::new(groups),
                own: BTreeMap::new(),
                shown,
                lease: None,
                state: FleetState::Connecting,
                state_tx,
                events: events_tx,
                reports: BTreeMap::new(),
                owners: BTreeMap::new(),
                orphans: BTreeMap::new(),
                report: reports::ReportSlot::default(),
                synced: false,
                sync_generation: 0,
                sync_task: None,
                sync_news: sync_tx,
                retry_at: None,
                sync_backoff: Backoff::new(),
                done: done_tx,
            };
            let inbox = Inbox {
                commands,
                lease,
                sync,
                done,
            };
            actor.run(inbox, session).await;
        });
        (
            FleetHandle {
                commands: commands_tx,
                state,
            },
            events,
        )
    }
}

/// The etcd client. Building it contacts nobody (connections are made per request), so
/// it only fails for endpoints the configuration check already refused; retried anyway.
async fn connect(settings: &FleetSettings, timing: Timing) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(timing.request_timeout())
        // One HTTP/2 ping per TTL finds a connection that died silently (a partition),
        // which the watch stream alone would wait on for ever.
        .with_keep_alive(timing.ttl, timing.request_timeout());
    let mut backoff = Backoff::new();
    loop {
        match Client::connect(&settings.etcd, Some(options.clone())).await {
            Ok(client) => return client,
            Err(error) => {
                tracing::warn!(%error, "cannot set up the etcd client; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Where each group of `config` runs before the fleet said anything: its configured
/// `peer`, except that a group configured for this host shows `""` until this host holds
/// its owner key.
pub fn initial_placements(config: &Config) -> BTreeMap<String, String> {
    config
        .groups
        .iter()
        .map(|(name, group)| {
            let peer = if group.peer == config.daemon.host {
                String::new()
            } else {
                group.peer.clone()
            };
            (name.clone(), peer)
        })
        .collect()
}

/// The configuration the applier applies: `config` with each group's `peer` taken from
/// `placed` (the fleet's `Placed` events), and [`initial_placements`] for groups the
/// fleet has not placed yet.
pub fn effective_config(config: &Config, placed: &BTreeMap<String, String>) -> Config {
    let initial = initial_placements(config);
    let mut effective = config.clone();
    for (name, group) in &mut effective.groups {
        if let Some(peer) = placed.get(name).or_else(|| initial.get(name)) {
            group.peer = peer.clone();
        }
    }
    effective
}

impl FleetHandle {
    /// The current state (for the `Fleet` property).
    pub fn state(&self) -> FleetState {
        *self.state.borrow()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch_channel::Receiver<FleetState> {
        self.state.clone()
    }

    /// Publishes this host's report (coalesced: only the newest is written).
    pub async fn report(&self, report: HostReport) {
        let _ = self.commands.send(Command::Report(report)).await;
    }

    /// The applier stopped serving `group`: its owner key may go to the next host.
    pub async fn release(&self, group: &str) {
        let _ = self.commands.send(Command::Release(group.to_owned())).await;
    }

    /// A reload changed the configuration: placements are checked against its groups.
    pub async fn update_config(&self, config: &Config) {
        let _ = self
            .commands
            .send(Command::Groups(config.groups.clone()))
            .await;
    }

    /// `MoveGroup`: place `group` on `peer`. Refused for a group this host does not
    /// define, a peer not in the group's `peers`, or a host that is not alive.
    pub async fn move_group(&self, group: &str, peer: &str) -> Result<(), FleetError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Move {
            group: group.to_owned(),
            peer: peer.to_owned(),
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| FleetError::Stopped)?;
        answer.await.map_err(|_| FleetError::Stopped)?
    }

    /// Every host of the fleet, as this host's watch sees it (no etcd round trip).
    /// The lease this host holds now, if it is live (a re-exec hands it over).
    pub async fn lease(&self) -> Option<i64> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Lease(reply)).await.ok()?;
        answer.await.ok().flatten()
    }

    pub async fn hosts(&self) -> Result<Vec<HostInfo>, FleetError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Hosts(reply))
            .await
            .map_err(|_| FleetError::Stopped)?;
        answer.await.map_err(|_| FleetError::Stopped)?
    }

    /// Stops the fleet and gives the lease back (the other hosts see this host leave at
    /// once). Call it after the applier stopped and released every group.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Shutdown(reply)).await.is_ok() {
            let _ = done.await;
        }
    }
}
