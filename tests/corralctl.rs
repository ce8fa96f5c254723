//! `corralctl` as a user runs it: output, JSON, exit codes, errors.

mod support;

use std::process::Output;

use support::*;

fn corralctl(bus: &TestBus, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const CONFIG: &str = r#"
[daemon]
host = "h1"
[services.alpha]
description = "first service"
exec = ["sleep", "7901"]
[services.beta]
exec = ["sleep", "7902"]
autostart = false
"#;

#[tokio::test]
async fn list_shows_a_table_and_json() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let out = corralctl(&bus, &["list"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{text}");
    assert!(
        lines[1].starts_with("alpha")
            && lines[1].contains("active")
            && lines[1].contains("running"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("beta") && lines[2].contains("inactive"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colours when not on a terminal");

    let out = corralctl(&bus, &["list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["name"], "alpha");
    assert_eq!(json[0]["active_state"], "active");
    assert_eq!(json[1]["main_pid"], 0);
}

#[tokio::test]
async fn start_stop_status_and_exit_codes() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    let out = corralctl(&bus, &["status", "beta"]);
    assert_eq!(out.status.code(), Some(3), "inactive → 3, like systemctl");
    assert!(
        stdout(&out).contains("Active: inactive (dead)"),
        "{}",
        stdout(&out)
    );

    let out = corralctl(&bus, &["start", "beta", "alpha"]);
    assert!(out.status.success(), "{out:?}");
    let out = corralctl(&bus, &["status", "alpha", "beta"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("● alpha - first service"), "{text}");
    assert!(text.contains("Active: active (running) since 20"), "{text}");
    assert!(text.contains("Main PID: "), "{text}");

    let out = corralctl(&bus, &["status", "--json", "alpha"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["description"], "first service");

    let out = corralctl(&bus, &["stop", "nosuch"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("NoSuchService: no service named \"nosuch\""),
        "{}",
        stderr(&out)
    );

    let conn = bus.connect().await;
    let alpha_pid = service(&conn, "alpha").await.main_pid().await.unwrap();
    let beta_pid = service(&conn, "beta").await.main_pid().await.unwrap();
    let out = corralctl(&bus, &["kill", "--signal", "SIGKILL", "beta"]);
    assert!(out.status.success(), "{out:?}");
    eventually("beta killed", || !alive(beta_pid)).await;
    let out = corralctl(&bus, &["stop", "alpha", "beta"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!alive(alpha_pid));
}

/// `pause` and `resume` of an unknown name used to reach for the service object directly
/// and exit 1 with D-Bus's `UnknownObject`; every verb now asks corrald for the name.
#[tokio::test]
async fn every_verb_says_no_such_service_and_exits_4() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    for verb in [
        &["start", "nosuch"][..],
        &["stop", "nosuch"],
        &["restart", "nosuch"],
        &["pause", "nosuch"],
        &["resume", "nosuch"],
        &["kill", "nosuch"],
        &["kill", "--signal", "HUP", "nosuch"],
        &["status", "nosuch"],
        &["run-recipe", "nosuch", "backup"],
    ] {
        let out = corralctl(&bus, verb);
        assert_eq!(out.status.code(), Some(4), "{verb:?}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.contains("NoSuchService: no service named \"nosuch\""),
            "{verb:?}: {err}"
        );
        assert!(!err.contains("UnknownObject"), "{verb:?}: {err}");
    }
    // A known name beside an unknown one: the known one is still acted on.
    let out = corralctl(&bus, &["pause", "alpha", "nosuch"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let conn = bus.connect().await;
    let alpha = service(&conn, "alpha").await;
    assert_eq!(alpha.sub_state().await.unwrap(), "paused");
    let out = corralctl(&bus, &["resume", "nosuch", "alpha"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(alpha.sub_state().await.unwrap(), "running");
}

#[tokio::test]
async fn overview_and_reload() {
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, CONFIG).await;
    let out = corralctl(&bus, &["status"]);
    let text = stdout(&out);
    assert!(
        text.contains("on h1: running, configuration generation 1"),
        "{text}"
    );
    assert!(text.contains("2 services: 1 active, 1 inactive"), "{text}");
    let m = manager(&bus.connect().await).await;
    let (mode, base) = (
        m.supervision_mode().await.unwrap(),
        m.control_group().await.unwrap(),
    );
    let tracked = match base.as_str() {
        "" => format!("services tracked by {mode}\n"),
        base => format!("services tracked by {mode} below {base}\n"),
    };
    assert!(text.contains(&tracked), "{text}");

    corrald.write_config(&format!(
        "{CONFIG}[services.gamma]\nexec = [\"sleep\", \"7903\"]\n"
    ));
    let out = corralctl(&bus, &["reload"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "ReloadStarted 2\nServiceCreated gamma\nServiceServed gamma\nReloadFinished 2\n"
    );
}

#[tokio::test]
async fn a_missing_corrald_is_explained() {
    let bus = TestBus::start();
    let out = corralctl(&bus, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("corrald is not running"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn monitor_streams_signals_as_lines_and_json() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, CONFIG).await;
    for (json, expect) in [
        (false, "ServiceStateChanged beta active running"),
        (true, "\"signal\":\"ServiceStateChanged\""),
    ] {
        let mut args = vec!["monitor"];
        if json {
            args.push("--json");
        }
        let mut monitor = tokio::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
            .args(&args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
            monitor.stdout.take().unwrap(),
        ));
        // Give monitor time to subscribe: wait for its match rule to be on the bus by
        // toggling the service until a line arrives.
        let conn = bus.connect().await;
        let beta = service(&conn, "beta").await;
        let mut seen = Vec::new();
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                beta.stop().await.unwrap();
                beta.start().await.unwrap();
                while let Ok(Ok(Some(line))) =
                    tokio::time::timeout(std::time::Duration::from_millis(200), lines.next_line())
                        .await
                {
                    let hit = line.contains(expect);
                    seen.push(line);
                    if hit {
                        return;
                    }
                }
            }
        })
        .await;
        assert!(found.is_ok(), "{expect} not in {seen:?}");
    }
}
