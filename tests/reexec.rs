//! Live re-execution: `Reexecute()` replaces corrald's program in the same process, and
//! every service keeps running with the same `MainPID` — whatever phase it was in — its
//! counters and timers kept, its notify messages and output still heard, running jobs
//! finished by the new corrald. A binary that cannot take over changes nothing.

mod support;

use std::path::Path;
use support::*;

/// corrald started from a copy of its binary at `exe` (so the test can replace the file,
/// as a package upgrade does), keeping its PID.
async fn start_from_copy(bus: &TestBus, config: &str, exe: &Path) -> Corrald {
    std::fs::copy(env!("CARGO_BIN_EXE_corrald"), exe).unwrap();
    let script = format!("shift; exec {} \"$@\"", exe.display());
    Corrald::start_wrapped(bus, config, &["sh", "-c", &script, "sh"]).await
}

/// Replaces the file at `exe` the way dpkg does: write beside it, rename over it.
fn replace_binary(exe: &Path, contents: &[u8]) {
    let new = exe.with_extension("new");
    std::fs::write(&new, contents).unwrap();
    std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&new, exe).unwrap();
}

fn notify_after(delay: &str, marker: &str) -> String {
    format!(
        r#"["python3", "-c", "import os,socket,time; time.sleep({delay}); socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)", "{marker}"]"#
    )
}

#[tokio::test]
async fn every_service_keeps_running_through_two_reexecs() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[services.simple]
exec = ["sleep", "9801"]
[services.notified]
type = "notify"
exec = {ready}
[services.forked]
type = "forking"
pidfile = "{pid}"
exec = ["sh", "-c", "setsid sleep 9802 > /dev/null 2>&1 < /dev/null & echo $! > {pid}"]
[services.talker]
exec = ["sh", "-c", "while true; do echo tick-$$; sleep 0.1; done"]
[services.crashy]
exec = ["sh", "-c", "exit 3"]
restart = "always"
restart_delay = "1500ms"
start_limit_burst = 100
[services.slowstart]
type = "notify"
autostart = false
exec = {slow}
[services.worker]
exec = ["sleep", "9803"]
[services.worker.recipes.two]
steps = [["sleep", "1.5"], ["sh", "-c", "echo second >> {log}"]]
"#,
        ready = notify_after("0", "reexec-ready"),
        slow = notify_after("1.5", "reexec-slow"),
        pid = dir.path().join("forked.pid").display(),
        log = dir.path().join("job.log").display(),
    );
    let corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let names = ["simple", "notified", "forked", "talker", "worker"];
    let mut pids = std::collections::HashMap::new();
    for name in names {
        pids.insert(name, service(&conn, name).await.main_pid().await.unwrap());
    }
    let generation = manager(&conn).await.config_generation().await.unwrap();

    for round in 0..2 {
        // Something in flight in every phase: a start waiting for READY=1, a restart delay
        // running, a job in its first step.
        let slow = service(&conn, "slowstart").await;
        let starting = tokio::spawn(async move { slow.start().await });
        let crashy = service(&conn, "crashy").await;
        let mut recorder = SignalRecorder::new(&conn).await;
        wait_until(&mut recorder, || async {
            crashy.sub_state().await.unwrap() == "auto-restart"
        })
        .await;
        let restarts = crashy.n_restarts().await.unwrap();
        let job = service(&conn, "worker")
            .await
            .run_recipe("two")
            .await
            .unwrap();
        eventually("the job's first step runs", || {
            !pids_with_cmdline("sleep 1.5").is_empty()
        })
        .await;
        let corrald_pid = corrald.pid();
        // Subscribed before: what the new corrald signals while it starts is not missed.
        let mut recorder = SignalRecorder::new(&conn).await;

        reexecute(&conn, &corrald).await;

        assert_eq!(
            corrald.pid(),
            corrald_pid,
            "round {round}: the same process"
        );
        for name in names {
            let svc = service(&conn, name).await;
            assert_eq!(svc.active_state().await.unwrap(), "active", "{name}");
            assert_eq!(
                svc.main_pid().await.unwrap(),
                pids[name],
                "{name} kept its PID"
            );
        }
        assert_eq!(pids_with_cmdline("sleep 9801").len(), 1, "no second copy");
        assert_eq!(pids_with_cmdline("sleep 9802").len(), 1);
        assert_eq!(pids_with_cmdline_containing("reexec-ready").len(), 1);
        let m = manager(&conn).await;
        assert_eq!(m.config_generation().await.unwrap(), generation + 1 + round);
        // The start in flight completes when its READY=1 arrives at the kept socket.
        let slow = service(&conn, "slowstart").await;
        wait_until(&mut recorder, || async {
            slow.active_state().await.unwrap() == "active"
        })
        .await;
        let _ = starting.await;
        // The restart delay runs on and the count goes on from where it was.
        let crashy = service(&conn, "crashy").await;
        wait_until(&mut recorder, || async {
            crashy.n_restarts().await.unwrap() > restarts
        })
        .await;
        // The job finishes in the new corrald: its second step runs, and its end is
        // recorded with the status of its steps.
        wait_until(&mut recorder, || async {
            m.list_jobs("worker")
                .await
                .unwrap()
                .iter()
                .any(|j| j.id == job && j.state == "finished" && j.exit_status == 0)
        })
        .await;
        let log = std::fs::read_to_string(dir.path().join("job.log")).unwrap();
        assert_eq!(log.matches("second").count(), round as usize + 1);
        // Output of a service still flows (its pipe was handed over).
        let ticks = corrald
            .log()
            .matches(&format!("tick-{}", pids["talker"]))
            .count();
        eventually("the talker's output is still copied", || {
            corrald
                .log()
                .matches(&format!("tick-{}", pids["talker"]))
                .count()
                > ticks + 2
        })
        .await;
        slow.stop().await.unwrap();
    }
    // And a stop still reaches everything, and finds out how each ended.
    let simple = service(&conn, "simple").await;
    simple.stop().await.unwrap();
    assert!(!alive(pids["simple"]));
    assert_eq!(
        simple.exec_main_status().await.unwrap(),
        128 + 15,
        "its status, collected"
    );
}

