//! The `org.corral.Corral1.Service` object of one service: a thin adapter. Methods check
//! access and forward to the supervisor; properties read the status the supervisor
//! publishes in a `watch`, so a property read never waits on the supervisor task.

use std::sync::Arc;

use tokio::sync::watch;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, Variant, interface};

use super::access::{Action, authorize};
use super::errors::BusError;
use crate::control::ControlRegistry;
use crate::events::ServiceStatus;
use crate::jobs::JobsHandle;
use crate::process::signal::from_number;
use crate::supervisor::Handle;

/// One exported service object.
pub struct ServiceObject {
    name: String,
    supervisor: Handle,
    controls: ControlRegistry,
    jobs: JobsHandle,
    status: watch::Receiver<Arc<ServiceStatus>>,
}

impl ServiceObject {
    pub fn new(
        name: String,
        supervisor: Handle,
        controls: ControlRegistry,
        jobs: JobsHandle,
        status: watch::Receiver<Arc<ServiceStatus>>,
    ) -> ServiceObject {
        ServiceObject {
            name,
            supervisor,
            controls,
            jobs,
            status,
        }
    }

    fn status(&self) -> Arc<ServiceStatus> {
        self.status.borrow().clone()
    }
}

#[interface(name = "org.corral.Corral1.Service")]
impl ServiceObject {
    /// Starts the service; returns once it is running (notify: after READY=1).
    async fn start(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        let by = authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.start(&self.name, &by).await?)
    }

    /// Stops the service; returns once its process is gone.
    async fn stop(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        let by = authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.stop(&self.name, &by).await?)
    }

    async fn restart(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        let by = authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.restart(&self.name, &by).await?)
    }

    /// Pauses every process of the service: freezes its cgroup (the cgroup freezer,
    /// invisible to the processes) where corrald has cgroups, else SIGSTOP to its process
    /// group. Returns once all are frozen.
    async fn pause(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.pause(&self.name).await?)
    }

    /// Resumes a paused service: thaws its cgroup, else SIGCONT to its process group.
    async fn resume(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.resume(&self.name).await?)
    }

    /// Sends `signal` (a number, e.g. 1 for SIGHUP) to every process of the service: each
    /// in its cgroup (SIGKILL with `cgroup.kill`), else its process group.
    async fn kill(
        &self,
        signal: i32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        authorize(connection, &header, Action::Manage).await?;
        let signal = from_number(signal).ok_or_else(|| {
            BusError::InvalidArgs(format!(
                "{signal} is not a signal number; use e.g. 1 (SIGHUP), 9 (SIGKILL) or 15 (SIGTERM)"
            ))
        })?;
        Ok(self.supervisor.kill(&self.name, signal).await?)
    }

    /// Calls one of the service's manager methods (see the `Methods` property) with
    /// `args`; returns its result.
    async fn call(
        &self,
        method: &str,
        args: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, BusError> {
        authorize(connection, &header, Action::Manage).await?;
        call_method(&self.supervisor, &self.controls, &self.name, method, args).await
    }

    /// Forgets the service's desired state (what the last `Start` or `Stop` asked for, kept
    /// across restarts of corrald): it follows `autostart` again from the next start-up or
    /// reload on. Changes no process.
    async fn revert(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.revert(&self.name).await?)
    }

    /// Queues a job running `recipe` (see the `Recipes` property); returns its id. Its end
    /// is announced by `JobFinished` or `JobFailed`.
    async fn run_recipe(
        &self,
        recipe: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<u64, BusError> {
        authorize(connection, &header, Action::Manage).await?;
        self.supervisor.check_served(&self.name).await?;
        Ok(self.jobs.run(&self.name, recipe).await?)
    }

    /// A recipe job ended: `status` is 0, or the exit status of the step that failed.
    #[zbus(signal)]
    pub async fn job_finished(
        emitter: &SignalEmitter<'_>,
        id: u64,
        recipe: &str,
        status: i32,
    ) -> zbus::Result<()>;

    /// A step of a recipe job could not be run.
    #[zbus(signal)]
    pub async fn job_failed(
        emitter: &SignalEmitter<'_>,
        id: u64,
        recipe: &str,
        error: &str,
    ) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property)]
    fn group(&self) -> String {
        self.status().group.clone()
    }

    #[zbus(property)]
    fn description(&self) -> String {
        self.status().description.clone()
    }

    #[zbus(property)]
    fn active_state(&self) -> String {
        self.status().active.as_str().to_owned()
    }

    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.status().sub.as_str().to_owned()
    }

    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> u32 {
        self.status().main_pid
    }

    #[zbus(property)]
    fn online(&self) -> bool {
        self.status().online
    }

    #[zbus(property)]
    fn served(&self) -> bool {
        self.status().served
    }

    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> u32 {
        self.status().n_restarts
    }

    #[zbus(property)]
    fn exec_main_status(&self) -> i32 {
        self.status().exec_main_status
    }

    #[zbus(property)]
    fn last_error(&self) -> String {
        self.status().last_error.clone()
    }

    #[zbus(property)]
    fn status_text(&self) -> String {
        self.status().status_text.clone()
    }

    #[zbus(property)]
    fn state_change_timestamp(&self) -> u64 {
        self.status().state_change_timestamp
    }

    #[zbus(property)]
    fn methods(&self) -> Vec<String> {
        self.status().methods.clone()
    }

    #[zbus(property)]
    fn recipes(&self) -> Vec<String> {
        self.status().recipes.clone()
    }

    #[zbus(property)]
    fn active_jobs(&self) -> u32 {
        self.status().active_jobs
    }

    #[zbus(property)]
    fn queued_jobs(&self) -> u32 {
        self.status().queued_jobs
    }

    /// `started` or `stopped` when a client asked (kept across restarts of corrald, and
    /// overriding `autostart`), `""` when the service follows `autostart`.
    #[zbus(property)]
    fn desired_state(&self) -> String {
        self.status().desired.to_owned()
    }

    /// Since when the desired state holds, µs since the epoch (0 without one).
    #[zbus(property)]
    fn desired_state_timestamp(&self) -> u64 {
        self.status().desired_since
    }

    /// The cgroup of the current run (e.g.
    /// `/system.slice/corral.service/services/web.service`), `""` without cgroups or a run.
    #[zbus(property)]
    fn control_group(&self) -> String {
        self.status().control_group.clone()
    }

    /// Each configured cgroup limit this host does not enforce, with the reason, e.g.
    /// `memory_max = 512M is not enforced: the memory controller is not available to
    /// corrald's cgroups: …`; empty when every limit is enforced.
    #[zbus(property)]
    fn unenforced_limits(&self) -> Vec<String> {
        self.status().unenforced_limits.clone()
    }

    /// `unknown|healthy|unhealthy`: what the `[health]` check says about the current run.
    #[zbus(property)]
    fn health(&self) -> String {
        self.status().health.as_str().to_owned()
    }

    /// When the last health check ended, µs since the epoch (0: none yet).
    #[zbus(property)]
    fn last_health_check(&self) -> u64 {
        self.status().last_health_check
    }

    /// How the last run ended (systemd's `Result`): `success`, `exit-code`, `signal`,
    /// `timeout`, `watchdog`, `unhealthy` or `start-limit`.
    #[zbus(property)]
    fn result(&self) -> String {
        self.status().result.as_str().to_owned()
    }
}

