//! Which services have a control connection: one connection task per service that sets
//! `control_socket`, started and stopped by configuration transitions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::channel::{self, ControlHandle, Notification, Stopper};
use crate::config::Service;
use crate::supervisor::Handle;

struct Entry {
    /// The socket and the user its listener must run as: a change of either restarts the
    /// connection task.
    socket: (PathBuf, Option<String>),
    handle: ControlHandle,
    task: Stopper,
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

    /// Makes the connection of `name` match `spec`: started, restarted on a new socket or
    /// user, or stopped when the service no longer has one.
    pub async fn reconcile(&self, name: &str, spec: Option<&Service>) {
        let wanted = spec.and_then(|s| Some((s.control_socket.clone()?, s.user.clone())));
        let old = {
            let mut entries = self.entries.lock().expect("not poisoned");
            if entries.get(name).map(|e| &e.socket) == wanted.as_ref() {
                return;
            }
            entries.remove(name)
        };
        if let Some(old) = old {
            // Wait for it to end (it clears Online itself) before a new one may set it.
            old.task.stop().await;
        }
        let Some((socket, user)) = wanted else {
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
