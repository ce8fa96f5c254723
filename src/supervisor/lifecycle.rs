//! The life cycle of a service: start (spawn, adopt, wait for readiness), stop (signal,
//! timeout, SIGKILL to the group), exits, and automatic restarts with back-off and a start
//! limit. Every function here runs inside the supervisor task.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Pid, User, getpgid};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::actor::{Internal, SignalAction, Supervisor};
use super::launch::{Launch, Spawned};
use super::unit::{Phase, Run, StopReason, Waiter};
use crate::config::{RestartPolicy, ServiceType};
use crate::error::{CommandError, CommandResult};
use crate::process::group;
use crate::process::pidfd::ProcessWatch;
use crate::process::pidfile::{self, PidfileError};
use crate::process::signal::{signal_group, signal_main};
use crate::process::{exit_code, spawn};
use crate::service_notify::{NotifyMessage, NotifySocket};

/// How long to wait before looking for a forking daemon's pidfile again. The daemon may
/// write it just after its launcher exits; `start_timeout` bounds the retries.
const PIDFILE_RETRY: Duration = Duration::from_millis(20);

impl Supervisor {
    /// Starts `name` unless it is already running; `waiter` hears when the start settles.
    pub(super) fn start_unit(&mut self, name: &str, waiter: Waiter) {
        let Some(unit) = self.units.get_mut(name) else {
            return self.resolve(name, waiter, Err(CommandError::NoSuchService(name.into())));
        };
        match &unit.phase {
            Phase::Running { .. } => self.resolve(name, waiter, Ok(())),
            Phase::Starting(_) => unit.start_waiters.push(waiter),
            Phase::Stopping { .. } => {
                unit.start_waiters.push(waiter);
                unit.start_pending = true;
            }
            Phase::AutoRestart { timer, .. } => {
                timer.abort();
                unit.start_waiters.push(waiter);
                self.launch(name);
            }
            Phase::Inactive { .. } => {
                unit.start_waiters.push(waiter);
                self.launch(name);
            }
        }
    }

