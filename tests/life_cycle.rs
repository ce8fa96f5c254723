//! The life of a supervised process: readiness (notify, forking, adoption), stopping a
//! child that ignores SIGTERM, restart policies and the start limit, pause/resume/kill, and
//! that nothing is left behind.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// A notify-type service written in Python: waits, reports status, then READY=1.
fn notify_service(delay: &str, marker: &str) -> String {
    format!(
        r#"["python3", "-c", "import os,socket,time; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); time.sleep({delay}); s.sendto(b'STATUS=warming up', os.environ['NOTIFY_SOCKET']); s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)", "{marker}"]"#
    )
}

#[tokio::test]
async fn notify_service_is_active_only_after_ready() {
    let bus = TestBus::start();
    let config = format!(
        "[services.slow]\ntype = \"notify\"\nautostart = false\nexec = {}\n",
        notify_service("0.4", "notify-slow")
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let slow = service(&conn, "slow").await;
    let started = Instant::now();
    slow.start().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "Start returned before READY=1"
    );
    assert_eq!(slow.active_state().await.unwrap(), "active");
    assert_eq!(slow.status_text().await.unwrap(), "warming up");
}

#[tokio::test]
async fn notify_service_that_never_gets_ready_times_out() {
    let bus = TestBus::start();
    let config = r#"
[services.mute]
type = "notify"
autostart = false
restart = "no"
start_timeout = "300ms"
stop_timeout = "1s"
exec = ["sh", "-c", "trap '' TERM; sleep 7101"]
"#;
    let _corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let mute = service(&conn, "mute").await;
    let err = mute.start().await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.Timeout");
    assert!(err.to_string().contains("READY=1"), "{err}");
    // Already while the timed-out run is being stopped (systemd sets it then too).
    assert_eq!(mute.result().await.unwrap(), "timeout");
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        mute.active_state().await.unwrap() == "failed"
    })
    .await;
    assert!(
        pids_with_cmdline("sleep 7101").is_empty(),
        "timed-out process killed"
    );
}

#[tokio::test]
async fn a_child_that_ignores_sigterm_is_killed_with_its_group() {
    let bus = TestBus::start();
    // The shell ignores TERM and so does the background child it forks; it reports
    // READY=1 once both children run.
    let config = r#"
[services.stubborn]
type = "notify"
exec = ["sh", "-c", "trap '' TERM; sleep 7201 & sleep 7202 & python3 -c \"import os,socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\"; wait"]
stop_timeout = "500ms"
"#;
    let _corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let stubborn = service(&conn, "stubborn").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    eventually("both children run", || {
        pids_with_cmdline("sleep 7201").len() == 1 && pids_with_cmdline("sleep 7202").len() == 1
    })
    .await;

    let started = Instant::now();
    stubborn.stop().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "waited for stop_timeout"
    );
    assert!(
        pids_with_cmdline("sleep 7201").is_empty(),
        "group member killed"
    );
    assert!(
        pids_with_cmdline("sleep 7202").is_empty(),
        "group member killed"
    );
    assert_eq!(stubborn.active_state().await.unwrap(), "inactive");
    let signals = recorder.until("ServiceStateChanged", "dead").await;
    assert!(
        signals.iter().any(|s| s.body.contains("stop-sigkill")),
        "went through stop-sigkill: {signals:?}"
    );
}

#[tokio::test]
async fn a_crash_loop_hits_the_start_limit_and_fails() {
    let bus = TestBus::start();
    let config = r#"
[services.crashy]
exec = ["sh", "-c", "exit 3"]
restart = "always"
restart_delay = "10ms"
restart_delay_max = "40ms"
start_limit_burst = 4
start_limit_interval = "1m"
"#;
    let _corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let crashy = service(&conn, "crashy").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        crashy.active_state().await.unwrap() == "failed"
    })
    .await;
    assert_eq!(
        crashy.n_restarts().await.unwrap(),
        4,
        "4 starts, the 5th refused"
    );
    assert_eq!(crashy.exec_main_status().await.unwrap(), 3);
    let error = crashy.last_error().await.unwrap();
    assert!(error.contains("start limit"), "{error}");
    // It stays failed: no busy loop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(crashy.n_restarts().await.unwrap(), 4);
    // A start by hand resets the limit.
    let err = crashy.start().await;
    assert!(
        err.is_ok(),
        "a simple service that execs is started: {err:?}"
    );
}

#[tokio::test]
async fn on_failure_restarts_after_a_kill_but_not_after_a_clean_exit() {
    let bus = TestBus::start();
    let config = r#"
[services.worker]
exec = ["sleep", "7301"]
restart = "on-failure"
restart_delay = "10ms"

[services.oneshot]
exec = ["true"]
restart = "on-failure"
"#;
    let _corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let worker = service(&conn, "worker").await;
    let pid = worker.main_pid().await.unwrap();
    let mut recorder = SignalRecorder::new(&conn).await;
    worker.kill(9).await.unwrap();
    wait_until(&mut recorder, || async {
        let now = worker.main_pid().await.unwrap();
        now != 0 && now != pid && worker.active_state().await.unwrap() == "active"
    })
    .await;
    assert_eq!(worker.n_restarts().await.unwrap(), 1);
    assert_eq!(worker.exec_main_status().await.unwrap(), 128 + 9);
    assert!(!alive(pid));

    let oneshot = service(&conn, "oneshot").await;
    wait_until(&mut recorder, || async {
        oneshot.active_state().await.unwrap() == "inactive"
    })
    .await;
    assert_eq!(oneshot.n_restarts().await.unwrap(), 0);
    assert_eq!(oneshot.exec_main_status().await.unwrap(), 0);
}

