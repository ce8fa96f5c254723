//! corrald against callers who mean harm, as a local user would try it: an unprivileged
//! client (`nobody`) calling every method of every interface with wrong signatures, empty
//! and huge (near the bus's message limit) arguments, names that are not services, `Kill`
//! with signals that are not signals, `Watch`/`AcquireLease` floods beyond the per-client
//! caps, other clients' lease ids, a client that leaves mid-call and a pipelined flood of
//! calls; and services that abuse their control channel. Every hostile call gets a D-Bus
//! error with a message, no service changes, corrald's memory does not grow without bound,
//! and a well-behaved client keeps being answered.
//!
//! The unprivileged client is this very test binary, run again as `nobody` (`setpriv`) on
//! the ignored test [`hostile_client`], which does what `CORRAL_HOSTILE` names and checks
//! each reply itself. Figures (call rates, a quiet client's `Get` latency) are printed with
//! `--nocapture`; nothing here asserts a duration.

#[path = "support/hostile_client.rs"]
mod client;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use client::*;
use support::*;
use zbus::Connection;

const SCENARIO: &str = "CORRAL_HOSTILE";
const BUS: &str = "CORRAL_HOSTILE_BUS";
const ARG: &str = "CORRAL_HOSTILE_ARG";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

fn config() -> String {
    format!(
        r#"
[daemon]
max_watches_per_client = 16
max_leases_per_client = 8
lease_recall_timeout = "1h"

[services.web]
exec = ["sleep", "47001"]

[services.fs]
exec = ["python3", "{script}", "{{runtime}}/fs.sock"]
control_socket = "{{runtime}}/fs.sock"
upcall = true
[services.fs.methods.echo]
control = "echo"
[services.fs.recipes.nap]
steps = [["sleep", "47002"]]

[services.idle]
autostart = false
exec = ["sleep", "47003"]
"#,
        script = script("control_service.py").display()
    )
}

/// Starts corrald on `config` (with `{runtime}` standing for a directory of its own) and
/// waits until `fs` is online.
async fn start(bus: &TestBus) -> (Corrald, Connection, tempfile::TempDir) {
    let sockets = tempfile::tempdir().unwrap();
    let text = config().replace("{runtime}", &sockets.path().display().to_string());
    let corrald = Corrald::start(bus, &text).await;
    let conn = bus.connect().await;
    let fs = service(&conn, "fs").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async { fs.online().await.unwrap() }).await;
    (corrald, conn, sockets)
}

/// What must not change: every service's state, PID and restart count, and the
/// configuration generation.
async fn snapshot(conn: &Connection) -> BTreeMap<String, (String, String, u32, u32)> {
    let m = manager(conn).await;
    let mut state = BTreeMap::new();
    for row in m.list_services().await.unwrap() {
        let restarts = service(conn, &row.name).await.n_restarts().await.unwrap();
        state.insert(
            row.name,
            (row.active_state, row.sub_state, row.main_pid, restarts),
        );
    }
    let generation = m.config_generation().await.unwrap();
    state.insert(
        "(generation)".into(),
        (String::new(), String::new(), generation as u32, 0),
    );
    state
}

/// corrald's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Runs [`hostile_client`] as `nobody` doing `scenario`; returns what it printed after
/// `RESULT `. Fails the test if it failed.
fn as_nobody(bus: &TestBus, scenario: &str, arg: &str) -> serde_json::Value {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(exe)
        .args([
            "--exact",
            "hostile_client",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, scenario)
        .env(BUS, &bus.address)
        .env(ARG, arg)
        .output()
        .expect("setpriv is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the hostile client ({scenario}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no RESULT from {scenario}:\n{stdout}"));
    serde_json::from_str(result).unwrap()
}

