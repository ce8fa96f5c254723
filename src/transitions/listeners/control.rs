//! The control channels' part in a transition: a connection task for each service that
//! sets `control_socket`, replaced when the socket changes, ended when it goes.

use super::{Listener, Problems, StepFuture};
use crate::config::Config;
use crate::control::ControlRegistry;
use crate::transitions::plan::Step;

/// Registers the control channel for transitions.
pub struct ControlListener(pub ControlRegistry);

impl Listener for ControlListener {
    fn name(&self) -> &'static str {
        "control-channel"
    }

    fn on_step<'a>(&'a self, step: &'a Step, _new: &'a Config) -> StepFuture<'a> {
        Box::pin(async move {
            match step {
                Step::ServicesCreated(list) | Step::ServicesChanged(list) => {
                    for (name, spec) in list {
                        self.0.reconcile(name, Some(spec)).await;
                    }
                }
                Step::ServicesDestroyed(names) => {
                    for name in names {
                        self.0.reconcile(name, None).await;
                    }
                }
                _ => {}
            }
            Problems::new()
        })
    }
}
