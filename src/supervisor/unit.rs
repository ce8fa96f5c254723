//! One service's runtime state inside the supervisor: its definition, where it is in its
//! life cycle ([`Phase`]), who waits for it, and the counters behind restart back-off and
//! the start limit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

pub use super::run::{Run, Timer};
use crate::config::Service;
use crate::error::CommandResult;
use crate::events::{ActiveState, Health, RunResult, ServiceStatus, SubState, now_usec};
use crate::fence::Target;
use crate::store::DesiredRecord;

/// Why a stop was begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Stop, Restart, a reload or shutdown asked for it.
    Requested,
    /// The service did not become ready within `start_timeout`.
    StartTimeout,
    /// The service missed its watchdog (SIGABRT first, not `stop_signal`).
    Watchdog,
    /// The service's health check failed `failures` times in a row (`action = "restart"`).
    Unhealthy,
}

impl StopReason {
    /// The result of a run that this stop ends, when the stop makes it a failure.
    pub fn failure(self) -> Option<RunResult> {
        match self {
            StopReason::Requested => None,
            StopReason::StartTimeout => Some(RunResult::Timeout),
            StopReason::Watchdog => Some(RunResult::Watchdog),
            StopReason::Unhealthy => Some(RunResult::Unhealthy),
        }
    }
}

/// Where a service is in its life cycle.
#[derive(Debug)]
pub enum Phase {
    Inactive {
        failed: bool,
    },
    /// Spawned, not ready yet.
    Starting(Run),
    Running {
        run: Run,
        paused: bool,
    },
    Stopping {
        run: Run,
        reason: StopReason,
        killed: bool,
    },
    /// Waiting out the restart delay; `attempt` tags the timer's event.
    AutoRestart {
        timer: Timer,
        attempt: u64,
    },
}

/// Who is waiting for a start or stop to settle.
#[derive(Debug)]
pub enum Waiter {
    /// A D-Bus caller.
    Reply(oneshot::Sender<CommandResult>),
    /// An ordered batch (start-up, reload, shutdown) with this id.
    Batch(u64),
}

/// Restart back-off and start-limit bookkeeping.
#[derive(Debug, Default)]
pub struct RestartState {
    /// Failures in a row; the restart delay doubles with each.
    pub consecutive_failures: u32,
    /// Start times within the start-limit interval.
    pub recent_starts: VecDeque<Instant>,
    /// Tags the current auto-restart timer.
    pub attempt: u64,
}

impl RestartState {
    /// The delay before the next automatic restart: `restart_delay` doubled per consecutive
    /// failure, capped at `restart_delay_max`.
    pub fn delay(&self, spec: &Service) -> Duration {
        let doublings = self.consecutive_failures.saturating_sub(1).min(32);
        spec.restart_delay
            .saturating_mul(1u32 << doublings.min(31))
            .min(spec.restart_delay_max)
    }

    /// Records a start at `now` and says whether the start limit allows it.
    pub fn admit_start(&mut self, spec: &Service, now: Instant) -> bool {
        while self
            .recent_starts
            .front()
            .is_some_and(|&t| now.duration_since(t) >= spec.start_limit_interval)
        {
            self.recent_starts.pop_front();
        }
        if self.recent_starts.len() >= spec.start_limit_burst as usize {
            return false;
        }
        self.recent_starts.push_back(now);
        true
    }
}

/// A service as the supervisor holds it.
pub struct Unit {
    pub name: String,
    pub spec: Arc<Service>,
    pub served: bool,
    pub phase: Phase,
    pub start_waiters: Vec<Waiter>,
    pub stop_waiters: Vec<Waiter>,
    /// A start was asked for while stopping: start again once the process is gone.
    pub start_pending: bool,
    pub restarts: RestartState,
    pub n_restarts: u32,
    pub exec_main_status: i32,
    pub last_error: String,
    pub status_text: String,
    /// Control connection up.
    pub online: bool,
    /// What a client last asked for (`Start`/`Stop`), kept in the state store; overrides
    /// `autostart`.
    pub desired: Option<DesiredRecord>,
    /// Taken over from the previous corrald by a live re-exec, until start-up is done.
    pub taken_over: bool,
    /// The configured cgroup limits this host does not enforce, each with the reason
    /// (`UnenforcedLimits`).
    pub unenforced: Vec<String>,
    /// Recipe jobs running and waiting.
    pub active_jobs: u32,
    pub queued_jobs: u32,
    /// What the health check says about the current run.
    pub health: Health,
    /// When the last health check ended (µs since the epoch), 0 before the first.
    pub last_health_check: u64,
    /// How the last run ended (systemd's `Result=`), `CORRAL_RESULT` for `on_failure`.
    pub result: RunResult,
    /// The status last published; the D-Bus object reads the same value from `status_tx`.
    pub published: Arc<ServiceStatus>,
    pub status_tx: watch::Sender<Arc<ServiceStatus>>,
}

impl Unit {
    pub fn new(name: String, spec: Arc<Service>, served: bool) -> Unit {
        let mut unit = Unit {
            name,
            spec,
            served,
            phase: Phase::Inactive { failed: false },
            start_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            start_pending: false,
            restarts: RestartState::default(),
            n_restarts: 0,
            exec_main_status: 0,
            last_error: String::new(),
            status_text: String::new(),
            online: false,
            desired: None,
            taken_over: false,
            unenforced: Vec::new(),
            active_jobs: 0,
            queued_jobs: 0,
            health: Health::Unknown,
            last_health_check: 0,
            result: RunResult::Success,
            published: Arc::new(ServiceStatus::placeholder()),
            status_tx: watch::channel(Arc::new(ServiceStatus::placeholder())).0,
        };
        let status = Arc::new(unit.snapshot(now_usec()));
        unit.published = status.clone();
        unit.status_tx.send_replace(status);
        unit
    }

