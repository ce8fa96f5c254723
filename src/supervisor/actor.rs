//! The supervisor task itself: its state, its loop, and the handling of each command. The
//! life-cycle verbs live in `start.rs`, `stop.rs` and `exit.rs`, process events and timers
//! in `internal.rs`, ordered batches in `batch.rs`, notify messages in `notify.rs`, the
//! watchdog in `watchdog.rs`, health checks in `health.rs`, `on_failure` in `on_failure.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};

use super::batch::Batch;
use super::internal::Internal;
use super::unit::{Phase, Unit, Waiter};
use super::{Command, JobsUpdate, Reply, ServiceSummary, Settings};
use super::{Durable, MethodCaller};
use crate::config::Group;
use crate::error::{CommandError, CommandResult};
use crate::events::{Event, ServiceStatus, Summary, now_usec};

/// What a Pause/Resume/Kill asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum SignalAction {
    Pause,
    Resume,
    Kill(Signal),
}

pub(super) struct Supervisor {
    pub(super) settings: Settings,
    /// Boxed: a `Unit` is over 500 bytes, and a B-tree filled in name order leaves its
    /// nodes about half empty, which would waste as much again per service inline.
    pub(super) units: BTreeMap<String, Box<Unit>>,
    /// This peer and the groups, for `NotServedHere` messages.
    pub(super) host: String,
    pub(super) groups: BTreeMap<String, Group>,
    pub(super) internal_tx: mpsc::UnboundedSender<Internal>,
    pub(super) internal_rx: Option<mpsc::UnboundedReceiver<Internal>>,
    pub(super) next_run_id: u64,
    /// Frozen for a live re-exec: commands and process events wait.
    pub(super) frozen: bool,
    pub(super) frozen_events: Vec<Internal>,
    /// The notify socket's descriptor, handed over by a live re-exec.
    pub(super) notify_fd: Option<std::os::fd::RawFd>,
    /// What the corrald this one re-executed from left each unit in, until it is defined.
    pub(super) inherited: HashMap<String, super::reexec::UnitState>,
    pub(super) batches: HashMap<u64, Batch>,
    pub(super) next_batch_id: u64,
    /// Batch members released and waiting to be launched by the loop. A queue rather than
    /// a recursive call, because launching can settle at once and release more members.
    pub(super) ready: VecDeque<(u64, String)>,
    /// Automatic restarts prepared while the loop handled a run of queued events (a crash
    /// storm), spawned together on a few threads once the queue is drained.
    pub(super) restarts: Vec<super::launch::Launch>,
    /// While a reload is applied, client commands that change state wait here.
    pub(super) reloading: bool,
    pub(super) deferred: VecDeque<Command>,
    /// The notify socket's path for `NOTIFY_SOCKET`, or why there is none.
    pub(super) notify_socket: Result<PathBuf, String>,
    /// The service each tracked PID belongs to: main PIDs and process-group leaders of the
    /// current runs. Notify messages are attributed through it.
    pub(super) pids: HashMap<u32, String>,
    /// Runs that survived the last corrald, by service, until each is adopted or stopped.
    pub(super) recovered: HashMap<String, crate::store::RunRecord>,
    /// corrald is shutting down: services go, but their desired states stay.
    pub(super) shutting_down: bool,
    /// Desired states loaded at start-up whose services are not defined yet.
    pub(super) desired_unclaimed: HashMap<String, crate::store::DesiredRecord>,
    pub(super) summary: Summary,
    pub(super) summary_tx: watch::Sender<Summary>,
    /// The manager-method drivers, for `method = "…"` health checks (handed in once the
    /// daemon has built them).
    pub(super) methods: Option<Arc<dyn MethodCaller>>,
}

/// How many queued internal events the loop handles in one round after the first.
const DRAIN_AT_ONCE: usize = 256;

/// How many restarts one round spawns at most: the loop waits for their spawns (~0.8 ms
/// each, on four threads), so this bounds how long a command can wait behind them.
const RESTARTS_AT_ONCE: usize = 64;

