//! The upcall task's part in a transition: it learns which services relay upcalls, and
//! the `[daemon]` settings, from the configuration being applied.

use super::{Listener, Problems, StepFuture};
use crate::config::Config;
use crate::transitions::plan::Step;
use crate::upcall::{UpcallHandle, UpcallSettings};

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

    fn on_step<'a>(&'a self, step: &'a Step, new: &'a Config) -> StepFuture<'a> {
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
                | Step::GroupsChanged(_)
                | Step::ServicesMoved(_)
                | Step::Served(_)
                | Step::GroupsDestroyed(_) => {}
            }
            Problems::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Service;
    use crate::error::CommandError;

    fn service(upcall: bool) -> Service {
        Service {
            exec: vec!["/bin/true".into()],
            upcall,
            ..Service::default()
        }
    }

    #[tokio::test]
    async fn listener_follows_the_configuration() {
        let (tx, _deliveries) = tokio::sync::mpsc::unbounded_channel();
        let settings = UpcallSettings {
            lease_recall_timeout: Duration::from_secs(5),
            upcall_expiry: Duration::from_secs(60),
            max_watches_per_client: 3,
            max_leases_per_client: 3,
        };
        let handle = crate::upcall::spawn(settings, tx);
        let listener = UpcallListener(handle.clone());
        let mut config = Config::empty("node-a");
        config.daemon.max_watches_per_client = 1;
        config.services.insert("nfs".into(), service(true).into());
        config.services.insert("cron".into(), service(false).into());
        let created: Vec<_> = config.services.clone().into_iter().collect();

        listener.on_step(&Step::ReloadStarted(1), &config).await;
        listener
            .on_step(&Step::ServicesCreated(created), &config)
            .await;
        assert_eq!(handle.watch(":1.1", "nfs", "f").await, Ok(()));
        assert!(matches!(
            handle.watch(":1.1", "cron", "f").await,
            Err(CommandError::InvalidArgs(message)) if message.contains("set upcall = true")
        ));
        // The cap came from `[daemon]` at ReloadStarted.
        assert!(matches!(
            handle.watch(":1.1", "nfs", "g").await,
            Err(CommandError::QueueFull(_))
        ));

        // upcall turned off: the state goes.
        config.services.insert("nfs".into(), service(false).into());
        let changed = vec![("nfs".to_owned(), service(false).into())];
        listener
            .on_step(&Step::ServicesChanged(changed), &config)
            .await;
        assert_eq!(handle.stats().await.watches, 0);

        // Destroyed: the service is unknown from then on.
        config.services.remove("nfs");
        let destroyed = vec!["nfs".to_owned()];
        listener
            .on_step(&Step::ServicesDestroyed(destroyed), &config)
            .await;
        assert_eq!(
            handle.watch(":1.1", "nfs", "f").await,
            Err(CommandError::NoSuchService("nfs".into()))
        );
    }
}
