//! What the supervisor keeps in the state store, and what it does with it when corrald
//! starts again: each service's *desired state* (a client's `Start`/`Restart` records
//! `started`, `Stop` records `stopped`; it overrides `autostart` until the opposite call,
//! a `Revert`, or the service's removal), and the *run record* of each running service
//! (main PID with its start time, process group, cgroup), so that after corrald was killed
//! the services that survived it are adopted, not started a second time, and what is left
//! of those that did not is killed.
//!
//! The supervisor is the one owner of both facts; the store only makes them outlive it.

use std::collections::HashMap;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::actor::Supervisor;
use super::unit::{Phase, Run, StopReason};
use crate::process::cgroup::ServiceCgroup;
use crate::process::group;
use crate::process::procfs;
use crate::process::signal::signal_group;
use crate::store::{Desired, DesiredRecord, RunRecord, now_us};

/// What the supervisor gets back from the state store at start-up.
#[derive(Debug, Default)]
pub struct Durable {
    /// Service name → its desired state.
    pub desired: HashMap<String, DesiredRecord>,
    /// Service name → its run when the last corrald stopped or died.
    pub runs: HashMap<String, RunRecord>,
    /// What a corrald that re-executed into this one handed over (a live re-exec).
    pub inherited: Option<super::reexec::SupervisorState>,
}

impl Supervisor {
    /// A client asked for `name` to run (`Start`, `Restart`) or not (`Stop`).
    pub(super) fn record_desired(&mut self, name: &str, state: Desired, by: &str) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let record = DesiredRecord {
            state,
            since_us: now_us(),
            by: by.to_owned(),
        };
        if unit.desired.as_ref().map(|d| d.state) != Some(state) {
            self.settings.store.set_desired(name, state, by);
            unit.desired = Some(record);
        }
    }

    /// Forgets the desired state of `name`: it follows `autostart` again.
    pub(super) fn revert_desired(&mut self, name: &str) {
        if let Some(unit) = self.units.get_mut(name)
            && unit.desired.take().is_some()
        {
            self.settings.store.clear_desired(name);
        }
        self.publish(name);
    }

    /// Of `names` (services that start being served), those to start: a desired state
    /// says, else `autostart` does.
    pub(super) fn wanted_at_start(&self, names: Vec<String>) -> Vec<String> {
        names
            .into_iter()
            .filter(|name| {
                self.units
                    .get(name)
                    .is_some_and(|unit| match &unit.desired {
                        Some(record) => record.state == Desired::Started,
                        None => unit.spec.autostart,
                    })
            })
            .collect()
    }

    /// Writes the current run of `name` to the store, for re-adoption after a crash.
    pub(super) fn save_run(&self, name: &str) {
        let Some(unit) = self.units.get(name) else {
            return;
        };
        let Some(run) = unit.run() else {
            return;
        };
        // A forking launcher's run has no main PID yet; it is saved once it has one.
        let Some(start_time) = (run.main_pid > 1)
            .then(|| procfs::start_ticks(run.main_pid))
            .flatten()
        else {
            return;
        };
        let record = RunRecord {
            main_pid: run.main_pid,
            start_time,
            pgid: run.own_group.or(run.main_group).unwrap_or(0),
            cgroup: run
                .cgroup
                .as_ref()
                .map_or_else(String::new, |cgroup| cgroup.path().to_owned()),
            run_id: run.id,
            n_restarts: unit.n_restarts,
            extra: serde_json::json!({
                // As a string: JSON numbers lose the high bits of a u64 in some readers.
                "definition": unit.spec.process_fingerprint().to_string(),
                "main_group": run.main_group,
                "group_start": procfs::start_ticks(run.own_group.or(run.main_group).unwrap_or(0)),
            }),
        };
        self.settings.store.save_run(name, record);
    }

    /// A run is over: it needs no re-adoption.
    pub(super) fn clear_run(&self, name: &str) {
        self.settings.store.clear_run(name);
    }

    /// Before starting `name` afresh: adopts the run that survived the last corrald, if it
    /// still runs (`true`: started), else kills what is left of it so no second copy
    /// runs beside an orphan.
    /// With `restart_outdated`, a process that runs an older definition (the last corrald
    /// died in the middle of a reload that changed it) is adopted and then restarted on
    /// the current one.
    pub(super) fn recover(
        &mut self,
        name: &str,
        run_id: u64,
        now: Instant,
        restart_outdated: bool,
    ) -> bool {
        let Some(record) = self.recovered.remove(name) else {
            return false;
        };
        let cgroup = self.recorded_cgroup(name, &record);
        if !record.is_running() {
            kill_leftovers(name, &record, cgroup.as_ref());
            return false;
        }
        let main_group = record.extra["main_group"].as_u64().map(|g| g as u32);
        let own_group = (record.pgid > 1 && Some(record.pgid) != main_group).then_some(record.pgid);
        let Ok(watch) = crate::process::pidfd::MainWatch::open(record.main_pid) else {
            return false;
        };
        self.watch_main(name, run_id, watch);
        let watchdog = self.units.get(name).and_then(|unit| unit.spec.watchdog);
        let mut run = Run::new(run_id, record.main_pid, own_group, now, watchdog);
        run.main_group = main_group;
        // Its processes are found by its cgroup, so stop and kill reach every one.
        run.cgroup = cgroup;
        self.track(name, [Some(run.main_pid), run.own_group, run.main_group]);
        tracing::info!(
            service = name,
            pid = record.main_pid,
            "re-adopted: it kept running while corrald was down"
        );
        let unit = self.units.get_mut(name).expect("unit exists");
        unit.n_restarts = unit.n_restarts.max(record.n_restarts);
        unit.phase = Phase::Running { run, paused: false };
        let recorded = record.extra["definition"].as_str().map(str::to_owned);
        let current = unit.spec.process_fingerprint().to_string();
        self.save_run(name);
        self.now_running(name);
        self.settle_start(name, Ok(()));
        if restart_outdated && recorded.is_some_and(|recorded| recorded != current) {
            tracing::info!(
                service = name,
                "the adopted process runs an older definition; restarting it on the current one"
            );
            let unit = self.units.get_mut(name).expect("unit exists");
            unit.start_pending = true;
            self.begin_stop(name, StopReason::Requested);
        }
        self.publish(name);
        true
    }

    /// After start-up: what survived the last corrald but was not started again (no longer
    /// served here, stopped by request, removed from the configuration) is stopped, and
    /// desired states of services that no longer exist are forgotten.
    pub(super) fn settle_recovered(&mut self) {
        for unit in self.units.values_mut() {
            unit.taken_over = false;
        }
        // Units a re-executed corrald had that the configuration no longer defines.
        for (name, state) in std::mem::take(&mut self.inherited) {
            if let Some(record) = super::reexec::as_record(&state) {
                self.recovered.insert(name, record);
            }
        }
        let now = Instant::now();
        for (name, record) in std::mem::take(&mut self.recovered) {
            let known = self
                .units
                .get(&name)
                .is_some_and(|u| matches!(u.phase, Phase::Inactive { .. }));
            if known && record.is_running() {
                let run_id = self.new_run_id();
                self.recovered.insert(name.clone(), record);
                if self.recover(&name, run_id, now, false) {
                    tracing::info!(service = name, "stopping it: it is not to run here now");
                    self.begin_stop(&name, StopReason::Requested);
                }
            } else if !self.units.contains_key(&name) || !record.is_running() {
                let cgroup = self.recorded_cgroup(&name, &record);
                kill_leftovers(&name, &record, cgroup.as_ref());
                if let Some(cgroup) = cgroup {
                    remove_when_empty(cgroup);
                }
                self.clear_run(&name);
            }
        }
        for (name, _) in std::mem::take(&mut self.desired_unclaimed) {
            self.settings.store.clear_desired(&name);
        }
        self.kill_orphaned_cgroups();
    }

    /// The cgroup a run record names, if it is the service's cgroup in this mode.
    fn recorded_cgroup(&self, name: &str, record: &RunRecord) -> Option<ServiceCgroup> {
        self.cgroup_at(name, &record.cgroup)
    }

    /// `name`'s cgroup if a run recorded (or handed over) as being in `path` is in it: the
    /// service's cgroup in this mode, at that path (`""`: no cgroup).
    pub(super) fn cgroup_at(&self, name: &str, path: &str) -> Option<ServiceCgroup> {
        self.settings
            .cgroups
            .service(name)
            .filter(|cgroup| !path.is_empty() && cgroup.path() == path)
    }

    /// With cgroups, processes left by the last corrald are found even without a run
    /// record (a store that could not write): a service cgroup that holds processes but
    /// no current run is emptied and removed.
    fn kill_orphaned_cgroups(&self) {
        let in_use: Vec<&str> = self
            .units
            .values()
            .filter_map(|unit| unit.run()?.cgroup.as_ref())
            .map(ServiceCgroup::path)
            .collect();
        for cgroup in self.settings.cgroups.service_cgroups() {
            if in_use.contains(&cgroup.path()) || !cgroup.is_populated().unwrap_or(false) {
                continue;
            }
            tracing::warn!(
                "killing the processes left in {} by an earlier corrald: no service runs there now",
                cgroup.path()
            );
            let _ = cgroup.kill();
            remove_when_empty(cgroup);
        }
    }
}

