//! One run of a service: its processes (PIDs, process groups, cgroup), its start or stop
//! timer, its watchdog and health checks. A [`Run`] lives inside a unit's
//! [`super::unit::Phase`] from spawn (or adoption) until its processes are gone.

use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::health::HealthChecks;
use super::watchdog::Watchdog;
use crate::process::cgroup::ServiceCgroup;

/// One started process of a service (a "run"). Its `id` tags every event about it, so a
/// late event from an earlier run is recognised and ignored.
#[derive(Debug)]
pub struct Run {
    pub id: u64,
    /// The main PID; 0 while a forking service's pidfile is not read yet.
    pub main_pid: u32,
    /// The process group corrald created for the spawned child (its PID). `None` for an
    /// adopted daemon, which has a group of its own we must not assume.
    pub own_group: Option<u32>,
    /// The group a forking or adopted main process leads, if it leads one.
    pub main_group: Option<u32>,
    /// When the process was spawned; a run that lasts long resets the back-off.
    pub started: Instant,
    /// The pending start or stop timeout.
    pub timer: Option<Timer>,
    /// When that timeout is due; `EXTEND_TIMEOUT_USEC=` moves it later, and the timer, when
    /// it fires early, waits for the rest.
    pub deadline: Option<Instant>,
    /// This run's watchdog (armed while it is running, when it has one).
    pub watchdog: Watchdog,
    /// This run's periodic health checks.
    pub health: HealthChecks,
    /// A task awaits the main process's exit and will report it. False only while a
    /// forking service's launcher is gone and its pidfile not read yet: then nothing would
    /// report the end of a stop, so the stop path looks for itself.
    pub exit_watched: bool,
    /// The process corrald spawned for this run while it is not reaped: corrald's child,
    /// whose exit status a live re-exec can still collect. `None` for adopted runs and
    /// once a forking launcher has exited.
    pub child: Option<u32>,
    /// The run's cgroup (cgroup mode). When set it, not the process groups, says which
    /// processes are the run's: signals and kills go to it, and the run is over once it is
    /// empty. `None` in process-group mode and for an adopted daemon outside it.
    pub cgroup: Option<ServiceCgroup>,
}

impl Run {
    /// A run spawned (or adopted) at `started`, with no timers yet; `watchdog` is the
    /// service's configured one.
    pub fn new(
        id: u64,
        main_pid: u32,
        own_group: Option<u32>,
        started: Instant,
        watchdog: Option<Duration>,
    ) -> Run {
        Run {
            id,
            main_pid,
            own_group,
            main_group: None,
            started,
            timer: None,
            deadline: None,
            watchdog: Watchdog::new(watchdog),
            health: HealthChecks::default(),
            exit_watched: true,
            child: None,
            cgroup: None,
        }
    }

    /// Cancels the timers and checks tied to this run.
    pub fn cancel_tasks(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        self.watchdog.disarm();
        self.health.cancel();
    }
}

/// A pending timer of the supervisor's, with when it fires (a live re-exec carries what is
/// left of it over).
#[derive(Debug)]
pub struct Timer {
    /// The task that sends the event when due; `None` when it was due at once and sent
    /// right away (whoever handles the event checks it still applies).
    pub handle: Option<AbortHandle>,
    pub due: Instant,
}

impl Timer {
    pub fn abort(&self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}