/// Every property of the Service interface with its value in `s`, by its D-Bus name: the
/// same set and values the object's getters above give (tests/bus_tools.rs compares
/// `GetManagedObjects` with `GetAll`). `GetManagedObjects` writes them all; the publisher
/// sends those that differ from the last published status as `PropertiesChanged`.
pub(super) fn properties(s: &ServiceStatus) -> [(&'static str, Variant<'_>); 24] {
    [
        ("Name", s.name.as_str().into()),
        ("Group", s.group.as_str().into()),
        ("Description", s.description.as_str().into()),
        ("ActiveState", s.active.as_str().into()),
        ("SubState", s.sub.as_str().into()),
        ("MainPID", s.main_pid.into()),
        ("Online", s.online.into()),
        ("Served", s.served.into()),
        ("NRestarts", s.n_restarts.into()),
        ("ExecMainStatus", s.exec_main_status.into()),
        ("LastError", s.last_error.as_str().into()),
        ("StatusText", s.status_text.as_str().into()),
        ("StateChangeTimestamp", s.state_change_timestamp.into()),
        ("Methods", (&s.methods).into()),
        ("Recipes", (&s.recipes).into()),
        ("ActiveJobs", s.active_jobs.into()),
        ("QueuedJobs", s.queued_jobs.into()),
        ("DesiredState", s.desired.into()),
        ("DesiredStateTimestamp", s.desired_since.into()),
        ("ControlGroup", s.control_group.as_str().into()),
        ("UnenforcedLimits", (&s.unenforced_limits).into()),
        ("Health", s.health.as_str().into()),
        ("LastHealthCheck", s.last_health_check.into()),
        ("Result", s.result.as_str().into()),
    ]
}

/// `Call` for both the Service and the Manager object.
pub async fn call_method(
    supervisor: &Handle,
    controls: &ControlRegistry,
    name: &str,
    method: &str,
    args: Vec<String>,
) -> Result<String, BusError> {
    let spec = supervisor.spec(name).await?;
    Ok(crate::methods::call(name, &spec, method, args, controls).await?)
}