/// Removes `cgroup` once the processes just killed in it are gone.
fn remove_when_empty(cgroup: ServiceCgroup) {
    tokio::spawn(async move {
        if cgroup.wait_empty().await.is_ok() {
            let _ = cgroup.remove();
        }
    });
}

/// Kills whatever is left of a run that corrald no longer tracks: everything in its cgroup,
/// else in its process group. The group is the run's when its leader is gone (Linux never
/// reuses a PID that still names a process group) or is the leader that was recorded; a
/// group led by a newer process that reused the number is left alone.
fn kill_leftovers(name: &str, record: &RunRecord, cgroup: Option<&ServiceCgroup>) {
    if let Some(cgroup) = cgroup {
        if cgroup.is_populated().unwrap_or(false) {
            tracing::warn!(
                service = name,
                "killing what is left of its last run in {}",
                cgroup.path()
            );
            let _ = cgroup.kill();
        }
        return;
    }
    let ours = match procfs::start_ticks(record.pgid) {
        None => true,
        Some(ticks) => record.extra["group_start"].as_u64() == Some(ticks),
    };
    if record.pgid > 1 && ours && group::has_members(record.pgid) {
        tracing::warn!(
            service = name,
            pgid = record.pgid,
            "killing what is left of its last run's process group"
        );
        let _ = signal_group(record.pgid, Signal::SIGKILL);
    }
    if record.is_running() {
        let _ = crate::process::signal::signal_main(record.main_pid, Signal::SIGKILL);
    }
}
