//! `corrald` as a library function: [`run`] takes everything it needs injected (config
//! source, bus, runtime and state dirs, output routing, notify socket, shutdown token), so
//! tests can run it in-process as well as the real binary.
//!
//! Life: read and validate the configuration → set up the cgroups (or process groups) →
//! (with `[fleet]`: start the fence and the fleet) → own the bus name → `Up` (every served
//! service started, in dependency order) → `READY=1` → serve until shutdown, reloading on
//! SIGHUP or `Reload()` and applying the fleet's placements → `STOPPING=1` → `Down` (all
//! stopped in reverse order, every group released, the fleet left) → release the cgroups
//! → return.

mod error;
mod fleet;
pub mod systemd;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bus::upcall::UpcallObject;
use crate::bus::{self, BusAddress, manager::ManagerObject};
use crate::config::{self, ConfigSource};
use crate::control::ControlRegistry;
use crate::events::{self, DaemonState, Event, ManagerStatus};
use crate::fs_trust::{self, PrivateDirError};
use crate::jobs;
use crate::names::BUS_NAME;
use crate::process::OutputMode;
use crate::process::cgroup::{self, Cgroups, Mode};
use crate::reexec;
use crate::store::{Store, StoreHealth, StoreSettings};
use crate::supervisor;
use crate::transitions::Applier;
use crate::transitions::listeners::{
    ControlListener, JobsListener, ObjectsListener, SupervisorListener, UpcallListener,
};
use crate::transitions::reloader::{self, Loader};
use crate::upcall::{self, UpcallSettings};
pub use error::DaemonError;
use fleet::{FleetParts, start_fence};
use systemd::Notifier;

/// Everything `run` needs from outside.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: ConfigSource,
    pub bus: BusAddress,
    /// Sockets live here (`/run/corral`).
    pub runtime_dir: PathBuf,
    /// The state store lives here (`/var/lib/corral`): see [`crate::store`].
    pub state_dir: PathBuf,
    pub output: OutputMode,
    /// Where to send corrald's own sd_notify messages.
    pub notifier: Notifier,
    /// Ping systemd's watchdog at half this interval.
    pub watchdog: Option<Duration>,
    /// The binary a live re-exec runs (resolved when corrald started) and its arguments.
    pub exe: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    /// With `[fleet]`, corrald starts `PROGRAM --fence` (see [`crate::fence`]): its own
    /// executable, `/proc/self/exe`.
    pub fence_program: PathBuf,
    /// Run each service in a cgroup of its own where this host gives corrald a writable
    /// cgroup v2 subtree; `false` (`corrald --no-cgroups`): process groups everywhere.
    pub cgroups: bool,
}

