//! Reloads: the exact transition order on the bus, unchanged services untouched, invalid
//! configurations refused whole, SIGHUP with systemd's notify-reload messages, and a
//! reload racing a start.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

const OLD: &str = r#"
[daemon]
host = "a"
[groups.g_keep]
peer = "a"
[groups.g_move_away]
peer = "a"
[groups.g_gone]
peer = "a"
[services.keep]
exec = ["sleep", "8001"]
[services.changed]
exec = ["sleep", "8002"]
[services.described]
description = "old words"
exec = ["sleep", "8003"]
[services.mover]
group = "g_keep"
exec = ["sleep", "8004"]
[services.away]
group = "g_move_away"
exec = ["sleep", "8005"]
[services.doomed]
group = "g_gone"
exec = ["sleep", "8006"]
"#;

const NEW: &str = r#"
[daemon]
host = "a"
[groups.g_keep]
peer = "a"
[groups.g_move_away]
peer = "b"
[groups.g_new]
peer = "a"
[services.keep]
exec = ["sleep", "8001"]
[services.changed]
exec = ["sleep", "8012"]
[services.described]
description = "new words"
exec = ["sleep", "8003"]
[services.mover]
group = "g_new"
exec = ["sleep", "8004"]
[services.away]
group = "g_move_away"
exec = ["sleep", "8005"]
[services.fresh]
group = "g_new"
exec = ["sleep", "8007"]
"#;

const EXPECTED: [(&str, &str); 16] = [
    ("ServiceToBeUnserved", "doomed"),
    ("ServiceToBeUnserved", "away"),
    ("ReloadStarted", "2"),
    ("GroupCreated", "g_new"),
    ("ServiceCreated", "fresh"),
    ("ServiceUnserved", "doomed"),
    ("ServiceUnserved", "away"),
    ("GroupMoved", "g_move_away"),
    ("ServiceMoved", "mover"),
    ("ServiceChanged", "changed"),
    ("ServiceChanged", "described"),
    ("ServiceServed", "fresh"),
    ("ServiceDestroyed", "doomed"),
    ("GroupDestroyed", "g_gone"),
    ("ReloadFinished", "2"),
    ("", ""),
];

async fn pids(conn: &zbus::Connection) -> HashMap<String, u32> {
    manager(conn)
        .await
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.0, row.4))
        .collect()
}

fn is_transition(member: &str) -> bool {
    matches!(
        member,
        "ServiceToBeUnserved"
            | "ReloadStarted"
            | "GroupCreated"
            | "ServiceCreated"
            | "ServiceUnserved"
            | "GroupMoved"
            | "ServiceMoved"
            | "ServiceChanged"
            | "ServiceServed"
            | "ServiceDestroyed"
            | "GroupDestroyed"
            | "ReloadFinished"
    )
}

