//! The supervisor in-process, with real child processes and tokio's paused clock, so
//! restart delays of seconds are checked exactly and instantly.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config::{RestartPolicy, Service};
use crate::events::{self, ActiveState, Event, EventReceiver};

fn settings(dir: &std::path::Path) -> (Settings, EventReceiver) {
    let (events, rx) = events::channel();
    let settings = Settings {
        runtime_dir: dir.to_owned(),
        output: OutputMode::Stderr,
        events,
    };
    (settings, rx)
}

/// When each (re)start of `name` happened, from the `activating/start`-or-`active` events.
async fn start_times(rx: &mut EventReceiver, name: &str, count: usize) -> Vec<Instant> {
    let mut times = Vec::new();
    while times.len() < count {
        match rx.recv().await.expect("supervisor alive") {
            Event::Service(status)
                if status.name == name && status.active == ActiveState::Active =>
            {
                times.push(Instant::now())
            }
            _ => {}
        }
    }
    times
}

#[tokio::test(start_paused = true)]
async fn restart_delay_doubles_per_failure_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path());
    let supervisor = spawn(settings);
    let spec = Service {
        exec: vec!["false".into()],
        restart: RestartPolicy::Always,
        restart_delay: Duration::from_secs(1),
        restart_delay_max: Duration::from_secs(4),
        start_limit_burst: 100,
        start_limit_interval: Duration::from_secs(3600),
        ..Service::default()
    };
    supervisor.define("crash", spec, true).await;
    supervisor.start_batch(vec!["crash".into()]).await;
    let times = start_times(&mut rx, "crash", 6).await;
    let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(gaps, [1, 2, 4, 4, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_long_run_resets_the_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path());
    let supervisor = spawn(settings);
    // Each run lives 0.3 s of real time; while it lives, the test moves the paused clock
    // 5 s on, past the 1 s start-limit interval: a long run, so the delay starts over.
    let spec = Service {
        exec: vec!["sh".into(), "-c".into(), "sleep 0.3; exit 1".into()],
        restart: RestartPolicy::OnFailure,
        restart_delay: Duration::from_secs(2),
        restart_delay_max: Duration::from_secs(60),
        start_limit_burst: 100,
        start_limit_interval: Duration::from_secs(1),
        ..Service::default()
    };
    supervisor.define("flaky", spec, true).await;
    supervisor.start_batch(vec!["flaky".into()]).await;
    let mut times = Vec::new();
    while times.len() < 4 {
        if let Event::Service(status) = rx.recv().await.unwrap()
            && status.active == ActiveState::Active
        {
            times.push(Instant::now());
            tokio::time::advance(Duration::from_secs(5)).await;
        }
    }
    let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    // 5 s of run plus a 2 s delay each time; without the reset: 5+2, 5+4, 5+8.
    assert_eq!(gaps, [7, 7, 7]);
}

#[tokio::test]
async fn commands_are_held_back_during_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _rx) = settings(dir.path());
    let supervisor = spawn(settings);
    let spec = Service {
        exec: vec!["sleep".into(), "7801".into()],
        ..Service::default()
    };
    supervisor.define("s", spec, true).await;
    supervisor.begin_reload().await;
    let racing = tokio::spawn({
        let supervisor = supervisor.clone();
        async move { supervisor.start("s").await }
    });
    tokio::task::yield_now().await;
    assert!(!racing.is_finished());
    assert!(
        supervisor.running_among(vec!["s".into()]).await.is_empty(),
        "not started mid-reload"
    );
    supervisor.end_reload().await;
    racing.await.unwrap().unwrap();
    assert_eq!(supervisor.running_among(vec!["s".into()]).await, ["s"]);
    supervisor.stop("s").await.unwrap();
}
