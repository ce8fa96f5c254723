//! Client-side proxies of corral's D-Bus interfaces, shared by `corralctl`, the tests and
//! the benchmarks. They speak the daemon's own types: a `ListServices` row is a
//! [`ServiceRow`], and every call fails with a [`BusError`] — corral's wire errors as
//! variants (`BusError::NoSuchService`, …), anything else (no daemon, a broken connection,
//! a standard D-Bus error) as `BusError::ZBus`.

use zbus::{OwnedObjectPath, proxy};

pub use crate::bus::errors::{BusError, BusResult};
pub use crate::bus::fleet::HostRow;
pub use crate::bus::manager::{JobRow, ServiceRow};

/// `org.corral.Corral1.Manager` on `/org/corral/Corral1`.
#[proxy(
    interface = "org.corral.Corral1.Manager",
    default_service = "org.corral.Corral1",
    default_path = "/org/corral/Corral1"
)]
pub trait Manager {
    fn list_services(&self) -> BusResult<Vec<ServiceRow>>;
    fn get_service(&self, name: &str) -> BusResult<OwnedObjectPath>;
    fn start_service(&self, name: &str) -> BusResult<()>;
    fn stop_service(&self, name: &str) -> BusResult<()>;
    fn restart_service(&self, name: &str) -> BusResult<()>;
    fn reload(&self) -> BusResult<Vec<(String, String)>>;
    fn call(&self, service: &str, method: &str, args: &[String]) -> BusResult<String>;
    fn reexecute(&self) -> BusResult<()>;
    fn cancel_job(&self, id: u64) -> BusResult<()>;
    fn list_jobs(&self, service: &str) -> BusResult<Vec<JobRow>>;
    fn move_group(&self, group: &str, peer: &str) -> BusResult<()>;
    fn list_hosts(&self) -> BusResult<Vec<(String, String, u64, bool)>>;
    fn list_host_details(&self) -> BusResult<Vec<HostRow>>;

    #[zbus(property)]
    fn version(&self) -> BusResult<String>;
    #[zbus(property)]
    fn host(&self) -> BusResult<String>;
    #[zbus(property)]
    fn state(&self) -> BusResult<String>;
    #[zbus(property)]
    fn config_generation(&self) -> BusResult<u64>;
    #[zbus(property)]
    fn status_text(&self) -> BusResult<String>;
    #[zbus(property)]
    fn fleet(&self) -> BusResult<String>;
    #[zbus(property)]
    fn supervision_mode(&self) -> BusResult<String>;
    #[zbus(property)]
    fn control_group(&self) -> BusResult<String>;

    #[zbus(signal)]
    fn service_state_changed(
        &self,
        name: String,
        active_state: String,
        sub_state: String,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn reload_finished(&self, generation: u64, ok: bool, error: String) -> zbus::Result<()>;
}

/// `org.corral.Corral1.Service` on `/org/corral/Corral1/service/<label>`.
#[proxy(
    interface = "org.corral.Corral1.Service",
    default_service = "org.corral.Corral1"
)]
pub trait Service {
    fn start(&self) -> BusResult<()>;
    fn stop(&self) -> BusResult<()>;
    fn restart(&self) -> BusResult<()>;
    fn pause(&self) -> BusResult<()>;
    fn resume(&self) -> BusResult<()>;
    fn kill(&self, signal: i32) -> BusResult<()>;
    fn call(&self, method: &str, args: &[String]) -> BusResult<String>;
    fn revert(&self) -> BusResult<()>;
    fn run_recipe(&self, recipe: &str) -> BusResult<u64>;

    #[zbus(property)]
    fn name(&self) -> BusResult<String>;
    #[zbus(property)]
    fn group(&self) -> BusResult<String>;
    #[zbus(property)]
    fn description(&self) -> BusResult<String>;
    #[zbus(property)]
    fn active_state(&self) -> BusResult<String>;
    #[zbus(property)]
    fn sub_state(&self) -> BusResult<String>;
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> BusResult<u32>;
    #[zbus(property)]
    fn online(&self) -> BusResult<bool>;
    #[zbus(property)]
    fn served(&self) -> BusResult<bool>;
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> BusResult<u32>;
    #[zbus(property)]
    fn exec_main_status(&self) -> BusResult<i32>;
    #[zbus(property)]
    fn last_error(&self) -> BusResult<String>;
    #[zbus(property)]
    fn status_text(&self) -> BusResult<String>;
    #[zbus(property)]
    fn state_change_timestamp(&self) -> BusResult<u64>;
    #[zbus(property)]
    fn methods(&self) -> BusResult<Vec<String>>;
    #[zbus(property)]
    fn recipes(&self) -> BusResult<Vec<String>>;
    #[zbus(property)]
    fn active_jobs(&self) -> BusResult<u32>;
    #[zbus(property)]
    fn queued_jobs(&self) -> BusResult<u32>;
    #[zbus(property)]
    fn desired_state(&self) -> BusResult<String>;
    #[zbus(property)]
    fn desired_state_timestamp(&self) -> BusResult<u64>;
    #[zbus(property)]
    fn control_group(&self) -> BusResult<String>;
    #[zbus(property)]
    fn unenforced_limits(&self) -> BusResult<Vec<String>>;
    #[zbus(property)]
    fn health(&self) -> BusResult<String>;
    #[zbus(property)]
    fn last_health_check(&self) -> BusResult<u64>;
    #[zbus(property)]
    fn result(&self) -> BusResult<String>;
}

/// A proxy on the service called `name` (the path is derived, no round trip; a name that
/// does not exist fails on first use, with D-Bus's `UnknownObject`).
pub async fn service<'a>(
    connection: &zbus::Connection,
    name: &str,
) -> zbus::Result<ServiceProxy<'a>> {
    ServiceProxy::builder(connection)
        .path(crate::names::service_path(name))
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

/// A proxy on the service called `name`, as corrald resolves it (`GetService`): every
/// `corralctl` verb goes through here, so an unknown name is `BusError::NoSuchService`
/// whatever the verb.
pub async fn lookup_service<'a>(
    manager: &ManagerProxy<'_>,
    name: &str,
) -> BusResult<ServiceProxy<'a>> {
    let path = manager.get_service(name).await?;
    Ok(ServiceProxy::builder(manager.inner().connection())
        .path(path)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}
