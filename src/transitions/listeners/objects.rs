//! D-Bus publication's part in a transition: export the object of each created service
//! (before its `ServiceCreated`) and remove each destroyed one (after its
//! `ServiceDestroyed`). Both go through the publisher's ordered event stream.

use super::{Listener, Problems, StepFuture};
use crate::config::Config;
use crate::events::{Event, EventSender};
use crate::supervisor::Handle;
use crate::transitions::plan::Step;

/// Registers D-Bus publication for transitions.
pub struct ObjectsListener {
    pub supervisor: Handle,
    pub events: EventSender,
}

impl Listener for ObjectsListener {
    fn name(&self) -> &'static str {
        "dbus-objects"
    }

    fn on_step<'a>(&'a self, step: &'a Step, _new: &'a Config) -> StepFuture<'a> {
        Box::pin(async move {
            match step {
                Step::ServicesCreated(created) => {
                    for (name, _) in created {
                        if let Some(status) = self.supervisor.subscribe(name).await {
                            self.events.send(Event::Export {
                                name: name.clone(),
                                status,
                            });
                        }
                    }
                }
                Step::ServicesDestroyed(names) => {
                    for name in names {
                        self.events.send(Event::Unexport { name: name.clone() });
                    }
                }
                _ => {}
            }
            Problems::new()
        })
    }
}
