//! The cgroup driver: each service runs in a cgroup v2 of its own, which tells corrald
//! exactly which processes are the service's, however they fork.
//!
//! # Modes
//!
//! [`Cgroups::setup`] decides once, at start-up, and the answer is a [`Mode`]:
//! - `Cgroups`: corrald has a writable cgroup v2 subtree. A run is over when its cgroup is
//!   empty ([`ServiceCgroup::wait_empty`]), a stop ends with [`ServiceCgroup::kill`]
//!   (nothing escapes by `setsid` or a double fork), pause is [`ServiceCgroup::freeze`],
//!   and `memory_max`, `tasks_max`, `cpu_weight` are written where their controller is
//!   enabled. Tracking, kill and freeze need no controller at all.
//! - `ProcessGroups { why }`: no cgroup v2 (or none corrald may write): services are
//!   tracked by process group as before, and every cgroup limit is reported unenforced.
//!
//! # Where the cgroups are
//!
//! The *base* is found by `detect`:
//! - Under systemd with `Delegate=yes`, the unit's own cgroup, e.g.
//!   `/system.slice/corral.service` (systemd marks it with the `trusted.delegate` xattr).
//!   corrald moves itself into the leaf `<base>/corrald`: cgroup v2's no-internal-process
//!   rule forbids a cgroup that hands controllers to its children to hold processes itself.
//!   After a re-exec corrald is in that leaf already and takes its parent as the base.
//! - Otherwise (`scripts/try-corral`, tests, a login shell, a unit without `Delegate=yes`)
//!   corrald's own cgroup is shared with processes that are not its own, or belongs to
//!   someone else. Moving those is not corrald's business, and dividing a cgroup that
//!   holds processes would leave its children without controllers; so corrald makes a
//!   private subtree `/corral/<instance>` below the v2 root (instance: its runtime
//!   directory, escaped, e.g. `run-corral`, so that corralds side by side never share a
//!   service cgroup) and stays where it was. `/corral` keeps them in one place.
//!
//! Below the base, every service's cgroup is `<base>/services/<name>.service` (the name
//! escaped like systemd's `cg_escape`). The `services` node keeps service cgroups apart
//! from corrald's leaf whatever the names, gives one place that lists them (re-adoption),
//! and is where a limit on all services together would go.
//!
//! The controllers corral uses (cpu, memory, pids) are enabled in `cgroup.subtree_control`
//! of each node from the top of the subtree down to `services`, where available. On a
//! hybrid host they may be bound to cgroup v1 and unavailable: the services still run,
//! and [`Cgroups::apply_limits`] names every limit it could not write and why.

mod detect;
mod events;
mod limits;
mod service;
#[cfg(test)]
mod tests;
mod tree;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::config::CgroupLimits;

pub use limits::{UnappliedLimit, show_bytes};
pub use service::ServiceCgroup;
use tree::Tree;

/// corrald's own leaf below a delegated base.
const LEAF: &str = "corrald";
/// The inner node holding the services' cgroups.
const SERVICES: &str = "services";
/// The controllers corral writes limits for.
const WANTED_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// How corrald tracks services' processes on this host (a Manager property).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Each service in a cgroup below `root` (corrald's base, a cgroup path), where
    /// `controllers` are enabled.
    Cgroups {
        root: String,
        controllers: Vec<String>,
    },
    /// Process groups, because of `why`.
    ProcessGroups { why: String },
}

impl Mode {
    /// One word for the mode: `cgroup` or `process-groups`.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Cgroups { .. } => "cgroup",
            Mode::ProcessGroups { .. } => "process-groups",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Cgroups { root, controllers } if controllers.is_empty() => {
                write!(f, "cgroup v2 below {root} (no controllers)")
            }
            Mode::Cgroups { root, controllers } => write!(
                f,
                "cgroup v2 below {root} (controllers: {})",
                controllers.join(" ")
            ),
            Mode::ProcessGroups { why } => write!(f, "process groups ({why})"),
        }
    }
}

/// A service's cgroup made ready for a run.
#[derive(Debug)]
pub struct Prepared {
    /// Its cgroup, for [`crate::process::SpawnRequest::cgroup`]; `None` in process-group
    /// mode.
    pub cgroup: Option<ServiceCgroup>,
    /// The configured limits this host does not enforce: for the bus and the journal.
    pub unapplied: Vec<UnappliedLimit>,
}

/// The cgroup driver as the supervisor holds it: cheap to clone, the same for every
/// service.
#[derive(Debug, Clone)]
pub struct Cgroups {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    tree: Option<Tree>,
}

