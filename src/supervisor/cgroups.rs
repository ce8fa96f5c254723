//! What the supervisor does with a run's cgroup (cgroup mode, `process::cgroup`): makes it
//! and writes the limits before each run, reports the limits this host cannot enforce,
//! rewrites them when a reload changes them, empties it when the main process is gone,
//! reports an OOM kill and removes it when the run is over, and freezes it for `Pause`.
//! Runs inside the supervisor task; every wait on the cgroup is a task of its own that
//! reports back with an [`Internal`] event.

use std::process::ExitStatus;
use std::time::Duration;

use super::Reply;
use super::actor::Supervisor;
use super::internal::Internal;
use super::unit::Phase;
use crate::config::{Max, Service};
use crate::error::{CommandError, CommandResult};
use crate::process::cgroup::{ServiceCgroup, UnappliedLimit, show_bytes};

/// How long `Pause` and `Resume` wait for the kernel to report the cgroup frozen or
/// thawed. A process in an uninterruptible sleep (D state) holds a freeze up until it
/// wakes; past this the pause is undone and fails.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

impl Supervisor {
    /// Before a run of `name`: its cgroup made, its limits written, what is not enforced
    /// reported; anything left in the cgroup from before (a corrald killed meanwhile) is
    /// killed, so no second copy runs beside it. `Ok(None)` in process-group mode; `Err`
    /// (a start failure) when the cgroup cannot be made.
    pub(super) fn prepare_cgroup(
        &mut self,
        name: &str,
        spec: &Service,
    ) -> Result<Option<ServiceCgroup>, String> {
        let prepared = self
            .settings
            .cgroups
            .prepare(name, &spec.cgroup_limits)
            .map_err(|err| err.to_string())?;
        self.set_unenforced(name, &prepared.unapplied);
        if let Some(cgroup) = &prepared.cgroup
            && cgroup.is_populated().unwrap_or(false)
        {
            tracing::warn!(
                service = name,
                "killing the processes left in {} by an earlier run",
                cgroup.path()
            );
            let _ = cgroup.kill();
        }
        Ok(prepared.cgroup)
    }

    /// Records (for `UnenforcedLimits`) and logs the limits of `name` that are not
    /// enforced.
    pub(super) fn set_unenforced(&mut self, name: &str, unapplied: &[UnappliedLimit]) {
        for limit in unapplied {
            tracing::warn!(service = name, "{limit}");
        }
        if let Some(unit) = self.units.get_mut(name) {
            unit.unenforced = unapplied.iter().map(ToString::to_string).collect();
        }
    }

    /// A reload changed the cgroup limits of `name`: written to its running cgroup at
    /// once (no restart), and what is not enforced published again.
    pub(super) fn limits_changed(&mut self, name: &str) {
        let Some(unit) = self.units.get(name) else {
            return;
        };
        let limits = unit.spec.cgroup_limits;
        let cgroups = &self.settings.cgroups;
        let unapplied = match unit.run() {
            Some(run) => cgroups.apply_limits(run.cgroup.as_ref(), &limits),
            None => cgroups.unenforceable(&limits),
        };
        if let Some(cgroup) = unit.run().and_then(|run| run.cgroup.as_ref()) {
            tracing::info!(service = name, "new limits written to {}", cgroup.path());
        }
        self.set_unenforced(name, &unapplied);
        self.publish(name);
    }

    /// The cgroup of `name` if process `pid` is in it (a daemon adopted from its pidfile
    /// that a corrald before this one started).
    pub(super) fn cgroup_holding(&self, name: &str, pid: u32) -> Option<ServiceCgroup> {
        let cgroup = self.settings.cgroups.service(name)?;
        cgroup.pids().ok()?.contains(&pid).then_some(cgroup)
    }

