//! The `org.corral.Corral1.Upcall` interface on the manager object: clients register
//! interest (watches, leases) under their unique bus name, and the upcall core's
//! deliveries become **unicast** signals — D-Bus destination set to the one interested
//! client, so nobody else receives them. Clients that leave the bus are forgotten at once
//! (NameOwnerChanged).

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use zbus::message::Header;
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, interface};

use super::errors::BusError;
use crate::names::MANAGER_PATH;
use crate::upcall::{Delivery, UpcallHandle};

/// The Upcall object; a cheap handle on the upcall core.
pub struct UpcallObject {
    upcalls: UpcallHandle,
}

impl UpcallObject {
    pub fn new(upcalls: UpcallHandle) -> UpcallObject {
        UpcallObject { upcalls }
    }
}

/// The caller's unique name: the identity watches and leases belong to.
fn caller(header: &Header<'_>) -> Result<String, BusError> {
    header
        .sender()
        .map(|s| s.to_string())
        .ok_or_else(|| BusError::InvalidArgs("the call has no sender".into()))
}

#[interface(name = "org.corral.Corral1.Upcall")]
impl UpcallObject {
    /// Asks for `Invalidate` signals about `resource` of `service`.
    async fn watch(
        &self,
        service: &str,
        resource: &str,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), BusError> {
        Ok(self
            .upcalls
            .watch(&caller(&header)?, service, resource)
            .await?)
    }

    async fn unwatch(
        &self,
        service: &str,
        resource: &str,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), BusError> {
        Ok(self
            .upcalls
            .unwatch(&caller(&header)?, service, resource)
            .await?)
    }

    async fn release_lease(
        &self,
        lease_id: u64,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), BusError> {
        Ok(self
            .upcalls
            .release_lease(&caller(&header)?, lease_id)
            .await?)
    }

    // AcquireLease is declared last on purpose: busctl (systemd 252, Debian 12's) reads the
    // objects zbus describes *inside* another node's introspection (as it does for `/`,
    // `/org`, `/org/corral`) carrying the direction of the last method argument over to the
    // signal arguments that follow, and warns "Unexpected signal <arg> direction value
    // 'in'" for each when that argument was an `in` one. Ending the methods on an `out`
    // argument keeps `busctl tree` quiet; tests/bus_tools.rs checks it.
    /// Takes a `read` or `write` lease on `resource`; returns once granted (conflicting
    /// holders are recalled first, and revoked after `lease_recall_timeout`).
    async fn acquire_lease(
        &self,
        service: &str,
        resource: &str,
        kind: &str,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u64, BusError> {
        Ok(self
            .upcalls
            .acquire_lease(&caller(&header)?, service, resource, kind)
            .await?)
    }

    #[zbus(signal)]
    pub async fn invalidate(
        emitter: &SignalEmitter<'_>,
        service: &str,
        resource: &str,
        attrs: &[String],
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn recall_lease(
        emitter: &SignalEmitter<'_>,
        lease_id: u64,
        service: &str,
        resource: &str,
    ) -> zbus::Result<()>;
}

/// Sends each delivery of the upcall core as a unicast signal to its client, and counts
/// the `Invalidate`s sent (failed ones too: they are no longer waiting) on `sent`, for the
/// relay's flow control.
pub async fn deliver(
    connection: Connection,
    mut deliveries: mpsc::UnboundedReceiver<Delivery>,
    sent: watch::Sender<u64>,
) {
    let mut invalidations = 0u64;
    while let Some(delivery) = deliveries.recv().await {
        if let Err(err) = deliver_one(&connection, &delivery).await {
            tracing::debug!("cannot deliver {delivery:?}: {err}");
        }
        if matches!(delivery, Delivery::Invalidate { .. }) {
            invalidations += 1;
            // Waking the relay for every signal would cost more than the signal; it
            // waits for a backlog to shrink, so every 64th and an empty queue will do.
            if invalidations.is_multiple_of(64) || deliveries.is_empty() {
                sent.send_replace(invalidations);
            }
        }
    }
}

async fn deliver_one(connection: &Connection, delivery: &Delivery) -> zbus::Result<()> {
    let client = match delivery {
        Delivery::Invalidate { client, .. } | Delivery::RecallLease { client, .. } => client,
    };
    let emitter = SignalEmitter::new(connection, MANAGER_PATH)?
        .set_destination(BusName::try_from(client.as_str())?);
    match delivery {
        Delivery::Invalidate {
            service,
            resource,
            attrs,
            ..
        } => UpcallObject::invalidate(&emitter, service, resource, attrs).await,
        Delivery::RecallLease {
            lease,
            service,
            resource,
            ..
        } => UpcallObject::recall_lease(&emitter, *lease, service, resource).await,
    }
}

/// Tells the upcall core about every client that leaves the bus.
pub async fn forget_departed_clients(
    connection: Connection,
    upcalls: UpcallHandle,
) -> zbus::Result<()> {
    let dbus = zbus::fdo::DBusProxy::new(&connection).await?;
    let mut changes = dbus.receive_name_owner_changed().await?;
    while let Some(change) = changes.next().await {
        let Ok(args) = change.args() else { continue };
        // A unique name (":1.42") losing its owner is a client disconnecting.
        if args.name().starts_with(':') && args.new_owner().is_none() {
            upcalls.client_gone(args.name()).await;
        }
    }
    Ok(())
}
