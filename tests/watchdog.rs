//! The watchdog end to end (`watchdog`, sd_notify's `WATCHDOG=1`, `WATCHDOG=trigger`,
//! `WATCHDOG_USEC=`, `EXTEND_TIMEOUT_USEC=`), with real services that speak sd_notify by
//! script (`tests/support/sd_notify.py`), on the real clock.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// `exec` of a scripted sd_notify service that notes what it sees in `out`.
fn scripted(out: &Path, steps: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sd_notify.py");
    let mut argv = vec![
        "python3".to_owned(),
        script.display().to_string(),
        out.display().to_string(),
    ];
    argv.extend(steps.iter().map(|s| s.to_string()));
    serde_json::to_string(&argv).unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_service_that_stops_pinging_gets_sigabrt_and_is_restarted() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dog");
    let config = format!(
        "[services.dog]\ntype = \"notify\"\nwatchdog = \"2s\"\nrestart_delay = \"100ms\"\n\
         exec = {}\n",
        scripted(&out, &["READY=1", "ping 0.2 5"])
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let dog = service(&conn, "dog").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    let first = dog.main_pid().await.unwrap();
    let signals = recorder.until("ServiceStateChanged", "stop-watchdog").await;
    assert!(signals.iter().all(|s| !s.body.contains("auto-restart")));
    wait_until(&mut recorder, || async {
        dog.n_restarts().await.unwrap() >= 1
    })
    .await;

    assert_eq!(
        dog.last_error().await.unwrap(),
        "dog: watchdog timeout after 2s; sent SIGABRT"
    );
    assert_eq!(
        dog.exec_main_status().await.unwrap(),
        3,
        "the SIGABRT handler ran"
    );
    let seen = lines(&out);
    assert_eq!(seen[0], format!("env {first} {first} 2000000"), "{seen:?}");
    assert!(seen.contains(&"abrt".to_owned()), "{seen:?}");
    wait_until(&mut recorder, || async {
        dog.active_state().await.unwrap() == "active"
    })
    .await;
    assert_ne!(dog.main_pid().await.unwrap(), first, "a new run");
}

#[tokio::test]
async fn watchdog_usec_sets_a_simple_services_timeout_at_run_time() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quick");
    // A simple service gets NOTIFY_SOCKET too, because it has a watchdog; an hour is
    // shortened to 300 ms by the service itself.
    let config = format!(
        "[services.quick]\nwatchdog = \"1h\"\nrestart = \"no\"\nexec = {}\n",
        scripted(&out, &["WATCHDOG_USEC=300000"])
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let quick = service(&conn, "quick").await;
    let pid = quick.main_pid().await.unwrap();
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        quick.active_state().await.unwrap() == "failed"
    })
    .await;
    assert_eq!(
        quick.last_error().await.unwrap(),
        "quick: watchdog timeout after 300ms; sent SIGABRT"
    );
    assert_eq!(quick.result().await.unwrap(), "watchdog");
    assert_eq!(lines(&out)[0], format!("env {pid} {pid} 3600000000"));
}

#[tokio::test]
async fn watchdog_trigger_fails_the_service_and_runs_on_failure_once() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let (out, mail) = (dir.path().join("trig"), dir.path().join("mail"));
    let config = format!(
        r#"
[services.trig]
type = "notify"
watchdog = "1h"
restart = "no"
on_failure = ["sh", "-c", "echo \"$CORRAL_SERVICE|$CORRAL_RESULT|$CORRAL_LAST_ERROR|$PATH\" >> {}; echo mailed the admin"]
exec = {}
"#,
        mail.display(),
        scripted(&out, &["READY=1", "sleep 0.2", "WATCHDOG=trigger"])
    );
    let corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let trig = service(&conn, "trig").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        trig.active_state().await.unwrap() == "failed"
    })
    .await;
    assert_eq!(trig.result().await.unwrap(), "watchdog");
    let error = "trig: watchdog triggered by the service (WATCHDOG=trigger); sent SIGABRT";
    assert_eq!(trig.last_error().await.unwrap(), error);
    assert!(lines(&out).contains(&"abrt".to_owned()));

    eventually("on_failure ran", || mail.exists()).await;
    eventually("its output reached the service's log", || {
        corrald.log().contains("]: mailed the admin")
    })
    .await;
    assert!(corrald.log().contains("trig["), "under the service's name");
    assert_eq!(
        lines(&mail),
        [format!(
            "trig|watchdog|{error}|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )]
    );
}

#[tokio::test]
async fn extend_timeout_usec_lets_a_slow_start_and_a_slow_stop_finish() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("slow");
    let config = format!(
        "[services.slow]\ntype = \"notify\"\nautostart = false\nrestart = \"no\"\n\
         start_timeout = \"2s\"\nstop_timeout = \"1s\"\nexec = {}\n",
        scripted(
            &out,
            &[
                "slow-stop 5000000 2",
                "EXTEND_TIMEOUT_USEC=6000000",
                "sleep 3",
                "READY=1"
            ]
        )
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let slow = service(&conn, "slow").await;
    let began = Instant::now();
    slow.start().await.expect("the extended start finishes");
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "past start_timeout"
    );
    assert_eq!(slow.active_state().await.unwrap(), "active");

    let mut recorder = SignalRecorder::new(&conn).await;
    let began = Instant::now();
    slow.stop().await.unwrap();
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "past stop_timeout"
    );
    assert_eq!(slow.exec_main_status().await.unwrap(), 0, "not killed");
    assert!(lines(&out).contains(&"stopped slowly".to_owned()));
    let signals = recorder.until("ServiceStateChanged", "dead").await;
    assert!(
        signals.iter().all(|s| !s.body.contains("stop-sigkill")),
        "{signals:?}"
    );
}
