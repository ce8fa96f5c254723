//! corrald's state directory full or read-only while clients go on starting and stopping
//! services (`tests/store_faults.rs` breaks the store module alone; this is the daemon):
//! every call still succeeds, corrald says once that its store is degraded (its journal
//! and the Manager's `StatusText`), and once the file system takes writes again the store
//! catches up without a restart — the next corrald honours what was asked meanwhile.
//!
//! The state directory is a small tmpfs of its own, unmounted when the test ends (panics
//! included). A running corrald's directory cannot be remounted read-only: the kernel
//! answers EBUSY while SQLite holds the file open for writing, so the read-only case is a
//! corrald started on a read-only directory (early boot, before `/var` is writable) that
//! is made writable later.

mod store_support;
mod support;

use std::time::Duration;

use store_support::Mount;
use support::*;

const CONFIG: &str = r#"
[services.a]
exec = ["sleep", "88031"]
[services.b]
exec = ["sleep", "88032"]
"#;

/// What the state file says each service's desired state is, read beside the running
/// corrald (as an admin's `sqlite3 -readonly` would).
fn desired_on_disk(dir: &std::path::Path) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut query = db
        .prepare("SELECT service, state FROM desired ORDER BY service")
        .unwrap();
    query
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Waits (up to a minute: the store's retries back off to 30 s) until the Manager's
/// `StatusText` satisfies `pred`; returns it.
async fn wait_status(
    conn: &zbus::Connection,
    what: &str,
    mut pred: impl FnMut(&str) -> bool,
) -> String {
    let m = manager(conn).await;
    let mut recorder = SignalRecorder::new(conn).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = m.status_text().await.unwrap();
        if pred(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "StatusText never {what}: {text:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), recorder.next()).await;
    }
}

/// Stops and starts `a` and `b` `rounds` times, then leaves `a` stopped and `b` started;
/// every call must succeed.
async fn churn(conn: &zbus::Connection, rounds: usize) {
    let (a, b) = (service(conn, "a").await, service(conn, "b").await);
    for _ in 0..rounds {
        for s in [&a, &b] {
            s.stop().await.expect("Stop succeeds whatever the store");
            s.start().await.expect("Start succeeds whatever the store");
        }
    }
    a.stop().await.unwrap();
    assert_eq!(a.active_state().await.unwrap(), "inactive");
    assert_eq!(b.active_state().await.unwrap(), "active");
}

/// Goes on stopping and starting for 4 s, long enough for the store to retry several
/// times (after 0.2 s, 0.4 s, 0.8 s, 1.6 s); then the store must still be degraded.
/// Returns how many calls it made.
async fn hold_degraded(conn: &zbus::Connection) -> usize {
    let held = std::time::Instant::now();
    let mut calls = 0;
    while held.elapsed() < Duration::from_secs(4) {
        churn(conn, 1).await;
        calls += 5;
    }
    let status = manager(conn).await.status_text().await.unwrap();
    assert!(status.contains("degraded"), "still degraded: {status}");
    calls
}

fn state_dir_args(mount: &Mount) -> [&str; 2] {
    ["--state-dir", mount.path.to_str().unwrap()]
}

#[tokio::test]
async fn a_full_state_directory_degrades_the_store_once_and_it_catches_up_when_space_returns() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: this test mounts a tmpfs and must run as root");
        return;
    }
    let mount = Mount::tmpfs("2m");
    let bus = TestBus::start();
    let mut corrald = Corrald::spawn(&bus, CONFIG, &state_dir_args(&mount));
    corrald.wait_notify("READY=1").await;
    let conn = bus.connect().await;

    let filler = mount.fill();
    churn(&conn, 25).await;
    let status = wait_status(&conn, "degraded", |t| t.contains("degraded")).await;
    eprintln!("disk full: StatusText {status:?}");
    assert!(
        status.contains(&mount.path.join("state.db").display().to_string())
            && status.contains("free some space"),
        "names the file and what to do: {status}"
    );
    let calls = 101 + hold_degraded(&conn).await;
    eprintln!("{calls} Start/Stop calls while full, all answered");
    let log = corrald.log();
    assert_eq!(
        log.matches("state store degraded:").count(),
        1,
        "said once:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    std::fs::remove_file(filler).unwrap();
    let freed = std::time::Instant::now();
    wait_status(&conn, "ok again", |t| !t.contains("degraded")).await;
    eprintln!(
        "space back: the store caught up after {:?}",
        freed.elapsed()
    );
    assert!(corrald.log().contains("writes reach"), "says it recovered");
    assert_eq!(
        desired_on_disk(&mount.path),
        [
            ("a".into(), "stopped".into()),
            ("b".into(), "started".into())
        ],
        "what was asked while the disk was full is on disk"
    );

    // The next corrald honours it: `a` stays stopped although it has `autostart`.
    corrald.terminate().await;
    corrald.start_again().await;
    assert_eq!(
        service(&conn, "a").await.active_state().await.unwrap(),
        "inactive"
    );
    assert_eq!(
        service(&conn, "b").await.active_state().await.unwrap(),
        "active"
    );
    drop(corrald);
}

#[tokio::test]
async fn a_state_directory_made_writable_under_corrald_receives_what_was_asked_meanwhile() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: this test mounts a tmpfs and must run as root");
        return;
    }
    let mount = Mount::tmpfs("8m");
    let bus = TestBus::start();
    let mut corrald = Corrald::spawn(&bus, CONFIG, &state_dir_args(&mount));
    corrald.wait_notify("READY=1").await;
    let conn = bus.connect().await;
    // A desired state on disk before the directory turns read-only: `b` stopped.
    service(&conn, "b").await.stop().await.unwrap();
    corrald.terminate().await;

    mount.remount("ro");
    corrald.start_again().await;
    let (a, b) = (service(&conn, "a").await, service(&conn, "b").await);
    assert_eq!(
        b.active_state().await.unwrap(),
        "inactive",
        "read from a read-only directory"
    );
    churn(&conn, 10).await;
    let status = wait_status(&conn, "degraded", |t| t.contains("degraded")).await;
    eprintln!("read-only: StatusText {status:?}");
    assert!(status.contains("read-only"), "says why: {status}");
    let calls = 41 + hold_degraded(&conn).await;
    eprintln!("{calls} Start/Stop calls while read-only, all answered");
    assert_eq!(corrald.log().matches("state store degraded:").count(), 1);

    mount.remount("rw");
    let writable = std::time::Instant::now();
    wait_status(&conn, "ok again", |t| !t.contains("degraded")).await;
    eprintln!(
        "writable: the store caught up after {:?}",
        writable.elapsed()
    );
    assert_eq!(
        desired_on_disk(&mount.path),
        [
            ("a".into(), "stopped".into()),
            ("b".into(), "started".into())
        ]
    );
    corrald.terminate().await;
    corrald.start_again().await;
    assert_eq!(a.active_state().await.unwrap(), "inactive");
    assert_eq!(b.active_state().await.unwrap(), "active");
    assert!(!corrald.log().contains("panicked"));
    drop(corrald);
}
