//! Health checks and `on_failure` end to end: checks that fail or hang make a service
//! unhealthy and restart it, `Health` and `LastHealthCheck` announce it, checks run only
//! while the service runs, and `on_failure` runs once per failure without holding anything
//! up. Real processes on the real clock.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn corralctl(bus: &TestBus, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_failing_check_makes_the_service_unhealthy_and_restarts_it() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok");
    let check = format!(
        "echo probing; test -e {} || {{ echo 'port 80: connection refused' >&2; exit 1; }}",
        ok.display()
    );
    let config = format!(
        "[services.web]\nexec = [\"sleep\", \"7931\"]\nrestart_delay = \"100ms\"\n\
         [services.web.health]\nexec = [\"sh\", \"-c\", {check:?}]\ninterval = \"300ms\"\n\
         failures = 3\n"
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let web = service(&conn, "web").await;
    assert_eq!(web.health().await.unwrap(), "unknown");
    let first = web.main_pid().await.unwrap();
    let mut recorder = SignalRecorder::new(&conn).await;
    let signals = recorder.until("PropertiesChanged", "unhealthy").await;
    assert!(
        signals
            .iter()
            .any(|s| s.member == "PropertiesChanged" && s.body.contains("LastHealthCheck")),
        "each check is announced: {signals:?}"
    );
    wait_until(&mut recorder, || async {
        web.n_restarts().await.unwrap() >= 1
    })
    .await;
    assert_eq!(
        web.last_error().await.unwrap(),
        format!(
            "web: health check [\"sh\", \"-c\", {check:?}] failed 3 times in a row; \
             last: exited with status 1: port 80: connection refused"
        )
    );
    assert!(!alive(first), "the unhealthy run is gone");

    std::fs::write(&ok, "").unwrap();
    wait_until(&mut recorder, || async {
        web.health().await.unwrap() == "healthy"
    })
    .await;
    let checked = web.last_health_check().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(
        checked <= now && now - checked < 60_000_000,
        "{checked} vs {now}"
    );
    let status = corralctl(&bus, &["status", "web"]);
    assert!(
        status.contains("    Health: healthy (last check "),
        "{status}"
    );
}

#[tokio::test]
async fn a_check_that_hangs_fails_at_its_timeout_and_checks_stop_with_the_service() {
    let bus = TestBus::start();
    let config = r#"
[services.slow]
exec = ["sleep", "7932"]
[services.slow.health]
exec = ["sleep", "7933"]
interval = "400ms"
timeout = "200ms"
failures = 2
action = "none"
"#;
    let _corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let slow = service(&conn, "slow").await;
    let pid = slow.main_pid().await.unwrap();
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        slow.health().await.unwrap() == "unhealthy"
    })
    .await;
    assert_eq!(
        slow.last_error().await.unwrap(),
        "slow: health check [\"sleep\", \"7933\"] failed 2 times in a row; \
         last: did not finish within 200ms (timeout)"
    );
    assert_eq!(
        slow.main_pid().await.unwrap(),
        pid,
        "action = none: left running"
    );
    assert!(
        pids_with_cmdline("sleep 7933").len() <= 1,
        "never two at once"
    );

    slow.stop().await.unwrap();
    assert_eq!(slow.health().await.unwrap(), "unknown");
    eventually("the check in flight is killed", || {
        pids_with_cmdline("sleep 7933").is_empty()
    })
    .await;
    let last = slow.last_health_check().await.unwrap();
    // Nothing to wait for but time: no check may start while the service is down.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert!(pids_with_cmdline("sleep 7933").is_empty());
    assert_eq!(slow.last_health_check().await.unwrap(), last);
}

