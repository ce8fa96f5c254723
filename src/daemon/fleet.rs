//! corrald's fleet wiring, with `[fleet]`: the fleet itself ([`crate::fleet`]), the link
//! through which the reloader applies its placements ([`crate::transitions::fleet`]), this
//! host's reports, and the Manager's `Fleet` property. Without `[fleet]` (or without the
//! `fleet` cargo feature) none of it exists: no task, no network.

use std::os::fd::RawFd;
use std::path::Path;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use crate::bus::fleet::FleetAccess;
use crate::config::Config;
use crate::events::{EventSender, ManagerStatus};
use crate::fence::{self, FenceDescriptor, FenceHandle};
use crate::reexec::FleetHandover;
use crate::supervisor;
use crate::transitions::fleet::FleetLink;

/// With a fleet, the fence: before any service starts, each grouped service's processes
/// are named to it as they are spawned. After a re-exec, the fence the previous image
/// started (its pipe's write end and PID, `inherited`) is taken over instead.
pub(super) fn start_fence(
    program: &Path,
    config: &Config,
    inherited: Option<(RawFd, u32)>,
) -> Result<Option<FenceHandle>, DaemonError> {
    if config.fleet.is_none() {
        return Ok(None);
    }
    let started = match inherited {
        // SAFETY: the previous image handed this descriptor over for exactly this.
        Some((fd, pid)) => unsafe { fence::adopt(program, FenceDescriptor { fd, pid }) },
        None => fence::start(program),
    };
    started.map(Some).map_err(|source| DaemonError::Fence {
        program: program.to_owned(),
        source,
    })
}

/// The fleet's parts, as `run` wires them.
pub(super) struct FleetParts {
    /// For the Manager's fleet methods.
    pub access: FleetAccess,
    /// For the reloader; `None` without a fleet.
    pub link: Option<FleetLink>,
}

impl FleetParts {
    /// The fleet of `config`, started (it contacts etcd in the background), or nothing.
    #[cfg_attr(not(feature = "fleet"), allow(unused_variables))]
    pub fn start(
        config: &Config,
        supervisor: &supervisor::Handle,
        inherited_lease: Option<i64>,
    ) -> FleetParts {
        #[cfg(feature = "fleet")]
        if let Some(settings) = &config.fleet {
            let (fleet, events) = crate::fleet::Fleet::start(settings, config, inherited_lease);
            let link = FleetLink::new(fleet.clone(), events, config.clone(), supervisor.clone());
            return FleetParts {
                access: FleetAccess::On(fleet),
                link: Some(link),
            };
        }
        FleetParts {
            access: FleetAccess::Off,
            link: None,
        }
    }

    /// What a live re-exec hands over of the fleet: its lease and the fence.
    pub fn handover(&self, fence: Option<FenceHandle>) -> FleetHandover {
        FleetHandover {
            #[cfg(feature = "fleet")]
            fleet: match &self.access {
                FleetAccess::On(fleet) => Some(fleet.clone()),
                FleetAccess::Off => None,
            },
            fence,
        }
    }

    /// What `Up` applies: the configuration with the fleet's placements (a group placed
    /// here waits for its owner key), or `config` itself.
    pub fn up_config(&self, config: Config) -> Config {
        match &self.link {
            Some(link) => link.effective(),
            None => config,
        }
    }

    /// The `Fleet` property before the fleet said anything.
    pub fn initial_state(&self) -> &'static str {
        match self.access {
            FleetAccess::Off => "off",
            #[cfg(feature = "fleet")]
            FleetAccess::On(_) => "connecting",
        }
    }

    /// Starts the tasks that follow the fleet's state into the `Fleet` property and keep
    /// this host's report current, until `stop`.
    #[cfg_attr(not(feature = "fleet"), allow(unused_variables))]
    pub fn spawn_tasks(
        &self,
        supervisor: &supervisor::Handle,
        manager: &watch::Sender<ManagerStatus>,
        events: &EventSender,
        stop: &CancellationToken,
    ) {
        #[cfg(feature = "fleet")]
        if let (FleetAccess::On(fleet), Some(link)) = (&self.access, &self.link) {
            tokio::spawn(reports::follow_state(
                fleet.watch_state(),
                manager.clone(),
                events.clone(),
            ));
            tokio::spawn(reports::report(
                fleet.clone(),
                supervisor.clone(),
                manager.subscribe(),
                link.config_hash(),
                stop.clone(),
            ));
        }
    }
}

#[cfg(feature = "fleet")]
mod reports {
    use std::time::Duration;

    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    use crate::events::{Event, EventSender, ManagerStatus};
    use crate::fleet::{FleetHandle, FleetState, HostReport, ServiceReport};
    use crate::supervisor;

    /// Bursts of state changes (a reload starting fifty services) become one report.
    const COALESCE: Duration = Duration::from_millis(100);

    /// Mirrors the fleet's state into the `Fleet` property.
    pub(super) async fn follow_state(
        mut state: watch::Receiver<FleetState>,
        manager: watch::Sender<ManagerStatus>,
        events: EventSender,
    ) {
        loop {
            let now = state.borrow_and_update().as_str();
            let changed = manager.send_if_modified(|m| {
                let changed = m.fleet != now;
                m.fleet = now;
                changed
            });
            if changed {
                events.send(Event::Manager);
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Keeps `hosts/<host>` current: after each applied configuration and each change of
    /// a service's active state (the fleet writes only what changed, one write at a time).
    pub(super) async fn report(
        fleet: FleetHandle,
        supervisor: supervisor::Handle,
        mut manager: watch::Receiver<ManagerStatus>,
        mut hash: watch::Receiver<String>,
        stop: CancellationToken,
    ) {
        let mut summary = supervisor.summary();
        loop {
            let generation = manager.borrow_and_update().generation;
            let config_hash = hash.borrow_and_update().clone();
            summary.borrow_and_update();
            let services = supervisor
                .list()
                .await
                .into_iter()
                .map(|s| {
                    let report = ServiceReport {
                        group: (!s.group.is_empty()).then_some(s.group),
                        active_state: s.active_state.to_owned(),
                        sub_state: s.sub_state.to_owned(),
                    };
                    (s.name, report)
                })
                .collect();
            fleet
                .report(HostReport {
                    config_generation: generation,
                    config_hash,
                    services,
                    ..HostReport::empty()
                })
                .await;
            let changed = tokio::select! {
                _ = stop.cancelled() => return,
                changed = summary.changed() => changed,
                changed = manager.changed() => changed,
                changed = hash.changed() => changed,
            };
            if changed.is_err() {
                return;
            }
            tokio::time::sleep(COALESCE).await;
        }
    }
}
