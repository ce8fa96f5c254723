//! The publisher: the one task that turns corrald's ordered event stream into D-Bus —
//! exporting and removing service objects, `PropertiesChanged` for what actually changed,
//! `ServiceStateChanged`, and the transition signals. Handlers never emit anything
//! themselves (STYLE rule 2), so the order a client sees is the order events happened.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use zbus::fdo::Properties;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, ObjectPath, Variant};

use super::manager::ManagerObject;
use super::service::{ServiceObject, properties};
use crate::control::ControlRegistry;
use crate::events::{Event, EventReceiver, JobOutcome, ManagerStatus, ServiceStatus, Transition};
use crate::jobs::JobsHandle;
use crate::names::{MANAGER_INTERFACE, MANAGER_PATH, SERVICE_INTERFACE, service_path};
use crate::supervisor::Handle;

/// Publishes events until the stream ends (every sender dropped).
pub async fn run(
    connection: Connection,
    mut events: EventReceiver,
    supervisor: Handle,
    controls: ControlRegistry,
    jobs: JobsHandle,
    manager: watch::Receiver<ManagerStatus>,
) {
    let last_manager = manager.borrow().clone();
    let mut publisher = Publisher {
        connection,
        supervisor,
        controls,
        jobs,
        last: HashMap::new(),
        manager,
        last_manager,
    };
    while let Some(event) = events.recv().await {
        if let Err(err) = publisher.publish(event).await {
            tracing::warn!("cannot publish on the bus: {err}");
        }
    }
}

struct Publisher {
    connection: Connection,
    supervisor: Handle,
    /// Handed to each service object, for `Call`.
    controls: ControlRegistry,
    /// Handed to each service object, for `RunRecipe`.
    jobs: JobsHandle,
    /// The last published status of each exported service: what `PropertiesChanged` diffs
    /// against.
    last: HashMap<String, Arc<ServiceStatus>>,
    manager: watch::Receiver<ManagerStatus>,
    last_manager: ManagerStatus,
}

impl Publisher {
    async fn publish(&mut self, event: Event) -> zbus::Result<()> {
        match event {
            Event::Service(status) => self.service_changed(status).await?,
            Event::Export { name, status } => {
                let initial = status.borrow().clone();
                let object = ServiceObject::new(
                    name.clone(),
                    self.supervisor.clone(),
                    self.controls.clone(),
                    self.jobs.clone(),
                    status,
                );
                self.connection
                    .object_server()
                    .at(service_path(&name), object)
                    .await?;
                self.last.insert(name, initial);
            }
            Event::Unexport { name } => {
                self.last.remove(&name);
                self.connection
                    .object_server()
                    .remove::<ServiceObject, _>(service_path(&name))
                    .await?;
            }
            Event::Transition(transition) => self.transition(&transition).await?,
            Event::Manager => self.manager_changed().await?,
            Event::Job(report) => {
                let path = ObjectPath::try_from(service_path(&report.service))?;
                let emitter = SignalEmitter::new(&self.connection, path)?;
                match report.outcome {
                    JobOutcome::Finished { status } => {
                        ServiceObject::job_finished(&emitter, report.id, &report.recipe, status)
                            .await?
                    }
                    JobOutcome::Cancelled => {
                        ServiceObject::job_failed(&emitter, report.id, &report.recipe, "cancelled")
                            .await?
                    }
                    JobOutcome::Failed { error } => {
                        ServiceObject::job_failed(&emitter, report.id, &report.recipe, &error)
                            .await?
                    }
                }
            }
            Event::Barrier(done) => {
                let _ = done.send(());
            }
            Event::Snapshot(reply) => {
                let _ = reply.send(self.last.values().cloned().collect());
            }
        }
        Ok(())
    }

    async fn service_changed(&mut self, status: Arc<ServiceStatus>) -> zbus::Result<()> {
        // Not exported (yet, or any more), or older than what was published at export.
        let Some(previous) = self.last.get(&status.name) else {
            return Ok(());
        };
        if status.version <= previous.version {
            return Ok(());
        }
        let changed = changed_properties(previous, &status);
        let state_moved = previous.active != status.active || previous.sub != status.sub;
        if !changed.is_empty() {
            let path = ObjectPath::try_from(service_path(&status.name))?;
            let emitter = SignalEmitter::new(&self.connection, path)?;
            let interface = InterfaceName::from_static_str_unchecked(SERVICE_INTERFACE);
            Properties::properties_changed(&emitter, interface, changed, Cow::Borrowed(&[]))
                .await?;
        }
        if state_moved {
            ManagerObject::service_state_changed(
                &self.manager_emitter()?,
                &status.name,
                status.active.as_str(),
                status.sub.as_str(),
            )
            .await?;
        }
        self.last.insert(status.name.clone(), status);
        Ok(())
    }