/// The hostile client: does nothing unless run by [`as_nobody`].
#[tokio::test]
#[ignore = "run as nobody by the other tests of this file"]
async fn hostile_client() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    assert_ne!(nix::unistd::geteuid().as_raw(), 0, "runs unprivileged");
    let address = std::env::var(BUS).unwrap();
    let arg = std::env::var(ARG).unwrap_or_default();
    let conn = zbus::connection::Builder::address(address.as_str())
        .method_timeout(Duration::from_secs(120))
        .build()
        .await
        .unwrap();
    let result = match scenario.as_str() {
        "every_method" => every_method(&conn).await,
        "caps" => caps(&conn, arg.parse().unwrap()).await,
        "leave_mid_call" => leave_mid_call(&conn).await,
        "flood" => flood(&conn, arg.parse().unwrap()).await,
        other => panic!("no scenario {other}"),
    };
    println!("RESULT {result}");
}

// ---- the tests (run as root, driving the hostile client) ----

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// `Get` of a property, timed, `n` times in a row.
async fn timed_gets(conn: &Connection, n: usize) -> Vec<Duration> {
    let web = service(conn, "web").await;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        web.active_state()
            .await
            .expect("a well-behaved Get is answered");
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::test]
async fn every_method_with_hostile_arguments_is_refused_with_a_message_and_changes_nothing() {
    let bus = TestBus::start();
    let (corrald, conn, _sockets) = start(&bus).await;
    let before = snapshot(&conn).await;

    // The first rounds warm corrald up: each 30 MiB message is copied, and the allocator
    // keeps such buffers per thread, so the peak settles after a few rounds. Later rounds
    // must not raise it further.
    let first = as_nobody(&bus, "every_method", "");
    let mut peaks = [0u64; 2];
    for round in 0..6 {
        if round > 0 {
            as_nobody(&bus, "every_method", "");
        }
        let peak = &mut peaks[round / 3];
        *peak = (*peak).max(rss_kib(corrald.pid()));
    }
    let [warm, after] = peaks;
    println!(
        "figure: every_method: {first}; corrald RSS peak {warm} KiB over rounds 1-3, {after} KiB over rounds 4-6"
    );
    assert!(
        first["calls"].as_u64().unwrap() > 300,
        "every method was tried: {first}"
    );
    for name in [
        "org.corral.Corral1.Error.AccessDenied",
        "org.corral.Corral1.Error.NoSuchService",
        "org.freedesktop.DBus.Error.InvalidArgs",
        "org.freedesktop.DBus.Error.UnknownObject",
    ] {
        assert!(
            first["errors"][name].as_u64().unwrap_or(0) > 0,
            "{name} seen: {first}"
        );
    }
    // A round sends dozens of 30 MiB arguments: were any kept, three rounds would add
    // hundreds of MiB. What may still move is how many of them the allocator's two arenas
    // happen to hold at once on a busy machine (one or two 30 MiB buffers each).
    assert!(
        after < warm + 96 * 1024,
        "corrald's peak grew from {warm} KiB to {after} KiB over three more rounds"
    );
    assert_eq!(snapshot(&conn).await, before, "nothing changed");
}

#[tokio::test]
async fn kill_with_a_number_that_is_no_signal_is_invalid_args_even_for_root() {
    let bus = TestBus::start();
    let (_corrald, conn, _sockets) = start(&bus).await;
    let before = snapshot(&conn).await;
    let web = service(&conn, "web").await;
    for signal in [0, -1, 65, i32::MAX, i32::MIN] {
        let err = web.kill(signal).await.unwrap_err();
        assert_eq!(
            error_name(&err),
            "org.corral.Corral1.Error.InvalidArgs",
            "Kill({signal})"
        );
        assert!(err.to_string().contains(&signal.to_string()), "{err}");
    }
    assert_eq!(snapshot(&conn).await, before, "nothing changed");
}

