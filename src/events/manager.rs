//! The manager's own published state: `State`, `Host`, `ConfigGeneration`, `Fleet`, and
//! how it tracks services (`SupervisionMode`, `ControlGroup`). The daemon, the transition
//! applier and the fleet write it; the Manager D-Bus object reads it from a `watch`.

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
    /// `Fleet`: `off` without `[fleet]`, else `connecting|connected|lost`.
    pub fleet: &'static str,
    /// The groups the applied configuration serves here (`peer` = this host), in name
    /// order: this host's line of `ListHostDetails` when there is no fleet to ask.
    pub groups_here: Vec<String>,
    /// `SupervisionMode`: how services' processes are tracked, `cgroup` or
    /// `process-groups` (decided once at start-up).
    pub supervision: &'static str,
    /// `ControlGroup`: the cgroup below which services run (corrald's base), `""` without
    /// cgroups.
    pub control_group: String,
}

impl ManagerStatus {
    /// The status of a corrald that is starting on `host` (process groups until the
    /// daemon says otherwise).
    pub fn starting(host: &str) -> ManagerStatus {
        ManagerStatus {
            state: DaemonState::Starting,
            host: host.to_owned(),
            generation: 0,
            status_text: String::new(),
            fleet: "off",
            groups_here: Vec::new(),
            supervision: "process-groups",
            control_group: String::new(),
        }
    }
}
