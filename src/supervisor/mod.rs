//! The supervisor: one task that owns the state of every service (nova's "smart manager,
//! dumb data"). Everything else talks to it through a cloneable [`Handle`] — a command over
//! a channel and a reply over a oneshot — so there is no shared mutable state and no lock
//! held across an `.await`.
//!
//! Inside, the task reacts to three inputs: commands (from D-Bus and from the transition
//! applier), process events (exits, notify messages, health-check outcomes — each child has
//! exactly one owner task that awaits it and reports here) and timers (start/stop timeouts,
//! restart delays, watchdogs, health checks due). Status
//! changes go out as [`Event`](crate::events::Event)s to the publisher and into a `watch` per service that the
//! D-Bus properties read.
//!
//! Where corrald has cgroups, a run's cgroup is the authority on its processes: signals,
//! `Stop`'s final kill and `Pause` go to the cgroup, and a run is over once it is empty.
//! Otherwise the run's process groups play that part.

mod actor;
mod batch;
mod cgroups;
mod commands;
mod durable;
mod exit;
mod health;
mod internal;
mod launch;
mod notify;
mod on_failure;
pub mod reexec;
mod run;
mod start;
mod stop;
#[cfg(test)]
mod tests;
mod unit;
mod watchdog;

pub use health::MethodCaller;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Group, Service};
use crate::error::{CommandError, CommandResult};
use crate::events::{EventSender, JobReport, ServiceStatus, Summary};
use crate::fence::FenceHandle;

use crate::process::OutputMode;
use crate::process::cgroup::Cgroups;
use crate::store::Store;

pub use durable::Durable;

/// What the supervisor needs from its surroundings (injected, so tests run it in-process).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the services' notify socket is created.
    pub runtime_dir: PathBuf,
    pub output: OutputMode,
    pub events: EventSender,
    /// Where desired states and run records are kept.
    pub store: Store,
    /// With `[fleet]`: told the processes of every grouped service, so that they die with
    /// corrald (see [`crate::fence`]). `None`: nothing is fenced.
    pub fence: Option<FenceHandle>,
    /// Each service's cgroup, or process groups where corrald has no cgroup v2 subtree
    /// (see [`crate::process::cgroup`]).
    pub cgroups: Cgroups,
}

/// One row of `ListServices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSummary {
    pub name: String,
    pub group: String,
    pub active_state: &'static str,
    pub sub_state: &'static str,
    pub main_pid: u32,
}

type Reply<T = ()> = oneshot::Sender<CommandResult<T>>;

/// A request to the supervisor task.
pub(crate) enum Command {
    // From D-Bus clients; the `String` after the name says who asked (for the desired
    // state's record).
    Start(String, String, Reply),
    Stop(String, String, Reply),
    Restart(String, String, Reply),
    /// Forget the desired state: follow `autostart` again.
    Revert(String, Reply),
    Pause(String, Reply),
    Resume(String, Reply),
    Kill(String, Signal, Reply),
    Exists(String, Reply),
    /// `Ok` when the service is served here, else why not (`NotServedHere`).
    Served(String, Reply),
    List(oneshot::Sender<Vec<ServiceSummary>>),
    /// Answered when the task is responsive (the watchdog's proof of life).
    Ping(oneshot::Sender<()>),
    // From the transition applier.
    BeginReload(oneshot::Sender<()>),
    EndReload(oneshot::Sender<()>),
    SetPlacement {
        host: String,
        groups: BTreeMap<String, Group>,
        reply: oneshot::Sender<()>,
    },
    Define {
        name: String,
        spec: Arc<Service>,
        served: bool,
        reply: oneshot::Sender<()>,
    },
    Subscribe(
        String,
        oneshot::Sender<Option<watch::Receiver<Arc<ServiceStatus>>>>,
    ),
    Spec(String, Reply<Arc<Service>>),
    Redefine {
        name: String,
        spec: Arc<Service>,
        reply: oneshot::Sender<()>,
    },
    SetServed {
        names: Vec<String>,
        served: bool,
        reply: oneshot::Sender<()>,
    },
    StartBatch(Vec<String>, oneshot::Sender<Vec<String>>),
    StopBatch(Vec<String>, oneshot::Sender<Vec<String>>),
    RunningAmong(Vec<String>, oneshot::Sender<Vec<String>>),
    WantedAtStart(Vec<String>, oneshot::Sender<Vec<String>>),
    /// After start-up: stop what survived the last corrald but is not to run now.
    SettleRecovered(oneshot::Sender<()>),
    /// corrald is going down: the services it removes keep their desired states.
    ShuttingDown(oneshot::Sender<()>),
    /// A live re-exec: write the runtime state out and stop acting until `Thaw`.
    Freeze(oneshot::Sender<reexec::SupervisorState>),
    /// The re-exec failed: carry on.
    Thaw(oneshot::Sender<()>),
    /// Kill the services of a group at once and stop serving them (not held back).
    KillGroup(String, oneshot::Sender<()>),
    Undefine(Vec<String>, oneshot::Sender<()>),
    SetOnline(String, bool),
    Jobs(JobsUpdate),
    SetMethodCaller(Arc<dyn MethodCaller>),
}