    /// The active and sub state of the current phase.
    pub fn states(&self) -> (ActiveState, SubState) {
        match &self.phase {
            Phase::Inactive { failed: false } => (ActiveState::Inactive, SubState::Dead),
            Phase::Inactive { failed: true } => (ActiveState::Failed, SubState::Failed),
            Phase::Starting(_) => (ActiveState::Activating, SubState::Start),
            Phase::AutoRestart { .. } => (ActiveState::Activating, SubState::AutoRestart),
            Phase::Running { paused: false, .. } => (ActiveState::Active, SubState::Running),
            Phase::Running { paused: true, .. } => (ActiveState::Paused, SubState::Paused),
            Phase::Stopping {
                killed: false,
                reason: StopReason::Watchdog,
                ..
            } => (ActiveState::Deactivating, SubState::StopWatchdog),
            Phase::Stopping { killed: false, .. } => {
                (ActiveState::Deactivating, SubState::StopSigterm)
            }
            Phase::Stopping { killed: true, .. } => {
                (ActiveState::Deactivating, SubState::StopSigkill)
            }
        }
    }

    /// The current run, in any phase that has one.
    /// What must die with corrald (see [`crate::fence`]): the processes of a grouped
    /// service's run — only grouped services fail over to another host; the ungrouped ones
    /// are meant to outlive corrald.
    pub fn fence_targets(&self) -> Vec<Target> {
        let Some(run) = self.run().filter(|_| self.spec.group.is_some()) else {
            return Vec::new();
        };
        let mut targets: Vec<Target> = run.own_group.into_iter().map(Target::Group).collect();
        if let Some(group) = run.main_group.filter(|g| Some(*g) != run.own_group) {
            targets.push(Target::Group(group));
        }
        if run.main_pid > 1 && Some(run.main_pid) != run.own_group {
            targets.push(Target::Process(run.main_pid));
        }
        targets
    }

    pub fn run(&self) -> Option<&Run> {
        match &self.phase {
            Phase::Starting(run) | Phase::Running { run, .. } | Phase::Stopping { run, .. } => {
                Some(run)
            }
            _ => None,
        }
    }

    pub fn run_mut(&mut self) -> Option<&mut Run> {
        match &mut self.phase {
            Phase::Starting(run) | Phase::Running { run, .. } | Phase::Stopping { run, .. } => {
                Some(run)
            }
            _ => None,
        }
    }

    /// Whether `run_id` is the current run (events of older runs are ignored).
    pub fn is_current(&self, run_id: u64) -> bool {
        self.run().is_some_and(|run| run.id == run_id)
    }

    /// The status as it should be published now; `changed_at` is used when the active state
    /// differs from the last published one.
    pub fn snapshot(&self, changed_at: u64) -> ServiceStatus {
        let (active, sub) = self.states();
        let state_change_timestamp = if active == self.published.active {
            self.published.state_change_timestamp
        } else {
            changed_at
        };
        let spec = &self.spec;
        ServiceStatus {
            version: self.published.version,
            name: self.name.clone(),
            group: spec.group.clone().unwrap_or_default(),
            description: spec.description.clone(),
            active,
            sub,
            main_pid: self.run().map_or(0, |run| run.main_pid),
            spawned_group: self.run().and_then(|run| run.own_group).unwrap_or(0),
            online: self.online,
            served: self.served,
            n_restarts: self.n_restarts,
            exec_main_status: self.exec_main_status,
            last_error: self.last_error.clone(),
            status_text: self.status_text.clone(),
            state_change_timestamp,
            methods: spec.methods.keys().cloned().collect(),
            recipes: spec.recipes.keys().cloned().collect(),
            active_jobs: self.active_jobs,
            queued_jobs: self.queued_jobs,
            desired: self.desired.as_ref().map_or("", |d| d.state.as_str()),
            desired_since: self.desired.as_ref().map_or(0, |d| d.since_us),
            control_group: self
                .run()
                .and_then(|run| run.cgroup.as_ref())
                .map_or_else(String::new, |cgroup| cgroup.path().to_owned()),
            unenforced_limits: self.unenforced.clone(),
            health: self.health,
            last_health_check: self.last_health_check,
            result: self.result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(delay_ms: u64, max_ms: u64) -> Service {
        Service {
            exec: vec!["x".into()],
            restart_delay: Duration::from_millis(delay_ms),
            restart_delay_max: Duration::from_millis(max_ms),
            start_limit_burst: 3,
            start_limit_interval: Duration::from_secs(10),
            ..Service::default()
        }
    }

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let spec = spec(100, 1000);
        let mut r = RestartState::default();
        let mut delays = vec![];
        for _ in 0..6 {
            r.consecutive_failures += 1;
            delays.push(r.delay(&spec).as_millis());
        }
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        r.consecutive_failures = 1000;
        assert_eq!(r.delay(&spec).as_millis(), 1000, "no overflow");
    }

    #[tokio::test(start_paused = true)]
    async fn start_limit_counts_starts_within_the_interval() {
        let spec = spec(0, 0);
        let mut r = RestartState::default();
        let t0 = Instant::now();
        assert!(r.admit_start(&spec, t0));
        assert!(r.admit_start(&spec, t0 + Duration::from_secs(1)));
        assert!(r.admit_start(&spec, t0 + Duration::from_secs(2)));
        assert!(
            !r.admit_start(&spec, t0 + Duration::from_secs(3)),
            "4th within 10 s"
        );
        assert!(
            r.admit_start(&spec, t0 + Duration::from_secs(10)),
            "first one aged out"
        );
    }
}
