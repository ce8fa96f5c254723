//! The facts corrald publishes, and the one ordered stream they travel to the D-Bus
//! publisher: service status from the supervisor, job outcomes from the jobs actor,
//! transitions and object (un)exports from the transition applier, the manager's own
//! state. Every part of corrald depends on this module and it depends on none of them, so
//! facts flow one way: owner → stream → publisher. One stream means a client sees them in
//! causal order — a service's `ServiceStateChanged(active)` before the `ServiceServed`
//! that announces its start.

pub mod jobs;
pub mod manager;
pub mod service;
pub mod transition;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

pub use jobs::{JobOutcome, JobReport};
pub use manager::{DaemonState, ManagerStatus};
pub use service::{ActiveState, Health, RunResult, ServiceStatus, SubState, Summary, now_usec};
pub use transition::Transition;

/// One thing for the publisher to do.
#[derive(Debug)]
pub enum Event {
    /// A service's status changed: emit `PropertiesChanged` for what differs and, when the
    /// active or sub state moved, `ServiceStateChanged`.
    Service(Arc<ServiceStatus>),
    /// Export the object of a new service, reading its properties from `status`.
    Export {
        name: String,
        status: watch::Receiver<Arc<ServiceStatus>>,
    },
    /// Remove a service's object.
    Unexport { name: String },
    /// Emit the signal of a transition.
    Transition(Transition),
    /// The manager's properties changed.
    Manager,
    /// A recipe job ended: `JobFinished` or `JobFailed` on its service's object.
    Job(JobReport),
    /// Reply once every earlier event has been published.
    Barrier(oneshot::Sender<()>),
    /// Reply with the last published status of every exported service, once every earlier
    /// event has been published (`GetManagedObjects`).
    Snapshot(oneshot::Sender<Vec<Arc<ServiceStatus>>>),
}

/// The sending side; cheap to clone. Sending never blocks (the publisher must never slow
/// the supervisor down), and a gone publisher (shutdown) is not an error.
#[derive(Debug, Clone)]
pub struct EventSender(mpsc::UnboundedSender<Event>);

pub type EventReceiver = mpsc::UnboundedReceiver<Event>;

/// A new event stream.
pub fn channel() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (EventSender(tx), rx)
}

impl EventSender {
    pub fn send(&self, event: Event) {
        let _ = self.0.send(event);
    }

    /// Waits until the publisher has handled everything sent before this call.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Event::Barrier(tx));
        let _ = rx.await;
    }

    /// The last published status of every exported service; empty when the publisher is
    /// gone (shutting down).
    pub async fn snapshot(&self) -> Vec<Arc<ServiceStatus>> {
        let (tx, rx) = oneshot::channel();
        self.send(Event::Snapshot(tx));
        rx.await.unwrap_or_default()
    }
}
