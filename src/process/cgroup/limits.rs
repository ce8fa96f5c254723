//! Writing a service's cgroup limits (`memory_max` → `memory.max`, `tasks_max` →
//! `pids.max`, `cpu_weight` → `cpu.weight`) and reporting each one that could not be
//! enforced, with the reason — for the bus and the journal; never silently dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::config::{CgroupLimits, Max};

/// A configured limit that this host does not enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnappliedLimit {
    /// The configuration key: `memory_max`, `tasks_max`, `cpu_weight`.
    pub key: &'static str,
    /// The value as configured ("512M", "infinity", "100").
    pub value: String,
    /// Why, and what would make it work.
    pub reason: String,
}

impl fmt::Display for UnappliedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} is not enforced: {}",
            self.key, self.value, self.reason
        )
    }
}

/// One limit as its cgroup file takes it.
struct Setting {
    key: &'static str,
    controller: &'static str,
    file: &'static str,
    /// What the file gets: the configured value, or the kernel's default when unset (so a
    /// limit removed by a reload is lifted from a running service).
    written: String,
    /// The configured value, for the report; `None` when unset (nothing to report).
    configured: Option<String>,
}

fn settings(limits: &CgroupLimits) -> [Setting; 3] {
    let max = |value: Option<Max>, show: fn(u64) -> String| match value {
        None => ("max".to_owned(), None),
        Some(Max::Infinity) => ("max".to_owned(), Some("infinity".to_owned())),
        Some(Max::Value(n)) => (n.to_string(), Some(show(n))),
    };
    let (memory, memory_shown) = max(limits.memory_max, show_bytes);
    let (tasks, tasks_shown) = max(limits.tasks_max, |n| n.to_string());
    [
        Setting {
            key: "memory_max",
            controller: "memory",
            file: "memory.max",
            written: memory,
            configured: memory_shown,
        },
        Setting {
            key: "tasks_max",
            controller: "pids",
            file: "pids.max",
            written: tasks,
            configured: tasks_shown,
        },
        Setting {
            key: "cpu_weight",
            controller: "cpu",
            file: "cpu.weight",
            written: limits.cpu_weight.unwrap_or(100).to_string(),
            configured: limits.cpu_weight.map(|w| w.to_string()),
        },
    ]
}

/// Writes `limits` into the cgroup at `dir`, whose enabled controllers are `enabled`;
/// `missing` says why each other controller is not. Unset limits are written as the
/// kernel's default only with `reset_unset` (a cgroup that may carry an earlier value; a
/// fresh one has the defaults). Returns the configured limits that are not enforced.
pub(crate) fn apply(
    dir: &Path,
    limits: &CgroupLimits,
    enabled: &[String],
    missing: &BTreeMap<String, String>,
    reset_unset: bool,
) -> Vec<UnappliedLimit> {
    let mut unapplied = Vec::new();
    for setting in settings(limits) {
        if setting.configured.is_none() && !reset_unset {
            continue;
        }
        let reason = if enabled.iter().any(|c| c == setting.controller) {
            match std::fs::write(dir.join(setting.file), &setting.written) {
                Ok(()) => continue,
                Err(err) => format!(
                    "writing {:?} to {} failed: {err}",
                    setting.written,
                    dir.join(setting.file).display()
                ),
            }
        } else {
            no_controller(setting.controller, missing)
        };
        if let Some(value) = setting.configured {
            unapplied.push(UnappliedLimit {
                key: setting.key,
                value,
                reason,
            });
        }
    }
    unapplied
}

/// Why a limit of `controller` is not enforced, when the controller is not enabled.
fn no_controller(controller: &str, missing: &BTreeMap<String, String>) -> String {
    let why = missing
        .get(controller)
        .map_or("it is not enabled", String::as_str);
    format!("the {controller} controller is not available to corrald's cgroups: {why}")
}