impl Cgroups {
    /// Finds or makes corrald's subtree (see the module doc); `instance` names a private
    /// subtree ([`instance_name`] of the runtime directory). Never fails: without a
    /// usable cgroup v2 the mode is `ProcessGroups`, saying why. Logs what it decided.
    pub fn setup(instance: &str) -> Cgroups {
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let v1 = detect::v1_controllers(&proc_cgroup);
        let built =
            detect::find_base(instance).and_then(|base| tree::build(base, &v1, std::process::id()));
        let cgroups = match built {
            Ok(tree) => Cgroups::from_tree(tree),
            Err(why) => Cgroups::disabled(why),
        };
        cgroups.log_mode();
        cgroups
    }

    /// A private subtree at cgroup `path` below `mount` (the v2 mount): what `setup` makes
    /// outside systemd, at a place the caller chooses (tests, tools).
    pub fn at(mount: &Path, path: &str) -> Result<Cgroups, String> {
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let base = detect::Base {
            mount: mount.to_owned(),
            path: path.to_owned(),
            kind: detect::BaseKind::Private,
        };
        tree::build(
            base,
            &detect::v1_controllers(&proc_cgroup),
            std::process::id(),
        )
        .map(Cgroups::from_tree)
    }

    /// Process-group mode, because of `why`.
    pub fn disabled(why: impl Into<String>) -> Cgroups {
        let mode = Mode::ProcessGroups { why: why.into() };
        Cgroups {
            inner: Arc::new(Inner { mode, tree: None }),
        }
    }

    fn from_tree(tree: Tree) -> Cgroups {
        let mode = Mode::Cgroups {
            root: tree.base.path.clone(),
            controllers: tree.controllers.clone(),
        };
        Cgroups {
            inner: Arc::new(Inner {
                mode,
                tree: Some(tree),
            }),
        }
    }

    fn log_mode(&self) {
        tracing::info!("tracking services with {}", self.inner.mode);
        let Some(tree) = &self.inner.tree else {
            return;
        };
        for (controller, why) in &tree.missing {
            tracing::info!("cgroup controller {controller} unavailable: {why}");
        }
        if tree.base.kind == detect::BaseKind::Private && Path::new("/run/systemd/system").exists()
        {
            tracing::warn!(
                "corrald's own cgroup is not delegated to it, so its services run below {} \
                 instead of below corrald's unit; run corrald as corral.service (Delegate=yes)",
                tree.base.path
            );
        }
    }

    pub fn mode(&self) -> &Mode {
        &self.inner.mode
    }

    /// Where service `name`'s cgroup is (it may not exist yet); `None` in process-group
    /// mode.
    pub fn service(&self, name: &str) -> Option<ServiceCgroup> {
        let tree = self.inner.tree.as_ref()?;
        let dir_name = escape(&format!("{name}.service"));
        Some(ServiceCgroup::new(
            tree.services_dir.join(&dir_name),
            format!("{}/{dir_name}", tree.services_path),
        ))
    }