#[tokio::test]
async fn checks_run_only_while_the_service_runs() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let config = format!(
        "[services.idle]\nautostart = false\nexec = [\"sleep\", \"7934\"]\n\
         [services.idle.health]\nexec = [\"sh\", \"-c\", \"echo run >> {}\"]\ninterval = \"100ms\"\n",
        count.display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let idle = service(&conn, "idle").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!count.exists(), "no check before the service runs");
    idle.start().await.unwrap();
    eventually("checks run", || lines(&count).len() >= 3).await;
    assert_eq!(idle.health().await.unwrap(), "healthy");
    idle.stop().await.unwrap();
    let after_stop = lines(&count).len();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(lines(&count).len(), after_stop, "none after the stop");
}

#[tokio::test]
async fn a_method_check_calls_the_services_manager_method() {
    let bus = TestBus::start();
    let config = r#"
[services.api]
exec = ["sleep", "7935"]
[services.api.methods.ping]
exec = ["sh", "-c", "echo 'pong: database unreachable' >&2; exit 2"]
[services.api.health]
method = "ping"
interval = "200ms"
failures = 1
action = "none"
"#;
    let _corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let api = service(&conn, "api").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        api.health().await.unwrap() == "unhealthy"
    })
    .await;
    let error = api.last_error().await.unwrap();
    assert!(
        error.starts_with("api: health check method \"ping\" failed 1 time in a row; last: "),
        "{error}"
    );
    assert!(error.ends_with("pong: database unreachable"), "{error}");
}

#[tokio::test]
async fn on_failure_runs_once_per_failure_and_a_slow_one_holds_nothing_up() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let config = format!(
        r#"
[services.crashy]
exec = ["sh", "-c", "exit 3"]
restart = "always"
restart_delay = "10ms"
start_limit_burst = 2
start_limit_interval = "1m"
on_failure = ["sh", "-c", "echo \"$CORRAL_SERVICE|$CORRAL_RESULT|$CORRAL_LAST_ERROR\" >> {}; exec sleep 7936"]
"#,
        mail.display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let crashy = service(&conn, "crashy").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        crashy.active_state().await.unwrap() == "failed"
    })
    .await;
    assert_eq!(crashy.result().await.unwrap(), "start-limit");
    eventually("on_failure ran", || lines(&mail).len() == 1).await;
    assert_eq!(
        lines(&mail)[0],
        "crashy|start-limit|crashy: start limit hit (2 starts within 60s); fix the service, \
         then `corralctl start crashy`"
    );

    // The first notifier still runs (it sleeps); supervision goes on regardless: a start
    // by hand runs, fails the same way, and notifies again.
    assert_eq!(pids_with_cmdline("sleep 7936").len(), 1);
    crashy.start().await.unwrap();
    wait_until(&mut recorder, || async {
        crashy.active_state().await.unwrap() == "failed"
    })
    .await;
    eventually("on_failure ran again", || lines(&mail).len() == 2).await;
    eventually("both notifiers run", || {
        pids_with_cmdline("sleep 7936").len() == 2
    })
    .await;
    for pid in pids_with_cmdline("sleep 7936") {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert_eq!(lines(&mail).len(), 2, "once per failure");
}

#[tokio::test]
async fn a_changed_check_applies_on_reload_without_restarting_the_service() {
    let bus = TestBus::start();
    let config = |check: &str| {
        format!(
            "[services.api]\nexec = [\"sleep\", \"7937\"]\n[services.api.health]\n\
             exec = [\"sh\", \"-c\", \"{check}\"]\ninterval = \"200ms\"\nfailures = 1\n\
             action = \"none\"\n"
        )
    };
    let corrald = Corrald::start(&bus, &config("exit 1")).await;
    let conn = bus.connect().await;
    let api = service(&conn, "api").await;
    let pid = api.main_pid().await.unwrap();
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        api.health().await.unwrap() == "unhealthy"
    })
    .await;
    corrald.write_config(&config("exit 0"));
    manager(&conn).await.reload().await.unwrap();
    wait_until(&mut recorder, || async {
        api.health().await.unwrap() == "healthy"
    })
    .await;
    assert_eq!(api.main_pid().await.unwrap(), pid, "same process");
    assert_eq!(api.n_restarts().await.unwrap(), 0);
}
