//! `corralctl daemon-reexec`: asks corrald to re-execute itself and waits until the new
//! corrald owns the bus name and runs — like `systemctl daemon-reexec`.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;

use super::commands::{Context, manager};
use crate::client::{BusError, BusResult, ManagerProxy};
use crate::names::BUS_NAME;

/// How long the new corrald may take to own the name and finish starting.
const PATIENCE: Duration = Duration::from_secs(60);

pub(super) async fn run(cx: &Context) -> BusResult<ExitCode> {
    let dbus = zbus::fdo::DBusProxy::new(&cx.connection).await?;
    let before = dbus
        .get_name_owner(BUS_NAME.try_into()?)
        .await
        .map_err(|err| BusError::ZBus(err.into()))?
        .to_string();
    let mut owners = dbus.receive_name_owner_changed().await?;
    // The old corrald replies just before it execs; the connection it replied on closes
    // with the exec, which can also cut the reply short (the bus then answers NoReply) —
    // either way, what tells is the name changing owner. Any other error is corrald's
    // answer: a refusal, or an older corrald without `Reexecute` (UnknownMethod), which a
    // package upgrade falls back from to a restart; it must not wait for an owner change
    // that never comes.
    match manager(cx).await?.reexecute().await {
        Ok(()) => {}
        Err(BusError::ZBus(zbus::Error::InputOutput(_))) => {}
        Err(BusError::ZBus(zbus::Error::MethodError(name, ..)))
            if name.as_str() == "org.freedesktop.DBus.Error.NoReply" => {}
        Err(BusError::ZBus(zbus::Error::FDO(fdo)))
            if matches!(*fdo, zbus::fdo::Error::NoReply(_)) => {}
        Err(err) => return Err(err),
    }
    let new_owner = async {
        while let Some(change) = owners.next().await {
            let Ok(args) = change.args() else { continue };
            if args.name() == BUS_NAME
                && let Some(owner) = args.new_owner().as_ref()
                && owner.to_string() != before
            {
                return Some(owner.to_string());
            }
        }
        None
    };
    let Ok(Some(owner)) = tokio::time::timeout(PATIENCE, new_owner).await else {
        return Err(BusError::Timeout(format!(
            "corrald did not come back on the bus within {PATIENCE:?}; see `journalctl -t corrald`"
        )));
    };
    // Owning the name comes before start-up finishes: wait for State = running. A proxy
    // that caches properties: zbus's change stream yields nothing without the cache (so a
    // corrald still starting was taken for one that never would), and with it yields the
    // current value first, then each change.
    let m = ManagerProxy::builder(&cx.connection)
        .cache_properties(zbus::proxy::CacheProperties::Yes)
        .build()
        .await?;
    let mut states = m.receive_state_changed().await;
    let running = async {
        while let Some(change) = states.next().await {
            if change.get().await.is_ok_and(|s| s == "running") {
                return true;
            }
        }
        false
    };
    if !tokio::time::timeout(PATIENCE, running)
        .await
        .unwrap_or(false)
    {
        return Err(BusError::Timeout(format!(
            "corrald re-executed ({owner}) but did not finish starting within {PATIENCE:?}"
        )));
    }
    if cx.json {
        println!("{}", serde_json::json!({ "owner": owner }));
    } else {
        println!("corrald re-executed ({before} -> {owner})");
    }
    Ok(ExitCode::SUCCESS)
}
