//! The control channel and manager methods against a real service listening on its
//! control socket (tests/support/control_service.py): both drivers, errors, timeouts with
//! late replies, pipelining, malformed and oversize frames, reconnecting after a restart.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn config(dir: &std::path::Path) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/control_service.py");
    format!(
        r#"
[services.svc]
exec = ["python3", "{script}", "{socket}"]
control_socket = "{socket}"
frame_timeout = "400ms"
restart_delay = "10ms"

[services.svc.methods.echo]
control = "echo"
[services.svc.methods.obj]
control = "obj"
[services.svc.methods.fail]
control = "fail"
[services.svc.methods.slow]
control = "slow"
[services.svc.methods.garbage]
control = "garbage"
[services.svc.methods.missing]
control = "no.such.rpc"
[services.svc.methods.hello]
exec = ["echo", "hello"]
[services.svc.methods.broken]
exec = ["sh", "-c", "echo oops >&2; exit 3"]
"#,
        script = script.display(),
        socket = dir.join("svc.sock").display()
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn online(conn: &zbus::Connection, recorder: &mut SignalRecorder, want: bool) {
    let svc = service(conn, "svc").await;
    wait_until(recorder, || async { svc.online().await.unwrap() == want }).await;
}

#[tokio::test]
async fn calls_go_through_both_drivers() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let _corrald = Corrald::start(&bus, &config(dir.path())).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    online(&conn, &mut recorder, true).await;
    let svc = service(&conn, "svc").await;
    let m = manager(&conn).await;

    assert_eq!(
        svc.methods().await.unwrap(),
        strings(&[
            "broken", "echo", "fail", "garbage", "hello", "missing", "obj", "slow"
        ])
    );
    assert_eq!(
        svc.call("echo", &strings(&["a", "b"])).await.unwrap(),
        "a b"
    );
    assert_eq!(
        m.call("svc", "echo", &strings(&["via", "manager"]))
            .await
            .unwrap(),
        "via manager"
    );
    assert_eq!(
        svc.call("obj", &strings(&["x"])).await.unwrap(),
        r#"{"args":["x"],"n":1}"#
    );

    let err = svc.call("fail", &strings(&["/srv"])).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.MethodFailed");
    assert!(err.to_string().contains("no such export: /srv"), "{err}");
    let err = svc.call("missing", &[]).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.MethodFailed");
    assert!(err.to_string().contains("method not found"), "{err}");
    let err = svc.call("nope", &[]).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NoSuchMethod");
    assert!(
        err.to_string().contains("echo"),
        "lists the methods there are: {err}"
    );

    assert_eq!(
        svc.call("hello", &strings(&["a", "b"])).await.unwrap(),
        "hello a b\n"
    );
    let err = svc.call("broken", &[]).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.MethodFailed");
    assert!(err.to_string().contains("oops"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .args(["call", "svc", "echo", "from", "the", "shell"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from the shell\n");
}

#[tokio::test]
async fn timeouts_pipelining_and_bad_frames_leave_the_channel_working() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let corrald = Corrald::start(&bus, &config(dir.path())).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    online(&conn, &mut recorder, true).await;
    let svc = service(&conn, "svc").await;

    let started = Instant::now();
    let err = svc.call("slow", &strings(&["1.0"])).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.Timeout");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "bounded by frame_timeout"
    );
    // The late reply arrives while this call runs; it is discarded, and this one answered.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        svc.call("echo", &strings(&["still", "here"]))
            .await
            .unwrap(),
        "still here"
    );

    // Pipelined: a quick call is not held up by a slow one on the same connection.
    let started = Instant::now();
    let slow_args = strings(&["0.3"]);
    let (slow, quick) = tokio::join!(svc.call("slow", &slow_args), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = svc.call("echo", &strings(&["quick"])).await;
        (r, started.elapsed())
    });
    assert_eq!(slow.unwrap(), "late");
    assert_eq!(quick.0.unwrap(), "quick");
    assert!(
        quick.1 < Duration::from_millis(250),
        "not queued behind the slow call: {:?}",
        quick.1
    );

    // Malformed, wrongly shaped and oversize frames are dropped and logged.
    assert_eq!(svc.call("garbage", &[]).await.unwrap(), "after garbage");
    let log = corrald.log();
    assert!(log.contains("malformed control frame (not JSON"), "{log}");
    assert!(
        log.contains("dropped a control frame: longer than 1048576 bytes"),
        "{log}"
    );
    assert!(svc.online().await.unwrap());
}

#[tokio::test]
async fn reconnects_after_the_service_is_killed() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let _corrald = Corrald::start(&bus, &config(dir.path())).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    online(&conn, &mut recorder, true).await;
    let svc = service(&conn, "svc").await;
    let pid = svc.main_pid().await.unwrap();
    svc.kill(9).await.unwrap();
    // Online goes false, the service restarts, and the channel comes back.
    let seen = recorder
        .until("PropertiesChanged", "\"Online\":false")
        .await;
    assert!(!seen.is_empty());
    // Online for the new process (the dying one's listener may still accept a moment).
    wait_until(&mut recorder, || async {
        svc.online().await.unwrap() && svc.main_pid().await.unwrap() != pid
    })
    .await;
    assert_eq!(svc.call("echo", &strings(&["back"])).await.unwrap(), "back");

    // Stopped: calls fail at once with a clear error.
    svc.stop().await.unwrap();
    online(&conn, &mut recorder, false).await;
    let err = svc.call("echo", &[]).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.MethodFailed");
    assert!(err.to_string().contains("not connected"), "{err}");
}

/// `Online` has one owner, the connection task: when a reload replaces or removes the
/// channel, the old task is ended (clearing `Online`) before a new one may set it, so the
/// property ends true for the new channel — never a stale `false` after it.
#[tokio::test]
async fn online_follows_the_channel_through_reloads_that_remove_and_restore_it() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/control_service.py");
    let socket = dir.path().join("svc.sock");
    let without = format!(
        "[services.svc]\nexec = [\"python3\", \"{}\", \"{}\"]\n",
        script.display(),
        socket.display()
    );
    let with = format!(
        "{without}control_socket = \"{}\"\n[services.svc.methods.echo]\ncontrol = \"echo\"\n",
        socket.display()
    );
    let corrald = Corrald::start(&bus, &with).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let svc = service(&conn, "svc").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    online(&conn, &mut recorder, true).await;
    for round in 0..2 {
        corrald.write_config(&without);
        m.reload().await.unwrap();
        assert!(
            !svc.online().await.unwrap(),
            "round {round}: channel removed"
        );
        corrald.write_config(&with);
        m.reload().await.unwrap();
        online(&conn, &mut recorder, true).await;
        assert_eq!(
            svc.call("echo", &strings(&["again"])).await.unwrap(),
            "again"
        );
    }
    // Nothing stale arrives later: the last Online change published is `true`.
    let stale = tokio::time::timeout(
        Duration::from_millis(300),
        recorder.until("PropertiesChanged", "\"Online\":false"),
    )
    .await;
    assert!(stale.is_err(), "a stale Online=false came after: {stale:?}");
    assert!(svc.online().await.unwrap());
}
