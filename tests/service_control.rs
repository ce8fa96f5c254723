//! Starting, stopping and inspecting services over the bus, the errors a caller can get,
//! who may do what, and that the introspection XML in dbus/ matches the live daemon.

mod support;

use std::time::Instant;

use support::*;

const CONFIG: &str = r#"
[daemon]
host = "node-a"

[groups.here]
peer = "node-a"

[groups.there]
peer = "node-b"

[services.db]
description = "the database"
exec = ["sleep", "7001"]

[services.web]
group = "here"
exec = ["sleep", "7002"]
after = ["db"]

[services.remote]
group = "there"
exec = ["sleep", "7003"]

[services.manual]
exec = ["sleep", "7004"]
autostart = false

[services.missing]
exec = ["/nonexistent/bin/daemon", "--flag"]
autostart = false
restart = "no"
"#;

#[tokio::test]
async fn lists_services_with_their_state_and_objects() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let conn = bus.connect().await;
    let rows = manager(&conn).await.list_services().await.unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["db", "manual", "missing", "remote", "web"]);
    let db = &rows[0];
    assert_eq!(
        (db.active_state.as_str(), db.sub_state.as_str()),
        ("active", "running")
    );
    assert!(alive(db.main_pid));
    assert_eq!(db.path.as_str(), "/org/corral/Corral1/service/db");
    let remote = &rows[3];
    assert_eq!(
        (
            remote.group.as_str(),
            remote.active_state.as_str(),
            remote.main_pid
        ),
        ("there", "inactive", 0)
    );
    assert_eq!(
        rows[1].active_state, "inactive",
        "autostart = false is not started"
    );

    let m = manager(&conn).await;
    assert_eq!(m.host().await.unwrap(), "node-a");
    assert_eq!(m.state().await.unwrap(), "running");
    assert_eq!(m.config_generation().await.unwrap(), 1);
    assert_eq!(m.version().await.unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(
        m.get_service("web").await.unwrap().as_str(),
        "/org/corral/Corral1/service/web"
    );

    let db = service(&conn, "db").await;
    assert_eq!(db.name().await.unwrap(), "db");
    assert_eq!(db.description().await.unwrap(), "the database");
    assert!(db.served().await.unwrap());
    assert!(!service(&conn, "remote").await.served().await.unwrap());
    assert!(db.state_change_timestamp().await.unwrap() > 1_700_000_000_000_000);
}

#[tokio::test]
async fn stop_returns_once_the_process_is_gone_and_start_once_it_runs() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let conn = bus.connect().await;
    let db = service(&conn, "db").await;
    let pid = db.main_pid().await.unwrap();
    assert!(alive(pid));

    db.stop().await.unwrap();
    assert!(
        !alive(pid),
        "Stop returned while the process was still there"
    );
    assert_eq!(db.active_state().await.unwrap(), "inactive");
    assert_eq!(db.main_pid().await.unwrap(), 0);
    db.stop()
        .await
        .expect("stopping a stopped service succeeds");

    db.start().await.unwrap();
    let new_pid = db.main_pid().await.unwrap();
    assert!(alive(new_pid) && new_pid != pid);
    db.start()
        .await
        .expect("starting a running service succeeds and does nothing");
    assert_eq!(db.main_pid().await.unwrap(), new_pid);

    manager(&conn).await.restart_service("db").await.unwrap();
    let restarted = db.main_pid().await.unwrap();
    assert!(alive(restarted) && restarted != new_pid && !alive(new_pid));
}

#[tokio::test]
async fn errors_have_stable_names_and_helpful_messages() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;

    let err = m.start_service("nope").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NoSuchService");
    assert!(err.to_string().contains("corralctl list"), "{err}");
    let err = m.get_service("nope").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NoSuchService");

    let err = m.start_service("remote").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NotServedHere");
    assert!(err.to_string().contains("node-b"), "{err}");

    let missing = service(&conn, "missing").await;
    let err = missing.start().await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.StartFailed");
    assert!(err.to_string().contains("/nonexistent/bin/daemon"), "{err}");
    assert_eq!(missing.active_state().await.unwrap(), "failed");
    assert!(
        missing
            .last_error()
            .await
            .unwrap()
            .contains("/nonexistent/bin/daemon")
    );

    let manual = service(&conn, "manual").await;
    let err = manual.pause().await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.InvalidArgs");
    let err = service(&conn, "db").await.kill(12345).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.InvalidArgs");

    // The daemon still serves after every one of those.
    assert_eq!(m.list_services().await.unwrap().len(), 5);
}

/// Runs `busctl` against the test bus as `nobody`.
fn busctl_as_nobody(bus: &TestBus, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "busctl",
            "--system",
        ])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .expect("setpriv and busctl are installed")
}