    /// Before a run of `name`: makes its cgroup and writes `limits`. Fails only when the
    /// cgroup cannot be made (a start failure); limits that cannot be enforced are
    /// reported in [`Prepared::unapplied`], and the service still runs.
    pub fn prepare(&self, name: &str, limits: &CgroupLimits) -> io::Result<Prepared> {
        let Some(cgroup) = self.service(name) else {
            let unapplied = self.apply_limits(None, limits);
            return Ok(Prepared {
                cgroup: None,
                unapplied,
            });
        };
        let fresh = cgroup.create().map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot create cgroup {}: {err}", cgroup.dir().display()),
            )
        })?;
        let unapplied = self.write_limits(&cgroup, limits, !fresh);
        Ok(Prepared {
            cgroup: Some(cgroup.made(fresh)),
            unapplied,
        })
    }

    /// Writes `limits` to `cgroup` (also while it runs: a reload that changes them takes
    /// effect at once) and returns the configured ones that are not enforced. With no
    /// cgroup (process-group mode), every configured limit is returned.
    pub fn apply_limits(
        &self,
        cgroup: Option<&ServiceCgroup>,
        limits: &CgroupLimits,
    ) -> Vec<UnappliedLimit> {
        match cgroup {
            Some(cgroup) => self.write_limits(cgroup, limits, true),
            None => limits::none_applied(limits, &self.without_cgroups()),
        }
    }

    /// The configured `limits` this host cannot enforce, known before the service has a
    /// cgroup (at definition, or while it does not run): every one in process-group mode,
    /// those of a missing controller in cgroup mode.
    pub fn unenforceable(&self, limits: &CgroupLimits) -> Vec<UnappliedLimit> {
        match &self.inner.tree {
            Some(tree) => limits::unenforceable(limits, &tree.controllers, &tree.missing),
            None => limits::none_applied(limits, &self.without_cgroups()),
        }
    }

    fn write_limits(
        &self,
        cgroup: &ServiceCgroup,
        limits: &CgroupLimits,
        reset_unset: bool,
    ) -> Vec<UnappliedLimit> {
        match &self.inner.tree {
            Some(tree) => limits::apply(
                cgroup.dir(),
                limits,
                &tree.controllers,
                &tree.missing,
                reset_unset,
            ),
            None => limits::none_applied(limits, &self.without_cgroups()),
        }
    }

    fn without_cgroups(&self) -> String {
        match &self.inner.mode {
            Mode::ProcessGroups { why } => format!("corrald runs without cgroups ({why})"),
            Mode::Cgroups { .. } => "the service has no cgroup".to_owned(),
        }
    }

    /// The service cgroups that exist now, e.g. left by a corrald before this one
    /// (re-adoption reads their [`ServiceCgroup::pids`]).
    pub fn service_cgroups(&self) -> Vec<ServiceCgroup> {
        let Some(tree) = &self.inner.tree else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(&tree.services_dir) else {
            return Vec::new();
        };
        let mut found: Vec<ServiceCgroup> = entries
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                Some(ServiceCgroup::new(
                    entry.path(),
                    format!("{}/{name}", tree.services_path),
                ))
            })
            .collect();
        found.sort_by(|a, b| a.path().cmp(b.path()));
        found
    }

    /// At shutdown, after the services stopped: removes the empty service cgroups and,
    /// outside systemd, the subtree corrald made. Returns the cgroups left because they
    /// still hold processes.
    pub fn release(&self) -> Vec<String> {
        let Some(tree) = &self.inner.tree else {
            return Vec::new();
        };
        tree::release(tree)
            .into_iter()
            .map(|dir| dir.display().to_string())
            .collect()
    }
}

/// The instance name of a private subtree: corrald's runtime directory as one cgroup name
/// (`/run/corral` → `run-corral`), so each corrald on a host has its own, and a restarted
/// one finds its predecessor's.
pub fn instance_name(runtime_dir: &Path) -> String {
    let text = runtime_dir.to_string_lossy();
    let joined: String = text
        .trim_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-') => c,
            _ => '_',
        })
        .collect();
    // Cgroup names are file names: at most 255 bytes. The end of a path tells more.
    let start = joined.len().saturating_sub(200);
    let name = if joined.is_empty() {
        "root"
    } else {
        &joined[start..]
    };
    escape(name)
}

/// `name` as a cgroup directory name that cannot collide with a kernel interface file,
/// the way systemd's `cg_escape` does it: names starting with `_` or `.`, starting with
/// `cgroup.`, or whose part before a `.` is a controller name, get a `_` prefix.
pub fn escape(name: &str) -> String {
    const CONTROLLERS: [&str; 18] = [
        "cgroup",
        "cpu",
        "cpuacct",
        "cpuset",
        "io",
        "blkio",
        "memory",
        "devices",
        "pids",
        "freezer",
        "net_cls",
        "net_prio",
        "perf_event",
        "hugetlb",
        "rdma",
        "misc",
        "dmem",
        "debug",
    ];
    let clashes = name.is_empty()
        || name.starts_with(['_', '.'])
        || name.starts_with("cgroup.")
        || matches!(name, "notify_on_release" | "release_agent" | "tasks")
        // The part before the first dot or before the last one: "memory.max.service"
        // and "cpu.service" both look like interface files.
        || [name.split_once('.'), name.rsplit_once('.')]
            .into_iter()
            .flatten()
            .any(|(prefix, _)| CONTROLLERS.contains(&prefix));
    if clashes {
        format!("_{name}")
    } else {
        name.to_owned()
    }
}

/// The reasons each wanted controller is missing, for tests of the reports.
#[cfg(test)]
impl Cgroups {
    fn missing(&self) -> std::collections::BTreeMap<String, String> {
        self.inner
            .tree
            .as_ref()
            .map(|t| t.missing.clone())
            .unwrap_or_default()
    }
}
