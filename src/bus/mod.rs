//! The D-Bus face of corral: the Manager and Service objects (thin adapters over the
//! supervisor and the fleet), the wire errors, access control, and the publisher that turns
//! events into signals.

pub mod access;
pub mod errors;
pub mod fleet;
pub mod manager;
pub mod object_manager;
pub mod publisher;
pub mod service;
pub mod upcall;

use zbus::Connection;
use zbus::connection::Builder;

use crate::names::{BUS_NAME, MANAGER_PATH};

/// Which bus to serve on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS` overrides its address, as everywhere).
    System,
    /// The session bus, for development.
    Session,
    /// An explicit address, e.g. `unix:path=/tmp/bus`.
    Address(String),
}

/// Connects, serves the manager object and the ObjectManager of the service objects at the
/// manager path, and owns `org.corral.Corral1` (requested after the objects are served, so
/// a client that sees the name finds the objects).
pub async fn connect(
    address: &BusAddress,
    manager: manager::ManagerObject,
    upcalls: upcall::UpcallObject,
) -> zbus::Result<Connection> {
    let builder = match address {
        BusAddress::System => Builder::system(),
        BusAddress::Session => Builder::session(),
        BusAddress::Address(address) => Builder::address(address.as_str()),
    };
    let services = object_manager::ServiceObjects::new(manager.supervisor());
    builder
        .serve_at(MANAGER_PATH, manager)
        .serve_at(MANAGER_PATH, upcalls)
        .serve_at(MANAGER_PATH, services)
        .name(BUS_NAME)
        .build()
        .await
}
