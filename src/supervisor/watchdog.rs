//! The watchdog of a service (systemd's `WatchdogSec=`) and the other timing messages of
//! sd_notify. Once a run is running, its processes must send `WATCHDOG=1` at least every
//! `watchdog`; a miss — or `WATCHDOG=trigger` — sends SIGABRT (a hung daemon leaves a
//! core dump showing where) and takes the stop path (`stop_timeout`, then SIGKILL); the
//! run ends as a failure (`Result` = `watchdog`) and the `restart` policy applies.
//! `WATCHDOG_USEC=` changes the timeout of the current run (0 turns it off), and
//! `EXTEND_TIMEOUT_USEC=` lets a start or stop in progress (or a running service's
//! watchdog) take that much longer from now; it never shortens anything.
//!
//! The watchdog is armed when the run becomes running (systemd arms it after start-up
//! too: `start_timeout` covers the start) and suspended while it is paused (a stopped
//! process cannot ping). One timer per run, re-armed lazily: a ping only moves the
//! deadline; the timer, when it fires, waits out the rest if the deadline moved. So a
//! service that pings every second costs a field write per ping, not a task.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::actor::Supervisor;
use super::internal::Internal;
use super::unit::{Phase, StopReason, Timer};
use crate::config::duration::format_duration;

/// One run's watchdog.
#[derive(Debug)]
pub struct Watchdog {
    /// The timeout: the configured `watchdog`, or what `WATCHDOG_USEC=` said (`None`: off).
    timeout: Option<Duration>,
    /// When it is missed, while armed.
    deadline: Option<Instant>,
    /// The timer task and when it fires (never later than `deadline`).
    timer: Option<(AbortHandle, Instant)>,
    /// Tags the timer's event, so the event of a timer cancelled too late is ignored.
    seq: u64,
}

impl Watchdog {
    pub fn new(timeout: Option<Duration>) -> Watchdog {
        Watchdog {
            timeout,
            deadline: None,
            timer: None,
            seq: 0,
        }
    }

    /// Stops watching (the run is stopping, over, or paused); the timeout is kept.
    pub fn disarm(&mut self) {
        self.deadline = None;
        if let Some((timer, _)) = self.timer.take() {
            timer.abort();
        }
    }

    /// Sets the deadline and makes sure a timer fires by then.
    fn arm(&mut self, deadline: Instant, wake: impl FnOnce(u64) -> Internal, tx: &Sender) {
        self.deadline = Some(deadline);
        if self.timer.as_ref().is_some_and(|&(_, at)| at <= deadline) {
            return; // It fires earlier and will wait out the rest.
        }
        if let Some((timer, _)) = self.timer.take() {
            timer.abort();
        }
        self.seq += 1;
        self.timer = Some((timer_at(tx, deadline, wake(self.seq)), deadline));
    }
}

type Sender = mpsc::UnboundedSender<Internal>;

/// Sends `event` to the supervisor at `at`; abort the handle to cancel.
pub(super) fn timer_at(tx: &Sender, at: Instant, event: Internal) -> AbortHandle {
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let _ = tx.send(event);
    })
    .abort_handle()
}

impl Supervisor {
    /// The run of `name` just became running: arm its watchdog, schedule its checks.
    pub(super) fn now_running(&mut self, name: &str) {
        self.arm_watchdog(name, None);
        self.schedule_health(name);
    }

    /// (Re-)arms the watchdog of a running, unpaused run for its whole timeout from now —
    /// or, with `at_least`, only if that moves the deadline later.
    pub(super) fn arm_watchdog(&mut self, name: &str, at_least: Option<Duration>) {
        let tx = &self.internal_tx;
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let Phase::Running { run, paused: false } = &mut unit.phase else {
            return;
        };
        let now = Instant::now();
        let deadline = match (at_least, run.watchdog.timeout) {
            (None, Some(timeout)) => now + timeout,
            (Some(extension), Some(_)) => match run.watchdog.deadline {
                Some(deadline) if deadline >= now + extension => return,
                Some(_) => now + extension,
                None => return, // Not armed (paused, or off): nothing to extend.
            },
            (_, None) => return run.watchdog.disarm(),
        };
        let (name, run_id) = (name.to_owned(), run.id);
        run.watchdog.arm(
            deadline,
            |seq| Internal::WatchdogDue {
                name,
                run: run_id,
                seq,
            },
            tx,
        );
    }

