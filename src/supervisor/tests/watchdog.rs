//! The watchdog on the paused clock: a run that never pings is aborted exactly one
//! `watchdog` after it became running, ends as a failure and is restarted; a paused run
//! is not watched; a stop asked for meanwhile is honoured.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::events::{RunResult, ServiceStatus, SubState};

/// A service that never pings its 10 s watchdog. Runs in `dir`, so a core dump of the
/// aborted `sleep` (where core dumps are on) lands there.
fn silent(dir: &std::path::Path, marker: &str) -> Service {
    Service {
        exec: vec!["sleep".into(), marker.into()],
        watchdog: Some(Duration::from_secs(10)),
        restart: RestartPolicy::OnFailure,
        restart_delay: Duration::from_secs(1),
        working_directory: dir.to_owned(),
        ..Service::default()
    }
}

/// The next published status of `name` that satisfies `wanted`.
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

#[tokio::test(start_paused = true)]
async fn a_run_that_never_pings_is_aborted_after_its_watchdog_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    supervisor
        .define("mute", silent(dir.path(), "7841"), true)
        .await;
    assert!(supervisor.start_batch(vec!["mute".into()]).await.is_empty());
    let first = next_status(&mut rx, "mute", |s| s.active == ActiveState::Active).await;
    let began = Instant::now();

    let aborted = next_status(&mut rx, "mute", |s| s.sub == SubState::StopWatchdog).await;
    assert_eq!(
        began.elapsed(),
        Duration::from_secs(10),
        "exactly `watchdog`"
    );
    assert_eq!(
        aborted.last_error,
        "mute: watchdog timeout after 10s; sent SIGABRT"
    );
    let waiting = next_status(&mut rx, "mute", |s| s.sub == SubState::AutoRestart).await;
    assert_eq!(waiting.result, RunResult::Watchdog);
    let second = next_status(&mut rx, "mute", |s| s.active == ActiveState::Active).await;
    assert_eq!(second.n_restarts, 1);
    assert_ne!(second.main_pid, first.main_pid);
    assert_eq!(second.result, RunResult::Success, "a new run starts clean");
    supervisor.stop("mute", "test").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_paused_run_is_not_watched_and_gets_a_fresh_watchdog_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    supervisor
        .define("nap", silent(dir.path(), "7842"), true)
        .await;
    supervisor.start_batch(vec!["nap".into()]).await;
    next_status(&mut rx, "nap", |s| s.active == ActiveState::Active).await;
    supervisor.pause("nap").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        supervisor.running_among(vec!["nap".into()]).await,
        ["nap"],
        "still there after an hour paused"
    );
    supervisor.resume("nap").await.unwrap();
    let resumed = Instant::now();
    next_status(&mut rx, "nap", |s| s.sub == SubState::StopWatchdog).await;
    assert_eq!(resumed.elapsed(), Duration::from_secs(10));
    supervisor.stop("nap", "test").await.unwrap();
}

/// Blocks the (paused) runtime until `marker` exists: real time passes, the paused clock
/// does not, so no timer fires while a real child gets going.
fn block_until_exists(marker: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_asked_for_during_a_watchdog_stop_leaves_the_service_down() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    // Ignores SIGABRT (the disposition survives the exec), so the watchdog's stop lasts
    // until stop_timeout's SIGKILL: a window in which to ask for a stop.
    let marker = dir.path().join("ignoring");
    let script = format!("trap '' ABRT; touch {}; exec sleep 7843", marker.display());
    let spec = Service {
        exec: vec!["sh".into(), "-c".into(), script],
        stop_timeout: Duration::from_secs(30),
        ..silent(dir.path(), "unused")
    };
    supervisor.define("late", spec, true).await;
    supervisor.start_batch(vec!["late".into()]).await;
    block_until_exists(&marker);
    next_status(&mut rx, "late", |s| s.sub == SubState::StopWatchdog).await;
    let asked = Instant::now();
    supervisor.stop("late", "test").await.unwrap();
    assert_eq!(
        asked.elapsed(),
        Duration::from_secs(30),
        "SIGABRT ignored: killed"
    );
    let down = next_status(&mut rx, "late", |s| s.active == ActiveState::Failed).await;
    assert_eq!(down.result, RunResult::Watchdog);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        supervisor
            .running_among(vec!["late".into()])
            .await
            .is_empty(),
        "not restarted behind the caller's back"
    );
}
