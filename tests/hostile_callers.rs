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

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::*;
use zbus::Connection;
use zbus::wire::StructureBuilder;

const SCENARIO: &str = "CORRAL_HOSTILE";
const BUS: &str = "CORRAL_HOSTILE_BUS";
const ARG: &str = "CORRAL_HOSTILE_ARG";
const DEST: &str = "org.corral.Corral1";
const MANAGER: &str = "/org/corral/Corral1";
const WEB: &str = "/org/corral/Corral1/service/web";
/// Calls a client keeps in flight: below the bus's limit of pending replies per connection.
const IN_FLIGHT: usize = 100;
/// The test bus is a dbus-daemon with its default limit: 32 MiB per message.
const HUGE: usize = 30 << 20;

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

// ---- the hostile client (runs as nobody) ----

/// One argument of a hand-made call.
#[derive(Debug, Clone)]
enum Arg {
    S(String),
    As(Vec<String>),
    I(i32),
    T(u64),
    U(u32),
}

impl Arg {
    /// A value of D-Bus type `ty` in the given flavour; a huge one takes `1/share` of what
    /// a message may carry.
    fn of(ty: &str, flavour: &str, share: usize) -> Arg {
        match (ty, flavour) {
            ("s", "empty") => Arg::S(String::new()),
            ("s", "huge") => Arg::S("x".repeat(HUGE / share)),
            ("s", _) => Arg::S("no-such/service\u{1}\u{202e}".into()),
            ("as", "empty") => Arg::As(Vec::new()),
            // Many small strings: as many elements as fit near the limit.
            ("as", "huge") => Arg::As(vec!["y".repeat(27); HUGE / 32 / share]),
            ("as", _) => Arg::As(vec!["--help".into(), String::new()]),
            ("i", "empty") => Arg::I(0),
            ("i", "huge") => Arg::I(i32::MAX),
            ("i", _) => Arg::I(-1),
            ("t", "empty") => Arg::T(0),
            ("t", "huge") => Arg::T(u64::MAX),
            ("t", _) => Arg::T(424242),
            (other, _) => panic!("no hostile value for type {other}"),
        }
    }
}

/// Calls `method` with `args` (any signature), returning the reply or the error.
async fn raw_call(
    conn: &Connection,
    path: &str,
    interface: &str,
    method: &str,
    args: &[Arg],
) -> zbus::Result<zbus::Message> {
    let mut body = StructureBuilder::new();
    for arg in args {
        body = match arg.clone() {
            Arg::S(s) => body.add_field(s),
            Arg::As(v) => body.add_field(v),
            Arg::I(i) => body.add_field(i),
            Arg::T(t) => body.add_field(t),
            Arg::U(u) => body.add_field(u),
        };
    }
    if args.is_empty() {
        conn.call_method(Some(DEST), path, Some(interface), method, &())
            .await
    } else {
        let body = body.build().unwrap();
        conn.call_method(Some(DEST), path, Some(interface), method, &body)
            .await
    }
}

/// The methods of the introspection files in `dbus/`: (interface, method, input types).
fn methods() -> Vec<(String, String, Vec<String>)> {
    let mut all = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus");
    for file in ["Manager", "Service", "Upcall"] {
        let xml =
            std::fs::read_to_string(dir.join(format!("org.corral.Corral1.{file}.xml"))).unwrap();
        let mut interface = String::new();
        for line in xml.lines().map(str::trim) {
            let attr = |name: &str| {
                line.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .map(str::to_owned)
            };
            if line.starts_with("<interface ") {
                interface = attr("name").unwrap();
            } else if line.starts_with("<method ") {
                all.push((interface.clone(), attr("name").unwrap(), Vec::new()));
            } else if line.starts_with("<arg ") && line.contains("direction=\"in\"") {
                all.last_mut().unwrap().2.push(attr("type").unwrap());
            }
        }
    }
    assert!(all.len() >= 20, "parsed the introspection: {all:?}");
    all
}

/// Methods a stranger may call with success (reading is open to every local user).
const READING: &[&str] = &[
    "ListServices",
    "ListJobs",
    "ListHosts",
    "ListHostDetails",
    "Unwatch",
];