    /// `WATCHDOG=1`.
    pub(super) fn watchdog_ping(&mut self, name: &str) {
        self.arm_watchdog(name, None);
    }

    /// `WATCHDOG_USEC=`: a new timeout for this run, counted from now.
    pub(super) fn watchdog_timeout(&mut self, name: &str, usec: u64) {
        let Some(run) = self.units.get_mut(name).and_then(|u| u.run_mut()) else {
            return;
        };
        run.watchdog.timeout = (usec > 0).then(|| Duration::from_micros(usec));
        // A shorter timeout than the pending timer's must fire sooner: start over.
        run.watchdog.disarm();
        self.arm_watchdog(name, None);
    }

    /// The watchdog timer of a run fired.
    pub(super) fn on_watchdog_due(&mut self, name: &str, run_id: u64, seq: u64) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let Phase::Running { run, paused: false } = &mut unit.phase else {
            return;
        };
        if run.id != run_id || run.watchdog.seq != seq {
            return;
        }
        run.watchdog.timer = None;
        let Some(deadline) = run.watchdog.deadline else {
            return;
        };
        if Instant::now() < deadline {
            // Pinged meanwhile: wait out the rest.
            let (name, tx) = (name.to_owned(), &self.internal_tx);
            run.watchdog.arm(
                deadline,
                |seq| Internal::WatchdogDue {
                    name,
                    run: run_id,
                    seq,
                },
                tx,
            );
            return;
        }
        let timeout = run.watchdog.timeout.unwrap_or_default();
        let why = format!("watchdog timeout after {}", format_duration(timeout));
        self.watchdog_missed(name, why);
    }

    /// The run missed its watchdog (or asked to be treated so): SIGABRT and the stop path;
    /// the run ends as a failure.
    pub(super) fn watchdog_missed(&mut self, name: &str, why: String) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !matches!(unit.phase, Phase::Running { .. }) {
            return;
        }
        let message = format!("{name}: {why}; sent SIGABRT");
        tracing::warn!(service = name, "{message}");
        unit.last_error = message;
        self.begin_stop(name, StopReason::Watchdog);
    }

    /// `EXTEND_TIMEOUT_USEC=`: the start or stop in progress may take `usec` more from now;
    /// a running service's watchdog too.
    pub(super) fn extend_timeout(&mut self, name: &str, usec: u64) {
        let extension = Duration::from_micros(usec);
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        match &mut unit.phase {
            Phase::Starting(run) | Phase::Stopping { run, .. } => {
                let wanted = Instant::now() + extension;
                if let Some(deadline) = &mut run.deadline
                    && *deadline < wanted
                {
                    // The armed timer fires at the old deadline and then waits out the rest.
                    *deadline = wanted;
                }
            }
            Phase::Running { .. } => self.arm_watchdog(name, Some(extension)),
            _ => {}
        }
    }

    /// Whether the start or stop timeout of `name`'s run, which just fired, was extended:
    /// then its timer is armed again for the new deadline and the timeout is not acted on.
    pub(super) fn timeout_postponed(&mut self, name: &str) -> bool {
        let Some(unit) = self.units.get_mut(name) else {
            return false;
        };
        let (starting, run) = match &mut unit.phase {
            Phase::Starting(run) => (true, run),
            Phase::Stopping { run, .. } => (false, run),
            _ => return false,
        };
        let Some(deadline) = run.deadline.filter(|&d| Instant::now() < d) else {
            return false;
        };
        let (name, run_id) = (name.to_owned(), run.id);
        let event = if starting {
            Internal::StartTimedOut { name, run: run_id }
        } else {
            Internal::StopTimedOut { name, run: run_id }
        };
        run.timer = Some(Timer {
            handle: Some(timer_at(&self.internal_tx, deadline, event)),
            due: deadline,
        });
        true
    }
}
