//! Starting a service: a start or restart by request, a new run (the start limit, adopting
//! a daemon its pidfile names, spawning), and readiness (at once for `simple`, `READY=1`
//! for `notify`, the pidfile for `forking`) or its timeout. Runs inside the supervisor task.

use std::time::Duration;

use tokio::time::Instant;

use super::actor::Supervisor;
use super::internal::Internal;
use super::launch::{Launch, Spawned};
use super::notify::group_led_by;
use super::unit::{Phase, Run, StopReason, Waiter};
use crate::config::ServiceType;
use crate::error::{CommandError, CommandResult};
use crate::events::RunResult;
use crate::process::pidfd::MainWatch;
use crate::process::pidfile::{self, PidfileError};
use crate::process::spawn;

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
            // Taken over mid-start by a live re-exec: the start-up batch does not wait for
            // it (its own waiters were the previous corrald's).
            Phase::Starting(_) if unit.taken_over && matches!(waiter, Waiter::Batch(_)) => {
                self.resolve(name, waiter, Ok(()))
            }
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

    /// Starts a new run of `name`: adopts a daemon its pidfile names, or spawns one.
    pub(super) fn launch(&mut self, name: &str) {
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
            unit.result = RunResult::StartLimit;
            unit.last_error = format!(
                "{name}: start limit hit ({} starts within {:?}); fix the service, then `corralctl start {name}`",
                spec.start_limit_burst, spec.start_limit_interval
            );
            tracing::warn!(service = name, "{}", unit.last_error);
            let err = CommandError::StartFailed(unit.last_error.clone());
            self.settle_start(name, Err(err));
            self.publish(name);
            self.run_on_failure(name);
            return None;
        }
        unit.result = RunResult::Success;
        let running = spec
            .pidfile
            .as_deref()
            .and_then(|p| pidfile::adoptable(p, &spec));
        if self.recover(name, run_id, now, true) {
            return None;
        }
        if let Some(pid) = running
            && self.adopt(name, run_id, pid, now)
        {
            return None;
        }
        // A watchdog needs the notify socket to be fed, whatever the type (as systemd's
        // `WatchdogSec=` implies `NOTIFY_SOCKET` for every `Type=`).
        let notify = if spec.service_type == ServiceType::Notify || spec.watchdog.is_some() {
            match self.notify_path() {
                Ok(path) => Some(path),
                Err(why) => {
                    self.start_failed(name, format!("{name}: {why}"), Duration::ZERO);
                    return None;
                }
            }
        } else {
            None
        };
        let cgroup = match self.prepare_cgroup(name, &spec) {
            Ok(cgroup) => cgroup,
            Err(why) => {
                self.start_failed(name, format!("{name}: {why}"), Duration::ZERO);
                return None;
            }
        };
        Some(Launch {
            name: name.to_owned(),
            run_id,
            spec,
            notify,
            cgroup,
            now,
        })
    }

    /// Everything of a launch after the spawn: the child's owner task, the new run.
    pub(super) fn finish_launch(&mut self, launch: Launch, spawned: Spawned) {
        let Launch {
            name,
            run_id,
            spec,
            now,
            cgroup,
            ..
        } = launch;
        let name = name.as_str();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                // Nothing joined it: the next run makes it afresh.
                if let Some(cgroup) = &cgroup {
                    let _ = cgroup.remove();
                }
                return self.start_failed(name, format!("{name}: {err}"), Duration::ZERO);
            }
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

        let main_pid = if forking { 0 } else { pid };
        let mut run = Run::new(run_id, main_pid, Some(pid), now, spec.watchdog);
        run.child = Some(pid);
        run.cgroup = cgroup;
        self.track(name, [Some(pid)]);
        let unit = self.units.get_mut(name).expect("unit exists");
        match spec.service_type {
            ServiceType::Simple => {
                unit.phase = Phase::Running { run, paused: false };
                self.now_running(name);
                self.settle_start(name, Ok(()));
            }
            ServiceType::Notify | ServiceType::Forking => {
                let timeout = Internal::StartTimedOut {
                    name: name.to_owned(),
                    run: run_id,
                };
                run.timer = Some(self.timer(spec.start_timeout, timeout));
                run.deadline = Some(Instant::now() + spec.start_timeout);
                self.units.get_mut(name).expect("unit exists").phase = Phase::Starting(run);
            }
        }
        self.save_run(name);
        self.publish(name);
    }

    /// Takes over an already-running daemon; `false` if it vanished meanwhile.
    pub(super) fn adopt(&mut self, name: &str, run_id: u64, pid: u32, now: Instant) -> bool {
        let Ok(watch) = MainWatch::open(pid) else {
            return false;
        };
        self.watch_main(name, run_id, watch);
        let watchdog = self.units.get(name).and_then(|unit| unit.spec.watchdog);
        let mut run = Run::new(run_id, pid, None, now, watchdog);
        run.main_group = group_led_by(pid);
        run.cgroup = self.cgroup_holding(name, pid);
        self.track(name, [Some(run.main_pid), run.main_group]);
        tracing::info!(
            service = name,
            pid,
            "adopted the running daemon its pidfile names"
        );
        self.units.get_mut(name).expect("unit exists").phase =
            Phase::Running { run, paused: false };
        self.save_run(name);
        self.now_running(name);
        self.settle_start(name, Ok(()));
        self.publish(name);
        true
    }

    /// Awaits the exit of a main process that corrald did not spawn itself: a forking
    /// daemon (a child of corrald's, as its subreaper, so its status is known) or an
    /// adopted one (only its exit is).
    pub(super) fn watch_main(&self, name: &str, run: u64, watch: MainWatch) {
        let tx = self.internal_tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let status = watch.exited().await;
            let _ = tx.send(Internal::Exited { name, run, status });
        });
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
            Ok(pid) => MainWatch::open(pid).ok().map(|watch| (pid, watch)),
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
            run.exit_watched = true;
        }
        self.track(name, [Some(pid), group_led_by(pid)]);
        self.save_run(name);
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
    pub(super) fn become_ready(&mut self, name: &str) {
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
        self.now_running(name);
        self.settle_start(name, Ok(()));
    }

    pub(super) fn on_start_timeout(&mut self, name: &str, run_id: u64) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.is_current(run_id) || !matches!(unit.phase, Phase::Starting(_)) {
            return;
        }
        if self.timeout_postponed(name) {
            return;
        }
        let unit = self.units.get_mut(name).expect("unit exists");
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
        // Before the caller hears: its next read of `Result` says `timeout`.
        unit.result = RunResult::Timeout;
        self.settle_start(name, Err(CommandError::Timeout(message)));
        self.begin_stop(name, StopReason::StartTimeout);
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

    /// The process could not be started (or died before it was ready).
    pub(super) fn start_failed(&mut self, name: &str, message: String, ran_for: Duration) {
        tracing::warn!(service = name, "{message}");
        if let Some(unit) = self.units.get_mut(name) {
            unit.last_error = message.clone();
            // As systemd reports a program it could not execute: an exit code (203/EXEC).
            unit.result = RunResult::ExitCode;
        }
        // The new state is published before the caller hears: a `Get` right after the
        // failed `Start` reads `failed` (or `activating` for a restart), not the old state.
        self.after_exit(name, true, ran_for);
        self.settle_start(name, Err(CommandError::StartFailed(message)));
    }
}
