//! The supervisor task itself: its state, its loop, and the handling of each command. The
//! life-cycle verbs live in `start.rs`, `stop.rs` and `exit.rs`, process events and timers
//! in `internal.rs`, ordered batches in `batch.rs`, notify messages in `notify.rs`, the
//! watchdog in `watchdog.rs`, health checks in `health.rs`, `on_failure` in `on_failure.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};

use super::MethodCaller;
use super::batch::{Batch, BatchKind};
use super::internal::Internal;
use super::unit::{Phase, Unit, Waiter};
use super::{Command, JobsUpdate, Reply, ServiceSummary, Settings};
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
    pub(super) units: BTreeMap<String, Unit>,
    /// This peer and the groups, for `NotServedHere` messages.
    host: String,
    groups: BTreeMap<String, Group>,
    pub(super) internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: Option<mpsc::UnboundedReceiver<Internal>>,
    next_run_id: u64,
    pub(super) batches: HashMap<u64, Batch>,
    pub(super) next_batch_id: u64,
    /// Batch members released and waiting to be launched by the loop. A queue rather than
    /// a recursive call, because launching can settle at once and release more members.
    pub(super) ready: VecDeque<(u64, String)>,
    /// While a reload is applied, client commands that change state wait here.
    reloading: bool,
    deferred: VecDeque<Command>,
    /// The notify socket's path for `NOTIFY_SOCKET`, or why there is none.
    pub(super) notify_socket: Result<PathBuf, String>,
    /// The service each tracked PID belongs to: main PIDs and process-group leaders of the
    /// current runs. Notify messages are attributed through it.
    pub(super) pids: HashMap<u32, String>,
    summary: Summary,
    summary_tx: watch::Sender<Summary>,
    /// The manager-method drivers, for `method = "…"` health checks (handed in once the
    /// daemon has built them).
    pub(super) methods: Option<Arc<dyn MethodCaller>>,
}