#[tokio::test]
async fn a_reload_applies_every_kind_of_change_in_order() {
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, OLD).await;
    let conn = bus.connect().await;
    let before = pids(&conn).await;
    let mut recorder = SignalRecorder::new(&conn).await;

    corrald.write_config(NEW);
    let applied = manager(&conn).await.reload().await.unwrap();
    let expected: Vec<(String, String)> = EXPECTED[..15]
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect();
    assert_eq!(applied, expected);

    // The same transitions arrived as signals, in the same order, and before the reply.
    let signals = recorder.until("ReloadFinished", "").await;
    let transitions: Vec<(String, String)> = signals
        .iter()
        .filter(|s| is_transition(&s.member))
        .map(|s| (s.member.clone(), s.first()))
        .collect();
    assert_eq!(transitions, expected);
    // Objects: exported before ServiceCreated, removed after ServiceDestroyed.
    let position = |member: &str, needle: &str| {
        signals
            .iter()
            .position(|s| s.member == member && s.body.contains(needle))
            .unwrap_or_else(|| panic!("no {member} {needle} in {signals:#?}"))
    };
    assert!(position("InterfacesAdded", "service/fresh") < position("ServiceCreated", "fresh"));
    assert!(
        position("ServiceDestroyed", "doomed") < position("InterfacesRemoved", "service/doomed")
    );
    // ServiceServed comes after the service is actually running.
    assert!(position("ServiceStateChanged", "fresh") < position("ServiceServed", "fresh"));

    let after = pids(&conn).await;
    assert_eq!(after["keep"], before["keep"], "unchanged service untouched");
    assert_eq!(
        after["described"], before["described"],
        "a description change restarts nothing"
    );
    assert_eq!(
        after["mover"], before["mover"],
        "moved between served groups: still running"
    );
    assert_ne!(after["changed"], before["changed"], "a new exec restarts");
    assert!(alive(after["changed"]) && !alive(before["changed"]));
    assert_eq!(after["away"], 0, "its group moved to peer b");
    assert!(!alive(before["away"]) && !alive(before["doomed"]));
    assert!(!after.contains_key("doomed"));
    assert!(alive(after["fresh"]));

    let m = manager(&conn).await;
    assert_eq!(m.config_generation().await.unwrap(), 2);
    let described = service(&conn, "described").await;
    assert_eq!(described.description().await.unwrap(), "new words");
    let away = service(&conn, "away").await;
    assert!(!away.served().await.unwrap());
    let err = away.start().await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NotServedHere");
    let err = m.get_service("doomed").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NoSuchService");

    // Reloading the same configuration again changes nothing but the generation.
    let again = m.reload().await.unwrap();
    assert_eq!(
        again,
        [
            ("ReloadStarted".to_string(), "3".to_string()),
            ("ReloadFinished".to_string(), "3".to_string())
        ]
    );
    assert_eq!(pids(&conn).await, after);
}

#[tokio::test]
async fn an_invalid_configuration_changes_nothing() {
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, OLD).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let before = pids(&conn).await;
    let mut recorder = SignalRecorder::new(&conn).await;
    let file = corrald.config_path().display().to_string();

    let cases: [(&str, &str); 6] = [
        ("[services.x\nexec = [\"true\"]\n", ":1:"),
        ("[services.x]\nexec = [\"true\"]\nexex = 1\n", "unknown key"),
        (
            "[services.x]\nexec = [\"true\"]\nafter = [\"y\"]\n[services.y]\nexec = [\"true\"]\nafter = [\"x\"]\n",
            "cycle",
        ),
        (
            "[services.x]\nexec = [\"true\"]\ngroup = \"nosuch\"\n",
            "nosuch",
        ),
        (
            "[services.x]\nexec = [\"true\"]\nstop_timeout = \"5 parsecs\"\n",
            "5 parsecs",
        ),
        ("[services.x]\nexec = []\n", ":2:"),
    ];
    for (text, needle) in cases {
        corrald.write_config(text);
        let err = m.reload().await.unwrap_err();
        assert_eq!(
            error_name(&err),
            "org.corral.Corral1.Error.InvalidConfig",
            "{text}"
        );
        let message = err.to_string();
        assert!(message.contains(&file), "names the file: {message}");
        assert!(message.contains(needle), "{needle:?} in {message}");
        assert!(message.contains("nothing was changed"), "{message}");
        let finished = recorder.until("ReloadFinished", "").await;
        let last = finished.last().unwrap();
        assert!(
            last.body.contains("false") && last.body.contains(needle),
            "{last:?}"
        );
        assert_eq!(m.config_generation().await.unwrap(), 1);
        assert_eq!(pids(&conn).await, before, "same processes after {text:?}");
    }
}

