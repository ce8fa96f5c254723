//! The services' notify socket: one socket for every notify service, where a message counts
//! only for the service its sender belongs to (the kernel names the sender, SO_PASSCRED).
//! Services running as another user can use it; strangers cannot speak for a service.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::*;

/// A notify service that says READY=1 after `delay` seconds and then sleeps; `marker` makes
/// its command line unique.
fn late_ready(delay: &str, marker: &str) -> String {
    format!(
        r#"["python3", "-c", "import os,socket,time; time.sleep({delay}); socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)", "{marker}"]"#
    )
}

/// Sends `message` to the notify socket from a process that belongs to no service.
fn send_as_stranger(socket: &std::path::Path, message: &str) {
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket,sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.argv[2].encode(), sys.argv[1])",
        ])
        .arg(socket)
        .arg(message)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_stranger_cannot_make_a_service_ready_or_set_its_status() {
    let bus = TestBus::start();
    let config = format!(
        "[services.slow]\ntype = \"notify\"\nautostart = false\nexec = {}\n",
        late_ready("2", "notify-stranger")
    );
    let corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let slow = service(&conn, "slow").await;
    let start = tokio::spawn({
        let slow = slow.clone();
        async move { slow.start().await }
    });
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        slow.active_state().await.unwrap() == "activating"
    })
    .await;

    let socket = corrald.dir.path().join("run/notify");
    send_as_stranger(&socket, "STATUS=hijacked\nREADY=1");
    eventually("corrald read the stranger's message", || {
        corrald
            .log()
            .contains("notify message from a process of no service ignored")
    })
    .await;
    assert_eq!(slow.active_state().await.unwrap(), "activating");
    assert_eq!(slow.status_text().await.unwrap(), "");

    start
        .await
        .unwrap()
        .expect("the service's own READY=1 counts");
    assert_eq!(slow.active_state().await.unwrap(), "active");
}

#[tokio::test]
async fn a_service_running_as_another_user_reports_through_the_shared_socket() {
    let bus = TestBus::start();
    let config = format!(
        "[services.unpriv]\ntype = \"notify\"\nautostart = false\nuser = \"nobody\"\nexec = {}\n",
        late_ready("0.2", "notify-nobody")
    );
    let corrald = Corrald::start(&bus, &config).await;
    // The test's corrald lives in a private temporary directory; let `nobody` reach the
    // runtime directory inside it, as it can reach /run/corral.
    std::fs::set_permissions(corrald.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let conn = bus.connect().await;
    let unpriv = service(&conn, "unpriv").await;
    unpriv.start().await.unwrap();
    assert_eq!(unpriv.active_state().await.unwrap(), "active");
    // A second run finds the same socket.
    unpriv.restart().await.unwrap();
    assert_eq!(unpriv.active_state().await.unwrap(), "active");
}

#[tokio::test]
async fn mainpid_naming_a_process_outside_the_service_is_refused() {
    let bus = TestBus::start();
    // Runs as nobody, claims that init is its main process, then gets ready.
    let config = r#"
[services.liar]
type = "notify"
autostart = false
user = "nobody"
exec = ["python3", "-c", "import os,socket; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.sendto(b'MAINPID=1', os.environ['NOTIFY_SOCKET']); s.sendto(b'MAINPID=' + str(os.getppid()).encode(), os.environ['NOTIFY_SOCKET']); s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); import time; time.sleep(1000)", "notify-liar"]
"#;
    let corrald = Corrald::start(&bus, config).await;
    std::fs::set_permissions(corrald.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let conn = bus.connect().await;
    let liar = service(&conn, "liar").await;
    liar.start().await.unwrap();
    let main = liar.main_pid().await.unwrap();
    assert_eq!(
        pids_with_cmdline_containing("notify-liar"),
        [main],
        "MainPID is still the service's own process"
    );
    // MAINPID=1 is dropped by the parser; the parent (corrald) is refused by ownership.
    assert!(
        corrald
            .log()
            .contains(&format!("MAINPID={} ignored", corrald.pid())),
        "{}",
        corrald.log()
    );
    liar.stop().await.unwrap();
    assert!(!alive(main));
}