#[tokio::test]
async fn a_binary_that_cannot_take_over_changes_nothing_and_a_good_one_does() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("corrald");
    let corrald = start_from_copy(
        &bus,
        "[services.keep]\nexec = [\"sleep\", \"9811\"]\n",
        &exe,
    )
    .await;
    let conn = bus.connect().await;
    let keep = service(&conn, "keep").await;
    let m = manager(&conn).await;
    let owner = |conn: &zbus::Connection| {
        let conn = conn.clone();
        async move {
            zbus::fdo::DBusProxy::new(&conn)
                .await
                .unwrap()
                .get_name_owner("org.corral.Corral1".try_into().unwrap())
                .await
                .unwrap()
                .to_string()
        }
    };
    let first_owner = owner(&conn).await;

    // Garbage, then a program that speaks another handover format.
    for (contents, needle) in [
        (&b"not a program\n"[..], "cannot take over"),
        (&b"#!/bin/sh\necho 0\n"[..], "format"),
    ] {
        replace_binary(&exe, contents);
        let pid = keep.main_pid().await.unwrap();
        let err = m.reexecute().await.unwrap_err();
        assert_eq!(error_name(&err), "org.corral.Corral1.Error.StartFailed");
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(owner(&conn).await, first_owner, "the same corrald serves");
        assert_eq!(keep.main_pid().await.unwrap(), pid);
        // And it still acts (it thawed): a restart goes through.
        keep.restart().await.unwrap();
        let now = keep.main_pid().await.unwrap();
        assert_ne!(now, pid);
        keep.stop().await.unwrap();
        keep.start().await.unwrap();
    }

    // The upgrade path: a good binary replaces the file; the re-exec takes it up.
    let pid = keep.main_pid().await.unwrap();
    replace_binary(&exe, &std::fs::read(env!("CARGO_BIN_EXE_corrald")).unwrap());
    reexecute(&conn, &corrald).await;
    assert_ne!(owner(&conn).await, first_owner, "the name has a new owner");
    assert_eq!(service(&conn, "keep").await.main_pid().await.unwrap(), pid);
    assert_eq!(pids_with_cmdline("sleep 9811"), [pid]);
}

