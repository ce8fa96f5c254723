//! The end of a run: the main process exits, the rest of its process group is killed and
//! awaited, the outcome is recorded, and the service is restarted with back-off — or left
//! inactive or failed. Runs inside the supervisor task.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::actor::Supervisor;
use super::cgroups::finish_cgroup;
use super::internal::Internal;
use super::unit::{Phase, Timer};
use crate::config::RestartPolicy;
use crate::error::CommandError;
use crate::events::{Health, RunResult};
use crate::process::exit_code;
use crate::process::group;
use crate::process::signal::signal_group;

impl Supervisor {
    /// The main process exited. Whatever is left of the run — its cgroup, else its
    /// process groups — is killed, and the run is over once that is empty: so a restart
    /// never overlaps the old processes, and `Stop` returns only when every process of the
    /// service is gone.
    pub(super) fn on_exit(&mut self, name: &str, run_id: u64, status: Option<ExitStatus>) {
        let Some(run) = self.units.get(name).and_then(|u| u.run()) else {
            return;
        };
        if run.id != run_id {
            return;
        }
        if let Some(cgroup) = run.cgroup.clone() {
            return self.empty_cgroup(name, run_id, status, cgroup);
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
        let oom = run
            .cgroup
            .as_ref()
            .and_then(|cgroup| finish_cgroup(name, cgroup, &unit.spec));
        // Health speaks of a run; the next one starts unknown.
        unit.health = Health::Unknown;
        self.untrack(name, &run);
        self.clear_run(name);
        let mut how = describe_exit(status);
        if let Some(oom) = &oom {
            how = format!("{how}; {oom}");
        }
        let ran_for = run.started.elapsed();
        match stopping {
            Some(reason) => {
                tracing::info!(service = name, pid = run.main_pid, "stopped: {how}");
                self.finish_stop(name, reason, ran_for);
            }
            None => {
                let clean = status.is_some_and(|s| s.success()) && oom.is_none();
                if clean {
                    tracing::info!(service = name, pid = run.main_pid, "main process {how}");
                } else {
                    tracing::warn!(service = name, pid = run.main_pid, "main process {how}");
                }
                if was_starting || !clean {
                    let unit = self.units.get_mut(name).expect("unit exists");
                    unit.last_error = format!("{name}: main process {} {how}", run.main_pid);
                    unit.result = match status.and_then(|s| s.signal()) {
                        Some(_) => RunResult::Signal,
                        None => RunResult::ExitCode,
                    };
                }
                // Published before the caller of a failed start hears (see `start_failed`).
                self.after_exit(name, was_starting || !clean, ran_for);
                if was_starting {
                    let message =
                        format!("{name}: process {} {how} before it was ready", run.main_pid);
                    self.settle_start(name, Err(CommandError::StartFailed(message)));
                }
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
        match &mut unit.phase {
            Phase::Starting(run) if status.is_some_and(|s| s.success()) => {
                run.exit_watched = false;
                run.child = None;
                self.read_pidfile(name, run_id)
            }
            // Failed launcher, or a stop that raced the fork: the run is over.
            Phase::Starting(_) | Phase::Stopping { .. } => self.on_exit(name, run_id, status),
            _ => {}
        }
    }

    /// The run is over and was not asked to end: restart it, or leave it inactive/failed.
    pub(super) fn after_exit(&mut self, name: &str, failure: bool, ran_for: Duration) {
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
            self.publish(name);
            if failure {
                self.run_on_failure(name);
            }
            return;
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
        // Spawned by the loop with the other restarts due in this round.
        if let Some(launch) = self.prepare_launch(name) {
            self.restarts.push(launch);
        }
    }

    /// Sends `event` to the supervisor after `after`; abort the timer to cancel (the
    /// event's handler must also check that it still applies: one due at once is sent
    /// before this returns).
    pub(super) fn timer(&self, after: Duration, event: Internal) -> Timer {
        let tx = self.internal_tx.clone();
        let due = tokio::time::Instant::now() + after;
        if after.is_zero() {
            // tokio's timers tick in whole milliseconds and round a deadline up to the next
            // tick: a sleep of zero took 0.5 ms on average, a third of a restart with
            // `restart_delay = "0"`.
            let _ = tx.send(event);
            return Timer { handle: None, due };
        }
        let handle = tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let _ = tx.send(event);
        })
        .abort_handle();
        Timer {
            handle: Some(handle),
            due,
        }
    }
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
