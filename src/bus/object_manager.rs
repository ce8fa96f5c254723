//! `org.freedesktop.DBus.ObjectManager` on the manager object: `GetManagedObjects` lists
//! the service objects, each with its `org.corral.Corral1.Service` properties, and nothing
//! else.
//!
//! zbus's own `fdo::ObjectManager` lists every node below it, so the bare
//! `/org/corral/Corral1/service` — a node that only leads to the services — reached GNOME
//! tools (`GDBusObjectManagerClient`) as an object with no interface at all. This one
//! answers `GetManagedObjects` itself. `InterfacesAdded` and `InterfacesRemoved` still come
//! from zbus, which sends them for every interface exported below a node serving an
//! interface of this name (tests/reload.rs checks they arrive, in order).

use std::collections::HashMap;

use zbus::fdo::{self, ManagedObjects};
use zbus::object_server::{Interface, SignalEmitter};
use zbus::{Connection, ObjectPath, ObjectServer, Variant, interface};

use super::service::ServiceObject;
use crate::names::service_path;
use crate::supervisor::Handle;

/// The ObjectManager of the service objects; a cheap handle.
pub struct ServiceObjects {
    supervisor: Handle,
}

impl ServiceObjects {
    pub fn new(supervisor: Handle) -> ServiceObjects {
        ServiceObjects { supervisor }
    }
}

#[interface(
    name = "org.freedesktop.DBus.ObjectManager",
    introspection_docs = false
)]
impl ServiceObjects {
    /// Every exported service object with the properties of its Service interface.
    async fn get_managed_objects(
        &self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<ManagedObjects> {
        let mut objects = ManagedObjects::new();
        for service in self.supervisor.list().await {
            let path = service_path(&service.name);
            // A service whose object is not exported yet (or no longer) is left out: its
            // InterfacesAdded (or InterfacesRemoved) is on its way to the caller.
            let Ok(object) = server.interface::<_, ServiceObject>(path.as_str()).await else {
                continue;
            };
            let emitter = object.signal_emitter();
            let properties = object
                .get()
                .await
                .get_all(server, connection, None, emitter)
                .await?;
            objects.insert(
                emitter.path().to_owned().into(),
                HashMap::from([(ServiceObject::name().into(), properties)]),
            );
        }
        Ok(objects)
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