impl Supervisor {
    pub(super) fn new(
        settings: Settings,
        durable: Durable,
        summary_tx: watch::Sender<Summary>,
    ) -> Supervisor {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let inherited = durable.inherited;
        let notify_socket = super::notify::listen(
            &settings.runtime_dir,
            inherited.as_ref().and_then(|state| state.notify_fd),
            &internal_tx,
        );
        let notify_fd = notify_socket.as_ref().ok().map(|(_, fd)| *fd);
        let notify_socket = notify_socket.map(|(path, _)| path);
        let next_run_id = inherited.as_ref().map_or(1, |state| state.next_run_id);
        let inherited = inherited
            .map(|state| {
                state
                    .units
                    .into_iter()
                    .map(|unit| (unit.name.clone(), unit))
                    .collect()
            })
            .unwrap_or_default();
        Supervisor {
            settings,
            units: BTreeMap::new(),
            host: String::new(),
            groups: BTreeMap::new(),
            internal_tx,
            internal_rx: Some(internal_rx),
            next_run_id,
            frozen: false,
            frozen_events: Vec::new(),
            notify_fd,
            inherited,
            batches: HashMap::new(),
            next_batch_id: 1,
            ready: VecDeque::new(),
            restarts: Vec::new(),
            reloading: false,
            deferred: VecDeque::new(),
            notify_socket,
            pids: HashMap::new(),
            shutting_down: false,
            recovered: durable.runs,
            desired_unclaimed: durable.desired,
            summary: Summary::default(),
            summary_tx,
            methods: None,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut internal = self.internal_rx.take().expect("run once");
        loop {
            tokio::select! {
                // Process events first: a command should see the latest state.
                biased;
                Some(event) = internal.recv() => {
                    self.handle_internal(event);
                    // Events already queued (exits of many services at once) are handled
                    // now too, so the restarts they cause are spawned together below: one
                    // by one, each spawn held the loop until its child had exec'd. Bounded,
                    // so a command waits for at most this many.
                    for _ in 0..DRAIN_AT_ONCE {
                        if self.restarts.len() >= RESTARTS_AT_ONCE {
                            break;
                        }
                        let Ok(event) = internal.try_recv() else { break };
                        self.handle_internal(event);
                    }
                }
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
            }
            self.spawn_restarts();
            self.launch_ready();
        }
    }

    /// Spawns the restarts prepared since the last round, together.
    fn spawn_restarts(&mut self) {
        let mut restarts = std::mem::take(&mut self.restarts);
        self.spawn_launches(&mut restarts, &mut Default::default());
    }

    /// The last run id handed out.
    pub(super) fn next_run_id(&self) -> u64 {
        self.next_run_id
    }

    pub(super) fn new_run_id(&mut self) -> u64 {
        self.next_run_id += 1;
        self.next_run_id
    }

    pub(super) fn check_exists(&self, name: &str) -> CommandResult {
        if self.units.contains_key(name) {
            Ok(())
        } else {
            Err(CommandError::NoSuchService(name.to_owned()))
        }
    }

    pub(super) fn check_served(&self, name: &str) -> CommandResult {
        let unit = self
            .units
            .get(name)
            .ok_or_else(|| CommandError::NoSuchService(name.to_owned()))?;
        if unit.served {
            return Ok(());
        }
        let group = unit.spec.group.clone().unwrap_or_default();
        Err(CommandError::NotServedHere {
            service: name.to_owned(),
            peer: self
                .groups
                .get(&group)
                .map(|g| g.peer.clone())
                .unwrap_or_default(),
            group,
            host: self.host.clone(),
        })
    }

    pub(super) fn list(&self) -> Vec<ServiceSummary> {
        self.units
            .values()
            .map(|unit| {
                let status = &unit.published;
                ServiceSummary {
                    name: unit.name.clone(),
                    group: status.group.clone(),
                    active_state: status.active.as_str(),
                    sub_state: status.sub.as_str(),
                    main_pid: status.main_pid,
                }
            })
            .collect()
    }

    pub(super) fn undefine(&mut self, name: &str) {
        let Some(mut unit) = self.units.remove(name) else {
            return;
        };
        if let Some(fence) = &self.settings.fence {
            fence.set(name, Vec::new());
        }
        // A service removed by a reload loses its desired state; one removed because corrald
        // shuts down keeps it for the next start.
        if unit.desired.is_some() && !self.shutting_down {
            self.settings.store.clear_desired(name);
        }
        // Destroyed services were stopped in the unserve step; this is only a safety net.
        if let Some(run) = unit.run_mut() {
            run.cancel_tasks();
            super::stop::signal_run(run, Signal::SIGKILL);
        }
        if let Phase::AutoRestart { timer, .. } = &unit.phase {
            timer.abort();
        }
        self.summary.remove(unit.published.active);
        self.summary_tx.send_replace(self.summary.clone());
        for waiter in unit
            .start_waiters
            .drain(..)
            .chain(unit.stop_waiters.drain(..))
        {
            self.resolve(
                name,
                waiter,
                Err(CommandError::NoSuchService(name.to_owned())),
            );
        }
    }

    /// Publishes a unit's status if it changed: the `watch` its D-Bus object reads, the
    /// event for `PropertiesChanged`, and the summary for `STATUS=`.
    pub(super) fn publish(&mut self, name: &str) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if let Some(fence) = &self.settings.fence {
            // Every change of a run passes here, so the fence follows each spawn, main PID
            // change and exit; the fence task drops repeats.
            fence.set(name, unit.fence_targets());
        }
        let snapshot = unit.snapshot(now_usec());
        if snapshot == *unit.published {
            return;
        }
        if snapshot.active != unit.published.active {
            self.summary.remove(unit.published.active);
            self.summary.add(snapshot.active);
            self.summary_tx.send_replace(self.summary.clone());
        }
        let snapshot = Arc::new(ServiceStatus {
            version: unit.published.version + 1,
            ..snapshot
        });
        unit.published = snapshot.clone();
        unit.status_tx.send_replace(snapshot.clone());
        self.settings.events.send(Event::Service(snapshot));
    }

