//! The validated configuration: what the supervisor, the transition diff and the D-Bus
//! layer see. Nothing here can be invalid — `config::load` builds these types only after
//! every check passed, so consumers never re-validate (STYLE rule 8).
//!
//! Source locations are deliberately absent: they matter only for error messages, which are
//! all produced during validation. Keeping them out lets `PartialEq` mean "same definition",
//! which is exactly what the reload diff needs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

/// The default `PATH` of a service whose `environment` does not set one (systemd's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A whole, validated configuration (all files merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonSettings,
    /// Groups by name (ProxyFS "volume groups": a set of services served by one peer).
    pub groups: BTreeMap<String, Group>,
    /// Services by name. `BTreeMap` so every iteration is in name order, which the
    /// transition order relies on for determinism. Each definition is shared (`Arc`) with
    /// the parts that act on it (the supervisor's unit, the jobs' pool), so it is in memory
    /// once, not once per holder.
    pub services: BTreeMap<String, Arc<Service>>,
    /// `[fleet]`: several hosts coordinated through etcd. `None` = this host alone, reading
    /// only its files; nothing of the fleet runs.
    pub fleet: Option<FleetSettings>,
}

/// `[fleet]`: where the fleet's etcd is and how this host takes part in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// etcd v3 endpoints (`http://HOST:PORT`); the client balances over them.
    pub etcd: Vec<String>,
    /// Every key corral writes is below this (`/corral`), so one etcd can hold several
    /// fleets or other users' keys. Never ends with `/`.
    pub prefix: String,
    /// The TTL of this host's etcd lease: how long after its last keep-alive a host that
    /// died or was cut off still counts as alive (and keeps its groups). Whole seconds.
    pub lease_ttl: Duration,
    /// Move the groups of a host whose lease expired to the next live host of their `peers`.
    pub failover: bool,
}

/// `[daemon]`: settings of corrald itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// This peer's name; a group is served here when its `peer` equals it.
    pub host: String,
    /// How long a conflicting lease request waits for holders to release before revoking.
    pub lease_recall_timeout: Duration,
    /// Watch state unused for this long is dropped.
    pub upcall_expiry: Duration,
    /// Per-client cap on watches, so one client cannot grow corrald without bound.
    pub max_watches_per_client: u32,
    /// Per-client cap on leases.
    pub max_leases_per_client: u32,
}

/// `[groups.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The peer that serves this group's services. With `[fleet]` this is the initial
    /// placement only: etcd's `groups/<group>/peer`, once written, wins.
    pub peer: String,
    /// Where the group may run, in failover order (`peers = ["node-a", "node-b"]`); empty
    /// when not given. When given, `peer` is one of them.
    pub peers: Vec<String>,
}

/// How corrald decides a service finished starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// Active as soon as the process was spawned (exec succeeded).
    Simple,
    /// Active once the child sent `READY=1` on its `NOTIFY_SOCKET`.
    Notify,
    /// The started process forks and exits 0; the main PID is read from `pidfile`.
    Forking,
}

/// `restart =`: what to do when the main process exits on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    /// Restart after a non-zero exit, a signal, or a start failure.
    OnFailure,
    /// Restart after any exit that corrald did not ask for.
    Always,
}

/// How a manager method is carried out (nova's drivers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodDriver {
    /// Run this argv; the call's args are appended; stdout is the result.
    Exec(Vec<String>),
    /// Forward as a JSON-RPC request with this method name over the control socket.
    Control(String),
}

/// `[services.X.workers]`: bounds on concurrent recipe jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    pub max_active: u32,
    pub max_queued: u32,
}

/// `[services.X.recipes.NAME]`: a sequence of commands run as one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// Each step is an argv, run in order; a failing step fails the job.
    pub steps: Vec<Vec<String>>,
    /// `schedule = "every 1h"`: run periodically.
    pub schedule: Option<Duration>,
}

/// `[services.X.health]`: a periodic check of a running service (nova's periodic tasks,
/// Monit's checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// From one check's start to the next one's (a check still running then is waited for).
    pub interval: Duration,
    /// A check that runs longer is killed and counts as failed.
    pub timeout: Duration,
    /// Consecutive failures that make the service unhealthy.
    pub failures: u32,
    pub action: HealthAction,
}

/// What a health check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// This argv, run like an `exec` manager method; exit 0 is healthy.
    Exec(Vec<String>),
    /// This manager method of the service (either driver); success is healthy.
    Method(String),
}

