//! Health checks on the paused clock: a check that hangs is killed at its timeout and
//! counts as a failure; `failures` of them in a row make the run unhealthy and end it as a
//! failure, which the restart policy restarts; checks run on a fixed grid and only while
//! the service is active.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config::{HealthAction, HealthCheck, HealthProbe};
use crate::events::{Health, RunResult, ServiceStatus, SubState};

/// A service whose check (`sleep <marker>`) never finishes: 10 s interval, 3 s timeout.
fn hanging(dir: &std::path::Path, marker: &str, failures: u32, action: HealthAction) -> Service {
    Service {
        exec: vec!["sleep".into(), "7851".into()],
        restart: RestartPolicy::OnFailure,
        restart_delay: Duration::from_secs(1),
        working_directory: dir.to_owned(),
        health: Some(HealthCheck {
            probe: HealthProbe::Exec(vec!["sleep".into(), marker.into()]),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
            failures,
            action,
        }),
        ..Service::default()
    }
}

async fn next_status(
    rx: &mut EventReceiver,
    name: &str,
    wanted: impl Fn(&ServiceStatus) -> bool,
) -> Arc<ServiceStatus> {
    loop {
        if let Event::Service(status) = rx.recv().await.expect("supervisor alive")
            && status.name == name
            && wanted(&status)
        {
            return status;
        }
    }
}

/// Blocks (real time, not the paused clock) until no live process has this command line
/// (arguments separated by NUL).
fn no_live_process(cmdline: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let live = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| {
                let dir = entry.path();
                let args = std::fs::read(dir.join("cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'));
                String::from_utf8_lossy(&args).trim_end_matches('\0') == cmdline && !zombie
            })
            .count()
    };
    while live() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{cmdline:?} still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[tokio::test(start_paused = true)]
async fn checks_that_hang_past_their_timeout_make_the_run_unhealthy_and_restart_it() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    supervisor
        .define(
            "stuck",
            hanging(dir.path(), "7852", 2, HealthAction::Restart),
            true,
        )
        .await;
    supervisor.start_batch(vec!["stuck".into()]).await;
    let first = next_status(&mut rx, "stuck", |s| s.active == ActiveState::Active).await;
    assert_eq!(first.health, Health::Unknown);
    let began = Instant::now();

    // First check due at 10 s, killed at 13 s: one failure, not yet unhealthy.
    let checked = next_status(&mut rx, "stuck", |s| s.last_health_check != 0).await;
    assert_eq!(began.elapsed(), Duration::from_secs(13));
    assert_eq!(checked.health, Health::Unknown);
    // The second is due on the grid (20 s, not 13 + 10), and fails at 23 s.
    let unhealthy = next_status(&mut rx, "stuck", |s| s.health == Health::Unhealthy).await;
    assert_eq!(began.elapsed(), Duration::from_secs(23));
    assert_eq!(
        unhealthy.active,
        ActiveState::Active,
        "published before the stop"
    );
    assert_eq!(
        unhealthy.last_error,
        "stuck: health check [\"sleep\", \"7852\"] failed 2 times in a row; \
         last: did not finish within 3s (timeout)"
    );
    no_live_process("sleep\x007852");
    next_status(&mut rx, "stuck", |s| s.sub == SubState::StopSigterm).await;
    let waiting = next_status(&mut rx, "stuck", |s| s.sub == SubState::AutoRestart).await;
    assert_eq!(waiting.result, RunResult::Unhealthy);
    assert_eq!(waiting.health, Health::Unknown, "health speaks of a run");
    let second = next_status(&mut rx, "stuck", |s| s.active == ActiveState::Active).await;
    assert_eq!(second.n_restarts, 1);
    assert_ne!(second.main_pid, first.main_pid);
    supervisor.stop("stuck", "test").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_action_none_an_unhealthy_run_keeps_running_and_checks_pause_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    supervisor
        .define(
            "limp",
            hanging(dir.path(), "7853", 1, HealthAction::None),
            true,
        )
        .await;
    supervisor.start_batch(vec!["limp".into()]).await;
    let first = next_status(&mut rx, "limp", |s| s.active == ActiveState::Active).await;
    let began = Instant::now();
    let unhealthy = next_status(&mut rx, "limp", |s| s.health == Health::Unhealthy).await;
    assert_eq!(began.elapsed(), Duration::from_secs(13));
    assert!(unhealthy.last_error.contains("failed 1 time in a row"));
    let again = next_status(&mut rx, "limp", |s| {
        s.last_health_check != unhealthy.last_health_check
    })
    .await;
    assert_eq!(began.elapsed(), Duration::from_secs(23), "still checked");
    assert_eq!(
        (again.active, again.main_pid, again.health),
        (ActiveState::Active, first.main_pid, Health::Unhealthy),
        "action = none: left running"
    );

    supervisor.pause("limp").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    while let Ok(event) = rx.try_recv() {
        if let Event::Service(status) = event {
            assert_eq!(
                status.last_health_check, again.last_health_check,
                "no check while paused"
            );
        }
    }
    supervisor.resume("limp").await.unwrap();
    let resumed = Instant::now();
    next_status(&mut rx, "limp", |s| {
        s.last_health_check != again.last_health_check
    })
    .await;
    assert_eq!(resumed.elapsed(), Duration::from_secs(13), "a fresh grid");
    supervisor.stop("limp", "test").await.unwrap();
    no_live_process("sleep\x007853");
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_run_that_the_policy_does_not_restart_leaves_the_service_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    let spec = Service {
        restart: RestartPolicy::No,
        ..hanging(dir.path(), "7854", 1, HealthAction::Restart)
    };
    supervisor.define("once", spec, true).await;
    supervisor.start_batch(vec!["once".into()]).await;
    let failed = next_status(&mut rx, "once", |s| s.active == ActiveState::Failed).await;
    assert_eq!(failed.result, RunResult::Unhealthy);
    assert_eq!(failed.n_restarts, 0);
    assert!(
        failed.last_error.contains("failed 1 time in a row"),
        "{}",
        failed.last_error
    );
}
