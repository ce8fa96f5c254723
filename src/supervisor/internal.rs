//! What the tasks the supervisor spawns tell it: a child's exit, its process group or
//! cgroup emptied, a notify datagram, a timer that fired, a freeze done. Each event names
//! the run it is about, so events of a run that is over are ignored.

use std::process::ExitStatus;

use super::Reply;
use super::actor::Supervisor;
use crate::error::CommandResult;
use crate::process::notify::Datagram;

/// Process events and timers, sent by the tasks the supervisor spawns. Each names the run
/// it is about, so events of a run that is over are ignored.
#[derive(Debug)]
pub(super) enum Internal {
    /// The main process is gone (`status` is `None` when it was not our child).
    Exited {
        name: String,
        run: u64,
        status: Option<ExitStatus>,
    },
    /// After the main process exited, the rest of its process group (or cgroup) is gone
    /// too.
    GroupEmptied {
        name: String,
        run: u64,
        status: Option<ExitStatus>,
    },
    /// A forking service's launcher (the process we spawned) exited.
    LauncherExited {
        name: String,
        run: u64,
        status: Option<ExitStatus>,
    },
    /// A datagram on the notify socket, from the process `datagram.pid`.
    Notify(Datagram),
    StartTimedOut {
        name: String,
        run: u64,
    },
    StopTimedOut {
        name: String,
        run: u64,
    },
    RestartDue {
        name: String,
        attempt: u64,
    },
    PidfileRetry {
        name: String,
        run: u64,
    },
    /// A `Pause` or `Resume` through the cgroup freezer ended; `reply` awaits `result`.
    Frozen {
        name: String,
        run: u64,
        result: CommandResult,
        reply: Reply,
    },
    /// The watchdog timer of a run fired (`seq` tags the timer).
    WatchdogDue {
        name: String,
        run: u64,
        seq: u64,
    },
    /// A run's health check ended: `Err` says how it failed.
    HealthChecked {
        name: String,
        run: u64,
        seq: u64,
        outcome: Result<(), String>,
    },
}

impl Supervisor {
    pub(super) fn handle_internal(&mut self, event: Internal) {
        if self.frozen {
            self.frozen_events.push(event);
            return;
        }
        match event {
            Internal::Exited { name, run, status } => self.on_exit(&name, run, status),
            Internal::GroupEmptied { name, run, status } => self.on_run_over(&name, run, status),
            Internal::LauncherExited { name, run, status } => {
                self.on_launcher_exit(&name, run, status)
            }
            Internal::Notify(datagram) => self.on_notify(datagram),
            Internal::StartTimedOut { name, run } => self.on_start_timeout(&name, run),
            Internal::StopTimedOut { name, run } => self.on_stop_timeout(&name, run),
            Internal::RestartDue { name, attempt } => self.on_restart_due(&name, attempt),
            Internal::PidfileRetry { name, run } => self.read_pidfile(&name, run),
            Internal::Frozen {
                name,
                run,
                result,
                reply,
            } => self.on_frozen(&name, run, result, reply),
            Internal::WatchdogDue { name, run, seq } => self.on_watchdog_due(&name, run, seq),
            Internal::HealthChecked {
                name,
                run,
                seq,
                outcome,
            } => self.on_health_checked(&name, run, seq, outcome),
        }
    }
}