#[tokio::test]
async fn pause_and_resume_stop_and_continue_the_group() {
    let bus = TestBus::start();
    let config = "[services.p]\nexec = [\"sleep\", \"7401\"]\n";
    // Process groups: with cgroups, Pause freezes instead (tests/cgroups.rs).
    let _corrald = Corrald::spawn(&bus, config, &["--no-cgroups"]);
    _corrald.wait_notify("READY=1").await;
    let conn = bus.connect().await;
    let p = service(&conn, "p").await;
    let pid = p.main_pid().await.unwrap();
    p.pause().await.unwrap();
    assert_eq!(p.active_state().await.unwrap(), "paused");
    eventually("stopped", || process_state(pid).as_deref() == Some("T")).await;
    p.resume().await.unwrap();
    assert_eq!(p.active_state().await.unwrap(), "active");
    eventually("continued", || process_state(pid).as_deref() == Some("S")).await;
    // Stopping a paused service works: it is continued so it can act on SIGTERM.
    p.pause().await.unwrap();
    p.stop().await.unwrap();
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_running_daemon_named_by_its_pidfile_is_adopted() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("d.pid");
    // A daemon started before corrald, announcing itself once it runs.
    let script = "print('up', flush=True); import time; time.sleep(1000)";
    let mut daemon = std::process::Command::new("python3")
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(daemon.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    std::fs::write(&pidfile, daemon.id().to_string()).unwrap();
    let config = format!(
        "[services.d]\nexec = [\"python3\", \"-c\", \"{script}\"]\npidfile = \"{}\"\n",
        pidfile.display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let d = service(&conn, "d").await;
    assert_eq!(
        d.main_pid().await.unwrap(),
        daemon.id(),
        "adopted, not started twice"
    );
    assert_eq!(
        pids_running(&["python3", "-c", script]),
        [daemon.id()],
        "not started twice"
    );
    d.stop().await.unwrap();
    let status = daemon.wait().unwrap();
    assert!(!status.success(), "stopped by corrald's SIGTERM");
}

#[tokio::test]
async fn a_forking_daemon_is_tracked_through_its_pidfile() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("f.pid");
    let config = format!(
        r#"
[services.f]
type = "forking"
pidfile = "{pid}"
exec = ["sh", "-c", "setsid sleep 7501 > /dev/null 2>&1 < /dev/null & echo $! > {pid}"]
"#,
        pid = pidfile.display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let f = service(&conn, "f").await;
    assert_eq!(f.active_state().await.unwrap(), "active");
    let main = f.main_pid().await.unwrap();
    let expected: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(main, expected);
    assert!(alive(main));
    // It dies on its own: corrald notices through the pidfd and restarts it (on-failure).
    let mut recorder = SignalRecorder::new(&conn).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(&mut recorder, || async {
        let now = f.main_pid().await.unwrap();
        now != 0 && now != main
    })
    .await;
    f.stop().await.unwrap();
    assert!(pids_with_cmdline("sleep 7501").is_empty());
}

#[tokio::test]
async fn services_start_in_dependency_order_and_stop_in_reverse() {
    let bus = TestBus::start();
    // Each service logs its start, then says READY=1, and logs SIGTERM: with notify-type
    // readiness, "started" means the log line is written.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    let svc = |name: &str, after: &str| {
        let program = format!(
            "import os,signal,socket,sys,time\\n\
             log=open('{log}','a')\\n\
             def term(*_):\\n    log.write('stop {name}\\\\n'); log.flush(); sys.exit(0)\\n\
             signal.signal(signal.SIGTERM, term)\\n\
             log.write('start {name}\\\\n'); log.flush()\\n\
             socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\\n\
             while True: time.sleep(1000)",
            log = log.display()
        );
        format!(
            "[services.{name}]\ntype = \"notify\"\nafter = [{after}]\nexec = [\"python3\", \"-c\", \"{program}\"]\n"
        )
    };
    let config = [svc("c", "\"b\""), svc("a", ""), svc("b", "\"a\"")].concat();
    let mut corrald = Corrald::start(&bus, &config).await;
    assert_eq!(corrald.terminate().await, Some(0));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        [
            "start a", "start b", "start c", "stop c", "stop b", "stop a"
        ]
    );
}

