//! The Manager's fleet methods — `MoveGroup`, `ListHosts`, `ListHostDetails` — over the
//! fleet when the configuration has `[fleet]`, and over this host alone when it has not:
//! then the listing is this host (it is the whole "fleet"), and `MoveGroup` says that
//! groups are placed by their `peer` key.

use serde::{Deserialize, Serialize};
use zbus::Type;

use super::errors::{BusError, BusResult};
use crate::events::ManagerStatus;
#[cfg(feature = "fleet")]
use crate::fleet::FleetHandle;

/// How the Manager reaches the fleet. Cheap to clone.
#[derive(Debug, Clone)]
pub enum FleetAccess {
    /// No `[fleet]`: one host, its files, no network.
    Off,
    #[cfg(feature = "fleet")]
    On(FleetHandle),
}

/// A row of `ListHostDetails` (`(sstbasbs)` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct HostRow {
    pub host: String,
    /// corral's version on that host; empty when it is not alive or its report is unreadable.
    pub version: String,
    /// Its `ConfigGeneration` as it last reported it.
    pub config_generation: u64,
    /// Its lease is live (its report key exists).
    pub alive: bool,
    /// The groups it serves now (holds the owner keys of), in name order.
    pub serving: Vec<String>,
    /// Its configuration differs from the one most hosts report.
    pub drift: bool,
    /// Why its report could not be read; empty when it could.
    pub problem: String,
}

impl FleetAccess {
    /// `MoveGroup`: places `group` on `peer` (written to etcd; every host applies it).
    pub async fn move_group(&self, group: &str, peer: &str) -> BusResult {
        match self {
            FleetAccess::Off => Err(BusError::FleetUnavailable(format!(
                "cannot move group {group:?}: this host is not part of a fleet (its \
                 configuration has no [fleet] table), so a group runs where its `peer` key \
                 says: set peer = {peer:?} in [groups.{group}] and reload"
            ))),
            #[cfg(feature = "fleet")]
            FleetAccess::On(fleet) => Ok(fleet.move_group(group, peer).await?),
        }
    }

    /// Every host of the fleet as this host sees it, in name order; this host alone
    /// without a fleet.
    pub async fn hosts(&self, status: &ManagerStatus) -> BusResult<Vec<HostRow>> {
        match self {
            FleetAccess::Off => Ok(vec![HostRow {
                host: status.host.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                config_generation: status.generation,
                alive: true,
                serving: status.groups_here.clone(),
                drift: false,
                problem: String::new(),
            }]),
            #[cfg(feature = "fleet")]
            FleetAccess::On(fleet) => Ok(fleet
                .hosts()
                .await?
                .into_iter()
                .map(|host| HostRow {
                    version: host
                        .report
                        .as_ref()
                        .map(|r| r.version.clone())
                        .unwrap_or_default(),
                    config_generation: host.report.as_ref().map_or(0, |r| r.config_generation),
                    alive: host.alive,
                    serving: host.serving,
                    drift: host.drift,
                    problem: host.problem.unwrap_or_default(),
                    host: host.host,
                })
                .collect()),
        }
    }
}