impl Supervisor {
    pub(super) fn new(settings: Settings, summary_tx: watch::Sender<Summary>) -> Supervisor {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let notify_socket = super::notify::listen(&settings.runtime_dir, &internal_tx);
        Supervisor {
            settings,
            units: BTreeMap::new(),
            host: String::new(),
            groups: BTreeMap::new(),
            internal_tx,
            internal_rx: Some(internal_rx),
            next_run_id: 1,
            batches: HashMap::new(),
            next_batch_id: 1,
            ready: VecDeque::new(),
            reloading: false,
            deferred: VecDeque::new(),
            notify_socket,
            pids: HashMap::new(),
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
                Some(event) = internal.recv() => self.handle_internal(event),
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
            }
            self.launch_ready();
        }
    }

    pub(super) fn new_run_id(&mut self) -> u64 {
        self.next_run_id += 1;
        self.next_run_id
    }

    fn handle_command(&mut self, command: Command) {
        if self.reloading && changes_state(&command) {
            self.deferred.push_back(command);
            return;
        }
        match command {
            Command::Start(name, reply) => match self.check_served(&name) {
                Ok(()) => {
                    // A start by hand clears the start limit, like `systemctl reset-failed`.
                    if let Some(unit) = self.units.get_mut(&name) {
                        unit.restarts = Default::default();
                    }
                    self.start_unit(&name, Waiter::Reply(reply));
                }
                Err(err) => drop(reply.send(Err(err))),
            },
            Command::Stop(name, reply) => match self.check_exists(&name) {
                Ok(()) => self.stop_unit(&name, Waiter::Reply(reply)),
                Err(err) => drop(reply.send(Err(err))),
            },
            Command::Restart(name, reply) => match self.check_served(&name) {
                Ok(()) => self.restart_unit(&name, reply),
                Err(err) => drop(reply.send(Err(err))),
            },
            Command::Pause(name, reply) => self.signal_command(&name, SignalAction::Pause, reply),
            Command::Resume(name, reply) => self.signal_command(&name, SignalAction::Resume, reply),
            Command::Kill(name, signal, reply) => {
                self.signal_command(&name, SignalAction::Kill(signal), reply)
            }
            Command::Exists(name, reply) => drop(reply.send(self.check_exists(&name))),
            Command::Served(name, reply) => drop(reply.send(self.check_served(&name))),
            Command::List(reply) => drop(reply.send(self.list())),
            Command::Ping(reply) => drop(reply.send(())),
            Command::BeginReload(reply) => {
                self.reloading = true;
                let _ = reply.send(());
            }
            Command::EndReload(reply) => {
                self.reloading = false;
                let _ = reply.send(());
                while let Some(command) = self.deferred.pop_front() {
                    self.handle_command(command);
                }
            }
            Command::SetPlacement {
                host,
                groups,
                reply,
            } => {
                self.host = host;
                self.groups = groups;
                let _ = reply.send(());
            }
            Command::Define {
                name,
                spec,
                served,
                reply,
            } => {
                if !self.units.contains_key(&name) {
                    let unit = Unit::new(name.clone(), spec, served);
                    self.summary.add(unit.published.active);
                    self.summary_tx.send_replace(self.summary.clone());
                    self.units.insert(name, unit);
                }
                let _ = reply.send(());
            }
            Command::Redefine { name, spec, reply } => {
                let mut health_changed = false;
                if let Some(unit) = self.units.get_mut(&name) {
                    health_changed = unit.spec.health != spec.health;
                    unit.spec = Arc::new(spec);
                }
                if health_changed {
                    self.health_redefined(&name);
                }
                self.publish(&name);
                let _ = reply.send(());
            }
            Command::SetMethodCaller(methods) => self.methods = Some(methods),
            Command::SetServed {
                names,
                served,
                reply,
            } => {
                for name in &names {
                    let Some(unit) = self.units.get_mut(name) else {
                        continue;
                    };
                    let changed = std::mem::replace(&mut unit.served, served) != served;
                    // Checks run only where the service is served.
                    match (changed, served) {
                        (true, true) => self.schedule_health(name),
                        (true, false) => self.cancel_health(name),
                        _ => {}
                    }
                    self.publish(name);
                }
                let _ = reply.send(());
            }
            Command::StartBatch(names, reply) => self.begin_batch(BatchKind::Start, names, reply),
            Command::StopBatch(names, reply) => self.begin_batch(BatchKind::Stop, names, reply),
            Command::RunningAmong(names, reply) => {
                let running = names
                    .into_iter()
                    .filter(|n| self.units.get(n).is_some_and(|u| u.run().is_some()))
                    .collect();
                let _ = reply.send(running);
            }
            Command::Undefine(names, reply) => {
                for name in names {
                    self.undefine(&name);
                }
                let _ = reply.send(());
            }
            Command::Spec(name, reply) => {
                let spec = self
                    .check_served(&name)
                    .map(|()| self.units[&name].spec.clone());
                let _ = reply.send(spec);
            }
            Command::Subscribe(name, reply) => {
                let _ = reply.send(self.units.get(&name).map(|u| u.status_tx.subscribe()));
            }
            Command::Jobs(update) => self.jobs_changed(update),
            Command::SetOnline(name, online) => {
                if let Some(unit) = self.units.get_mut(&name) {
                    unit.online = online;
                }
                self.publish(&name);
            }
        }
    }

    fn check_exists(&self, name: &str) -> CommandResult {
        if self.units.contains_key(name) {
            Ok(())
        } else {
            Err(CommandError::NoSuchService(name.to_owned()))
        }
    }

    fn check_served(&self, name: &str) -> CommandResult {
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

    fn list(&self) -> Vec<ServiceSummary> {
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

    fn undefine(&mut self, name: &str) {
        let Some(mut unit) = self.units.remove(name) else {
            return;
        };
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
    fn jobs_changed(&mut self, update: JobsUpdate) {
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

    fn signal_command(&mut self, name: &str, action: SignalAction, reply: Reply) {
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

/// Client commands that change a service's state; held back while a reload is applied.
fn changes_state(command: &Command) -> bool {
    matches!(
        command,
        Command::Start(..)
            | Command::Stop(..)
            | Command::Restart(..)
            | Command::Pause(..)
            | Command::Resume(..)
            | Command::Kill(..)
    )
}
