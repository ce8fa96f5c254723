//! What the supervisor publishes about each service: the snapshot behind the D-Bus
//! properties, in systemd's vocabulary of active and sub states.

use std::time::{SystemTime, UNIX_EPOCH};

/// `ActiveState`, as systemd spells it (plus `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActiveState {
    Inactive,
    Activating,
    Active,
    Deactivating,
    Failed,
    Paused,
}

impl ActiveState {
    pub const ALL: [ActiveState; 6] = [
        ActiveState::Inactive,
        ActiveState::Activating,
        ActiveState::Active,
        ActiveState::Deactivating,
        ActiveState::Failed,
        ActiveState::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActiveState::Inactive => "inactive",
            ActiveState::Activating => "activating",
            ActiveState::Active => "active",
            ActiveState::Deactivating => "deactivating",
            ActiveState::Failed => "failed",
            ActiveState::Paused => "paused",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `SubState`: the finer step within the active state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// Not running (inactive).
    Dead,
    /// Spawned, waiting for readiness (READY=1, the forking launcher, the pidfile).
    Start,
    Running,
    /// Waiting for the restart delay to pass.
    AutoRestart,
    /// Stop signal sent, waiting for the exit.
    StopSigterm,
    /// The watchdog was missed: SIGABRT sent, waiting for the exit (systemd's
    /// `stop-watchdog`).
    StopWatchdog,
    /// `stop_timeout` passed; SIGKILL sent to the whole group.
    StopSigkill,
    Paused,
    Failed,
}

impl SubState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubState::Dead => "dead",
            SubState::Start => "start",
            SubState::Running => "running",
            SubState::AutoRestart => "auto-restart",
            SubState::StopSigterm => "stop-sigterm",
            SubState::StopWatchdog => "stop-watchdog",
            SubState::StopSigkill => "stop-sigkill",
            SubState::Paused => "paused",
            SubState::Failed => "failed",
        }
    }
}

/// `Health`: what the service's periodic health check says about its current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No check has decided yet in this run (or the service has no check, or no run).
    Unknown,
    /// The last check passed.
    Healthy,
    /// `failures` checks in a row failed.
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// `Result`: how the service's last run ended, or why it could not run, in systemd's
/// words (`Result=`); also `CORRAL_RESULT` for `on_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    /// No failure (yet): the last run ended cleanly, or was stopped on request.
    Success,
    /// The main process exited non-zero, or could not be started at all.
    ExitCode,
    /// The main process was killed by a signal corrald did not send.
    Signal,
    /// It did not become ready within `start_timeout`.
    Timeout,
    /// It missed its watchdog (`watchdog`, `WATCHDOG=trigger`).
    Watchdog,
    /// Its health check failed `failures` times in a row (`action = "restart"`).
    Unhealthy,
    /// It was started too often within `start_limit_interval`.
    StartLimit,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::ExitCode => "exit-code",
            RunResult::Signal => "signal",
            RunResult::Timeout => "timeout",
            RunResult::Watchdog => "watchdog",
            RunResult::Unhealthy => "unhealthy",
            RunResult::StartLimit => "start-limit",
        }
    }
}

/// Everything the `org.corral.Corral1.Service` properties show about one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    /// Publication counter: bumped each time the supervisor publishes a new snapshot, so the
    /// publisher can tell a stale queued snapshot from a newer one.
    pub version: u64,
    pub name: String,
    pub group: String,
    pub description: String,
    pub active: ActiveState,
    pub sub: SubState,
    pub main_pid: u32,
    /// The process group corrald created for this run (the PID it spawned), 0 for an
    /// adopted daemon or none. Not a D-Bus property: the control channel accepts a listener
    /// in this group as the service's.
    pub spawned_group: u32,
    /// Control connection up (see the control channel).
    pub online: bool,
    pub served: bool,
    pub n_restarts: u32,
    /// Exit code of the last main process, or 128 + signal number when killed by one.
    pub exec_main_status: i32,
    pub last_error: String,
    /// The child's last `STATUS=`.
    pub status_text: String,
    /// When `active` last changed, µs since the epoch.
    pub state_change_timestamp: u64,
    pub methods: Vec<String>,
    pub recipes: Vec<String>,
    pub active_jobs: u32,
    pub queued_jobs: u32,
    /// `DesiredState`: `"started"` or `"stopped"` when a client asked (kept across
    /// restarts of corrald), `""` when the service follows `autostart`.
    pub desired: &'static str,
    /// `DesiredStateTimestamp`: since when (µs since the epoch), 0 with no desired state.
    pub desired_since: u64,
    /// `ControlGroup`: the current run's cgroup path, `""` without one.
    pub control_group: String,
    /// `UnenforcedLimits`: each configured cgroup limit this host does not enforce, with
    /// the reason ("memory_max = 512M is not enforced: …").
    pub unenforced_limits: Vec<String>,
    pub health: Health,
    /// When the last health check ended, µs since the epoch; 0 before the first.
    pub last_health_check: u64,
    pub result: RunResult,
}

impl ServiceStatus {
    /// An inactive service with no name: what a unit publishes before its first snapshot.
    pub fn placeholder() -> ServiceStatus {
        ServiceStatus {
            version: 0,
            name: String::new(),
            group: String::new(),
            description: String::new(),
            active: ActiveState::Inactive,
            sub: SubState::Dead,
            main_pid: 0,
            spawned_group: 0,
            online: false,
            served: false,
            n_restarts: 0,
            exec_main_status: 0,
            last_error: String::new(),
            status_text: String::new(),
            state_change_timestamp: 0,
            methods: Vec::new(),
            recipes: Vec::new(),
            active_jobs: 0,
            queued_jobs: 0,
            desired: "",
            desired_since: 0,
            control_group: String::new(),
            unenforced_limits: Vec::new(),
            health: Health::Unknown,
            last_health_check: 0,
            result: RunResult::Success,
        }
    }
}

/// Microseconds since the epoch, for `StateChangeTimestamp`.
pub fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How many services are in each active state: corrald's `STATUS=` line, kept current in
/// O(1) per change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    counts: [u32; 6],
}

impl Summary {
    pub fn add(&mut self, state: ActiveState) {
        self.counts[state.index()] += 1;
    }

    pub fn remove(&mut self, state: ActiveState) {
        self.counts[state.index()] = self.counts[state.index()].saturating_sub(1);
    }

    pub fn count(&self, state: ActiveState) -> u32 {
        self.counts[state.index()]
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }
}

impl std::fmt::Display for Summary {
    /// `5 services: 4 active, 1 failed` — only the states that have services.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total();
        write!(f, "{total} service{}", if total == 1 { "" } else { "s" })?;
        let mut first = true;
        for state in ActiveState::ALL {
            let n = self.count(state);
            if n > 0 {
                write!(
                    f,
                    "{} {n} {}",
                    if first { ":" } else { "," },
                    state.as_str()
                )?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_like_systemctl() {
        let mut s = Summary::default();
        assert_eq!(s.to_string(), "0 services");
        for _ in 0..4 {
            s.add(ActiveState::Active);
        }
        s.add(ActiveState::Failed);
        assert_eq!(s.to_string(), "5 services: 4 active, 1 failed");
        s.remove(ActiveState::Failed);
        s.add(ActiveState::Activating);
        assert_eq!(s.to_string(), "5 services: 1 activating, 4 active");
    }
}
