//! Periodic health checks (`[services.X.health]`, nova's periodic tasks, Monit's checks).
//!
//! A run's checks start `interval` after it becomes running and are due every `interval`
//! from then on (a fixed grid, so checks do not drift by their own duration). A check runs
//! only while the service is active (running, not paused) and served here, never two at
//! once for one service — one still running when the next is due makes that one wait for
//! the next grid point — and is cancelled (its process group killed) when the run stops
//! or pauses. Each check is a task of its own that reports its outcome here; its timer
//! and outcome are tagged with the run and a sequence number, so nothing of an earlier run
//! or check counts for a later one.
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
use super::watchdog::timer_at;
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
    /// The timer of the next check, or the check in flight; aborting a check kills its
    /// process group.
    task: Option<AbortHandle>,
    /// When the next check is due (the grid).
    next_due: Option<Instant>,
    /// Failed checks in a row.
    failures: u32,
    /// Tags the pending timer or check.
    seq: u64,
}

impl HealthChecks {
    /// Stops checking: the timer or the check in flight is cancelled.
    pub fn cancel(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.next_due = None;
        self.seq += 1;
    }
}

impl Supervisor {
    /// Starts the checks of a run that became running (or resumed): the first one is due
    /// one `interval` from now.
    pub(super) fn schedule_health(&mut self, name: &str) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let Some(interval) = unit.spec.health.as_ref().map(|h| h.interval) else {
            return;
        };
        let Phase::Running { run, paused: false } = &mut unit.phase else {
            return;
        };
        run.health.cancel();
        let due = Instant::now() + interval;
        run.health.next_due = Some(due);
        let event = Internal::HealthDue {
            name: name.to_owned(),
            run: run.id,
            seq: run.health.seq,
        };
        run.health.task = Some(timer_at(&self.internal_tx, due, event));
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

    /// A check is due: run it if the service is active and served here, else wait for
    /// the next grid point.
    pub(super) fn on_health_due(&mut self, name: &str, run_id: u64, seq: u64) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let (spec, served) = (unit.spec.clone(), unit.served);
        let Phase::Running { run, paused } = &mut unit.phase else {
            return;
        };
        if run.id != run_id || run.health.seq != seq {
            return;
        }
        let Some(check) = spec.health.clone() else {
            return run.health.cancel();
        };
        run.health.seq += 1;
        let seq = run.health.seq;
        let name = name.to_owned();
        if *paused || !served {
            let due = next_due(run.health.next_due, check.interval);
            run.health.next_due = Some(due);
            let event = Internal::HealthDue {
                name,
                run: run_id,
                seq,
            };
            run.health.task = Some(timer_at(&self.internal_tx, due, event));
            return;
        }
        let tx = self.internal_tx.clone();
        let methods = self.methods.clone();
        let task = tokio::spawn(async move {
            let outcome = probe(&name, spec, &check, methods).await;
            let _ = tx.send(Internal::HealthChecked {
                name,
                run: run_id,
                seq,
                outcome,
            });
        });
        run.health.task = Some(task.abort_handle());
    }

    /// A check ended: record it, act on `failures` in a row, and arm the next one.
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
        if run.id != run_id || run.health.seq != seq {
            return;
        }
        run.health.task = None;
        let Some(check) = &spec.health else {
            return;
        };
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
        let due = next_due(run.health.next_due, check.interval);
        run.health.next_due = Some(due);
        run.health.seq += 1;
        let event = Internal::HealthDue {
            name: name.to_owned(),
            run: run_id,
            seq: run.health.seq,
        };
        run.health.task = Some(timer_at(&self.internal_tx, due, event));
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
fn next_due(last: Option<Instant>, interval: Duration) -> Instant {
    let now = Instant::now();
    let Some(last) = last else {
        return now + interval;
    };
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
