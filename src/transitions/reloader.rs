//! The reloader: one task that owns the [`Applier`] and carries out reload and shutdown
//! requests one at a time, so concurrent reloads (D-Bus, SIGHUP, corralctl) are serialised
//! — with each other and with the fleet's placements, which it applies the same way
//! ([`super::fleet`]).
//! The new configuration is read and validated before anything changes; an invalid one is
//! refused whole (`InvalidConfig`, nothing changed). A valid one is applied; if a service
//! it starts fails, the reply is `StartFailed` naming the new generation and what failed —
//! the same outcome `ReloadFinished` announces with `ok = false`.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Applier;
use super::fleet::FleetLink;
use crate::config::{Config, ConfigErrors};
use crate::error::{CommandError, CommandResult};
use crate::events::Transition;

/// Told when a reload begins and ends (corrald's systemd notifier sends `RELOADING=1` and
/// `READY=1`: systemd's notify-reload protocol).
pub trait ReloadObserver: Send + Sync + 'static {
    fn reloading(&self);
    fn reloaded(&self);
}

/// Reads and validates the configuration (file I/O; run on a blocking thread).
pub type Loader = Arc<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

enum Request {
    Reload(Option<oneshot::Sender<CommandResult<Vec<Transition>>>>),
    Shutdown(oneshot::Sender<()>),
    /// Hold: no reload starts until the `Held` is dropped (a live re-exec).
    Hold(oneshot::Sender<Held>),
}

/// While this lives, no reload runs; it carries the configuration generation applied.
pub struct Held {
    pub generation: u64,
    _release: oneshot::Sender<()>,
}

/// A cheap handle on the reloader task.
#[derive(Clone)]
pub struct ReloadHandle(mpsc::Sender<Request>);

/// The reloader's task, before it is started: requests sent meanwhile wait.
pub struct ReloadTask(mpsc::Receiver<Request>);

/// A handle and its (not yet started) task. The handle exists first because the D-Bus
/// manager object needs it before the applier has brought the services up.
pub fn channel() -> (ReloadHandle, ReloadTask) {
    let (tx, rx) = mpsc::channel(16);
    (ReloadHandle(tx), ReloadTask(rx))
}

impl ReloadTask {
    /// Starts serving requests with `applier`, and the fleet's placements with `fleet`.
    pub fn start(
        self,
        applier: Applier,
        loader: Loader,
        observer: impl ReloadObserver,
        fleet: Option<FleetLink>,
    ) {
        tokio::spawn(run(applier, loader, observer, self.0, fleet));
    }
}

impl ReloadHandle {
    /// Reloads and returns the transitions applied, or `InvalidConfig` with every problem.
    pub async fn reload(&self) -> CommandResult<Vec<Transition>> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Request::Reload(Some(tx)))
            .await
            .map_err(|_| CommandError::ShuttingDown)?;
        rx.await.map_err(|_| CommandError::ShuttingDown)?
    }

    /// Reloads without waiting (SIGHUP); the outcome is logged and signalled.
    pub fn reload_in_background(&self) {
        let _ = self.0.try_send(Request::Reload(None));
    }

    /// Waits until no reload runs and keeps it so while the returned [`Held`] lives.
    pub async fn hold(&self) -> CommandResult<Held> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Request::Hold(tx))
            .await
            .map_err(|_| CommandError::ShuttingDown)?;
        rx.await.map_err(|_| CommandError::ShuttingDown)
    }

    /// Applies the empty configuration (`Down`): every service stopped in reverse
    /// dependency order and its object removed. Returns when done.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Request::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    mut applier: Applier,
    loader: Loader,
    observer: impl ReloadObserver,
    mut requests: mpsc::Receiver<Request>,
    mut fleet: Option<FleetLink>,
) {
    loop {
        let request = tokio::select! {
            request = requests.recv() => match request {
                Some(request) => request,
                None => break,
            },
            () = next_placement(&mut fleet) => {
                if let Some(link) = fleet.as_mut() {
                    apply_placements(&mut applier, link).await;
                }
                continue;
            }
        };
        match request {
            Request::Reload(reply) => {
                // systemd's notify-reload protocol: RELOADING=1 with the time, then READY=1.
                observer.reloading();
                let result = reload(&mut applier, &loader, &mut fleet).await;
                observer.reloaded();
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Request::Hold(reply) => {
                let (release, released) = oneshot::channel();
                let held = Held {
                    generation: applier.generation(),
                    _release: release,
                };
                if reply.send(held).is_ok() {
                    // Resolves when the holder drops it (or the process execs meanwhile).
                    let _ = released.await;
                }
            }
            Request::Shutdown(reply) => {
                let host = applier.current().daemon.host.clone();
                let applied = applier.apply(Config::empty(host)).await;
                tracing::info!(
                    "all services stopped ({} transitions)",
                    applied.transitions.len()
                );
                if let Some(link) = fleet.as_mut() {
                    link.release_stopped(applier.current()).await;
                    link.shutdown().await;
                }
                let _ = reply.send(());
                break;
            }
        }
    }
}

async fn next_placement(fleet: &mut Option<FleetLink>) {
    match fleet {
        Some(link) => link.next().await,
        None => std::future::pending().await,
    }
}

/// Applies the fleet's placements as a reload of the same files; then releases the groups
/// that stopped being served here.
async fn apply_placements(applier: &mut Applier, link: &mut FleetLink) {
    let effective = link.effective();
    if effective != *applier.current() {
        let applied = applier.apply(effective).await;
        tracing::info!(
            generation = applier.generation(),
            "applied the fleet's placements: {} transitions",
            applied.transitions.len()
        );
        if !applied.problems.is_empty() {
            tracing::warn!(
                "not every service started:\n{}",
                applied.problems.join("\n")
            );
        }
    }
    link.release_stopped(applier.current()).await;
}

async fn reload(
    applier: &mut Applier,
    loader: &Loader,
    fleet: &mut Option<FleetLink>,
) -> CommandResult<Vec<Transition>> {
    let loader = loader.clone();
    let loaded = tokio::task::spawn_blocking(move || loader())
        .await
        .map_err(|err| {
            CommandError::InvalidConfig(format!("reading the configuration failed: {err}"))
        })?;
    match loaded {
        Ok(config) => {
            let config = match fleet.as_mut() {
                Some(link) => link.reloaded(config).await,
                None => config,
            };
            let applied = applier.apply(config).await;
            if let Some(link) = fleet.as_mut() {
                link.release_stopped(applier.current()).await;
            }
            let generation = applier.generation();
            if applied.problems.is_empty() {
                tracing::info!(
                    generation,
                    "reloaded: {} transitions",
                    applied.transitions.len()
                );
                Ok(applied.transitions)
            } else {
                let message = format!(
                    "the configuration was applied (generation {generation}), but:\n{}",
                    applied.problems.join("\n")
                );
                tracing::warn!("{message}");
                Err(CommandError::StartFailed(message))
            }
        }
        Err(errors) => {
            let message =
                format!("the new configuration is invalid; nothing was changed:\n{errors}");
            tracing::error!("{message}");
            applier.reject(&message).await;
            Err(CommandError::InvalidConfig(message))
        }
    }
}