#[tokio::test]
async fn the_watchdog_keeps_watching_across_a_reexec() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sd_notify.py");
    let scripted = |name: &str, steps: &str| {
        format!(
            r#"
[services.{name}]
type = "notify"
watchdog = "1500ms"
restart = "no"
exec = ["python3", "{script}", "{out}", "READY=1", "{steps}"]
"#,
            script = script.display(),
            out = dir.path().join(name).display(),
        )
    };
    // `pinger` sends WATCHDOG=1 for 12 s, through the re-exec; `quiet` stops after 3 s,
    // so its watchdog must fire in the new corrald.
    let config = scripted("pinger", "ping 0.3 40") + &scripted("quiet", "ping 0.3 10");
    let corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let (pinger, quiet) = (
        service(&conn, "pinger").await,
        service(&conn, "quiet").await,
    );
    let pid = pinger.main_pid().await.unwrap();

    reexecute(&conn, &corrald).await;

    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        quiet.active_state().await.unwrap() == "failed"
    })
    .await;
    assert_eq!(quiet.result().await.unwrap(), "watchdog");
    assert!(
        std::fs::read_to_string(dir.path().join("quiet"))
            .unwrap()
            .contains("abrt"),
        "the new corrald sent the watchdog's SIGABRT"
    );
    // The pinger was heard all along: same process, never restarted.
    assert_eq!(pinger.active_state().await.unwrap(), "active");
    assert_eq!(pinger.main_pid().await.unwrap(), pid);
    assert_eq!(pinger.n_restarts().await.unwrap(), 0);
}

/// `corralctl daemon-reexec` as the packages' maintainer scripts run it.
async fn corralctl_reexec(bus: &TestBus) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .arg("daemon-reexec")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn corralctl_daemon_reexec_waits_for_the_new_corrald_and_reports_a_refusal() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("corrald");
    let corrald = start_from_copy(
        &bus,
        "[services.kept]\nexec = [\"sleep\", \"48001\"]\n",
        &exe,
    )
    .await;
    let conn = bus.connect().await;
    let pid = service(&conn, "kept").await.main_pid().await.unwrap();

    // A binary that cannot take over: corralctl says why and fails (it used to take the
    // refusal for the exec cutting the reply short, and waited a minute for a new owner).
    replace_binary(&exe, b"not a program\n");
    let out = corralctl_reexec(&bus).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a refused re-exec succeeded: {stderr}"
    );
    assert!(stderr.contains("cannot take over"), "{stderr}");
    assert!(!stderr.contains("did not come back"), "{stderr}");

    // The upgrade: corralctl returns once the new corrald owns the name and runs.
    replace_binary(&exe, &std::fs::read(env!("CARGO_BIN_EXE_corrald")).unwrap());
    let out = corralctl_reexec(&bus).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("corrald re-executed"), "{stdout}");
    assert_eq!(manager(&conn).await.state().await.unwrap(), "running");
    assert!(alive(corrald.pid()), "corrald kept its PID");
    assert_eq!(service(&conn, "kept").await.main_pid().await.unwrap(), pid);
    assert_eq!(pids_with_cmdline("sleep 48001"), [pid]);
}

/// What owns the name when an older corrald, without `Reexecute`, is running.
struct OlderManager;

#[zbus::interface(name = "org.corral.Corral1.Manager")]
impl OlderManager {
    #[zbus(property)]
    fn state(&self) -> String {
        "running".into()
    }
}

#[tokio::test]
async fn corralctl_daemon_reexec_fails_at_once_against_a_corrald_without_reexecute() {
    let bus = TestBus::start();
    let _older = zbus::connection::Builder::address(bus.address.as_str())
        .serve_at("/org/corral/Corral1", OlderManager)
        .name("org.corral.Corral1")
        .build()
        .await
        .unwrap();
    // The packages fall back to `systemctl try-restart` on this failure; waiting for an
    // owner change that never comes would hold the upgrade for a minute.
    let out = corralctl_reexec(&bus).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("UnknownMethod"), "{stderr}");
    assert!(!stderr.contains("did not come back"), "{stderr}");
}

#[tokio::test]
async fn corralctl_daemon_reexec_waits_while_the_new_corrald_is_still_starting() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("corrald");
    let kept = "[services.kept]\nexec = [\"sleep\", \"48002\"]\n";
    let corrald = start_from_copy(&bus, kept, &exe).await;
    let conn = bus.connect().await;
    let pid = service(&conn, "kept").await.main_pid().await.unwrap();
    // The configuration on disk gained a notify service that is ready only after 3 s; the
    // new corrald applies it as it starts, so it owns the name well before it runs.
    // corralctl used to wait for `running` on a proxy without a property cache, whose
    // change stream ends at once: it said "did not finish starting" straight away.
    corrald.write_config(&format!(
        "{kept}[services.slow]\ntype = \"notify\"\nexec = {}\n",
        notify_after("3", "48003")
    ));
    let out = corralctl_reexec(&bus).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("corrald re-executed"), "{stdout}");
    assert_eq!(manager(&conn).await.state().await.unwrap(), "running");
    assert_eq!(service(&conn, "kept").await.main_pid().await.unwrap(), pid);
}