/// What happens when the service becomes unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthAction {
    /// End the run as a failure (the stop path); the `restart` policy decides what follows.
    Restart,
    /// Only report it (`Health` = `unhealthy`).
    None,
}

/// `[services.NAME]`: one supervised daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The group whose peer serves it; `None` = served everywhere.
    pub group: Option<String>,
    pub description: String,
    /// Never empty. `exec[0]` is absolute or a bare name looked up in the service's `PATH`.
    pub exec: Vec<String>,
    pub service_type: ServiceType,
    /// Start when it becomes served (start-up, reload, group moving here).
    pub autostart: bool,
    /// Main PID for `forking`; for any type, an already-running daemon to adopt.
    pub pidfile: Option<PathBuf>,
    /// Start after / stop before these services (ordering only, like systemd's `After=`).
    pub after: Vec<String>,
    /// The child's whole environment besides `PATH` (defaulted) and `NOTIFY_SOCKET`.
    pub environment: BTreeMap<String, String>,
    /// Run as this user (and its groups); `None` = root.
    pub user: Option<String>,
    pub working_directory: PathBuf,
    pub restart: RestartPolicy,
    /// First restart delay; doubles per consecutive failure up to `restart_delay_max`.
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    /// More than `start_limit_burst` starts within `start_limit_interval` → `failed`.
    pub start_limit_burst: u32,
    pub start_limit_interval: Duration,
    pub start_timeout: Duration,
    pub stop_signal: Signal,
    /// After this, SIGKILL to the whole process group.
    pub stop_timeout: Duration,
    /// The service listens here; corrald connects as a control-channel client.
    pub control_socket: Option<PathBuf>,
    /// Bound on one control-channel request.
    pub frame_timeout: Duration,
    /// Relay upcall notifications from this service to D-Bus clients.
    pub upcall: bool,
    pub methods: BTreeMap<String, MethodDriver>,
    pub workers: Workers,
    pub recipes: BTreeMap<String, Recipe>,
    /// Written to the service's cgroup; applied to a running service on reload.
    pub cgroup_limits: CgroupLimits,
    /// Set in the child before it execs; a change restarts the service on reload.
    pub process_limits: ProcessLimits,
    /// The child must send `WATCHDOG=1` at least this often once it runs; it gets
    /// `NOTIFY_SOCKET` and `WATCHDOG_USEC` whatever its type.
    pub watchdog: Option<Duration>,
    /// Run (detached) each time the service becomes `failed`, like systemd's `OnFailure=`.
    pub on_failure: Option<Vec<String>>,
    pub health: Option<HealthCheck>,
}

/// `memory_max`, `tasks_max`: a number, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    Value(u64),
    Infinity,
}

/// The limits corrald writes to a service's cgroup (`memory.max`, `pids.max`,
/// `cpu.weight`). Unset means the kernel's default (no limit, weight 100). Where the
/// controller is missing they cannot be enforced, and that is reported, not hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupLimits {
    /// Bytes.
    pub memory_max: Option<Max>,
    /// Processes and threads.
    pub tasks_max: Option<Max>,
    /// 1–10000; the kernel's default is 100.
    pub cpu_weight: Option<u32>,
}

/// One resource limit as `setrlimit` takes it; [`RLIM_INFINITY`] is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub soft: u64,
    pub hard: u64,
}

/// "No limit" in an [`Rlimit`] (the kernel's `RLIM_INFINITY`).
pub const RLIM_INFINITY: u64 = u64::MAX;

/// What the child gets before it execs, on any host: rlimits, umask, no_new_privileges.
/// Unset rlimits are inherited from corrald, except `RLIMIT_NOFILE`, whose soft limit
/// goes back to 1024 (see `process::limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessLimits {
    pub limit_nofile: Option<Rlimit>,
    pub limit_core: Option<Rlimit>,
    pub limit_nproc: Option<Rlimit>,
    pub limit_memlock: Option<Rlimit>,
    /// `None`: corrald's own umask (0022 under systemd).
    pub umask: Option<u32>,
    pub no_new_privileges: bool,
}

impl Service {
    /// Whether `other` would run a different process: such a change restarts a served
    /// service on reload; any other change (description, timeouts, methods, …) is applied
    /// in place.
    pub fn process_differs(&self, other: &Service) -> bool {
        self.process_keys() != other.process_keys()
    }