/// The configured limits whose controller is not among `enabled`: what [`apply`] would
/// report for a cgroup that does not exist yet, without writing anything.
pub(crate) fn unenforceable(
    limits: &CgroupLimits,
    enabled: &[String],
    missing: &BTreeMap<String, String>,
) -> Vec<UnappliedLimit> {
    settings(limits)
        .into_iter()
        .filter(|setting| !enabled.iter().any(|c| c == setting.controller))
        .filter_map(|setting| {
            Some(UnappliedLimit {
                key: setting.key,
                value: setting.configured?,
                reason: no_controller(setting.controller, missing),
            })
        })
        .collect()
}

/// Every configured limit, each with `reason`: for a host without cgroups.
pub(crate) fn none_applied(limits: &CgroupLimits, reason: &str) -> Vec<UnappliedLimit> {
    settings(limits)
        .into_iter()
        .filter_map(|setting| {
            Some(UnappliedLimit {
                key: setting.key,
                value: setting.configured?,
                reason: reason.to_owned(),
            })
        })
        .collect()
}

/// Bytes the way the configuration writes them: "512M" when exact, else the number.
pub fn show_bytes(n: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_as_configured() {
        assert_eq!(show_bytes(512 << 20), "512M");
        assert_eq!(show_bytes(1 << 30), "1G");
        assert_eq!(show_bytes(3 << 40), "3T");
        assert_eq!(show_bytes(1536), "1536");
        assert_eq!(show_bytes(1025), "1025");
    }

    #[test]
    fn only_configured_limits_are_reported() {
        let limits = CgroupLimits {
            memory_max: Some(Max::Value(512 << 20)),
            tasks_max: None,
            cpu_weight: Some(50),
        };
        let report = none_applied(&limits, "no cgroups here");
        let shown: Vec<String> = report.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "memory_max = 512M is not enforced: no cgroups here",
                "cpu_weight = 50 is not enforced: no cgroups here"
            ]
        );
        assert!(none_applied(&CgroupLimits::default(), "x").is_empty());
    }

    #[test]
    fn enabled_controllers_get_their_files_written() {
        // A directory standing in for a cgroup whose controllers are all enabled.
        let dir = tempfile::tempdir().unwrap();
        let limits = CgroupLimits {
            memory_max: Some(Max::Infinity),
            tasks_max: Some(Max::Value(64)),
            cpu_weight: None,
        };
        let enabled = ["cpu", "memory", "pids"].map(String::from);
        assert!(apply(dir.path(), &limits, &enabled, &BTreeMap::new(), false).is_empty());
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(read("memory.max"), "max");
        assert_eq!(read("pids.max"), "64");
        assert!(
            !dir.path().join("cpu.weight").exists(),
            "unset, fresh: left alone"
        );
        assert!(apply(dir.path(), &limits, &enabled, &BTreeMap::new(), true).is_empty());
        assert_eq!(
            read("cpu.weight"),
            "100",
            "unset, reset: the kernel's default"
        );
    }

    #[test]
    fn a_missing_controller_is_reported_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CgroupLimits {
            memory_max: Some(Max::Value(1 << 30)),
            tasks_max: Some(Max::Infinity),
            cpu_weight: None,
        };
        let missing = BTreeMap::from([(
            "memory".to_owned(),
            "it is bound to cgroup v1 on this host".to_owned(),
        )]);
        let report = apply(dir.path(), &limits, &["pids".to_owned()], &missing, true);
        assert_eq!(report.len(), 1, "{report:?}");
        assert_eq!(
            report[0].to_string(),
            "memory_max = 1G is not enforced: the memory controller is not available to \
             corrald's cgroups: it is bound to cgroup v1 on this host"
        );
        assert!(!dir.path().join("memory.max").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pids.max")).unwrap(),
            "max"
        );
        assert_eq!(
            unenforceable(&limits, &["pids".to_owned()], &missing),
            report,
            "known before any cgroup is made"
        );
    }
}
