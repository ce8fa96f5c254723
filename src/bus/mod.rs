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
///
/// After a live re-exec (`reexecuted`), the name may still be owned for a moment by the
/// connection the exec closed: then the request waits in the bus's queue for the name, up
/// to [`NAME_WAIT`], instead of failing.
pub async fn connect(
    address: &BusAddress,
    manager: manager::ManagerObject,
    upcalls: upcall::UpcallObject,
    events: crate::events::EventSender,
    reexecuted: bool,
) -> zbus::Result<Connection> {
    let builder = match address {
        BusAddress::System => Builder::system(),
        BusAddress::Session => Builder::session(),
        BusAddress::Address(address) => Builder::address(address.as_str()),
    };
    let services = object_manager::ServiceObjects::new(events);
    let builder = builder
        .serve_at(MANAGER_PATH, manager)
        .serve_at(MANAGER_PATH, upcalls)
        .serve_at(MANAGER_PATH, services);
    if !reexecuted {
        return builder.name(BUS_NAME).build().await;
    }
    let connection = builder.build().await?;
    let dbus = zbus::fdo::DBusProxy::new(&connection).await?;
    let mut acquired = dbus.receive_name_acquired().await?;
    let reply = dbus
        .request_name(BUS_NAME.try_into()?, zbus::fdo::RequestNameFlags::empty())
        .await?;
    if reply != zbus::fdo::RequestNameReply::PrimaryOwner {
        let wait = async {
            use futures_util::StreamExt;
            while let Some(signal) = acquired.next().await {
                if signal.args().is_ok_and(|a| a.name() == BUS_NAME) {
                    return true;
                }
            }
            false
        };
        if !tokio::time::timeout(NAME_WAIT, wait).await.unwrap_or(false) {
            return Err(zbus::Error::NameTaken);
        }
    }
    Ok(connection)
}

/// How long a re-executed corrald waits for the bus to hand it the name back.
pub const NAME_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
