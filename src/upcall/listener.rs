//! The upcall task's part in a transition: it learns which services relay upcalls, and
//! the `[daemon]` settings, from the configuration being applied.

use super::{UpcallHandle, UpcallSettings};
use crate::config::Config;
use crate::transitions::{Listener, Step, StepFuture};

/// Registers the upcall task for transitions.
pub struct UpcallListener(pub UpcallHandle);

impl UpcallListener {
    /// Every service of `config` with its `upcall` flag, as `set_services` wants them.
    fn services(config: &Config) -> Vec<(String, bool)> {
        config
            .services
            .iter()
            .map(|(name, service)| (name.clone(), service.upcall))
            .collect()
    }
}

impl Listener for UpcallListener {
    fn name(&self) -> &'static str {
        "upcall"
    }

    fn on_step<'a>(&'a self, step: &'a Step<'a>, new: &'a Config) -> StepFuture<'a> {
        Box::pin(async move {
            let upcalls = &self.0;
            match step {
                Step::ReloadStarted(_) => {
                    upcalls
                        .update_settings(UpcallSettings::from(&new.daemon))
                        .await
                }
                // The whole set each time: a created service can be watched from its
                // creation on; a changed one that turned `upcall` off, or a destroyed one,
                // loses its state. (A service destroyed by this reload is already absent
                // from `new` at ServicesCreated, so its state may go a few steps early —
                // harmless, it is being stopped anyway.)
                Step::ServicesCreated(_)
                | Step::ServicesChanged(_)
                | Step::ServicesDestroyed(_) => upcalls.set_services(Self::services(new)).await,
                Step::ToBeUnserved(_)
                | Step::GroupsCreated(_)
                | Step::Unserved(_)
                | Step::GroupsMoved(_)
                | Step::ServicesMoved(_)
                | Step::Served { .. }
                | Step::GroupsDestroyed(_)
                | Step::ReloadFinished(_) => {}
            }
        })
    }
}
