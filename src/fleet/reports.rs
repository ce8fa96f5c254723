//! Host reports (nova's `report_state`): what each corrald publishes about itself under
//! `hosts/<host>`, how the reports of all hosts are read back, and how configuration drift
//! between hosts is found.
//!
//! A report is JSON so that `etcdctl get --prefix /corral/hosts/` is readable by a person.
//! Reading is lenient in one way only: a value that is not a report (garbage, an older or
//! newer format) makes that host *unreadable* in the listing, never an error of the whole.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What one host says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    /// corral's version on that host.
    pub version: String,
    /// Its `ConfigGeneration` (bumped by every applied reload).
    pub config_generation: u64,
    /// [`config_hash`] of its configuration: equal on hosts that read the same groups and
    /// services.
    pub config_hash: String,
    /// Each service's state, by name.
    pub services: BTreeMap<String, ServiceReport>,
}

/// One service in a [`HostReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub group: Option<String>,
    pub active_state: String,
    pub sub_state: String,
}

impl HostReport {
    /// The report of a host that has applied no configuration yet: what a host publishes
    /// the moment it joins, so that it counts as alive before its first reload finished.
    pub fn empty() -> HostReport {
        HostReport {
            version: crate::VERSION.to_owned(),
            config_generation: 0,
            config_hash: String::new(),
            services: BTreeMap::new(),
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a report always serializes")
    }

    /// Parses a stored report; the error says what is wrong with it, for the listing.
    pub(crate) fn parse(value: &[u8]) -> Result<HostReport, String> {
        serde_json::from_slice(value).map_err(|error| format!("unreadable report: {error}"))
    }
}

/// A stable fingerprint of what a host runs: its groups and services as this version of
/// corral reads them. `[daemon]` and `[fleet]` are left out, since they differ from host to
/// host by design (the host name, local endpoints). FNV-1a over the model's `Debug` text:
/// the same for the same configuration read by the same corral version, which is the
/// comparison drift detection makes (hosts on another version are reported as such).
pub fn config_hash(config: &Config) -> String {
    let text = format!("{:?}{:?}", config.groups, config.services);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// One host as `hosts()` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub host: String,
    /// Its report key exists, so its lease is live.
    pub alive: bool,
    /// What it reported; `None` when it is not alive or its report is unreadable.
    pub report: Option<HostReport>,
    /// Why the report could not be read, for a report that exists but is not one.
    pub problem: Option<String>,
    /// The groups whose owner key this host holds.
    pub serving: Vec<String>,
    /// Its configuration hash differs from the one most hosts report.
    pub drift: bool,
}

/// The reports as stored: a host's value, parsed or not.
pub(crate) type StoredReports = BTreeMap<String, Result<HostReport, String>>;

/// Lists the hosts: every host with a report, plus every host that the configuration or
/// the fleet names (`peers`, placements, owners) without one, as not alive.
pub(crate) fn list_hosts(
    reports: &StoredReports,
    known: &BTreeSet<String>,
    owners: &BTreeMap<String, String>,
) -> Vec<HostInfo> {
    let majority = majority_hash(reports);
    let names: BTreeSet<&String> = reports.keys().chain(known).collect();
    names
        .into_iter()
        .map(|host| {
            let stored = reports.get(host);
            let report = stored.and_then(|r| r.as_ref().ok()).cloned();
            let drift = match (&report, &majority) {
                (Some(report), Some(majority)) => &report.config_hash != majority,
                (Some(_), None) => reports.len() > 1,
                _ => false,
            };
            HostInfo {
                host: host.clone(),
                alive: stored.is_some(),
                problem: stored.and_then(|r| r.as_ref().err()).cloned(),
                serving: owners
                    .iter()
                    .filter(|(_, owner)| *owner == host)
                    .map(|(group, _)| group.clone())
                    .collect(),
                report,
                drift,
            }
        })
        .collect()
}

/// The configuration hash reported by more readable reports than any other; `None` when
/// two hashes tie for first (then no hash is "the others'", and every host differing from
/// some other is marked).
fn majority_hash(reports: &StoredReports) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for report in reports.values().flatten() {
        *counts.entry(report.config_hash.as_str()).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    let mut leaders = counts.iter().filter(|(_, count)| **count == best);
    let (hash, _) = leaders.next()?;
    leaders.next().is_none().then(|| hash.to_string())
}

/// The one report write this host keeps in flight, and the newest report waiting behind
/// it: a burst of service state changes becomes one write per etcd round trip.
#[derive(Debug, Default)]
pub(crate) struct ReportSlot {
    /// The newest report the applier gave.
    latest: Option<HostReport>,
    /// What etcd holds under the current lease (`None` after a new lease: nothing yet).
    written: Option<HostReport>,
    /// A write is in flight.
    in_flight: bool,
}

impl ReportSlot {
    /// Records the applier's newest report.
    pub fn set(&mut self, report: HostReport) {
        self.latest = Some(report);
    }

