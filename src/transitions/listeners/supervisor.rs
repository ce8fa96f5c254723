//! The supervisor's part in a transition: define units, stop what is unserved, swap
//! definitions, start what is served (and restart what changed), drop what is destroyed.

use std::future::Future;
use std::pin::Pin;

use super::{Listener, Problems, StepFuture};
use crate::config::Config;
use crate::supervisor::Handle;
use crate::transitions::plan::{Served, Step};

/// Registers the supervisor for transitions.
pub struct SupervisorListener(pub Handle);

impl Listener for SupervisorListener {
    fn name(&self) -> &'static str {
        "supervisor"
    }

    /// Holds back client commands that change state for the whole reload, so a `Start`
    /// racing a reload sees the configuration before or after it, never half of each.
    fn reloading(&self, reloading: bool) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if reloading {
                self.0.begin_reload().await
            } else {
                self.0.end_reload().await
            }
        })
    }

    fn on_step<'a>(&'a self, step: &'a Step, new: &'a Config) -> StepFuture<'a> {
        Box::pin(async move {
            let supervisor = &self.0;
            match step {
                Step::ReloadStarted(_) => {
                    supervisor
                        .set_placement(&new.daemon.host, &new.groups)
                        .await
                }
                Step::ServicesCreated(created) => {
                    // Served from step 6 on, when ServiceServed says so.
                    for (name, spec) in created {
                        supervisor.define(name, spec.clone(), false).await;
                    }
                }
                Step::Unserved(names) => {
                    supervisor.stop_batch(names.clone()).await;
                    supervisor.set_served(names, false).await;
                }
                Step::ServicesMoved(moved) => {
                    for (name, _) in moved {
                        supervisor.redefine(name, new.services[name].clone()).await;
                    }
                }
                Step::ServicesChanged(changed) => {
                    for (name, spec) in changed {
                        supervisor.redefine(name, spec.clone()).await;
                    }
                }
                Step::Served(served) => return serve(supervisor, served).await,
                Step::ServicesDestroyed(names) => supervisor.undefine(names.clone()).await,
                Step::ToBeUnserved(_)
                | Step::GroupsCreated(_)
                | Step::GroupsMoved(_)
                | Step::GroupsChanged(_) => {}
                Step::GroupsDestroyed(_) => {}
            }
            Problems::new()
        })
    }
}

/// Step 6: newly served services start, changed ones that run are restarted — one batch in
/// the plan's order, so dependencies between the two hold. A changed service stopped by
/// hand stays stopped.
async fn serve(supervisor: &Handle, step: &Served) -> Problems {
    supervisor.set_served(&step.served, true).await;
    let restarted: Vec<String> = step.restarted.iter().cloned().collect();
    let running = supervisor.running_among(restarted).await;
    supervisor.stop_batch(running.clone()).await;
    // Newly served ones start by their desired state, else `autostart` (the supervisor
    // owns both facts); changed ones only if they ran.
    let wanted = supervisor.wanted_at_start(step.served.clone()).await;
    let starts: Vec<String> = step
        .starts
        .iter()
        .filter(|name| {
            if step.restarted.contains(*name) {
                running.contains(name)
            } else {
                wanted.contains(name)
            }
        })
        .cloned()
        .collect();
    supervisor.start_batch(starts).await
}
