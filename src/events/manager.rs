//! The manager's own published state: `State`, `Host`, `ConfigGeneration`, and how it
//! tracks services (`SupervisionMode`, `ControlGroup`). The daemon
//! and the transition applier write it; the Manager D-Bus object reads it from a `watch`.

/// `State` of the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonState {
    Starting,
    Running,
    Reloading,
    Stopping,
}

impl DaemonState {
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonState::Starting => "starting",
            DaemonState::Running => "running",
            DaemonState::Reloading => "reloading",
            DaemonState::Stopping => "stopping",
        }
    }
}

/// Everything the Manager properties show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerStatus {
    pub state: DaemonState,
    /// This peer's name (`[daemon] host`).
    pub host: String,
    /// Bumped by each applied reload (start-up is generation 1).
    pub generation: u64,
    /// `StatusText`: what is wrong with corrald itself that clients should see (a state
    /// store that cannot write), `""` when nothing is.
    pub status_text: String,
    /// `SupervisionMode`: how services' processes are tracked, `cgroup` or
    /// `process-groups` (decided once at start-up).
    pub supervision: &'static str,
    /// `ControlGroup`: the cgroup below which services run (corrald's base), `""` without
    /// cgroups.
    pub control_group: String,
}