#[tokio::test]
async fn a_wide_batch_is_spawned_together_and_each_service_gets_its_own_process() {
    // 40 independent services are one round of the start batch, spawned from several
    // threads (src/supervisor/launch.rs); the last one waits for all of them.
    let bus = TestBus::start();
    let mut config = String::new();
    for i in 0..40 {
        config += &format!("[services.w{i:02}]\nexec = [\"sleep\", \"78{i:02}\"]\n");
    }
    let all: Vec<String> = (0..40).map(|i| format!("\"w{i:02}\"")).collect();
    config += &format!(
        "[services.last]\nexec = [\"sleep\", \"7899\"]\nafter = [{}]\n",
        all.join(", ")
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let mut pids = std::collections::HashSet::new();
    for i in (0..40).map(|i| format!("{i:02}")).chain(["99".to_owned()]) {
        let name = if i == "99" {
            "last".to_owned()
        } else {
            format!("w{i}")
        };
        let svc = service(&conn, &name).await;
        assert_eq!(svc.active_state().await.unwrap(), "active", "{name}");
        let pid = svc.main_pid().await.unwrap();
        // The process is this service's own, not another launch's of the same round.
        assert_eq!(pids_with_cmdline(&format!("sleep 78{i}")), [pid], "{name}");
        assert!(pids.insert(pid));
    }
    let last = service(&conn, "last")
        .await
        .state_change_timestamp()
        .await
        .unwrap();
    for i in 0..40 {
        let started = service(&conn, &format!("w{i:02}"))
            .await
            .state_change_timestamp()
            .await
            .unwrap();
        assert!(
            started <= last,
            "w{i:02} started after the service that waits for it"
        );
    }
}

/// Regression: a notify service that connects to `NOTIFY_SOCKET` a moment after it starts
/// (as most real daemons do) could not be restarted — the old run's socket, dropped after
/// the new run bound the same path, unlinked the new run's file, and the new process got
/// `FileNotFoundError`. Restarted by hand, then automatically, then by hand again.
#[tokio::test]
async fn restarting_a_notify_service_that_gets_ready_after_a_second_works() {
    let bus = TestBus::start();
    let config = format!(
        "[services.late]\ntype = \"notify\"\nrestart_delay = \"0\"\nexec = {}\n",
        notify_service("1.0", "notify-late")
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let late = service(&conn, "late").await;
    let mut pid = late.main_pid().await.unwrap();
    assert_eq!(late.active_state().await.unwrap(), "active");

    late.restart().await.unwrap();
    assert_eq!(late.active_state().await.unwrap(), "active");
    let restarted = late.main_pid().await.unwrap();
    assert_ne!(restarted, pid, "a new process");
    assert!(!alive(pid));
    pid = restarted;

    // An automatic restart after a crash takes the same path.
    let mut recorder = SignalRecorder::new(&conn).await;
    late.kill(9).await.unwrap();
    wait_until(&mut recorder, || async {
        let now = late.main_pid().await.unwrap();
        now != 0 && now != pid && late.active_state().await.unwrap() == "active"
    })
    .await;
    assert_eq!(late.n_restarts().await.unwrap(), 1);

    late.restart().await.unwrap();
    assert_eq!(late.active_state().await.unwrap(), "active");
    assert_eq!(pids_with_cmdline_containing("notify-late").len(), 1);
}

/// Regression: a forking service whose launcher exits 0 without ever writing its pidfile
/// stayed `deactivating` forever after `start_timeout` (nothing was left to report the end
/// of the stop). It fails after the timeout; a second start does the same.
#[tokio::test]
async fn a_forking_service_that_never_writes_its_pidfile_fails_after_start_timeout() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[services.nopid]\ntype = \"forking\"\nautostart = false\nrestart = \"no\"\n\
         start_timeout = \"300ms\"\npidfile = \"{}\"\nexec = [\"true\"]\n",
        dir.path().join("never.pid").display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let nopid = service(&conn, "nopid").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    for attempt in 0..2 {
        let err = nopid.start().await.unwrap_err();
        assert_eq!(
            error_name(&err),
            "org.corral.Corral1.Error.Timeout",
            "{attempt}"
        );
        assert!(err.to_string().contains("pidfile"), "{err}");
        wait_until(&mut recorder, || async {
            nopid.active_state().await.unwrap() == "failed"
        })
        .await;
    }
}

/// Regression: pidfile adoption matched the command line, so a daemon that rewrites it
/// (nginx: "nginx: master process …") was started a second time. It is recognised by its
/// executable.
#[tokio::test]
async fn a_daemon_that_rewrites_its_command_line_is_adopted() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("master.pid");
    let script = "$| = 1; $0 = 'rewriter: master process'; print qq(up\\n); sleep 1000";
    let mut daemon = std::process::Command::new("perl")
        .args(["-e", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(daemon.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    std::fs::write(&pidfile, daemon.id().to_string()).unwrap();
    let config = format!(
        "[services.master]\nexec = [\"perl\", \"-e\", {script:?}]\npidfile = \"{}\"\n",
        pidfile.display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let master = service(&conn, "master").await;
    assert_eq!(master.main_pid().await.unwrap(), daemon.id(), "adopted");
    assert_eq!(
        pids_with_cmdline_containing("rewriter: master process"),
        [daemon.id()],
        "not started twice"
    );
    master.stop().await.unwrap();
    assert!(!daemon.wait().unwrap().success());
}
