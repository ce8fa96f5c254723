//! The supervisor's part in a live re-exec of corrald: its runtime state written out
//! ([`SupervisorState`]) by the corrald that execs, and taken back by the one it becomes —
//! same PID, so every service is still corrald's child: the same runs with the same
//! `MainPID`s, their exits still awaited (and their exit statuses still collected), what is
//! left of every timer re-armed, `NRestarts` and the back-off kept.
//!
//! Between writing the state out and the exec the supervisor is *frozen*: commands and
//! process events wait (the new corrald sees the processes as they are then), and if the
//! exec fails it thaws and handles them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::actor::Supervisor;
use super::internal::Internal;
use super::unit::{Phase, Run, StopReason, Unit};
use crate::config::ServiceType;
use crate::process::child::Child;
use crate::process::pidfd::MainWatch;
use crate::store::RunRecord;

/// Everything the supervisor hands to the corrald it re-executes into.
#[derive(Debug, Serialize, Deserialize)]
pub struct SupervisorState {
    pub next_run_id: u64,
    /// The notify socket's descriptor, kept open across the exec.
    pub notify_fd: Option<i32>,
    pub units: Vec<UnitState>,
}

/// One service's runtime state.
#[derive(Debug, Serialize, Deserialize)]
pub struct UnitState {
    pub name: String,
    pub phase: PhaseState,
    pub n_restarts: u32,
    pub exec_main_status: i32,
    pub last_error: String,
    pub status_text: String,
    pub consecutive_failures: u32,
    /// How long ago each start within the start-limit interval was, in ms.
    pub recent_starts_ms: Vec<u64>,
    pub attempt: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PhaseState {
    Inactive {
        failed: bool,
    },
    Starting {
        run: RunState,
    },
    Running {
        run: RunState,
        paused: bool,
    },
    Stopping {
        run: RunState,
        start_timeout: bool,
        killed: bool,
    },
    AutoRestart {
        left_ms: u64,
        attempt: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RunState {
    pub id: u64,
    pub main_pid: u32,
    pub own_group: Option<u32>,
    pub main_group: Option<u32>,
    /// How long the run had lasted, in ms.
    pub ran_ms: u64,
    /// What was left of its start or stop timeout, in ms.
    pub timer_left_ms: Option<u64>,
    pub exit_watched: bool,
    pub child: Option<u32>,
    /// The run's cgroup (cgroup mode): it stays where it is, with its processes.
    #[serde(default)]
    pub cgroup: Option<String>,
}

fn left_ms(due: Instant, now: Instant) -> u64 {
    due.saturating_duration_since(now).as_millis() as u64
}

impl Supervisor {
    /// Writes the runtime state out and freezes: from now on commands and process events
    /// wait until [`Supervisor::thaw`].
    pub(super) fn freeze(&mut self) -> SupervisorState {
        self.frozen = true;
        let now = Instant::now();
        let run_state = |run: &Run| RunState {
            id: run.id,
            main_pid: run.main_pid,
            own_group: run.own_group,
            main_group: run.main_group,
            ran_ms: run.started.elapsed().as_millis() as u64,
            // An EXTEND_TIMEOUT_USEC= moved the deadline past the timer's.
            timer_left_ms: run
                .timer
                .as_ref()
                .map(|t| left_ms(run.deadline.unwrap_or(t.due).max(t.due), now)),
            exit_watched: run.exit_watched,
            child: run.child,
            cgroup: run.cgroup.as_ref().map(|c| c.path().to_owned()),
        };
        let units = self
            .units
            .values()
            .map(|unit| UnitState {
                name: unit.name.clone(),
                phase: match &unit.phase {
                    Phase::Inactive { failed } => PhaseState::Inactive { failed: *failed },
                    Phase::Starting(run) => PhaseState::Starting {
                        run: run_state(run),
                    },
                    Phase::Running { run, paused } => PhaseState::Running {
                        run: run_state(run),
                        paused: *paused,
                    },
                    Phase::Stopping {
                        run,
                        reason,
                        killed,
                    } => PhaseState::Stopping {
                        run: run_state(run),
                        start_timeout: *reason == StopReason::StartTimeout,
                        killed: *killed,
                    },
                    Phase::AutoRestart { timer, attempt } => PhaseState::AutoRestart {
                        left_ms: left_ms(timer.due, now),
                        attempt: *attempt,
                    },
                },
                n_restarts: unit.n_restarts,
                exec_main_status: unit.exec_main_status,
                last_error: unit.last_error.clone(),
                status_text: unit.status_text.clone(),
                consecutive_failures: unit.restarts.consecutive_failures,
                recent_starts_ms: unit
                    .restarts
                    .recent_starts
                    .iter()
                    .map(|t| t.elapsed().as_millis() as u64)
                    .collect(),
                attempt: unit.restarts.attempt,
            })
            .collect();
        SupervisorState {
            next_run_id: self.next_run_id(),
            notify_fd: self.notify_fd,
            units,
        }
    }

    /// The exec failed: carry on, handling what waited meanwhile.
    pub(super) fn thaw(&mut self) {
        self.frozen = false;
        for event in std::mem::take(&mut self.frozen_events) {
            self.handle_internal(event);
        }
    }

    /// A unit just defined takes back the state the previous corrald left it in.
    pub(super) fn restore(&mut self, unit: &mut Unit, state: UnitState) {
        let now = Instant::now();
        let name = unit.name.clone();
        unit.n_restarts = state.n_restarts;
        unit.exec_main_status = state.exec_main_status;
        unit.last_error = state.last_error;
        unit.status_text = state.status_text;
        unit.restarts.consecutive_failures = state.consecutive_failures;
        unit.restarts.attempt = state.attempt;
        unit.restarts.recent_starts = state
            .recent_starts_ms
            .iter()
            .filter_map(|ms| now.checked_sub(Duration::from_millis(*ms)))
            .collect();
        let forking = unit.spec.service_type == ServiceType::Forking;
        // The unit is not in `self.units` yet: its configured watchdog comes from here.
        let watchdog = unit.spec.watchdog;
        unit.phase = match state.phase {
            PhaseState::Inactive { failed } => Phase::Inactive { failed },
            PhaseState::AutoRestart { left_ms, attempt } => Phase::AutoRestart {
                timer: self.timer(
                    Duration::from_millis(left_ms),
                    Internal::RestartDue {
                        name: name.clone(),
                        attempt,
                    },
                ),
                attempt,
            },
            PhaseState::Starting { run } => {
                let timeout = Internal::StartTimedOut {
                    name: name.clone(),
                    run: run.id,
                };
                Phase::Starting(self.resume_run(&name, run, forking, timeout, watchdog, now))
            }
            PhaseState::Running { run, paused } => {
                let run = self.resume_run(&name, run, false, None, watchdog, now);
                Phase::Running { run, paused }
            }
            PhaseState::Stopping {
                run,
                start_timeout,
                killed,
            } => {
                let timeout = Internal::StopTimedOut {
                    name: name.clone(),
                    run: run.id,
                };
                Phase::Stopping {
                    run: self.resume_run(&name, run, false, timeout, watchdog, now),
                    reason: if start_timeout {
                        StopReason::StartTimeout
                    } else {
                        StopReason::Requested
                    },
                    killed,
                }
            }
        };
        unit.taken_over = true;
        // The run record in the store is this same run: nothing to re-adopt from it.
        self.recovered.remove(&name);
        tracing::info!(service = name, "taken over from the previous corrald");
    }

    /// A run of `name` that the previous corrald had: its processes are awaited again, its
    /// timer re-armed (`timeout` fires after what was left of it).
    fn resume_run(
        &mut self,
        name: &str,
        state: RunState,
        launcher: bool,
        timeout: impl Into<Option<Internal>>,
        watchdog: Option<Duration>,
        now: Instant,
    ) -> Run {
        let started = now
            .checked_sub(Duration::from_millis(state.ran_ms))
            .unwrap_or(now);
        let mut run = Run::new(state.id, state.main_pid, state.own_group, started, watchdog);
        run.main_group = state.main_group;
        if let (Some(left), Some(event)) = (state.timer_left_ms, timeout.into()) {
            let left = Duration::from_millis(left);
            run.timer = Some(self.timer(left, event));
            run.deadline = Some(now + left);
        }
        run.exit_watched = state.exit_watched;
        run.child = state.child;
        run.cgroup = state
            .cgroup
            .as_deref()
            .and_then(|path| self.cgroup_at(name, path));
        self.track(name, [Some(run.main_pid), run.own_group, run.main_group]);
        match state.child {
            // Still our child: await it and collect its exit status.
            Some(pid) => self.own_child(name, run.id, pid, launcher),
            None if state.exit_watched && state.main_pid > 1 => {
                // Corrald's child again if it was (a forking daemon reparented to it).
                match MainWatch::open(state.main_pid) {
                    Ok(watch) => self.watch_main(name, run.id, watch),
                    Err(_) => {
                        let _ = self.internal_tx.send(Internal::Exited {
                            name: name.to_owned(),
                            run: run.id,
                            status: None,
                        });
                    }
                }
            }
            // A forking launcher exited and the pidfile was not read yet: look again.
            None => {
                let _ = self.internal_tx.send(Internal::PidfileRetry {
                    name: name.to_owned(),
                    run: run.id,
                });
            }
        }
        run
    }

    /// Awaits child `pid` of a run taken over; a forking service's launcher reports as one.
    fn own_child(&self, name: &str, run: u64, pid: u32, launcher: bool) {
        let tx = self.internal_tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let status = match Child::inherit(pid) {
                Ok(mut child) => child.wait().await.ok(),
                Err(_) => None,
            };
            let _ = tx.send(if launcher {
                Internal::LauncherExited { name, run, status }
            } else {
                Internal::Exited { name, run, status }
            });
        });
    }
}

/// A unit the previous corrald had but the configuration no longer defines: handled like
/// a run that survived a crash (see `durable.rs`), which stops it.
pub(super) fn as_record(state: &UnitState) -> Option<RunRecord> {
    let run = match &state.phase {
        PhaseState::Starting { run }
        | PhaseState::Running { run, .. }
        | PhaseState::Stopping { run, .. } => run,
        _ => return None,
    };
    Some(RunRecord {
        main_pid: run.main_pid,
        start_time: crate::process::procfs::start_ticks(run.main_pid)?,
        pgid: run.own_group.or(run.main_group).unwrap_or(0),
        cgroup: run.cgroup.clone().unwrap_or_default(),
        run_id: run.id,
        n_restarts: state.n_restarts,
        extra: serde_json::json!({
            "main_group": run.main_group,
            "group_start": crate::process::procfs::start_ticks(run.own_group.or(run.main_group).unwrap_or(0)),
        }),
    })
}