#[tokio::test]
async fn an_unprivileged_caller_may_read_but_not_change() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let conn = bus.connect().await;
    let db = service(&conn, "db").await;
    let pid = db.main_pid().await.unwrap();

    let read = busctl_as_nobody(
        &bus,
        &[
            "get-property",
            "org.corral.Corral1",
            "/org/corral/Corral1/service/db",
            "org.corral.Corral1.Service",
            "ActiveState",
        ],
    );
    assert!(read.status.success(), "{read:?}");
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "s \"active\"");
    let list = busctl_as_nobody(
        &bus,
        &[
            "call",
            "org.corral.Corral1",
            "/org/corral/Corral1",
            "org.corral.Corral1.Manager",
            "ListServices",
        ],
    );
    assert!(list.status.success(), "{list:?}");

    for args in [
        &[
            "call",
            "org.corral.Corral1",
            "/org/corral/Corral1/service/db",
            "org.corral.Corral1.Service",
            "Stop",
        ][..],
        &[
            "call",
            "org.corral.Corral1",
            "/org/corral/Corral1",
            "org.corral.Corral1.Manager",
            "StopService",
            "s",
            "db",
        ][..],
        &[
            "call",
            "org.corral.Corral1",
            "/org/corral/Corral1",
            "org.corral.Corral1.Manager",
            "Reload",
        ][..],
    ] {
        let out = busctl_as_nobody(&bus, args);
        assert!(!out.status.success(), "nobody may not {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("may not perform org.corral."), "{stderr}");
    }
    assert_eq!(db.main_pid().await.unwrap(), pid, "nothing was stopped");
    assert!(alive(pid));
}

#[tokio::test]
async fn only_root_may_own_the_name() {
    let bus = TestBus::start();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_corrald"))
        .args([
            "--config",
            "/dev/null",
            "--runtime-dir",
            "/tmp/corral-nobody-test",
            "--state-dir",
            "/tmp/corral-nobody-test/state",
            "--log-target",
            "stderr",
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot serve org.corral.Corral1"),
        "{stderr}"
    );
}

/// The `<interface>` element named `name` in `xml`, with comments and whitespace removed.
fn interface_block(xml: &str, name: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{name}\">"))
        .unwrap_or_else(|| panic!("no interface {name} in\n{xml}"));
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    let mut block = xml[start..end].to_owned();
    while let Some(open) = block.find("<!--") {
        let close = open + block[open..].find("-->").unwrap() + 3;
        block.replace_range(open..close, "");
    }
    block.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn introspection_matches_the_shipped_xml() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let conn = bus.connect().await;
    for (path, interface) in [
        ("/org/corral/Corral1", "org.corral.Corral1.Manager"),
        ("/org/corral/Corral1", "org.corral.Corral1.Upcall"),
        (
            "/org/corral/Corral1/service/db",
            "org.corral.Corral1.Service",
        ),
    ] {
        let proxy = zbus::fdo::IntrospectableProxy::builder(&conn)
            .destination("org.corral.Corral1")
            .path(path)
            .build()
            .await
            .unwrap();
        let live = proxy.introspect().await.unwrap();
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dbus/{interface}.xml"));
        let shipped = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            interface_block(&live, interface),
            interface_block(&shipped, interface),
            "{} is out of date; the live interface is:\n{live}",
            file.display()
        );
    }
}

#[tokio::test]
async fn gdbus_and_busctl_drive_it_like_any_system_service() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .output()
            .unwrap();
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let started = Instant::now();
    run(
        "busctl",
        &[
            "--system",
            "call",
            "org.corral.Corral1",
            "/org/corral/Corral1",
            "org.corral.Corral1.Manager",
            "StartService",
            "s",
            "manual",
        ],
    );
    assert!(started.elapsed().as_secs() < 10);
    let state = run(
        "gdbus",
        &[
            "call",
            "--system",
            "--dest",
            "org.corral.Corral1",
            "--object-path",
            "/org/corral/Corral1/service/manual",
            "--method",
            "org.freedesktop.DBus.Properties.Get",
            "org.corral.Corral1.Service",
            "ActiveState",
        ],
    );
    assert_eq!(state.trim(), "(<'active'>,)");
    let objects = run(
        "gdbus",
        &[
            "call",
            "--system",
            "--dest",
            "org.corral.Corral1",
            "--object-path",
            "/org/corral/Corral1",
            "--method",
            "org.freedesktop.DBus.ObjectManager.GetManagedObjects",
        ],
    );
    for name in ["db", "web", "remote", "manual", "missing"] {
        assert!(
            objects.contains(&format!("'/org/corral/Corral1/service/{name}'")),
            "{objects}"
        );
    }
    let tree = run("busctl", &["--system", "tree", "org.corral.Corral1"]);
    assert!(tree.contains("/org/corral/Corral1/service/web"), "{tree}");
}
