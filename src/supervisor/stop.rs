//! Stopping a service: the stop signal to every process of the run, the stop timeout and
//! then SIGKILL (`cgroup.kill` in cgroup mode), the end of a stop we began, and the other
//! signals a client may send (Pause and Resume without a cgroup, Kill). Runs inside the
//! supervisor task.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::actor::{SignalAction, Supervisor};
use super::cgroups::thaw_in_background;
use super::internal::Internal;
use super::unit::{Phase, Run, StopReason, Waiter};
use crate::error::{CommandError, CommandResult};
use crate::process::signal::{signal_group, signal_main};

impl Supervisor {
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

    /// Sends the stop signal and arms the stop timeout.
    pub(super) fn begin_stop(&mut self, name: &str, reason: StopReason) {
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
        // A stopping run is no longer watched or checked.
        run.watchdog.disarm();
        run.health.cancel();
        // A failure is the run's result from the moment its stop begins (as systemd's
        // `Result`): a start that timed out returns `StartFailed` while the stop is still
        // under way, and `Result` must already say `timeout` then.
        if let Some(result) = reason.failure() {
            unit.result = result;
        }
        let spec = unit.spec.clone();
        // A missed watchdog gets SIGABRT, so a hung daemon leaves a core dump showing where
        // (systemd's `WatchdogSignal=`); stop_timeout, then SIGKILL, as for any stop.
        let signal = match reason {
            StopReason::Watchdog => Signal::SIGABRT,
            _ => spec.stop_signal,
        };
        signal_run(&run, signal);
        // A stopped or frozen process cannot act on SIGTERM until it is continued.
        match &run.cgroup {
            Some(cgroup) if paused || cgroup.is_frozen().unwrap_or(false) => {
                thaw_in_background(cgroup.clone())
            }
            Some(_) => {}
            None if paused => signal_run(&run, Signal::SIGCONT),
            None => {}
        }
        let timeout = Internal::StopTimedOut {
            name: name.to_owned(),
            run: run.id,
        };
        run.timer = Some(self.timer(spec.stop_timeout, timeout));
        run.deadline = Some(tokio::time::Instant::now() + spec.stop_timeout);
        let (run_id, watched) = (run.id, run.exit_watched);
        let unit = self.units.get_mut(name).expect("unit exists");
        unit.phase = Phase::Stopping {
            run,
            reason,
            killed: false,
        };
        self.publish(name);
        if !watched {
            // A forking launcher that exited without a pidfile yet: no task will report
            // an exit, so end the run here (waiting for whatever is left in its group).
            self.on_exit(name, run_id, None);
        }
    }

    pub(super) fn on_stop_timeout(&mut self, name: &str, run_id: u64) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.is_current(run_id) || !matches!(unit.phase, Phase::Stopping { .. }) {
            return;
        }
        if self.timeout_postponed(name) {
            return;
        }
        let unit = self.units.get_mut(name).expect("unit exists");
        let timeout = unit.spec.stop_timeout;
        if let Phase::Stopping { run, .. } = &unit.phase {
            let how = match &run.cgroup {
                Some(cgroup) => format!("killing every process in {}", cgroup.path()),
                None => "sending SIGKILL to its process group".to_owned(),
            };
            tracing::warn!(
                service = name,
                pid = run.main_pid,
                "still running {timeout:?} after the stop signal; {how}"
            );
        }
        self.kill_stopping(name);
    }

    /// SIGKILL to every process of a run that is being stopped.
    fn kill_stopping(&mut self, name: &str) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if let Phase::Stopping { run, killed, .. } = &mut unit.phase {
            signal_run(run, Signal::SIGKILL);
            if let Some(timer) = run.timer.take() {
                timer.abort();
            }
            *killed = true;
        }
        self.publish(name);
    }

    /// The fleet's deadline (see [`super::Handle::kill_group`]): every service of `group`
    /// stops being served, and whatever process it has is killed now. A stop that was
    /// under way ends as usual, with its waiters told, when the processes are gone.
    pub(super) fn kill_group(&mut self, group: &str) {
        let names: Vec<String> = self
            .units
            .iter()
            .filter(|(_, unit)| unit.spec.group.as_deref() == Some(group))
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let unit = self.units.get_mut(&name).expect("listed");
            unit.served = false;
            unit.start_pending = false;
            match &unit.phase {
                Phase::Inactive { .. } => {}
                Phase::AutoRestart { timer, .. } => {
                    timer.abort();
                    unit.phase = Phase::Inactive { failed: false };
                }
                Phase::Starting(_) | Phase::Running { .. } => {
                    let message = format!("{name}: killed before it finished starting");
                    self.settle_start(&name, Err(CommandError::StartFailed(message)));
                    self.begin_stop(&name, StopReason::Requested);
                }
                Phase::Stopping { .. } => {}
            }
            if matches!(self.units[&name].phase, Phase::Stopping { .. }) {
                tracing::warn!(
                    service = name,
                    group,
                    "the fleet's deadline passed: killing the group's service"
                );
            }
            self.kill_stopping(&name);
        }
    }

    /// The process is gone after a stop we began; the run lasted `ran_for`.
    pub(super) fn finish_stop(&mut self, name: &str, reason: StopReason, ran_for: Duration) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let failure = reason.failure();
        if let Some(result) = failure {
            unit.result = result;
        }
        unit.phase = Phase::Inactive {
            failed: failure.is_some(),
        };
        let start_again = std::mem::take(&mut unit.start_pending);
        // Someone asked for this stop meanwhile (a failure's stop was under way): the
        // service stays down — failed, but not restarted behind their back.
        let stop_asked = !unit.stop_waiters.is_empty();
        for waiter in std::mem::take(&mut unit.stop_waiters) {
            self.resolve(name, waiter, Ok(()));
        }
        if start_again {
            self.launch(name);
        } else if failure.is_some() && !stop_asked {
            // A run that never became ready is no long run that resets the back-off.
            let ran_for = match reason {
                StopReason::StartTimeout => Duration::ZERO,
                _ => ran_for,
            };
            self.after_exit(name, true, ran_for);
        } else {
            self.publish(name);
            if failure.is_some() {
                self.run_on_failure(name);
            }
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

/// Sends `signal` to every process of a run: every process in its cgroup (SIGKILL with
/// `cgroup.kill`, which nothing escapes); without one, the group we created, and the main
/// process's own group (or the main process alone) when it is not in ours.
pub(super) fn signal_run(run: &Run, signal: Signal) {
    if let Some(cgroup) = &run.cgroup {
        let sent = match signal {
            Signal::SIGKILL => cgroup.kill(),
            signal => cgroup.signal(signal).map(drop),
        };
        if let Err(err) = sent {
            tracing::warn!("cannot send {signal} to {}: {err}", cgroup.path());
        }
        return;
    }
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
