//! The `org.corral.Corral1.Manager` object: listing and looking up services, starting and
//! stopping them by name, reloading, the fleet (moving groups, listing hosts), and the
//! transition and state-change signals (emitted by the publisher through the signal
//! functions declared here).

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedObjectPath, Type, interface};

use super::access::{Action, authorize};
use super::errors::BusError;
use super::fleet::{FleetAccess, HostRow};
use super::service::call_method;
use crate::control::ControlRegistry;
use crate::events::ManagerStatus;
use crate::jobs::JobsHandle;
use crate::names::service_path;
use crate::reexec::Reexec;
use crate::supervisor::Handle;
use crate::transitions::reloader::ReloadHandle;

/// The manager object; cheap handles only.
pub struct ManagerObject {
    supervisor: Handle,
    controls: ControlRegistry,
    jobs: JobsHandle,
    reexec: Reexec,
    reloader: ReloadHandle,
    status: watch::Receiver<ManagerStatus>,
    fleet: FleetAccess,
}

impl ManagerObject {
    pub fn new(
        supervisor: Handle,
        controls: ControlRegistry,
        jobs: JobsHandle,
        reexec: Reexec,
        reloader: ReloadHandle,
        status: watch::Receiver<ManagerStatus>,
        fleet: FleetAccess,
    ) -> ManagerObject {
        ManagerObject {
            supervisor,
            controls,
            jobs,
            reexec,
            reloader,
            status,
            fleet,
        }
    }
}

/// A row of `ListServices` (`(ssssuo)` on the wire), for the daemon and its clients alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ServiceRow {
    pub name: String,
    /// Empty for an ungrouped service.
    pub group: String,
    pub active_state: String,
    pub sub_state: String,
    /// 0 when no process runs.
    pub main_pid: u32,
    pub path: OwnedObjectPath,
}

/// A row of `ListJobs` (`(tsssttx)` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct JobRow {
    pub id: u64,
    pub service: String,
    pub recipe: String,
    /// `queued|running|finished|failed|cancelled`.
    pub state: String,
    /// µs since the epoch.
    pub queued: u64,
    /// µs since the epoch; 0 while not finished.
    pub finished: u64,
    /// The exit status of the step that decided the outcome; -1 if none.
    pub exit_status: i64,
}

impl From<crate::store::JobRecord> for JobRow {
    fn from(job: crate::store::JobRecord) -> JobRow {
        JobRow {
            id: job.id,
            service: job.service,
            recipe: job.recipe,
            state: job.state.as_str().to_owned(),
            queued: job.queued_us,
            finished: job.finished_us,
            exit_status: job.exit_status.into(),
        }
    }
}

#[interface(name = "org.corral.Corral1.Manager")]
impl ManagerObject {
    /// Every service, in name order.
    async fn list_services(&self) -> Vec<ServiceRow> {
        self.supervisor
            .list()
            .await
            .into_iter()
            .map(|s| {
                let path = OwnedObjectPath::try_from(service_path(&s.name))
                    .expect("escaped labels make valid paths");
                ServiceRow {
                    name: s.name,
                    group: s.group,
                    active_state: s.active_state.to_owned(),
                    sub_state: s.sub_state.to_owned(),
                    main_pid: s.main_pid,
                    path,
                }
            })
            .collect()
    }

    /// The object path of the service called `name`.
    async fn get_service(&self, name: &str) -> Result<OwnedObjectPath, BusError> {
        self.supervisor.exists(name).await?;
        Ok(OwnedObjectPath::try_from(service_path(name)).expect("escaped labels make valid paths"))
    }

