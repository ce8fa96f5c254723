//! The supervisor in-process, with real child processes and tokio's paused clock, so
//! restart delays of seconds are checked exactly and instantly.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config::{RestartPolicy, Service};
use crate::events::{self, ActiveState, Event, EventReceiver};
use crate::process::cgroup::Cgroups;

/// A supervisor's surroundings in `dir`, with a real state store of its own.
async fn settings(dir: &std::path::Path) -> (Settings, EventReceiver) {
    let (events, rx) = events::channel();
    let (store, _) = crate::store::Store::open(&dir.join("state")).await.unwrap();
    let settings = Settings {
        runtime_dir: dir.to_owned(),
        output: OutputMode::Stderr,
        events,
        store,
        fence: None,
        // Process groups: these tests are about timing, on tokio's paused clock.
        cgroups: Cgroups::disabled("the test runs the supervisor on process groups"),
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
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
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
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
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
    let (settings, _rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    let spec = Service {
        exec: vec!["sleep".into(), "7801".into()],
        ..Service::default()
    };
    supervisor.define("s", spec, true).await;
    supervisor.begin_reload().await;
    let racing = tokio::spawn({
        let supervisor = supervisor.clone();
        async move { supervisor.start("s", "test").await }
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
    supervisor.stop("s", "test").await.unwrap();
}

/// The sub states `name` went through, in order, until `until` was published.
async fn sub_states_until(rx: &mut EventReceiver, name: &str, until: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        if let Event::Service(status) = rx.recv().await.expect("supervisor alive")
            && status.name == name
        {
            seen.push(status.sub.as_str().to_owned());
            if seen.last().map(String::as_str) == Some(until) {
                return seen;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_notify_service_that_never_gets_ready_times_out_after_start_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    let spec = Service {
        exec: vec!["sleep".into(), "7811".into()],
        service_type: crate::config::ServiceType::Notify,
        start_timeout: Duration::from_secs(30),
        restart: RestartPolicy::No,
        ..Service::default()
    };
    supervisor.define("mute", spec, true).await;
    let began = Instant::now();
    let problems = supervisor.start_batch(vec!["mute".into()]).await;
    assert_eq!(
        began.elapsed(),
        Duration::from_secs(30),
        "exactly start_timeout"
    );
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("start_timeout"), "{problems:?}");
    let subs = sub_states_until(&mut rx, "mute", "failed").await;
    assert!(subs.contains(&"stop-sigterm".to_owned()), "{subs:?}");
    assert!(
        supervisor
            .running_among(vec!["mute".into()])
            .await
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_that_ignores_the_stop_signal_is_killed_after_stop_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, mut rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    // Ignores SIGTERM, then leaves a marker. A `simple` service, so no start timer is armed
    // while the real process starts (the paused clock would jump to it).
    let marker = dir.path().join("ignoring");
    let program = format!(
        "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); \
         open('{}', 'w').close(); time.sleep(1000)",
        marker.display()
    );
    let spec = Service {
        exec: vec!["python3".into(), "-c".into(), program],
        stop_timeout: Duration::from_secs(10),
        ..Service::default()
    };
    supervisor.define("stubborn", spec, true).await;
    assert!(
        supervisor
            .start_batch(vec!["stubborn".into()])
            .await
            .is_empty()
    );
    // Real time passes here, not the paused clock: block until the child ignores TERM.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let began = Instant::now();
    supervisor.stop("stubborn", "test").await.unwrap();
    assert_eq!(
        began.elapsed(),
        Duration::from_secs(10),
        "exactly stop_timeout"
    );
    let subs = sub_states_until(&mut rx, "stubborn", "dead").await;
    let tail: Vec<&str> = subs
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["stop-sigterm", "stop-sigkill", "dead"]);
}

#[tokio::test]
async fn kill_group_ends_a_long_stop_at_once_during_a_reload_and_spares_other_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _rx) = settings(dir.path()).await;
    let supervisor = spawn(settings, Durable::default());
    // Ignores SIGTERM; only SIGKILL ends it, and the stop timeout is a minute away.
    let trapped = dir.path().join("trapped");
    let stubborn = Service {
        group: Some("g".into()),
        exec: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "trap '' TERM; touch {}; while :; do sleep 0.05; done",
                trapped.display()
            ),
        ],
        stop_timeout: Duration::from_secs(60),
        ..Service::default()
    };
    let elsewhere = Service {
        group: Some("h".into()),
        exec: vec!["sleep".into(), "7802".into()],
        ..Service::default()
    };
    supervisor.define("stubborn", stubborn, true).await;
    supervisor.define("elsewhere", elsewhere, true).await;
    let names = vec!["stubborn".to_string(), "elsewhere".to_string()];
    assert!(supervisor.start_batch(names.clone()).await.is_empty());
    while !trapped.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The transition's orderly stop, under way while the reload holds client commands.
    supervisor.begin_reload().await;
    let stopping = tokio::spawn({
        let supervisor = supervisor.clone();
        async move { supervisor.stop_batch(vec!["stubborn".into()]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "SIGTERM is ignored");

    supervisor.kill_group("g").await;
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the stop ends once the group is killed")
        .unwrap();
    assert_eq!(
        supervisor.running_among(names).await,
        ["elsewhere"],
        "only group g is killed"
    );
    // Not served any more: a client's start is refused (once the reload ends).
    supervisor.end_reload().await;
    assert!(matches!(
        supervisor.check_served("stubborn").await,
        Err(crate::error::CommandError::NotServedHere { .. })
    ));
    supervisor.stop_batch(vec!["elsewhere".into()]).await;
}

mod health;
mod watchdog;