    async fn manager_changed(&mut self) -> zbus::Result<()> {
        let now = self.manager.borrow().clone();
        let mut changed: HashMap<&str, Variant<'_>> = HashMap::new();
        if now.state != self.last_manager.state {
            changed.insert("State", now.state.as_str().into());
        }
        if now.host != self.last_manager.host {
            changed.insert("Host", now.host.as_str().into());
        }
        if now.generation != self.last_manager.generation {
            changed.insert("ConfigGeneration", now.generation.into());
        }
        if now.status_text != self.last_manager.status_text {
            changed.insert("StatusText", now.status_text.as_str().into());
        }
        if now.fleet != self.last_manager.fleet {
            changed.insert("Fleet", now.fleet.into());
        }
        if !changed.is_empty() {
            let interface = InterfaceName::from_static_str_unchecked(MANAGER_INTERFACE);
            Properties::properties_changed(
                &self.manager_emitter()?,
                interface,
                changed,
                Cow::Borrowed(&[]),
            )
            .await?;
        }
        self.last_manager = now;
        Ok(())
    }

    async fn transition(&self, transition: &Transition) -> zbus::Result<()> {
        let e = &self.manager_emitter()?;
        match transition {
            Transition::ServiceToBeUnserved(name) => {
                ManagerObject::service_to_be_unserved(e, name).await
            }
            Transition::ReloadStarted(generation) => {
                ManagerObject::reload_started(e, *generation).await
            }
            Transition::GroupCreated { group, peer } => {
                ManagerObject::group_created(e, group, peer).await
            }
            Transition::ServiceCreated { name, group } => {
                ManagerObject::service_created(e, name, group).await
            }
            Transition::ServiceUnserved(name) => ManagerObject::service_unserved(e, name).await,
            Transition::GroupMoved { group, peer } => {
                ManagerObject::group_moved(e, group, peer).await
            }
            Transition::ServiceMoved { name, group } => {
                ManagerObject::service_moved(e, name, group).await
            }
            Transition::ServiceChanged(name) => ManagerObject::service_changed(e, name).await,
            Transition::ServiceServed(name) => ManagerObject::service_served(e, name).await,
            Transition::ServiceDestroyed(name) => ManagerObject::service_destroyed(e, name).await,
            Transition::GroupDestroyed(group) => ManagerObject::group_destroyed(e, group).await,
            Transition::ReloadFinished {
                generation,
                ok,
                error,
            } => ManagerObject::reload_finished(e, *generation, *ok, error).await,
        }
    }

    fn manager_emitter(&self) -> zbus::Result<SignalEmitter<'static>> {
        SignalEmitter::new(&self.connection, MANAGER_PATH)
    }
}

/// The properties that differ between two snapshots, by their D-Bus names.
fn changed_properties<'a>(
    old: &ServiceStatus,
    new: &'a ServiceStatus,
) -> HashMap<&'static str, Variant<'a>> {
    properties(new)
        .into_iter()
        .zip(properties(old))
        .filter(|((_, now), (_, before))| now != before)
        .map(|((name, now), _)| (name, now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ActiveState, SubState};

    #[test]
    fn only_what_differs_is_changed() {
        let old = ServiceStatus {
            name: "web".into(),
            methods: vec!["flush".into()],
            ..ServiceStatus::placeholder()
        };
        assert!(changed_properties(&old, &old.clone()).is_empty());
        let new = ServiceStatus {
            active: ActiveState::Active,
            sub: SubState::Running,
            main_pid: 42,
            methods: vec!["flush".into(), "rotate".into()],
            ..old.clone()
        };
        let changed = changed_properties(&old, &new);
        let mut names: Vec<&str> = changed.keys().copied().collect();
        names.sort();
        assert_eq!(names, ["ActiveState", "MainPID", "Methods", "SubState"]);
        assert_eq!(changed["MainPID"], Variant::from(42u32));
        assert_eq!(changed["ActiveState"], Variant::from("active"));
    }
}