    async fn start_service(
        &self,
        name: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        let by = authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.start(name, &by).await?)
    }

    async fn stop_service(
        &self,
        name: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        let by = authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.stop(name, &by).await?)
    }

    async fn restart_service(
        &self,
        name: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        let by = authorize(connection, &header, Action::Manage).await?;
        Ok(self.supervisor.restart(name, &by).await?)
    }

    /// Re-reads the configuration and applies it; returns the transitions as (kind, subject).
    async fn reload(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<Vec<(String, String)>, BusError> {
        authorize(connection, &header, Action::Reload).await?;
        let transitions = self.reloader.reload().await?;
        Ok(transitions
            .iter()
            .map(|t| (t.kind().to_owned(), t.subject()))
            .collect())
    }

    /// Calls manager method `method` of `service` with `args` (as the service's `Call`).
    async fn call(
        &self,
        service: &str,
        method: &str,
        args: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, BusError> {
        authorize(connection, &header, Action::Manage).await?;
        call_method(&self.supervisor, &self.controls, service, method, args).await
    }

    /// Serialises corrald's runtime state, replies, and executes its binary (possibly a new
    /// version) in place: same PID, every service keeps running with the same `MainPID`.
    /// The bus name is owned again by the new corrald once it runs; fails (changing
    /// nothing) when the binary on disk cannot take over.
    async fn reexecute(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        authorize(connection, &header, Action::Reload).await?;
        let prepared = self.reexec.prepare().await?;
        tracing::info!("re-executing on request");
        // The reply goes out before the exec closes the connection; `send` returns once
        // it is written.
        if let Err(err) = connection.reply(&header, &()).await {
            tracing::warn!("cannot reply before the re-exec: {err}");
        }
        Err(self.reexec.exec(prepared).await.into())
    }

    /// Drops a queued recipe job, or stops a running one (SIGTERM to its step's process
    /// group, SIGKILL after the service's `stop_timeout`); it ends with `JobFailed(…,
    /// "cancelled")`.
    async fn cancel_job(
        &self,
        id: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        authorize(connection, &header, Action::Manage).await?;
        Ok(self.jobs.cancel(id).await?)
    }

    /// The recipe jobs of `service` (every service's with `""`), oldest first: the last
    /// 1000 per service, kept across restarts of corrald.
    async fn list_jobs(&self, service: &str) -> Vec<JobRow> {
        let service = (!service.is_empty()).then_some(service);
        self.jobs
            .list(service)
            .await
            .into_iter()
            .map(JobRow::from)
            .collect()
    }

    /// Places `group` on host `peer` (every host of the fleet applies it, as a reload).
    async fn move_group(
        &self,
        group: &str,
        peer: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), BusError> {
        authorize(connection, &header, Action::Manage).await?;
        self.fleet.move_group(group, peer).await
    }

    /// Every host of the fleet as (host, version, config generation, alive).
    async fn list_hosts(&self) -> Result<Vec<(String, String, u64, bool)>, BusError> {
        let status = self.status.borrow().clone();
        Ok(self
            .fleet
            .hosts(&status)
            .await?
            .into_iter()
            .map(|h| (h.host, h.version, h.config_generation, h.alive))
            .collect())
    }

    /// Every host of the fleet as (host, version, config generation, alive, groups it
    /// serves, configuration drift, why its report is unreadable).
    async fn list_host_details(&self) -> Result<Vec<HostRow>, BusError> {
        let status = self.status.borrow().clone();
        self.fleet.hosts(&status).await
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        crate::VERSION.to_owned()
    }

    #[zbus(property)]
    fn host(&self) -> String {
        self.status.borrow().host.clone()
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.status.borrow().state.as_str().to_owned()
    }

    #[zbus(property)]
    fn config_generation(&self) -> u64 {
        self.status.borrow().generation
    }

    /// What is wrong with corrald itself (e.g. its state store cannot write), or `""`.
    #[zbus(property)]
    fn status_text(&self) -> String {
        self.status.borrow().status_text.clone()
    }

    /// `off` (no `[fleet]`), `connecting`, `connected` or `lost`.
    #[zbus(property)]
    fn fleet(&self) -> String {
        self.status.borrow().fleet.to_owned()
    }

    /// How services' processes are tracked: `cgroup` (each service in a cgroup v2 of its
    /// own) or `process-groups` (no writable cgroup v2 here, or `corrald --no-cgroups`).
    #[zbus(property(emits_changed_signal = "const"))]
    fn supervision_mode(&self) -> String {
        self.status.borrow().supervision.to_owned()
    }

    /// The cgroup below which the services' cgroups are (corrald's base), `""` without
    /// cgroups.
    #[zbus(property(emits_changed_signal = "const"))]
    fn control_group(&self) -> String {
        self.status.borrow().control_group.clone()
    }

    #[zbus(signal)]
    pub async fn group_created(
        emitter: &SignalEmitter<'_>,
        group: &str,
        peer: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn group_moved(
        emitter: &SignalEmitter<'_>,
        group: &str,
        peer: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn group_destroyed(emitter: &SignalEmitter<'_>, group: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn service_created(
        emitter: &SignalEmitter<'_>,
        name: &str,
        group: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn service_changed(emitter: &SignalEmitter<'_>, name: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn service_moved(
        emitter: &SignalEmitter<'_>,
        name: &str,
        group: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn service_destroyed(emitter: &SignalEmitter<'_>, name: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn service_served(emitter: &SignalEmitter<'_>, name: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn service_to_be_unserved(
        emitter: &SignalEmitter<'_>,
        name: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn service_unserved(emitter: &SignalEmitter<'_>, name: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn reload_started(emitter: &SignalEmitter<'_>, generation: u64) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn reload_finished(
        emitter: &SignalEmitter<'_>,
        generation: u64,
        ok: bool,
        error: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn service_state_changed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        active_state: &str,
        sub_state: &str,
    ) -> zbus::Result<()>;
}
