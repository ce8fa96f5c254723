//! corrald as the everyday D-Bus tools see it: `busctl tree` and `busctl introspect` on
//! every node, `gdbus introspect --recurse`, d-feet's recursive walk and GNOME's
//! `GDBusObjectManagerClient` (both through GLib's own code, tests/support/gio_tools.py),
//! and `GetManagedObjects` — each without a warning, and showing the services and nothing
//! else.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

use support::*;
use zbus::fdo::{ObjectManagerProxy, PropertiesProxy};

const CONFIG: &str = r#"
[services.web]
exec = ["sleep", "7301"]
[services.nfs-ganesha]
exec = ["sleep", "7302"]
[services.idle]
exec = ["sleep", "7303"]
autostart = false
"#;

const SERVICE: &str = "org.corral.Corral1.Service";

fn service_paths(names: &[&str]) -> BTreeSet<String> {
    names
        .iter()
        .map(|n| corral::names::service_path(n))
        .collect()
}

/// Runs a tool against the test bus; it must succeed and say nothing on stderr.
fn quietly(bus: &TestBus, program: &str, args: &[&str]) -> String {
    let out: Output = std::process::Command::new(program)
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap_or_else(|err| panic!("{program} is installed (scripts/install-deps): {err}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{program} {args:?} exited {:?} with stderr:\n{stderr}",
        out.status.code()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn busctl_and_gdbus_walk_the_tree_without_a_warning() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;

    let tree = quietly(&bus, "busctl", &["--system", "tree", "org.corral.Corral1"]);
    let mut nodes: Vec<String> = tree
        .lines()
        .filter_map(|line| line.find('/').map(|at| line[at..].trim().to_owned()))
        .collect();
    nodes.insert(0, "/".to_owned());
    let mut expected = vec![
        "/",
        "/org",
        "/org/corral",
        "/org/corral/Corral1",
        "/org/corral/Corral1/service",
    ];
    expected.extend([
        "/org/corral/Corral1/service/idle",
        "/org/corral/Corral1/service/nfs_2dganesha",
        "/org/corral/Corral1/service/web",
    ]);
    assert_eq!(nodes, expected, "busctl tree printed:\n{tree}");

    for node in &nodes {
        let members = quietly(
            &bus,
            "busctl",
            &["--system", "introspect", "org.corral.Corral1", node],
        );
        assert!(
            members.contains("org.freedesktop.DBus.Introspectable"),
            "{node}:\n{members}"
        );
        let is_service = node.starts_with("/org/corral/Corral1/service/");
        assert_eq!(members.contains(SERVICE), is_service, "{node}:\n{members}");
    }

    let recursed = quietly(
        &bus,
        "gdbus",
        &[
            "introspect",
            "--system",
            "--dest",
            "org.corral.Corral1",
            "--object-path",
            "/",
            "--recurse",
        ],
    );
    for node in &nodes {
        assert!(
            recursed.contains(&format!("node {node} {{")),
            "{node} missing from gdbus introspect --recurse:\n{recursed}"
        );
    }
    assert_eq!(
        recursed.matches(&format!("interface {SERVICE} {{")).count(),
        3,
        "{recursed}"
    );
}

/// d-feet's walk and a `GDBusObjectManagerClient`, through GLib.
#[derive(serde::Deserialize)]
struct GioView {
    walk: BTreeMap<String, Vec<String>>,
    managed: BTreeMap<String, Vec<String>>,
}

fn gio_view(bus: &TestBus) -> GioView {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/gio_tools.py");
    // Debian's python3, which has python3-gi, whatever python3 comes first in PATH.
    let json = quietly(
        bus,
        "/usr/bin/python3",
        &[script.to_str().unwrap(), &bus.address],
    );
    serde_json::from_str(&json).unwrap_or_else(|err| panic!("{err}: {json}"))
}

#[tokio::test]
async fn glib_tools_see_the_services_and_nothing_else() {
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, CONFIG).await;
    let view = gio_view(&bus);
    let services = service_paths(&["idle", "nfs-ganesha", "web"]);
    let walked: BTreeSet<String> = view
        .walk
        .iter()
        .filter(|(_, interfaces)| interfaces.iter().any(|i| i == SERVICE))
        .map(|(path, _)| path.clone())
        .collect();
    assert_eq!(walked, services, "d-feet's walk: {:?}", view.walk);
    assert!(view.walk.contains_key("/org/corral"), "{:?}", view.walk);
    let managed: BTreeSet<String> = view.managed.keys().cloned().collect();
    assert_eq!(
        managed, services,
        "GDBusObjectManagerClient: {:?}",
        view.managed
    );
    for interfaces in view.managed.values() {
        assert_eq!(interfaces, &[SERVICE.to_owned()]);
    }

    // Again after a reload that adds one service and removes another.
    corrald.write_config(&CONFIG.replace(
        "[services.idle]\nexec = [\"sleep\", \"7303\"]\nautostart = false\n",
        "[services.db]\nexec = [\"sleep\", \"7304\"]\n",
    ));
    let conn = bus.connect().await;
    manager(&conn).await.reload().await.unwrap();
    let view = gio_view(&bus);
    let managed: BTreeSet<String> = view.managed.keys().cloned().collect();
    assert_eq!(managed, service_paths(&["db", "nfs-ganesha", "web"]));
}

async fn object_manager(conn: &zbus::Connection) -> ObjectManagerProxy<'static> {
    ObjectManagerProxy::builder(conn)
        .destination("org.corral.Corral1")
        .path("/org/corral/Corral1")
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn get_managed_objects_lists_exactly_the_services() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let conn = bus.connect().await;
    let objects = object_manager(&conn)
        .await
        .get_managed_objects()
        .await
        .unwrap();
    let paths: BTreeSet<String> = objects.keys().map(|p| p.to_string()).collect();
    assert_eq!(paths, service_paths(&["idle", "nfs-ganesha", "web"]));
    for (path, interfaces) in &objects {
        let names: Vec<&str> = interfaces.keys().map(|i| i.as_str()).collect();
        assert_eq!(names, [SERVICE], "{path}");
        let properties = &interfaces.values().next().unwrap();
        let name = String::try_from(properties["Name"].clone()).unwrap();
        assert_eq!(corral::names::service_path(&name), path.as_str());
        // The same properties, with the same values, as the object itself gives.
        let all = PropertiesProxy::builder(&conn)
            .destination("org.corral.Corral1")
            .path(path.clone())
            .build()
            .await
            .unwrap()
            .get_all(SERVICE.try_into().unwrap())
            .await
            .unwrap();
        assert_eq!(*properties, &all, "{path}");
    }
}

