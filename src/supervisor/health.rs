//! Periodic health checks (`[services.X.health]`, nova's periodic tasks, Monit's checks).
//!
//! While a run is active (running, not paused) and served here, one task of its own runs
//! its checks: the first `interval` after the run became active, then one every `interval`
//! (a fixed grid, so checks do not drift by their own duration). The checks of a run are
//! one after the other, never two at once — one still running when the next is due makes
//! that one wait for the next point of the grid. The task reports each outcome here; it is
//! aborted (the check in flight killed with its process group) when the run stops, pauses
//! or stops being served, and started afresh when it resumes or its `[health]` changes.
//! Outcomes are tagged with the run and the task, so nothing of an earlier run or task
//! counts for a later one.
//!
//! `failures` failures in a row make the service `unhealthy`; with `action = "restart"` the
//! run then takes the stop path as a failure (`Result` = `unhealthy`, `LastError` naming
//! the check and its output's last line) and the `restart` policy decides what follows —
//! by default it is restarted, counted in `NRestarts`. A passing check makes it `healthy`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::actor::Supervisor;
use super::internal::Internal;
use super::unit::{Phase, StopReason};
use crate::config::duration::format_duration;
use crate::config::{HealthAction, HealthCheck, HealthProbe, Service};
use crate::error::CommandResult;
use crate::events::{Health, now_usec};
use crate::process::check;

/// How a `method = "…"` check calls a manager method of the service. The drivers live in
/// `methods` and need the control channels, which depend on the supervisor; so the daemon
/// hands them in ([`super::Handle::set_method_caller`]) instead of the supervisor naming
/// them.
pub trait MethodCaller: Send + Sync {
    fn call(
        &self,
        service: String,
        spec: Arc<Service>,
        method: String,
    ) -> Pin<Box<dyn Future<Output = CommandResult<String>> + Send>>;
}

/// One run's health checks.
#[derive(Debug, Default)]
pub struct HealthChecks {
    /// The task that runs the checks, while there is one.
    task: Option<AbortHandle>,
    /// Failed checks in a row.
    failures: u32,
    /// Tags the task's outcomes.
    seq: u64,
}

impl HealthChecks {
    /// Stops checking: the task, and the check in flight, are cancelled.
    pub fn cancel(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.seq += 1;
    }
}

impl Supervisor {
    /// Starts the checks of a run that is active and served here (again): a new task, whose
    /// first check is due one `interval` from now.
    pub(super) fn schedule_health(&mut self, name: &str) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let (spec, served) = (unit.spec.clone(), unit.served);
        let Some(check) = spec.health.clone() else {
            return;
        };
        let Phase::Running { run, paused } = &mut unit.phase else {
            return;
        };
        run.health.cancel();
        if *paused || !served {
            return;
        }
        let (tx, methods) = (self.internal_tx.clone(), self.methods.clone());
        let (name, run_id, seq) = (name.to_owned(), run.id, run.health.seq);
        let task = tokio::spawn(async move {
            let mut due = Instant::now() + check.interval;
            loop {
                tokio::time::sleep_until(due).await;
                let outcome = probe(&name, spec.clone(), &check, methods.clone()).await;
                let checked = Internal::HealthChecked {
                    name: name.clone(),
                    run: run_id,
                    seq,
                    outcome,
                };
                if tx.send(checked).is_err() {
                    return;
                }
                due = next_due(due, check.interval);
            }
        });
        run.health.task = Some(task.abort_handle());
    }

    /// No checks for the run of `name` until [`Supervisor::schedule_health`].
    pub(super) fn cancel_health(&mut self, name: &str) {
        if let Some(run) = self.units.get_mut(name).and_then(|u| u.run_mut()) {
            run.health.cancel();
        }
    }

    /// The definition changed on reload: a changed check starts over from unknown.
    pub(super) fn health_redefined(&mut self, name: &str) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if let Some(run) = unit.run_mut() {
            run.health.cancel();
            run.health.failures = 0;
            unit.health = Health::Unknown;
        }
        self.schedule_health(name);
        self.publish(name);
    }

    /// A check ended: record it, and act on `failures` in a row.
    pub(super) fn on_health_checked(
        &mut self,
        name: &str,
        run_id: u64,
        seq: u64,
        outcome: Result<(), String>,
    ) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let spec = unit.spec.clone();
        let Phase::Running { run, .. } = &mut unit.phase else {
            return;
        };
        let Some(check) = &spec.health else {
            return;
        };
        if run.id != run_id || run.health.seq != seq {
            return;
        }
        unit.last_health_check = now_usec();
        match outcome {
            Ok(()) => {
                if unit.health == Health::Unhealthy {
                    tracing::info!(service = name, "healthy again");
                }
                run.health.failures = 0;
                unit.health = Health::Healthy;
            }
            Err(detail) => {
                run.health.failures += 1;
                let failures = run.health.failures;
                tracing::debug!(service = name, failures, "health check failed: {detail}");
                if failures >= check.failures && unit.health != Health::Unhealthy {
                    unit.health = Health::Unhealthy;
                    unit.last_error = format!(
                        "{name}: health check {} failed {failures} time{} in a row; last: {detail}",
                        describe(&check.probe),
                        if failures == 1 { "" } else { "s" },
                    );
                    tracing::warn!(service = name, "{}", unit.last_error);
                    if check.action == HealthAction::Restart {
                        // Published first, so clients see `unhealthy` before the stop.
                        self.publish(name);
                        return self.begin_stop(name, StopReason::Unhealthy);
                    }
                }
            }
        }
        self.publish(name);
    }
}

/// Runs one check; `Err` says how it failed.
async fn probe(
    name: &str,
    spec: Arc<Service>,
    check: &HealthCheck,
    methods: Option<Arc<dyn MethodCaller>>,
) -> Result<(), String> {
    let method = match &check.probe {
        HealthProbe::Exec(argv) => return check::run(&spec, argv, check.timeout).await,
        HealthProbe::Method(method) => method.clone(),
    };
    let Some(methods) = methods else {
        return Err("manager methods cannot be called here (no method driver)".to_owned());
    };
    let call = methods.call(name.to_owned(), spec, method);
    match tokio::time::timeout(check.timeout, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(check::last_line(err.to_string().as_bytes()).unwrap_or_default()),
        Err(_) => Err(format!(
            "did not answer within {} (timeout)",
            format_duration(check.timeout)
        )),
    }
}

/// The next point of the grid after now (a check that ran past due points skips them).
fn next_due(last: Instant, interval: Duration) -> Instant {
    let now = Instant::now();
    let next = last + interval;
    if next > now {
        return next;
    }
    let behind = now.duration_since(next).as_nanos() / interval.as_nanos().max(1);
    next + interval.saturating_mul(u32::try_from(behind + 1).unwrap_or(u32::MAX))
}

/// `["/usr/bin/showmount", "-e", "localhost"]` or `method "ping"`, for messages.
fn describe(probe: &HealthProbe) -> String {
    match probe {
        HealthProbe::Exec(argv) => format!("{argv:?}"),
        HealthProbe::Method(method) => format!("method {method:?}"),
    }
}