#[tokio::test]
async fn watch_and_lease_floods_stop_at_the_caps_and_other_clients_leases_cannot_be_released() {
    let bus = TestBus::start();
    let (corrald, conn, _sockets) = start(&bus).await;
    let before = snapshot(&conn).await;
    let lease: u64 = conn
        .call_method(
            Some(DEST),
            MANAGER,
            Some("org.corral.Corral1.Upcall"),
            "AcquireLease",
            &("fs", "/mine", "read"),
        )
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    let first = as_nobody(&bus, "caps", &lease.to_string());
    assert_eq!(
        first["steal"], "org.corral.Corral1.Error.InvalidArgs",
        "{first}"
    );
    let warm = rss_kib(corrald.pid());
    for _ in 0..3 {
        as_nobody(&bus, "caps", &lease.to_string());
    }
    let after = rss_kib(corrald.pid());
    println!("figure: caps: {first}; corrald RSS {warm} KiB → {after} KiB over three more floods");
    assert!(
        after < warm + 32 * 1024,
        "grew from {warm} KiB to {after} KiB"
    );
    // The lease is still ours to release.
    conn.call_method(
        Some(DEST),
        MANAGER,
        Some("org.corral.Corral1.Upcall"),
        "ReleaseLease",
        &(lease,),
    )
    .await
    .unwrap();
    assert_eq!(snapshot(&conn).await, before, "nothing changed");
}

#[tokio::test]
async fn a_client_that_leaves_mid_call_loses_its_lease_and_changes_nothing() {
    let bus = TestBus::start();
    let (_corrald, conn, _sockets) = start(&bus).await;
    let before = snapshot(&conn).await;
    as_nobody(&bus, "leave_mid_call", "");
    // The departed client held a read lease on /held and lease_recall_timeout is an hour:
    // a write lease is granted only because corrald forgot the client when it left.
    let lease: u64 = conn
        .call_method(
            Some(DEST),
            MANAGER,
            Some("org.corral.Corral1.Upcall"),
            "AcquireLease",
            &("fs", "/held", "write"),
        )
        .await
        .expect("granted without waiting for the departed reader")
        .body()
        .deserialize()
        .unwrap();
    assert!(lease > 0);
    assert_eq!(snapshot(&conn).await, before, "nothing changed");
}

#[tokio::test]
async fn a_flood_of_refused_calls_leaves_a_well_behaved_client_answered() {
    let bus = TestBus::start();
    let (corrald, conn, _sockets) = start(&bus).await;
    let before = snapshot(&conn).await;
    let count: usize = std::env::var("CORRAL_FLOOD_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let quiet = p99(timed_gets(&conn, 500).await);
    // Warm-up flood, then the measured one with a quiet client beside it.
    as_nobody(&bus, "flood", "2000");
    let warm = rss_kib(corrald.pid());
    let address = bus.address.clone();
    let flooding = tokio::task::spawn_blocking({
        let bus_address = address.clone();
        move || {
            let exe = std::env::current_exe().unwrap();
            std::process::Command::new("setpriv")
                .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(exe)
                .args(["--exact", "hostile_client", "--ignored", "--nocapture"])
                .env(SCENARIO, "flood")
                .env(BUS, bus_address)
                .env(ARG, count.to_string())
                .output()
                .unwrap()
        }
    });
    let mut during = Vec::new();
    while !flooding.is_finished() {
        during.extend(timed_gets(&conn, 50).await);
    }
    let out = flooding.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
            .unwrap(),
    )
    .unwrap();
    let after = rss_kib(corrald.pid());
    println!(
        "figure: flood of {count} refused calls: {result}; quiet Get p99 {quiet:?}, during the flood {:?} over {} Gets; corrald RSS {warm} KiB → {after} KiB",
        p99(during.clone()),
        during.len()
    );
    assert_eq!(
        result["errors"]["org.corral.Corral1.Error.AccessDenied"].as_u64(),
        Some(count as u64 * 3 / 5),
        "{result}"
    );
    assert!(
        !during.is_empty(),
        "the quiet client was answered during the flood"
    );
    assert!(
        after < warm + 32 * 1024,
        "grew from {warm} KiB to {after} KiB"
    );
    assert_eq!(snapshot(&conn).await, before, "nothing changed");
}