/// `GetManagedObjects` answers from what was published before it was asked: a service
/// started (or stopped) by a call that returned shows its new state, and a service a
/// reload added is listed with its properties.
#[tokio::test]
async fn get_managed_objects_follows_starts_stops_and_reloads() {
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, CONFIG).await;
    let conn = bus.connect().await;
    let objects = object_manager(&conn).await;
    let state = |objects: &zbus::fdo::ManagedObjects, name: &str| -> Option<String> {
        let path = corral::names::service_path(name);
        let interfaces = objects.iter().find(|(p, _)| p.as_str() == path)?.1;
        let properties = interfaces.values().next().unwrap();
        Some(String::try_from(properties["ActiveState"].clone()).unwrap())
    };
    let m = manager(&conn).await;
    for round in 0..2 {
        m.start_service("idle").await.unwrap();
        let now = objects.get_managed_objects().await.unwrap();
        assert_eq!(
            state(&now, "idle").as_deref(),
            Some("active"),
            "round {round}"
        );
        m.stop_service("idle").await.unwrap();
        let now = objects.get_managed_objects().await.unwrap();
        assert_eq!(
            state(&now, "idle").as_deref(),
            Some("inactive"),
            "round {round}"
        );
    }
    corrald.write_config(&format!(
        "{CONFIG}[services.added]\nexec = [\"sleep\", \"7304\"]\n"
    ));
    m.reload().await.unwrap();
    let now = objects.get_managed_objects().await.unwrap();
    assert_eq!(state(&now, "added").as_deref(), Some("active"));
    corrald.write_config(CONFIG);
    m.reload().await.unwrap();
    let now = objects.get_managed_objects().await.unwrap();
    assert_eq!(state(&now, "added"), None);
    assert_eq!(now.len(), 3);
}
