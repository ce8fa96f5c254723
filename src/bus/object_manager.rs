//! `org.freedesktop.DBus.ObjectManager` on the manager object: `GetManagedObjects` lists
//! the service objects, each with its `org.corral.Corral1.Service` properties, and nothing
//! else.
//!
//! zbus's own `fdo::ObjectManager` lists every node below it, so the bare
//! `/org/corral/Corral1/service` — a node that only leads to the services — reached GNOME
//! tools (`GDBusObjectManagerClient`) as an object with no interface at all. This one
//! answers `GetManagedObjects` itself, and writes the reply straight from one snapshot of
//! the published statuses: at 10,000 services, looking up each object in the object server
//! and building a map of its properties first took ~270 ms, most of it in the maps.
//! `InterfacesAdded` and `InterfacesRemoved` still come from zbus, which sends them for
//! every interface exported below a node serving an interface of this name (tests/reload.rs
//! checks they arrive, in order).

use std::collections::HashMap;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use zbus::object_server::SignalEmitter;
use zbus::{ObjectPath, Signature, Type, Variant, interface};

use super::service::properties;
use crate::events::{EventSender, ServiceStatus};
use crate::names::{SERVICE_INTERFACE, service_path};

/// The ObjectManager of the service objects; a cheap handle.
pub struct ServiceObjects {
    events: EventSender,
}

impl ServiceObjects {
    pub fn new(events: EventSender) -> ServiceObjects {
        ServiceObjects { events }
    }
}

#[interface(
    name = "org.freedesktop.DBus.ObjectManager",
    introspection_docs = false
)]
impl ServiceObjects {
    /// Every exported service object with the properties of its Service interface, as the
    /// publisher last announced them: a client that applies the signals it receives after
    /// this reply stays in step.
    async fn get_managed_objects(&self) -> ManagedServices {
        ManagedServices(self.events.snapshot().await)
    }

    /// Sent by zbus when a service object is exported.
    #[zbus(signal)]
    async fn interfaces_added(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces_and_properties: HashMap<&str, HashMap<&str, Variant<'_>>>,
    ) -> zbus::Result<()>;

    /// Sent by zbus when a service object is removed.
    #[zbus(signal)]
    async fn interfaces_removed(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces: Vec<&str>,
    ) -> zbus::Result<()>;
}

/// The reply of `GetManagedObjects` (`a{oa{sa{sv}}}`), serialised from the statuses
/// without an intermediate map.
pub struct ManagedServices(Vec<Arc<ServiceStatus>>);

type Wire =
    HashMap<ObjectPath<'static>, HashMap<&'static str, HashMap<&'static str, Variant<'static>>>>;

impl Type for ManagedServices {
    const SIGNATURE: &'static Signature = Wire::SIGNATURE;
}

impl Serialize for ManagedServices {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut objects = serializer.serialize_map(Some(self.0.len()))?;
        for status in &self.0 {
            let path = service_path(&status.name);
            objects.serialize_entry(
                &ObjectPath::from_str_unchecked(&path),
                &OneInterface(status),
            )?;
        }
        objects.end()
    }
}

/// `{"org.corral.Corral1.Service": {properties}}`.
struct OneInterface<'a>(&'a ServiceStatus);

impl Serialize for OneInterface<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut interfaces = serializer.serialize_map(Some(1))?;
        interfaces.serialize_entry(SERVICE_INTERFACE, &Properties(self.0))?;
        interfaces.end()
    }
}

/// Every property of the Service interface ([`properties`]).
struct Properties<'a>(&'a ServiceStatus);

impl Serialize for Properties<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let properties = properties(self.0);
        let mut map = serializer.serialize_map(Some(properties.len()))?;
        for (name, value) in &properties {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}