    /// Hands a start or stop outcome to whoever waits for it. The state it reports is
    /// published first: the waiter's reply can reach a client (which then reads
    /// properties) before this task gets to its own `publish`.
    pub(super) fn resolve(&mut self, name: &str, waiter: Waiter, result: CommandResult) {
        self.publish(name);
        match waiter {
            Waiter::Reply(reply) => {
                let _ = reply.send(result);
            }
            Waiter::Batch(id) => self.batch_settled(id, name, result),
        }
    }

    /// The jobs actor's news: counts first, then the ended job's signal, in that order on
    /// the one event stream.
    pub(super) fn jobs_changed(&mut self, update: JobsUpdate) {
        let JobsUpdate {
            service,
            active,
            queued,
            finished,
        } = update;
        if let Some(unit) = self.units.get_mut(&service) {
            unit.active_jobs = active;
            unit.queued_jobs = queued;
        }
        self.publish(&service);
        if let Some(report) = finished {
            self.settings.events.send(Event::Job(report));
        }
    }

    pub(super) fn signal_command(&mut self, name: &str, action: SignalAction, reply: Reply) {
        // With a cgroup, Pause and Resume use the freezer and reply once it is done.
        let reply = match action {
            SignalAction::Pause => self.freeze_unit(name, true, reply),
            SignalAction::Resume => self.freeze_unit(name, false, reply),
            SignalAction::Kill(_) => Some(reply),
        };
        let Some(reply) = reply else {
            return;
        };
        let result = self.signal_unit(name, action);
        if result.is_ok() {
            // A stopped process can neither ping nor answer: no watchdog and no checks
            // while paused, fresh ones after.
            match action {
                SignalAction::Pause => {
                    if let Some(run) = self.units.get_mut(name).and_then(|u| u.run_mut()) {
                        run.watchdog.disarm();
                    }
                    self.cancel_health(name);
                }
                SignalAction::Resume => self.now_running(name),
                SignalAction::Kill(_) => {}
            }
        }
        self.publish(name);
        let _ = reply.send(result);
    }
}
