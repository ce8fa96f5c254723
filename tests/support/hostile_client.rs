//! The hostile client's scenarios (tests/hostile_callers.rs runs them as `nobody`): calls
//! made by hand with any signature, and what each scenario checks of the replies.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use futures_util::StreamExt;
use zbus::Connection;
use zbus::wire::StructureBuilder;

pub const DEST: &str = "org.corral.Corral1";
pub const MANAGER: &str = "/org/corral/Corral1";
pub const WEB: &str = "/org/corral/Corral1/service/web";
/// Calls a client keeps in flight: below the bus's limit of pending replies per connection.
pub const IN_FLIGHT: usize = 100;
/// The test bus is a dbus-daemon with its default limit: 32 MiB per message.
pub const HUGE: usize = 30 << 20;

/// One argument of a hand-made call.
#[derive(Debug, Clone)]
pub enum Arg {
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
pub async fn raw_call(
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
pub fn methods() -> Vec<(String, String, Vec<String>)> {
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
pub const READING: &[&str] = &[
    "ListServices",
    "ListJobs",
    "ListHosts",
    "ListHostDetails",
    "Unwatch",
];

/// Asserts `result` is a D-Bus error with a name and a non-empty message; returns the name.
pub fn expect_error(what: &str, result: zbus::Result<zbus::Message>) -> String {
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
pub async fn every_method(conn: &Connection) -> serde_json::Value {
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

pub async fn upcall(conn: &Connection, method: &str, args: &[Arg]) -> zbus::Result<zbus::Message> {
    raw_call(conn, MANAGER, "org.corral.Corral1.Upcall", method, args).await
}

/// `Watch` and `AcquireLease` far beyond the caps (16 and 8 here), pipelined: exactly the
/// cap is granted, every other call is refused with `QueueFull`; then stealing the lease
/// id the root client passed in `CORRAL_HOSTILE_ARG` is refused.
pub async fn caps(conn: &Connection, foreign_lease: u64) -> serde_json::Value {
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
pub async fn leave_mid_call(conn: &Connection) -> serde_json::Value {
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

/// `count` calls, [`IN_FLIGHT`] at a time, mixing refused changes and bad names (and
/// `Call`/`RunRecipe`, which a stranger may not make): the rate corrald answers them at.
pub async fn flood(conn: &Connection, count: usize) -> serde_json::Value {
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