/// `ReloadFinished(generation, ok, error)` and `Reload()` agree: a valid configuration is
/// applied, and when a service it starts fails, `ok` is false, the error names it, and
/// `Reload()` fails with `StartFailed` naming the new generation — where a clean reload says
/// `ok = true` and succeeds.
#[tokio::test]
async fn a_reload_that_starts_a_failing_service_is_applied_but_not_ok() {
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, "[services.keep]\nexec = [\"sleep\", \"8201\"]\n").await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let mut recorder = SignalRecorder::new(&conn).await;
    corrald.write_config(
        "[services.keep]\nexec = [\"sleep\", \"8201\"]\n\
         [services.broken]\nrestart = \"no\"\nexec = [\"/nonexistent/daemon\"]\n",
    );
    let err = m.reload().await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.StartFailed");
    let message = err.to_string();
    assert!(message.contains("generation 2"), "{message}");
    assert!(message.contains("/nonexistent/daemon"), "{message}");
    let finished = recorder.until("ReloadFinished", "").await;
    let last = finished.last().unwrap();
    assert_eq!(last.args[0], serde_json::json!(2));
    assert_eq!(last.args[1], serde_json::json!(false));
    assert!(
        last.first() == "2" && last.body.contains("/nonexistent/daemon"),
        "{last:?}"
    );
    assert_eq!(m.config_generation().await.unwrap(), 2, "applied");
    assert_eq!(
        service(&conn, "broken").await.active_state().await.unwrap(),
        "failed"
    );

    // Fixed: the next reload is clean again.
    corrald.write_config(
        "[services.keep]\nexec = [\"sleep\", \"8201\"]\n\
         [services.broken]\nrestart = \"no\"\nexec = [\"sleep\", \"8202\"]\n",
    );
    m.reload().await.unwrap();
    let finished = recorder.until("ReloadFinished", "").await;
    let last = finished.last().unwrap();
    assert_eq!(last.args[1], serde_json::json!(true), "{last:?}");
    assert_eq!(last.args[2], serde_json::json!(""));
}

#[tokio::test]
async fn sighup_reloads_with_notify_reload_messages() {
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, OLD).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    corrald.write_config(&format!(
        "{OLD}[services.added]\nexec = [\"sleep\", \"8008\"]\n"
    ));
    corrald.signal(nix::sys::signal::Signal::SIGHUP);
    let messages = corrald.wait_notify("READY=1").await;
    let reloading = messages
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .unwrap_or_else(|| panic!("RELOADING=1 before READY=1: {messages:?}"));
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) },
        0
    );
    let now_usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    assert!(
        usec <= now_usec && now_usec - usec < 60_000_000,
        "{usec} vs {now_usec}"
    );
    recorder.until("ReloadFinished", "").await;
    assert!(alive(
        service(&conn, "added").await.main_pid().await.unwrap()
    ));

    // A bad file on SIGHUP: logged, ReloadFinished(false), and corrald keeps serving.
    corrald.write_config("[services.broken\n");
    corrald.signal(nix::sys::signal::Signal::SIGHUP);
    let finished = recorder.until("ReloadFinished", "").await;
    assert!(finished.last().unwrap().body.contains("false"));
    assert_eq!(manager(&conn).await.config_generation().await.unwrap(), 2);
    assert!(corrald.log().contains("nothing was changed"));
}

#[tokio::test]
async fn a_start_racing_a_reload_gets_a_consistent_answer() {
    let bus = TestBus::start();
    let slow = r#"["python3", "-c", "import os,socket,time; time.sleep(0.5); socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)"]"#;
    let config = format!(
        "[services.slow]\ntype = \"notify\"\nautostart = false\nexec = {slow}\n[services.other]\nexec = [\"sleep\", \"8101\"]\n"
    );
    let corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let slow_service = service(&conn, "slow").await;
    let m = manager(&conn).await;

    // Start a slow service, and reload while it is starting.
    let mut recorder = SignalRecorder::new(&conn).await;
    let starting = tokio::spawn({
        let s = slow_service.clone();
        async move { s.start().await }
    });
    recorder.until("ServiceStateChanged", "activating").await;
    corrald.write_config(&format!(
        "{config}[services.extra]\nexec = [\"sleep\", \"8102\"]\n"
    ));
    let applied = m.reload().await.unwrap();
    assert!(applied.contains(&("ServiceCreated".into(), "extra".into())));
    starting
        .await
        .unwrap()
        .expect("the start finished despite the reload");
    assert_eq!(slow_service.active_state().await.unwrap(), "active");

    // A start racing a reload that removes the service: held back until the reload is
    // applied, so it sees the new configuration and fails cleanly.
    slow_service.stop().await.unwrap();
    corrald.write_config("[services.other]\nexec = [\"sleep\", \"8101\"]\n");
    let (reload, start) = tokio::join!(m.reload(), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        m.start_service("extra").await
    });
    reload.unwrap();
    match start {
        Ok(()) => panic!("extra was destroyed by the reload, its start must not succeed after it"),
        Err(err) => assert_eq!(error_name(&err), "org.corral.Corral1.Error.NoSuchService"),
    }
}
