//! Keeps the jobs task's recipes, workers and schedules in step with the configuration.

use super::{Listener, Problems, StepFuture};
use crate::config::Config;
use crate::jobs::JobsHandle;
use crate::transitions::plan::Step;

/// Registers recipes and worker pools for transitions.
pub struct JobsListener(pub JobsHandle);

impl Listener for JobsListener {
    fn name(&self) -> &'static str {
        "jobs"
    }

    fn on_step<'a>(&'a self, step: &'a Step, _new: &'a Config) -> StepFuture<'a> {
        Box::pin(async move {
            match step {
                Step::ServicesCreated(list) | Step::ServicesChanged(list) => {
                    for (name, spec) in list {
                        self.0.configure(name, Some(spec.clone()));
                    }
                }
                Step::ServicesDestroyed(names) => {
                    for name in names {
                        self.0.configure(name, None);
                    }
                }
                _ => {}
            }
            Problems::new()
        })
    }
}