/// The jobs actor's news about one service's pool: the counts behind `ActiveJobs` and
/// `QueuedJobs`, and the job that just ended, if one did. Counts and the job's
/// `JobFinished`/`JobFailed` travel together, so a client sees them in the order they
/// happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsUpdate {
    pub service: String,
    pub active: u32,
    pub queued: u32,
    pub finished: Option<JobReport>,
}

/// A cheap, cloneable handle on the supervisor task.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    summary: watch::Receiver<Summary>,
}

/// Starts the supervisor task. It runs until every [`Handle`] is dropped.
pub fn spawn(settings: Settings, durable: Durable) -> Handle {
    let (commands, rx) = mpsc::channel(1024);
    let (summary_tx, summary) = watch::channel(Summary::default());
    tokio::spawn(actor::Supervisor::new(settings, durable, summary_tx).run(rx));
    Handle { commands, summary }
}

impl Handle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn ask_result(&self, make: impl FnOnce(Reply) -> Command) -> CommandResult {
        self.ask(make)
            .await
            .unwrap_or(Err(CommandError::ShuttingDown))
    }

    /// Starts `name` for `by` (who asked, recorded with the desired state); returns once it
    /// is running (for notify: after READY=1).
    pub async fn start(&self, name: &str, by: &str) -> CommandResult {
        self.ask_result(|r| Command::Start(name.to_owned(), by.to_owned(), r))
            .await
    }

    /// Stops `name` for `by`; returns once its process is gone.
    pub async fn stop(&self, name: &str, by: &str) -> CommandResult {
        self.ask_result(|r| Command::Stop(name.to_owned(), by.to_owned(), r))
            .await
    }

    pub async fn restart(&self, name: &str, by: &str) -> CommandResult {
        self.ask_result(|r| Command::Restart(name.to_owned(), by.to_owned(), r))
            .await
    }

    /// Forgets `name`'s desired state: it follows `autostart` again.
    pub async fn revert(&self, name: &str) -> CommandResult {
        self.ask_result(|r| Command::Revert(name.to_owned(), r))
            .await
    }

    pub async fn pause(&self, name: &str) -> CommandResult {
        self.ask_result(|r| Command::Pause(name.to_owned(), r))
            .await
    }

    pub async fn resume(&self, name: &str) -> CommandResult {
        self.ask_result(|r| Command::Resume(name.to_owned(), r))
            .await
    }

    pub async fn kill(&self, name: &str, signal: Signal) -> CommandResult {
        self.ask_result(|r| Command::Kill(name.to_owned(), signal, r))
            .await
    }

    /// `Ok` when a service called `name` exists.
    pub async fn exists(&self, name: &str) -> CommandResult {
        self.ask_result(|r| Command::Exists(name.to_owned(), r))
            .await
    }

    pub async fn list(&self) -> Vec<ServiceSummary> {
        self.ask(Command::List).await.unwrap_or_default()
    }

    /// Resolves when the supervisor task has handled every earlier command.
    pub async fn ping(&self) -> bool {
        self.ask(Command::Ping).await.is_some()
    }

    /// The per-state counts, for corrald's `STATUS=`.
    pub fn summary(&self) -> watch::Receiver<Summary> {
        self.summary.clone()
    }

    /// `Ok` when `name` is served here; `NotServedHere` (or `NoSuchService`) says why not.
    pub async fn check_served(&self, name: &str) -> CommandResult {
        self.ask_result(|r| Command::Served(name.to_owned(), r))
            .await
    }

    /// The current definition of `name`, if it is served here.
    pub async fn spec(&self, name: &str) -> CommandResult<Arc<Service>> {
        self.ask(|r| Command::Spec(name.to_owned(), r))
            .await
            .unwrap_or(Err(CommandError::ShuttingDown))
    }

    /// Publishes a service's job counts and, if one ended, the job's outcome. Sent by the
    /// jobs actor only, in order.
    pub async fn jobs_changed(&self, update: JobsUpdate) {
        let _ = self.commands.send(Command::Jobs(update)).await;
    }

    /// Hands in the manager-method drivers that `method = "…"` health checks call.
    pub async fn set_method_caller(&self, methods: Arc<dyn MethodCaller>) {
        let _ = self.commands.send(Command::SetMethodCaller(methods)).await;
    }

    /// Publishes whether a service's control connection is up. Sent by that connection's
    /// task only.
    pub async fn set_online(&self, name: &str, online: bool) {
        let _ = self
            .commands
            .send(Command::SetOnline(name.to_owned(), online))
            .await;
    }

    // ---- used by the transition applier ---------------------------------------------

    /// Holds back state-changing client commands until [`Handle::end_reload`], so a
    /// `Start` racing a reload sees the configuration before or after it, never half of it.
    pub async fn begin_reload(&self) {
        self.ask(Command::BeginReload).await;
    }

    pub async fn end_reload(&self) {
        self.ask(Command::EndReload).await;
    }

    pub async fn set_placement(&self, host: &str, groups: &BTreeMap<String, Group>) {
        self.ask(|reply| Command::SetPlacement {
            host: host.to_owned(),
            groups: groups.clone(),
            reply,
        })
        .await;
    }

    /// Creates the unit of a new service (inactive). The unit shares `spec` with the
    /// configuration that defines it.
    pub async fn define(&self, name: &str, spec: impl Into<Arc<Service>>, served: bool) {
        self.ask(|reply| Command::Define {
            name: name.to_owned(),
            spec: spec.into(),
            served,
            reply,
        })
        .await;
    }

    /// The published status of `name`, for its D-Bus object to read.
    pub async fn subscribe(&self, name: &str) -> Option<watch::Receiver<Arc<ServiceStatus>>> {
        self.ask(|reply| Command::Subscribe(name.to_owned(), reply))
            .await
            .flatten()
    }

    /// Replaces a service's definition; a running process keeps running.
    pub async fn redefine(&self, name: &str, spec: impl Into<Arc<Service>>) {
        self.ask(|reply| Command::Redefine {
            name: name.to_owned(),
            spec: spec.into(),
            reply,
        })
        .await;
    }

    pub async fn set_served(&self, names: &[String], served: bool) {
        self.ask(|reply| Command::SetServed {
            names: names.to_vec(),
            served,
            reply,
        })
        .await;
    }

    /// Starts `names` (dependency order), each once the members it is `after` have settled,
    /// independent ones concurrently; resolves when all have settled (running or failed),
    /// with a sentence for each that failed to start.
    pub async fn start_batch(&self, names: Vec<String>) -> Vec<String> {
        if names.is_empty() {
            return Vec::new();
        }
        self.ask(|reply| Command::StartBatch(names, reply))
            .await
            .unwrap_or_default()
    }

    /// Stops `names` (stop order), each once the members that are `after` it are gone.
    pub async fn stop_batch(&self, names: Vec<String>) {
        if !names.is_empty() {
            self.ask(|reply| Command::StopBatch(names, reply)).await;
        }
    }

    /// Those of `names` that have a process (starting, running, paused, stopping).
    pub async fn running_among(&self, names: Vec<String>) -> Vec<String> {
        self.ask(|reply| Command::RunningAmong(names, reply))
            .await
            .unwrap_or_default()
    }

    /// Of `names` (newly served services), those to start: by desired state, else
    /// `autostart`; in the given order.
    pub async fn wanted_at_start(&self, names: Vec<String>) -> Vec<String> {
        self.ask(|reply| Command::WantedAtStart(names, reply))
            .await
            .unwrap_or_default()
    }

    /// After start-up: what survived the last corrald but is not to run now is stopped.
    pub async fn settle_recovered(&self) {
        self.ask(Command::SettleRecovered).await;
    }

    /// A live re-exec begins: the supervisor's runtime state, and it stops acting (its
    /// commands and process events wait) until [`Handle::thaw`] or the exec.
    pub async fn freeze(&self) -> Option<reexec::SupervisorState> {
        self.ask(Command::Freeze).await
    }

    /// The re-exec failed: the supervisor carries on.
    pub async fn thaw(&self) {
        self.ask(Command::Thaw).await;
    }

    /// Before `Down`: the services it removes keep their desired states for next time.
    pub async fn shutting_down(&self) {
        self.ask(Command::ShuttingDown).await;
    }

    /// SIGKILLs every process of `group`'s services now and marks them not served, whatever
    /// they are doing: the fleet's deadline for a host that lost contact with etcd (its
    /// orderly stop was begun by a transition and did not finish in time). Never held
    /// back by a reload in progress.
    pub async fn kill_group(&self, group: &str) {
        self.ask(|reply| Command::KillGroup(group.to_owned(), reply))
            .await;
    }

    /// Removes the units of destroyed services (already stopped by then).
    pub async fn undefine(&self, names: Vec<String>) {
        self.ask(|reply| Command::Undefine(names, reply)).await;
    }
}