    /// A new lease holds nothing yet: the report must be written again.
    pub fn forget_written(&mut self) {
        self.written = None;
    }

    /// The report to write now, if one is due and none is in flight; marks it in flight.
    pub fn next_write(&mut self) -> Option<HostReport> {
        if self.in_flight {
            return None;
        }
        let due = self.latest.clone().unwrap_or_else(HostReport::empty);
        if self.written.as_ref() == Some(&due) {
            return None;
        }
        self.in_flight = true;
        Some(due)
    }

    /// The write of `report` finished (`ok`) or failed.
    pub fn finished(&mut self, report: HostReport, ok: bool) {
        self.in_flight = false;
        if ok {
            self.written = Some(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(hash: &str) -> HostReport {
        HostReport {
            config_hash: hash.into(),
            ..HostReport::empty()
        }
    }

    #[test]
    fn garbage_is_unreadable_not_fatal() {
        assert!(
            HostReport::parse(b"{not json")
                .unwrap_err()
                .starts_with("unreadable report: ")
        );
        assert!(HostReport::parse(b"{\"version\": 5}").is_err());
        let good = report("h");
        assert_eq!(HostReport::parse(&good.to_json()), Ok(good));
    }

    #[test]
    fn drift_marks_the_minority_and_known_hosts_are_listed_dead() {
        let reports: StoredReports = BTreeMap::from([
            ("a".into(), Ok(report("x"))),
            ("b".into(), Ok(report("x"))),
            ("c".into(), Ok(report("y"))),
            ("d".into(), Err("unreadable report: eof".into())),
        ]);
        let known = BTreeSet::from(["e".to_string(), "a".to_string()]);
        let owners = BTreeMap::from([("g".to_string(), "b".to_string())]);
        let hosts = list_hosts(&reports, &known, &owners);
        let summary: Vec<(&str, bool, bool, bool)> = hosts
            .iter()
            .map(|h| (h.host.as_str(), h.alive, h.report.is_some(), h.drift))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", true, true, false),
                ("b", true, true, false),
                ("c", true, true, true),
                ("d", true, false, false),
                ("e", false, false, false),
            ]
        );
        assert_eq!(hosts[1].serving, ["g"]);
        assert_eq!(hosts[3].problem.as_deref(), Some("unreadable report: eof"));
    }

    #[test]
    fn a_tie_marks_everyone_who_differs() {
        let reports: StoredReports =
            BTreeMap::from([("a".into(), Ok(report("x"))), ("b".into(), Ok(report("y")))]);
        let hosts = list_hosts(&reports, &BTreeSet::new(), &BTreeMap::new());
        assert!(hosts.iter().all(|h| h.drift));
        let one: StoredReports = BTreeMap::from([("a".into(), Ok(report("x")))]);
        assert!(!list_hosts(&one, &BTreeSet::new(), &BTreeMap::new())[0].drift);
    }

    #[test]
    fn config_hash_ignores_the_host_and_sees_services() {
        let a = Config::empty("a");
        let b = Config::empty("b");
        assert_eq!(config_hash(&a), config_hash(&b));
        let mut c = Config::empty("a");
        c.services.insert(
            "s".into(),
            crate::config::Service {
                exec: vec!["/bin/s".into()],
                ..Default::default()
            }
            .into(),
        );
        assert_ne!(config_hash(&a), config_hash(&c));
        assert_eq!(config_hash(&a).len(), 16);
    }

    #[test]
    fn report_writes_are_coalesced() {
        let mut slot = ReportSlot::default();
        // Nothing given yet: the empty report is due, so the host shows up alive.
        let first = slot.next_write().unwrap();
        assert_eq!(first, HostReport::empty());
        slot.set(report("1"));
        slot.set(report("2"));
        assert_eq!(slot.next_write(), None, "one write in flight at a time");
        slot.finished(first, true);
        let second = slot.next_write().unwrap();
        assert_eq!(second.config_hash, "2", "only the newest is written");
        slot.finished(second, true);
        assert_eq!(slot.next_write(), None, "unchanged: nothing to write");
        slot.forget_written();
        assert_eq!(slot.next_write().unwrap().config_hash, "2");
    }
}
