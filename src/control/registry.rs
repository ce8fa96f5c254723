//! Which services have a control connection: one connection task per service that sets
//! `control_socket`, started and stopped by configuration transitions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::channel::{self, ControlHandle, Notification};
use crate::config::{Config, Service};
use crate::supervisor::Handle;
use crate::transitions::{Listener, Step, StepFuture};

struct Entry {
    /// The socket and the user its listener must run as: a change of either restarts the
    /// connection task.
    socket: (PathBuf, Option<String>),
    handle: ControlHandle,
    task: AbortHandle,
}

/// The control connections by service name. A std `Mutex` is right here: it guards a
/// map lookup or insert, is never held across an `.await`, and is read by D-Bus `Call`
/// handlers running on any worker thread.
#[derive(Clone)]
pub struct ControlRegistry {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    supervisor: Handle,
    notifications: mpsc::Sender<Notification>,
}

impl ControlRegistry {
    /// A registry whose connections send service notifications to `notifications`.
    pub fn new(supervisor: Handle, notifications: mpsc::Sender<Notification>) -> ControlRegistry {
        ControlRegistry {
            entries: Arc::new(Mutex::new(HashMap::new())),
            supervisor,
            notifications,
        }
    }

    /// The control connection of `service`, if it has one.
    pub fn get(&self, service: &str) -> Option<ControlHandle> {
        self.entries
            .lock()
            .expect("not poisoned")
            .get(service)
            .map(|e| e.handle.clone())
    }

    /// Makes the connection of `name` match `spec`: started, restarted on a new socket, or
    /// stopped when the service no longer has one.
    async fn reconcile(&self, name: &str, spec: Option<&Service>) {
        let wanted = spec.and_then(|s| Some((s.control_socket.clone()?, s.user.clone())));
        {
            let mut entries = self.entries.lock().expect("not poisoned");
            if entries.get(name).map(|e| &e.socket) == wanted.as_ref() {
                return;
            }
            if let Some(old) = entries.remove(name) {
                old.task.abort();
            }
        }
        let Some((socket, user)) = wanted else {
            // Aborted mid-connection: make sure the property does not stay true.
            self.supervisor.set_online(name, false).await;
            return;
        };
        let Some(status) = self.supervisor.subscribe(name).await else {
            return;
        };
        let (handle, task) = channel::spawn(
            name.to_owned(),
            socket.clone(),
            user.clone(),
            status,
            self.supervisor.clone(),
            self.notifications.clone(),
        );
        self.entries.lock().expect("not poisoned").insert(
            name.to_owned(),
            Entry {
                socket: (socket, user),
                handle,
                task,
            },
        );
    }
}

/// Registers the control channel for transitions.
pub struct ControlListener(pub ControlRegistry);

impl Listener for ControlListener {
    fn name(&self) -> &'static str {
        "control-channel"
    }

    fn on_step<'a>(&'a self, step: &'a Step<'a>, _new: &'a Config) -> StepFuture<'a> {
        Box::pin(async move {
            match step {
                Step::ServicesCreated(list) | Step::ServicesChanged(list) => {
                    for (name, spec) in list.iter() {
                        self.0.reconcile(name, Some(spec)).await;
                    }
                }
                Step::ServicesDestroyed(names) => {
                    for name in names.iter() {
                        self.0.reconcile(name, None).await;
                    }
                }
                _ => {}
            }
        })
    }
}