    /// The main process of a run with a cgroup is gone: whatever is left in the cgroup is
    /// killed (`cgroup.kill`: nothing escapes), and the run is over once it is empty.
    pub(super) fn empty_cgroup(
        &mut self,
        name: &str,
        run_id: u64,
        status: Option<ExitStatus>,
        cgroup: ServiceCgroup,
    ) {
        match cgroup.is_populated() {
            Ok(false) => return self.on_run_over(name, run_id, status),
            Ok(true) => {}
            Err(err) => tracing::warn!(service = name, "cannot read {}: {err}", cgroup.path()),
        }
        if let Err(err) = cgroup.kill() {
            tracing::warn!(service = name, "cannot kill {}: {err}", cgroup.path());
        }
        let tx = self.internal_tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            if let Err(err) = cgroup.wait_empty().await {
                tracing::warn!(
                    service = name,
                    "waiting for {} to empty: {err}",
                    cgroup.path()
                );
            }
            let _ = tx.send(Internal::GroupEmptied {
                name,
                run: run_id,
                status,
            });
        });
    }

    /// `Pause` (`freeze`) or `Resume` of a running service with a cgroup: the cgroup
    /// freezer, replied to once the kernel reports it done. Hands `reply` back when the
    /// service has no cgroup to freeze (process groups: SIGSTOP and SIGCONT) or no run.
    pub(super) fn freeze_unit(&mut self, name: &str, freeze: bool, reply: Reply) -> Option<Reply> {
        let Some(Phase::Running { run, paused }) = self.units.get(name).map(|u| &u.phase) else {
            return Some(reply);
        };
        let Some(cgroup) = run.cgroup.clone() else {
            return Some(reply);
        };
        if *paused == freeze {
            let _ = reply.send(Ok(()));
            return None;
        }
        let (tx, run_id, name) = (self.internal_tx.clone(), run.id, name.to_owned());
        tokio::spawn(async move {
            let result = change_freezer(&name, &cgroup, freeze).await;
            let _ = tx.send(Internal::Frozen {
                name,
                run: run_id,
                result,
                reply,
            });
        });
        None
    }

    /// A freeze or thaw of `name`'s cgroup ended: `Paused` is what the kernel says now.
    pub(super) fn on_frozen(
        &mut self,
        name: &str,
        run_id: u64,
        result: CommandResult,
        reply: Reply,
    ) {
        if let Some(unit) = self.units.get_mut(name) {
            match &mut unit.phase {
                Phase::Running { run, paused } if run.id == run_id => {
                    if let Some(cgroup) = &run.cgroup {
                        *paused = cgroup.is_frozen().unwrap_or(*paused);
                    }
                }
                // A stop began meanwhile and may have found it not frozen yet.
                Phase::Stopping { run, .. } if run.id == run_id => {
                    if let Some(cgroup) = &run.cgroup
                        && cgroup.is_frozen().unwrap_or(false)
                    {
                        thaw_in_background(cgroup.clone());
                    }
                }
                _ => {}
            }
        }
        self.publish(name);
        let _ = reply.send(result);
    }
}

/// Freezes or thaws `cgroup`, bounded by [`FREEZE_TIMEOUT`]; a freeze that times out is
/// undone.
async fn change_freezer(name: &str, cgroup: &ServiceCgroup, freeze: bool) -> CommandResult {
    let done = if freeze {
        tokio::time::timeout(FREEZE_TIMEOUT, cgroup.freeze()).await
    } else {
        tokio::time::timeout(FREEZE_TIMEOUT, cgroup.thaw()).await
    };
    let verb = if freeze { "freeze" } else { "thaw" };
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(CommandError::MethodFailed(format!(
            "{name}: cannot {verb} its cgroup {}: {err}",
            cgroup.path()
        ))),
        Err(_) => {
            if freeze {
                let _ = tokio::time::timeout(FREEZE_TIMEOUT, cgroup.thaw()).await;
            }
            Err(CommandError::Timeout(format!(
                "{name}: its cgroup {} did not {verb} within {FREEZE_TIMEOUT:?}: a process in \
                 an uninterruptible sleep (state D in /proc/PID/stat) holds it up; {}",
                cgroup.path(),
                if freeze {
                    "it was left running"
                } else {
                    "it thaws once that process wakes"
                }
            )))
        }
    }
}

/// Thaws a frozen cgroup so that its processes can act on the stop signal; the stop does
/// not wait for it (its timeout ends with `cgroup.kill`, which kills frozen processes too).
pub(super) fn thaw_in_background(cgroup: ServiceCgroup) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(FREEZE_TIMEOUT, cgroup.thaw()).await;
    });
}

/// A run with a cgroup is over and the cgroup is empty: says whether the kernel's OOM
/// killer ended a process of it (for `LastError`), and removes it so that the next run
/// starts with a fresh one (and an OOM count of 0).
pub(super) fn finish_cgroup(name: &str, cgroup: &ServiceCgroup, spec: &Service) -> Option<String> {
    let oom = cgroup.oom_kills().filter(|&kills| kills > 0).map(|kills| {
        let limit = match spec.cgroup_limits.memory_max {
            Some(Max::Value(bytes)) => format!("memory_max = {}", show_bytes(bytes)),
            Some(Max::Infinity) => "memory_max = infinity".to_owned(),
            None => "no memory_max: the host ran out of memory".to_owned(),
        };
        let what = if kills == 1 {
            "a process".to_owned()
        } else {
            format!("{kills} processes")
        };
        format!("{what} killed by the kernel's OOM killer ({limit})")
    });
    if let Err(err) = cgroup.remove() {
        tracing::warn!(service = name, "cannot remove {}: {err}", cgroup.path());
    }
    oom
}