/// Asserts `result` is a D-Bus error with a name and a non-empty message; returns the name.
fn expect_error(what: &str, result: zbus::Result<zbus::Message>) -> String {
    match result {
        Err(zbus::Error::MethodError(name, message, _)) => {
            let message = message.unwrap_or_default();
            assert!(
                !message.trim().is_empty(),
                "{what}: {name} without a message"
            );
            name.to_string()
        }
        // zbus turns the standard org.freedesktop.DBus.Error.* replies into this.
        Err(zbus::Error::FDO(error)) => {
            let message = zbus::DBusError::description(&*error).unwrap_or_default();
            assert!(
                !message.trim().is_empty(),
                "{what}: {error:?} without a message"
            );
            zbus::DBusError::name(&*error).to_string()
        }
        Err(other) => panic!("{what}: not a D-Bus error reply: {other:?}"),
        Ok(reply) => panic!("{what}: succeeded: {:?}", reply.body().signature()),
    }
}

/// Every method of every interface, as `nobody`: on the manager path and a service's path
/// (each method on each path: the wrong object is a hostile call too), with each flavour of
/// arguments and with wrong signatures. Returns the number of calls and the error names.
async fn every_method(conn: &Connection) -> serde_json::Value {
    let mut errors = BTreeMap::<String, u32>::new();
    let mut calls = 0;
    for (interface, method, inputs) in methods() {
        for path in [MANAGER, WEB, "/org/corral/Corral1/service/nope", "/"] {
            // Huge arguments only where the method lives: 30 MiB a call adds up.
            let home = match interface.as_str() {
                "org.corral.Corral1.Service" => WEB,
                _ => MANAGER,
            };
            let flavours: &[&str] = if path == home {
                &["empty", "huge", "odd"]
            } else {
                &["empty", "odd"]
            };
            let mut attempts: Vec<(String, Vec<Arg>)> = flavours
                .iter()
                .map(|f| {
                    let args = inputs.iter().map(|t| Arg::of(t, f, inputs.len())).collect();
                    (f.to_string(), args)
                })
                .collect();
            // Wrong signatures: one argument too many, a u32 for each, none at all.
            let mut extra: Vec<Arg> = inputs.iter().map(|t| Arg::of(t, "odd", 1)).collect();
            extra.push(Arg::U(7));
            attempts.push(("one too many".into(), extra));
            attempts.push((
                "u32s".into(),
                inputs.iter().map(|_| Arg::U(u32::MAX)).collect(),
            ));
            if !inputs.is_empty() {
                attempts.push(("none".into(), Vec::new()));
            }
            for (flavour, args) in attempts {
                let what = format!("{interface}.{method} on {path} ({flavour})");
                let result = raw_call(conn, path, &interface, &method, &args).await;
                calls += 1;
                // zbus ignores arguments beyond a method's own (as GDBus does not): an
                // extra one on a reading method is read past, not refused.
                let may_succeed = path == MANAGER
                    && READING.contains(&method.as_str())
                    && (inputs.is_empty() || !matches!(flavour.as_str(), "u32s" | "none"));
                if may_succeed && result.is_ok() {
                    continue;
                }
                *errors.entry(expect_error(&what, result)).or_default() += 1;
            }
        }
    }
    // Properties: writes to read-only properties, unknown ones, wrong interfaces.
    let props = "org.freedesktop.DBus.Properties";
    for (path, interface) in [
        (MANAGER, "org.corral.Corral1.Manager"),
        (WEB, "org.corral.Corral1.Service"),
    ] {
        for (method, args) in [
            (
                "Set",
                vec![
                    Arg::S(interface.into()),
                    Arg::S("State".into()),
                    Arg::S("x".into()),
                ],
            ),
            ("Get", vec![Arg::S(interface.into()), Arg::S("Nope".into())]),
            (
                "Get",
                vec![Arg::S("no.such.Iface".into()), Arg::S(String::new())],
            ),
            ("GetAll", vec![Arg::S("x".repeat(HUGE))]),
            ("Get", vec![Arg::I(1)]),
        ] {
            let what = format!("{props}.{method} on {path} {:?}", &args.first());
            let result = raw_call(conn, path, props, method, &args).await;
            calls += 1;
            *errors.entry(expect_error(&what, result)).or_default() += 1;
        }
    }
    // Signals that are not signals, as nobody: refused before they are looked at.
    for signal in [0, -1, 65, i32::MAX, i32::MIN] {
        let what = format!("Kill({signal})");
        let result = raw_call(
            conn,
            WEB,
            "org.corral.Corral1.Service",
            "Kill",
            &[Arg::I(signal)],
        )
        .await;
        calls += 1;
        assert_eq!(
            expect_error(&what, result),
            "org.corral.Corral1.Error.AccessDenied"
        );
    }
    serde_json::json!({ "calls": calls, "errors": errors })
}

async fn upcall(conn: &Connection, method: &str, args: &[Arg]) -> zbus::Result<zbus::Message> {
    raw_call(conn, MANAGER, "org.corral.Corral1.Upcall", method, args).await
}