/// Runs corrald until `shutdown` is cancelled; returns once every service is stopped.
/// `handover` is what the corrald this one re-executed from left it (a live re-exec).
pub async fn run(
    options: Options,
    handover: Option<reexec::Handover>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let reexecuted = handover.is_some();
    let (generation, supervisor_state, jobs_state, inherited_fence, inherited_lease) =
        match handover {
            Some(handover) => {
                for (fd, prefix) in handover.output {
                    // SAFETY: the previous corrald handed these pipes over to be read on.
                    unsafe { crate::process::output::resume(fd, prefix) };
                }
                let h = (handover.supervisor, handover.jobs);
                (
                    handover.generation,
                    Some(h.0),
                    Some(h.1),
                    handover.fence,
                    handover.fleet_lease,
                )
            }
            None => (0, None, None, None, None),
        };
    let source = options.config.clone();
    let loader: Loader = Arc::new(move || config::load(&source));
    let initial = {
        let loader = loader.clone();
        tokio::task::spawn_blocking(move || loader())
            .await
            .expect("the config loader does not panic")
            .map_err(DaemonError::Config)?
    };
    runtime_dir(&options.runtime_dir)?;

    // Before the bus: a second corrald on the same state directory stops here, whatever
    // bus it was pointed at. Every other store problem only degrades it (see `store`).
    let settings = StoreSettings {
        check_file: !reexecuted,
        ..StoreSettings::default()
    };
    let (store, loaded) = Store::open_with(&options.state_dir, settings)
        .await
        .map_err(DaemonError::State)?;

    let cgroups = setup_cgroups(&options).await;
    // Before any service starts: with a fleet, each grouped service's processes are
    // named to the fence as they are spawned.
    let fence = start_fence(&options.fence_program, &initial, inherited_fence)?;
    let (events, event_stream) = events::channel();
    let supervisor = supervisor::spawn(
        supervisor::Settings {
            runtime_dir: options.runtime_dir.clone(),
            output: options.output.clone(),
            events: events.clone(),
            store: store.clone(),
            fence: fence.clone(),
            cgroups: cgroups.clone(),
        },
        supervisor::Durable {
            desired: loaded.desired,
            runs: loaded.runs,
            inherited: supervisor_state,
        },
    );
    let mut fleet = FleetParts::start(&initial, &supervisor, inherited_lease);
    let (manager_tx, manager_rx) = watch::channel(ManagerStatus {
        fleet: fleet.initial_state(),
        supervision: cgroups.mode().name(),
        control_group: match cgroups.mode() {
            Mode::Cgroups { root, .. } => root.clone(),
            Mode::ProcessGroups { .. } => String::new(),
        },
        ..ManagerStatus::starting(&initial.daemon.host)
    });
    tokio::spawn(publish_store_health(
        store.health(),
        manager_tx.clone(),
        events.clone(),
    ));
    let mut applier = Applier::new(&initial.daemon.host, events.clone(), manager_tx.clone());
    applier.continue_from(generation);
    // Registration order: the supervisor first, so units exist before their objects are
    // exported and outlive them on removal.
    let (notifications_tx, notifications) =
        tokio::sync::mpsc::channel(upcall::relay::NOTIFICATION_QUEUE);
    let controls = ControlRegistry::new(supervisor.clone(), notifications_tx);
    supervisor
        .set_method_caller(Arc::new(crate::methods::Drivers(controls.clone())))
        .await;
    applier.register(Box::new(SupervisorListener(supervisor.clone())));
    applier.register(Box::new(ControlListener(controls.clone())));
    let jobs = jobs::spawn(
        supervisor.clone(),
        store.clone(),
        options.output.clone(),
        loaded.unfinished_jobs,
        loaded.max_job_id,
        jobs_state,
    );
    applier.register(Box::new(JobsListener(jobs.clone())));
    let (deliveries_tx, deliveries) = tokio::sync::mpsc::unbounded_channel();
    let upcalls = upcall::spawn(UpcallSettings::from(&initial.daemon), deliveries_tx);
    applier.register(Box::new(UpcallListener(upcalls.clone())));
    applier.register(Box::new(ObjectsListener {
        supervisor: supervisor.clone(),
        events: events.clone(),
    }));

    // The reloader task starts after `Up`; until then its requests wait in the channel.
    let (reloader, reload_task) = reloader::channel();
    let reexec = reexec::Reexec::new(
        supervisor.clone(),
        jobs.clone(),
        reloader.clone(),
        store.clone(),
        options.exe.clone(),
        options.args.clone(),
        fleet.handover(fence.clone()),
    );
    let manager = ManagerObject::new(
        supervisor.clone(),
        controls.clone(),
        jobs.clone(),
        reexec,
        reloader.clone(),
        manager_rx.clone(),
        fleet.access.clone(),
    );
    let connection = bus::connect(
        &options.bus,
        manager,
        UpcallObject::new(upcalls.clone()),
        events.clone(),
        reexecuted,
    )
    .await
    .map_err(DaemonError::Bus)?;
    let unique = connection
        .unique_name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    tracing::info!("serving {BUS_NAME} as {unique}");
    let publisher = tokio::spawn(bus::publisher::run(
        connection.clone(),
        event_stream,
        supervisor.clone(),
        controls.clone(),
        jobs.clone(),
        manager_rx,
    ));
    let (sent_tx, sent) = tokio::sync::watch::channel(0);
    tokio::spawn(upcall::relay::run(notifications, upcalls.clone(), sent));
    tokio::spawn(bus::upcall::deliver(
        connection.clone(),
        deliveries,
        sent_tx,
    ));
    tokio::spawn({
        let (connection, upcalls) = (connection.clone(), upcalls.clone());
        async move {
            if let Err(err) = bus::upcall::forget_departed_clients(connection, upcalls).await {
                tracing::error!("cannot follow clients leaving the bus: {err}");
            }
        }
    });

    let background = CancellationToken::new();
    fleet.spawn_tasks(&supervisor, &manager_tx, &events, &background);
    // Only the count of `up`'s transitions is kept: the list (a transition per service)
    // would stay in memory for as long as corrald runs.
    let (up_transitions, up_problems) = {
        let up = applier.apply(fleet.up_config(initial)).await;
        (up.transitions.len(), up.problems)
    };
    supervisor.settle_recovered().await;
    jobs.settle_inherited();
    if let (true, Some(fence)) = (reexecuted, &fence) {
        // The fence still guards what the previous image named: exactly what runs now.
        if let Err(err) = fence.resync().await {
            tracing::error!("cannot tell the fence what runs after the re-exec: {err}");
        }
    }
    if reexecuted {
        tracing::info!("re-executed: every service taken over from the previous corrald");
    }
    manager_tx.send_modify(|m| m.state = DaemonState::Running);
    events.send(Event::Manager);
    tracing::info!(
        "up: {} transitions; {}",
        up_transitions,
        *supervisor.summary().borrow()
    );
    if !up_problems.is_empty() {
        tracing::warn!("not every service started:\n{}", up_problems.join("\n"));
    }
    options
        .notifier
        .status(&supervisor.summary().borrow().to_string());
    // What reading the configuration and starting every service allocated only for the
    // while is free now: give it back (see `memory`).
    crate::memory::release_free_memory();
    options.notifier.ready();

    reload_task.start(applier, loader, options.notifier.clone(), fleet.link.take());
    tokio::spawn(report_status(
        supervisor.clone(),
        options.notifier.clone(),
        background.clone(),
    ));
    if let Some(interval) = options.watchdog {
        tokio::spawn(watchdog(
            supervisor.clone(),
            options.notifier.clone(),
            interval,
            background.clone(),
        ));
    }
    let mut hangups = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = connection.closed() => {
                // The run records of services started a moment ago may still be queued:
                // without them the next corrald would start second copies.
                store.close().await;
                return Err(DaemonError::BusLost);
            }
            Some(()) = recv_hangup(&mut hangups) => {
                tracing::info!("SIGHUP: reloading the configuration");
                reloader.reload_in_background();
            }
        }
    }

    tracing::info!("shutting down: stopping every service");
    manager_tx.send_modify(|m| m.state = DaemonState::Stopping);
    events.send(Event::Manager);
    options.notifier.stopping();
    supervisor.shutting_down().await;
    reloader.shutdown().await;
    // Every service has stopped: the cgroups corrald made go too.
    for busy in cgroups.release() {
        tracing::warn!(
            "cgroup {busy} still holds processes after every service stopped; left in place"
        );
    }
    background.cancel();
    if let Some(fence) = fence {
        fence.shutdown().await;
    }
    events.flush().await;
    let _ = connection.release_name(BUS_NAME).await;
    drop(events);
    publisher.abort();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The cgroup driver: cgroup v2 where this host allows it (a private subtree per runtime
/// directory outside systemd), else process groups, saying why.
async fn setup_cgroups(options: &Options) -> Cgroups {
    if !options.cgroups {
        let cgroups = Cgroups::disabled("corrald was started with --no-cgroups");
        tracing::info!("tracking services with {}", cgroups.mode());
        return cgroups;
    }
    let instance = cgroup::instance_name(&options.runtime_dir);
    tokio::task::spawn_blocking(move || Cgroups::setup(&instance))
        .await
        .expect("the cgroup setup does not panic")
}

/// Creates the runtime directory (mode 0755, parents too), or checks the one that exists:
/// corrald puts sockets there and trusts what it finds, so it must be corrald's alone —
/// owned by its user and writable by nobody else.
fn runtime_dir(path: &Path) -> Result<(), DaemonError> {
    fs_trust::make_private_dir(path).map_err(|err| match err {
        PrivateDirError::Create(source) => DaemonError::RuntimeDir {
            path: path.to_owned(),
            source,
        },
        PrivateDirError::Untrusted(why) => DaemonError::UntrustedRuntimeDir(why),
    })
}

/// Keeps the Manager's `StatusText` saying whether the state store writes (the store logs
/// each change of its health itself).
async fn publish_store_health(
    mut health: watch::Receiver<StoreHealth>,
    manager: watch::Sender<ManagerStatus>,
    events: events::EventSender,
) {
    loop {
        let text = match &*health.borrow_and_update() {
            StoreHealth::Ok => String::new(),
            StoreHealth::Degraded { reason } => format!("state store degraded: {reason}"),
        };
        if manager.send_if_modified(|m| std::mem::replace(&mut m.status_text, text.clone()) != text)
        {
            events.send(Event::Manager);
        }
        if health.changed().await.is_err() {
            return;
        }
    }
}

async fn recv_hangup(hangups: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Keeps corrald's `STATUS=` current ("5 services: 4 active, 1 failed"). Changes are
/// coalesced over 50 ms, so a thousand services starting send a handful of datagrams.
async fn report_status(
    supervisor: supervisor::Handle,
    notifier: Notifier,
    stop: CancellationToken,
) {
    if !notifier.is_enabled() {
        return;
    }
    let mut summary = supervisor.summary();
    let mut sent = summary.borrow().to_string();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = summary.changed() => if changed.is_err() { return },
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = summary.borrow_and_update().to_string();
        if now != sent {
            notifier.status(&now);
            sent = now;
        }
    }
}

/// Pings systemd's watchdog while the supervisor task answers: a corrald whose core is
/// stuck (or stopped with SIGSTOP) stops pinging and systemd restarts it.
async fn watchdog(
    supervisor: supervisor::Handle,
    notifier: Notifier,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if supervisor.ping().await {
                    notifier.watchdog();
                }
            }
        }
    }
}
