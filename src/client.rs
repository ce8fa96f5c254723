//! Client-side proxies of corral's D-Bus interfaces, shared by `corralctl`, the tests and
//! the benchmarks.

use zbus::{OwnedObjectPath, proxy};

/// `org.corral.Corral1.Manager` on `/org/corral/Corral1`.
#[proxy(
    interface = "org.corral.Corral1.Manager",
    default_service = "org.corral.Corral1",
    default_path = "/org/corral/Corral1"
)]
pub trait Manager {
    fn list_services(
        &self,
    ) -> zbus::Result<Vec<(String, String, String, String, u32, OwnedObjectPath)>>;
    fn get_service(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_service(&self, name: &str) -> zbus::Result<()>;
    fn stop_service(&self, name: &str) -> zbus::Result<()>;
    fn restart_service(&self, name: &str) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<Vec<(String, String)>>;
    fn call(&self, service: &str, method: &str, args: &[String]) -> zbus::Result<String>;

    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn host(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn config_generation(&self) -> zbus::Result<u64>;

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
    fn start(&self) -> zbus::Result<()>;
    fn stop(&self) -> zbus::Result<()>;
    fn restart(&self) -> zbus::Result<()>;
    fn pause(&self) -> zbus::Result<()>;
    fn resume(&self) -> zbus::Result<()>;
    fn kill(&self, signal: i32) -> zbus::Result<()>;
    fn call(&self, method: &str, args: &[String]) -> zbus::Result<String>;
    fn run_recipe(&self, recipe: &str) -> zbus::Result<u64>;

    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn group(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn description(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn online(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn served(&self) -> zbus::Result<bool>;
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn exec_main_status(&self) -> zbus::Result<i32>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn status_text(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state_change_timestamp(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn methods(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn recipes(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn active_jobs(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn queued_jobs(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn health(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_health_check(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
}

/// A proxy on the service called `name` (the path is derived, no round trip).
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