/// `Watch` and `AcquireLease` far beyond the caps (16 and 8 here), pipelined: exactly the
/// cap is granted, every other call is refused with `QueueFull`; then stealing the lease
/// id the root client passed in `CORRAL_HOSTILE_ARG` is refused.
async fn caps(conn: &Connection, foreign_lease: u64) -> serde_json::Value {
    let watches: Vec<_> = futures_util::stream::iter(0..2000)
        .map(|i| async move {
            upcall(
                conn,
                "Watch",
                &[Arg::S("fs".into()), Arg::S(format!("/w/{i}"))],
            )
            .await
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    let leases: Vec<_> = futures_util::stream::iter(0..2000)
        .map(|i| async move {
            upcall(
                conn,
                "AcquireLease",
                &[
                    Arg::S("fs".into()),
                    Arg::S(format!("/l/{i}")),
                    Arg::S("read".into()),
                ],
            )
            .await
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    let mut granted = BTreeMap::<&str, usize>::new();
    for (what, results) in [("Watch", watches), ("AcquireLease", leases)] {
        for result in results {
            if result.is_ok() {
                *granted.entry(what).or_default() += 1;
            } else {
                assert_eq!(
                    expect_error(what, result),
                    "org.corral.Corral1.Error.QueueFull"
                );
            }
        }
    }
    assert_eq!(granted.get("Watch"), Some(&16), "the watch cap holds");
    assert_eq!(granted.get("AcquireLease"), Some(&8), "the lease cap holds");
    let stolen = upcall(conn, "ReleaseLease", &[Arg::T(foreign_lease)]).await;
    let stolen = expect_error("ReleaseLease of another client's lease", stolen);
    serde_json::json!({ "granted": granted, "steal": stolen })
}

/// Takes a read lease on `/held`, then sends a few thousand calls without waiting for any
/// reply and exits (the process ends with the calls in flight).
async fn leave_mid_call(conn: &Connection) -> serde_json::Value {
    upcall(
        conn,
        "AcquireLease",
        &[
            Arg::S("fs".into()),
            Arg::S("/held".into()),
            Arg::S("read".into()),
        ],
    )
    .await
    .unwrap();
    for i in 0..3000u32 {
        let (path, interface, method) = match i % 3 {
            0 => (WEB, "org.corral.Corral1.Service", "Start"),
            1 => (MANAGER, "org.corral.Corral1.Manager", "ListServices"),
            _ => (MANAGER, "org.corral.Corral1.Upcall", "Watch"),
        };
        let message = zbus::Message::method_call(path, method)
            .destination(DEST)
            .interface(interface);
        let message = if method == "Watch" {
            message.build(&("fs", format!("/gone/{i}"))).unwrap()
        } else {
            message.build(&()).unwrap()
        };
        conn.send(&message).await.unwrap();
    }
    serde_json::json!({ "sent": 3000 })
}

/// `count` calls, [`IN_FLIGHT`] at a time at a time, mixing refused changes and bad names (and
/// `Call`/`RunRecipe`, which a stranger may not make): the rate corrald answers them at.
async fn flood(conn: &Connection, count: usize) -> serde_json::Value {
    let started = Instant::now();
    let service = "org.corral.Corral1.Service";
    let manager_iface = "org.corral.Corral1.Manager";
    let results: Vec<String> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let result = match i % 5 {
                0 => {
                    raw_call(
                        conn,
                        WEB,
                        service,
                        "Call",
                        &[Arg::S("echo".into()), Arg::As(vec!["x".into()])],
                    )
                    .await
                }
                1 => raw_call(conn, WEB, service, "RunRecipe", &[Arg::S("nap".into())]).await,
                2 => {
                    raw_call(
                        conn,
                        MANAGER,
                        manager_iface,
                        "GetService",
                        &[Arg::S(format!("nope{i}"))],
                    )
                    .await
                }
                3 => raw_call(conn, WEB, service, "Kill", &[Arg::I(65)]).await,
                _ => upcall(conn, "Watch", &[Arg::S("nope".into()), Arg::S("/x".into())]).await,
            };
            expect_error("flood call", result)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut errors = BTreeMap::<String, u32>::new();
    for name in results {
        *errors.entry(name).or_default() += 1;
    }
    serde_json::json!({
        "calls": count,
        "seconds": elapsed.as_secs_f64(),
        "per_second": count as f64 / elapsed.as_secs_f64(),
        "errors": errors,
    })
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
    assert!(
        after < warm + 32 * 1024,
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