    /// A fingerprint of what [`Service::process_differs`] compares, stable across corrald
    /// builds of one version: a run record keeps it, so that a process re-adopted after a
    /// crash is known to run an older definition (FNV-1a over the keys' debug text).
    pub fn process_fingerprint(&self) -> u64 {
        // The text records were written with: keep its form, or every re-adopted process
        // would look outdated to the next build.
        let (exec, kind, pidfile, environment, user, cwd, control, limits, watchdog) =
            self.process_keys();
        let text = format!(
            "{exec:?}|{kind:?}|{pidfile:?}|{environment:?}|{user:?}|{cwd:?}|{control:?}|{limits:?}|{watchdog:?}"
        );
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// The keys that decide which process runs, for [`Service::process_differs`] and
    /// [`Service::process_fingerprint`] alike. `process_limits` count (the child gets them
    /// at exec); `cgroup_limits` do not: they are files of the service's cgroup, rewritten
    /// while it runs. The watchdog counts: the child learns it from its environment
    /// (`WATCHDOG_USEC`).
    #[allow(clippy::type_complexity)]
    fn process_keys(
        &self,
    ) -> (
        &Vec<String>,
        &ServiceType,
        &Option<PathBuf>,
        &BTreeMap<String, String>,
        &Option<String>,
        &PathBuf,
        &Option<PathBuf>,
        &ProcessLimits,
        &Option<Duration>,
    ) {
        (
            &self.exec,
            &self.service_type,
            &self.pidfile,
            &self.environment,
            &self.user,
            &self.working_directory,
            &self.control_socket,
            &self.process_limits,
            &self.watchdog,
        )
    }

    /// The `PATH` the child gets: its `environment`'s, else [`DEFAULT_PATH`].
    pub fn path_env(&self) -> &str {
        self.environment
            .get("PATH")
            .map(String::as_str)
            .unwrap_or(DEFAULT_PATH)
    }
}

impl Config {
    /// The empty configuration: start-up is a reload from it, shutdown a reload to it.
    pub fn empty(host: impl Into<String>) -> Config {
        Config {
            daemon: DaemonSettings {
                host: host.into(),
                ..DaemonSettings::default()
            },
            groups: BTreeMap::new(),
            services: BTreeMap::new(),
            fleet: None,
        }
    }

    /// Takes `old`'s definition of every service that did not change, so that after a
    /// reload such a service's definition stays the one allocation its unit and pool
    /// already hold, instead of becoming two equal copies. O(services), as the diff is.
    pub fn share_unchanged(&mut self, old: &Config) {
        for (name, service) in &mut self.services {
            if let Some(before) = old.services.get(name)
                && before == service
            {
                *service = before.clone();
            }
        }
    }

    /// Whether `service` runs on this peer: no group, or its group's peer is `daemon.host`.
    pub fn is_served_here(&self, service: &Service) -> bool {
        match &service.group {
            None => true,
            Some(group) => self
                .groups
                .get(group)
                .is_some_and(|g| g.peer == self.daemon.host),
        }
    }
}

impl FleetSettings {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "/corral";
    /// The default lease TTL.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            host: String::new(),
            lease_recall_timeout: Duration::from_secs(5),
            upcall_expiry: Duration::from_secs(60),
            max_watches_per_client: 1024,
            max_leases_per_client: 256,
        }
    }
}

impl Default for Service {
    /// The defaults of every optional key; `exec` is the only required one.
    fn default() -> Self {
        Service {
            group: None,
            description: String::new(),
            exec: Vec::new(),
            service_type: ServiceType::Simple,
            autostart: true,
            pidfile: None,
            after: Vec::new(),
            environment: BTreeMap::new(),
            user: None,
            working_directory: PathBuf::from("/"),
            restart: RestartPolicy::OnFailure,
            restart_delay: Duration::from_millis(100),
            restart_delay_max: Duration::from_secs(30),
            start_limit_burst: 5,
            start_limit_interval: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            control_socket: None,
            frame_timeout: Duration::from_secs(30),
            upcall: false,
            methods: BTreeMap::new(),
            workers: Workers {
                max_active: 1,
                max_queued: 16,
            },
            recipes: BTreeMap::new(),
            cgroup_limits: CgroupLimits::default(),
            process_limits: ProcessLimits::default(),
            watchdog: None,
            on_failure: None,
            health: None,
        }
    }
}
