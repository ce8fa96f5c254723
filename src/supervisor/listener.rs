//! The supervisor's part in a transition: define units, stop what is unserved, swap
//! definitions, start what is served (and restart what changed), drop what is destroyed.

use super::Handle;
use crate::config::Config;
use crate::transitions::{Listener, Step, StepFuture};

/// Registers the supervisor for transitions.
pub struct SupervisorListener(pub Handle);

impl Listener for SupervisorListener {
    fn name(&self) -> &'static str {
        "supervisor"
    }

    fn on_step<'a>(&'a self, step: &'a Step<'a>, new: &'a Config) -> StepFuture<'a> {
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
                    for (name, spec) in created.iter() {
                        supervisor.define(name, spec.clone(), false).await;
                    }
                }
                Step::Unserved(names) => {
                    supervisor.stop_batch(names.to_vec()).await;
                    supervisor.set_served(names, false).await;
                }
                Step::ServicesMoved(moved) => {
                    for (name, _) in moved.iter() {
                        supervisor.redefine(name, new.services[name].clone()).await;
                    }
                }
                Step::ServicesChanged(changed) => {
                    for (name, spec) in changed.iter() {
                        supervisor.redefine(name, spec.clone()).await;
                    }
                }
                Step::Served { served, restarted } => {
                    supervisor.set_served(served, true).await;
                    // Restart only what runs; a changed service stopped by hand stays stopped.
                    let running = supervisor.running_among(restarted.to_vec()).await;
                    supervisor.stop_batch(running.clone()).await;
                    let mut starts: Vec<String> = served
                        .iter()
                        .filter(|name| new.services[name.as_str()].autostart)
                        .cloned()
                        .collect();
                    starts.extend(running);
                    // One batch, so dependencies between new and restarted services hold.
                    let ordered = crate::transitions::order::dependency_order(new, &starts);
                    supervisor.start_batch(ordered).await;
                }
                Step::ServicesDestroyed(names) => supervisor.undefine(names.to_vec()).await,
                Step::ToBeUnserved(_)
                | Step::GroupsCreated(_)
                | Step::GroupsMoved(_)
                | Step::GroupsDestroyed(_)
                | Step::ReloadFinished(_) => {}
            }
        })
    }
}