    /// Stops `name`, then starts it on its current definition.
    pub(super) fn restart_unit(&mut self, name: &str, reply: super::Reply) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        unit.start_waiters.push(Waiter::Reply(reply));
        match &unit.phase {
            Phase::Starting(_) | Phase::Running { .. } => {
                unit.start_pending = true;
                self.begin_stop(name, StopReason::Requested);
            }
            Phase::Stopping { .. } => unit.start_pending = true,
            Phase::AutoRestart { timer, .. } => {
                timer.abort();
                self.launch(name);
            }
            Phase::Inactive { .. } => self.launch(name),
        }
    }

    /// Stops `name`; `waiter` hears once its process is gone.
    pub(super) fn stop_unit(&mut self, name: &str, waiter: Waiter) {
        let Some(unit) = self.units.get_mut(name) else {
            return self.resolve(name, waiter, Err(CommandError::NoSuchService(name.into())));
        };
        // A stop cancels a start that was asked for while stopping or starting.
        unit.start_pending = false;
        match &unit.phase {
            Phase::Inactive { .. } => self.resolve(name, waiter, Ok(())),
            Phase::AutoRestart { timer, .. } => {
                timer.abort();
                unit.phase = Phase::Inactive { failed: false };
                self.resolve(name, waiter, Ok(()));
                self.publish(name);
            }
            Phase::Stopping { .. } => {
                unit.stop_waiters.push(waiter);
                let message = format!("{name}: stopped before it finished starting");
                self.settle_start(name, Err(CommandError::StartFailed(message)));
            }
            Phase::Starting(_) | Phase::Running { .. } => {
                unit.stop_waiters.push(waiter);
                let message = format!("{name}: stopped before it finished starting");
                self.settle_start(name, Err(CommandError::StartFailed(message)));
                self.begin_stop(name, StopReason::Requested);
            }
        }
    }

    /// Starts a new run of `name`: adopts a daemon its pidfile names, or spawns one.
    fn launch(&mut self, name: &str) {
        if let Some(launch) = self.prepare_launch(name) {
            let request = launch.request(&self.settings.output);
            let spawned = spawn(&request);
            self.finish_launch(launch, spawned);
        }
    }

    /// Everything of a launch before the spawn: the start limit, adopting a daemon its
    /// pidfile names, the notify socket. `None` when that settled the start already.
    pub(super) fn prepare_launch(&mut self, name: &str) -> Option<Launch> {
        let now = Instant::now();
        let run_id = self.new_run_id();
        let unit = self.units.get_mut(name)?;
        let spec = unit.spec.clone();
        if !unit.restarts.admit_start(&spec, now) {
            unit.phase = Phase::Inactive { failed: true };
            unit.last_error = format!(
                "{name}: start limit hit ({} starts within {:?}); fix the service, then `corralctl start {name}`",
                spec.start_limit_burst, spec.start_limit_interval
            );
            tracing::warn!(service = name, "{}", unit.last_error);
            let err = CommandError::StartFailed(unit.last_error.clone());
            self.settle_start(name, Err(err));
            self.publish(name);
            return None;
        }
        let running = spec
            .pidfile
            .as_deref()
            .and_then(|p| pidfile::adoptable(p, &spec.exec, spec.user.as_deref()));
        if let Some(pid) = running
            && self.adopt(name, run_id, pid, now)
        {
            return None;
        }
        let notify = if spec.service_type == ServiceType::Notify {
            let dir = self.settings.runtime_dir.join("notify");
            let owner = spec
                .user
                .as_deref()
                .and_then(|u| User::from_name(u).ok().flatten());
            match NotifySocket::bind(&dir, name, owner.map(|u| (u.uid, u.gid))) {
                Ok(socket) => Some(socket),
                Err(err) => {
                    let message = format!(
                        "{name}: cannot create notify socket in {}: {err}",
                        dir.display()
                    );
                    self.start_failed(name, message, Duration::ZERO);
                    return None;
                }
            }
        } else {
            None
        };
        Some(Launch {
            name: name.to_owned(),
            run_id,
            spec,
            notify,
            now,
        })
    }

    /// Everything of a launch after the spawn: the child's owner task, the new run.
    pub(super) fn finish_launch(&mut self, launch: Launch, spawned: Spawned) {
        let Launch {
            name,
            run_id,
            spec,
            notify,
            now,
        } = launch;
        let name = name.as_str();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => return self.start_failed(name, format!("{name}: {err}"), Duration::ZERO),
        };
        let pid = child.id().unwrap_or(0);
        tracing::info!(service = name, pid, "started {}", spec.exec.join(" "));

        // The one owner of this child: it awaits the exit and reports it.
        let forking = spec.service_type == ServiceType::Forking;
        let tx = self.internal_tx.clone();
        let owner_name = name.to_owned();
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            let (name, run) = (owner_name, run_id);
            let _ = tx.send(if forking {
                Internal::LauncherExited { name, run, status }
            } else {
                Internal::Exited { name, run, status }
            });
        });

        let mut run = Run {
            id: run_id,
            main_pid: if forking { 0 } else { pid },
            own_group: Some(pid),
            main_group: None,
            started: now,
            timer: None,
            notify: None,
        };
        let unit = self.units.get_mut(name).expect("unit exists");
        match spec.service_type {
            ServiceType::Simple => {
                unit.phase = Phase::Running { run, paused: false };
                self.settle_start(name, Ok(()));
            }
            ServiceType::Notify | ServiceType::Forking => {
                if let Some(socket) = notify {
                    run.notify = Some(self.listen_notify(name, run_id, socket));
                }
                let timeout = Internal::StartTimedOut {
                    name: name.to_owned(),
                    run: run_id,
                };
                run.timer = Some(self.timer(spec.start_timeout, timeout));
                self.units.get_mut(name).expect("unit exists").phase = Phase::Starting(run);
            }
        }
        self.publish(name);
    }

    /// Takes over an already-running daemon; `false` if it vanished meanwhile.
    fn adopt(&mut self, name: &str, run_id: u64, pid: u32, now: Instant) -> bool {
        let Ok(watch) = ProcessWatch::open(pid) else {
            return false;
        };
        self.watch_main(name, run_id, watch);
        let run = Run {
            id: run_id,
            main_pid: pid,
            own_group: None,
            main_group: group_led_by(pid),
            started: now,
            timer: None,
            notify: None,
        };
        tracing::info!(
            service = name,
            pid,
            "adopted the running daemon its pidfile names"
        );
        self.units.get_mut(name).expect("unit exists").phase =
            Phase::Running { run, paused: false };
        self.settle_start(name, Ok(()));
        self.publish(name);
        true
    }

    /// Awaits the exit of a main process that is not our child.
    fn watch_main(&self, name: &str, run: u64, watch: ProcessWatch) {
        let tx = self.internal_tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let _ = watch.exited().await;
            let _ = tx.send(Internal::Exited {
                name,
                run,
                status: None,
            });
        });
    }

    fn listen_notify(&self, name: &str, run: u64, socket: NotifySocket) -> AbortHandle {
        let tx = self.internal_tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            // The socket lives as long as this task; aborting it removes the socket file.
            while let Ok(messages) = socket.recv().await {
                if !messages.is_empty() {
                    let event = Internal::Notify {
                        name: name.clone(),
                        run,
                        messages,
                    };
                    if tx.send(event).is_err() {
                        break;
                    }
                }
            }
        })
        .abort_handle()
    }

    /// Sends `event` to the supervisor after `after`; abort the handle to cancel.
    pub(super) fn timer(&self, after: Duration, event: Internal) -> AbortHandle {
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(event);
        })
        .abort_handle()
    }

    /// Sends the stop signal and arms the stop timeout.
    fn begin_stop(&mut self, name: &str, reason: StopReason) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let phase = std::mem::replace(&mut unit.phase, Phase::Inactive { failed: false });
        let (mut run, paused) = match phase {
            Phase::Starting(run) => (run, false),
            Phase::Running { run, paused } => (run, paused),
            other => {
                unit.phase = other;
                return;
            }
        };
        if let Some(timer) = run.timer.take() {
            timer.abort();
        }
        let spec = unit.spec.clone();
        signal_run(&run, spec.stop_signal);
        if paused {
            // A stopped process cannot act on SIGTERM until it is continued.
            signal_run(&run, Signal::SIGCONT);
        }
        let timeout = Internal::StopTimedOut {
            name: name.to_owned(),
            run: run.id,
        };
        run.timer = Some(self.timer(spec.stop_timeout, timeout));
        let unit = self.units.get_mut(name).expect("unit exists");
        unit.phase = Phase::Stopping {
            run,
            reason,
            killed: false,
        };
        self.publish(name);
    }

    /// The main process exited. Whatever is left of its process group is killed, and the
    /// run is over once the group is empty — so a restart never overlaps the old
    /// processes, and `Stop` returns only when every process of the service is gone.
    pub(super) fn on_exit(&mut self, name: &str, run_id: u64, status: Option<ExitStatus>) {
        let Some(run) = self.units.get(name).and_then(|u| u.run()) else {
            return;
        };
        if run.id != run_id {
            return;
        }
        let left: Vec<u32> = [run.own_group, run.main_group]
            .into_iter()
            .flatten()
            .filter(|&group| group::has_members(group))
            .collect();
        if left.is_empty() {
            return self.on_run_over(name, run_id, status);
        }
        for &group in &left {
            let _ = signal_group(group, Signal::SIGKILL);
        }
        let tx = self.internal_tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            for group in left {
                group::wait_empty(group).await;
            }
            let _ = tx.send(Internal::GroupEmptied {
                name,
                run: run_id,
                status,
            });
        });
    }

    /// Every process of the run is gone: record the outcome and move on.
    pub(super) fn on_run_over(&mut self, name: &str, run_id: u64, status: Option<ExitStatus>) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.is_current(run_id) {
            return;
        }
        let phase = std::mem::replace(&mut unit.phase, Phase::Inactive { failed: false });
        let was_starting = matches!(phase, Phase::Starting(_));
        let (mut run, stopping) = match phase {
            Phase::Starting(run) | Phase::Running { run, .. } => (run, None),
            Phase::Stopping { run, reason, .. } => (run, Some(reason)),
            other => {
                unit.phase = other;
                return;
            }
        };
        run.cancel_tasks();
        unit.exec_main_status = status.map_or(-1, exit_code);
        let how = describe_exit(status);
        let ran_for = run.started.elapsed();
        match stopping {
            Some(reason) => {
                tracing::info!(service = name, pid = run.main_pid, "stopped: {how}");
                self.finish_stop(name, reason);
            }
            None => {
                let clean = status.is_some_and(|s| s.success());
                if clean {
                    tracing::info!(service = name, pid = run.main_pid, "main process {how}");
                } else {
                    tracing::warn!(service = name, pid = run.main_pid, "main process {how}");
                }
                if was_starting || !clean {
                    let unit = self.units.get_mut(name).expect("unit exists");
                    unit.last_error = format!("{name}: main process {} {how}", run.main_pid);
                }
                if was_starting {
                    let message =
                        format!("{name}: process {} {how} before it was ready", run.main_pid);
                    self.settle_start(name, Err(CommandError::StartFailed(message)));
                }
                self.after_exit(name, was_starting || !clean, ran_for);
            }
        }
    }

    pub(super) fn on_launcher_exit(&mut self, name: &str, run_id: u64, status: Option<ExitStatus>) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.is_current(run_id) {
            return;
        }
        match &unit.phase {
            Phase::Starting(_) if status.is_some_and(|s| s.success()) => {
                self.read_pidfile(name, run_id)
            }
            // Failed launcher, or a stop that raced the fork: the run is over.
            Phase::Starting(_) | Phase::Stopping { .. } => self.on_exit(name, run_id, status),
            _ => {}
        }
    }

    /// Forking: the launcher exited 0; find the main PID in the pidfile.
    pub(super) fn read_pidfile(&mut self, name: &str, run_id: u64) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.is_current(run_id) || !matches!(unit.phase, Phase::Starting(_)) {
            return;
        }
        let Some(path) = unit.spec.pidfile.clone() else {
            return;
        };
        let main = match pidfile::read_trusted(&path, unit.spec.user.as_deref()) {
            Ok(pid) => ProcessWatch::open(pid).ok().map(|watch| (pid, watch)),
            Err(PidfileError::Unreadable(_)) => None,
            Err(PidfileError::Untrusted(why)) => {
                // Waiting will not make it trustworthy: fail now, saying why. The launcher
                // is gone and no main PID is known, so nothing would report an exit: end
                // the run here, killing what is left of its group, as a failed start.
                let message = format!("{name}: {why}");
                tracing::warn!(service = name, "{message}");
                unit.last_error = message.clone();
                self.settle_start(name, Err(CommandError::StartFailed(message)));
                self.begin_stop(name, StopReason::StartTimeout);
                return self.on_exit(name, run_id, None);
            }
        };
        let Some((pid, watch)) = main else {
            let retry = Internal::PidfileRetry {
                name: name.to_owned(),
                run: run_id,
            };
            self.timer(PIDFILE_RETRY, retry);
            return;
        };
        self.watch_main(name, run_id, watch);
        if let Some(run) = self.units.get_mut(name).and_then(|u| u.run_mut()) {
            run.main_pid = pid;
            run.main_group = group_led_by(pid);
        }
        tracing::info!(
            service = name,
            pid,
            "forked; main PID from {}",
            path.display()
        );
        self.become_ready(name);
        self.publish(name);
    }

    /// A starting service is ready (READY=1, or its pidfile read): it is running now, and
    /// whoever waits for the start hears so.
    fn become_ready(&mut self, name: &str) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let phase = std::mem::replace(&mut unit.phase, Phase::Inactive { failed: false });
        let Phase::Starting(mut run) = phase else {
            unit.phase = phase;
            return;
        };
        if let Some(timer) = run.timer.take() {
            timer.abort();
        }
        unit.phase = Phase::Running { run, paused: false };
        self.settle_start(name, Ok(()));
    }

    pub(super) fn on_notify(&mut self, name: &str, run_id: u64, messages: Vec<NotifyMessage>) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.is_current(run_id) {
            return;
        }
        let mut ready = false;
        for message in messages {
            match message {
                NotifyMessage::Ready => ready = true,
                NotifyMessage::Status(text) => unit.status_text = text,
                NotifyMessage::MainPid(pid) => {
                    if let Some(run) = unit.run_mut() {
                        run.main_pid = pid;
                        run.main_group = group_led_by(pid);
                    }
                }
                NotifyMessage::Stopping => tracing::debug!(service = name, "STOPPING=1"),
            }
        }
        if ready {
            self.become_ready(name);
        }
        self.publish(name);
    }

    pub(super) fn on_start_timeout(&mut self, name: &str, run_id: u64) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.is_current(run_id) || !matches!(unit.phase, Phase::Starting(_)) {
            return;
        }
        let what = match unit.spec.service_type {
            ServiceType::Forking => "fork and write its pidfile",
            _ => "send READY=1",
        };
        let message = format!(
            "{name}: did not {what} within {:?} (start_timeout)",
            unit.spec.start_timeout
        );
        tracing::warn!(service = name, "{message}");
        unit.last_error = message.clone();
        self.settle_start(name, Err(CommandError::Timeout(message)));
        self.begin_stop(name, StopReason::StartTimeout);
    }

    pub(super) fn on_stop_timeout(&mut self, name: &str, run_id: u64) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.is_current(run_id) {
            return;
        }
        let timeout = unit.spec.stop_timeout;
        if let Phase::Stopping { run, killed, .. } = &mut unit.phase {
            tracing::warn!(
                service = name,
                pid = run.main_pid,
                "still running {timeout:?} after the stop signal; sending SIGKILL to its process group"
            );
            signal_run(run, Signal::SIGKILL);
            run.timer = None;
            *killed = true;
        }
        self.publish(name);
    }

    pub(super) fn on_restart_due(&mut self, name: &str, attempt: u64) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !matches!(unit.phase, Phase::AutoRestart { attempt: a, .. } if a == attempt) {
            return;
        }
        unit.n_restarts += 1;
        self.launch(name);
    }

    /// The process could not be started (or died before it was ready).
    fn start_failed(&mut self, name: &str, message: String, ran_for: Duration) {
        tracing::warn!(service = name, "{message}");
        if let Some(unit) = self.units.get_mut(name) {
            unit.last_error = message.clone();
        }
        self.settle_start(name, Err(CommandError::StartFailed(message)));
        self.after_exit(name, true, ran_for);
    }

    /// The run is over and was not asked to end: restart it, or leave it inactive/failed.
    fn after_exit(&mut self, name: &str, failure: bool, ran_for: Duration) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let spec = unit.spec.clone();
        let wanted = match spec.restart {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => failure,
            RestartPolicy::Always => true,
        };
        if ran_for >= spec.start_limit_interval {
            unit.restarts.consecutive_failures = 0;
        }
        if wanted && unit.served {
            unit.restarts.consecutive_failures += 1;
            unit.restarts.attempt += 1;
            let attempt = unit.restarts.attempt;
            let delay = unit.restarts.delay(&spec);
            let event = Internal::RestartDue {
                name: name.to_owned(),
                attempt,
            };
            let timer = self.timer(delay, event);
            self.units.get_mut(name).expect("unit exists").phase =
                Phase::AutoRestart { timer, attempt };
        } else {
            unit.phase = Phase::Inactive { failed: failure };
        }
        self.publish(name);
    }

    /// The process is gone after a stop we began.
    fn finish_stop(&mut self, name: &str, reason: StopReason) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let timed_out = reason == StopReason::StartTimeout;
        unit.phase = Phase::Inactive { failed: timed_out };
        let start_again = std::mem::take(&mut unit.start_pending);
        for waiter in std::mem::take(&mut unit.stop_waiters) {
            self.resolve(name, waiter, Ok(()));
        }
        if start_again {
            self.launch(name);
        } else if timed_out {
            self.after_exit(name, true, Duration::ZERO);
        } else {
            self.publish(name);
        }
    }

    /// Resolves everyone waiting for `name` to start.
    pub(super) fn settle_start(&mut self, name: &str, result: CommandResult) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        for waiter in std::mem::take(&mut unit.start_waiters) {
            self.resolve(name, waiter, result.clone());
        }
    }

    /// Pause, Resume or Kill on a service with a process.
    pub(super) fn signal_unit(&mut self, name: &str, action: SignalAction) -> CommandResult {
        let unit = self
            .units
            .get_mut(name)
            .ok_or_else(|| CommandError::NoSuchService(name.to_owned()))?;
        let state = unit.states().0.as_str();
        match (&mut unit.phase, action) {
            (Phase::Running { run, paused }, SignalAction::Pause) => {
                if !*paused {
                    signal_run(run, Signal::SIGSTOP);
                    *paused = true;
                }
                Ok(())
            }
            (Phase::Running { run, paused }, SignalAction::Resume) => {
                if *paused {
                    signal_run(run, Signal::SIGCONT);
                    *paused = false;
                }
                Ok(())
            }
            (
                Phase::Starting(run) | Phase::Running { run, .. } | Phase::Stopping { run, .. },
                SignalAction::Kill(signal),
            ) => {
                signal_run(run, signal);
                Ok(())
            }
            (_, action) => Err(CommandError::InvalidArgs(format!(
                "service {name:?} is {state}, so there is no process to {}; start it first",
                match action {
                    SignalAction::Pause => "pause",
                    SignalAction::Resume => "resume",
                    SignalAction::Kill(_) => "signal",
                }
            ))),
        }
    }
}

/// Sends `signal` to every process of a run: the group we created, and the main process's
/// own group (or the main process alone) when it is not in ours.
pub(super) fn signal_run(run: &Run, signal: Signal) {
    if let Some(group) = run.own_group {
        let _ = signal_group(group, signal);
    }
    match run.main_group {
        Some(group) if Some(group) != run.own_group => {
            let _ = signal_group(group, signal);
        }
        None if run.main_pid > 1 && Some(run.main_pid) != run.own_group => {
            let _ = signal_main(run.main_pid, signal);
        }
        _ => {}
    }
}

/// The process group `pid` leads, if it leads one.
fn group_led_by(pid: u32) -> Option<u32> {
    let pid = Pid::from_raw(pid as i32);
    (getpgid(Some(pid)).ok() == Some(pid)).then_some(pid.as_raw() as u32)
}

/// "exited with status 3", "was killed by SIGKILL", …
fn describe_exit(status: Option<ExitStatus>) -> String {
    match status {
        None => "exited (status unknown: it is not a child of corrald)".to_owned(),
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(signal) => format!("was killed by {signal}"),
                Err(_) => format!("was killed by signal {sig}"),
            },
            _ => "ended".to_owned(),
        },
    }
}
