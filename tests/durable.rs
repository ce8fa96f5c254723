//! What outlives corrald: a client's Start/Stop (the desired state) across restarts of
//! corrald, and the services themselves across a kill -9 of corrald — re-adopted, never
//! started a second time, and stopped when they are no longer wanted.

mod support;

use support::*;

const CONFIG: &str = r#"
[services.web]
exec = ["sleep", "9601"]
[services.batch]
autostart = false
exec = ["sleep", "9602"]
"#;

#[tokio::test]
async fn a_stop_by_request_outlives_restarts_of_corrald_until_reverted() {
    let bus = TestBus::start();
    let mut corrald = Corrald::start(&bus, CONFIG).await;
    let conn = bus.connect().await;
    let web = service(&conn, "web").await;
    let batch = service(&conn, "batch").await;
    assert_eq!(web.desired_state().await.unwrap(), "");
    web.stop().await.unwrap();
    batch.start().await.unwrap();
    assert_eq!(web.desired_state().await.unwrap(), "stopped");
    assert_eq!(batch.desired_state().await.unwrap(), "started");
    assert!(web.desired_state_timestamp().await.unwrap() > 0);

    // Twice: the second start of corrald reads what the first one left.
    for round in 0..2 {
        assert_eq!(corrald.terminate().await, Some(0));
        corrald.start_again().await;
        let web = service(&conn, "web").await;
        let batch = service(&conn, "batch").await;
        assert_eq!(
            web.active_state().await.unwrap(),
            "inactive",
            "round {round}"
        );
        assert_eq!(web.desired_state().await.unwrap(), "stopped");
        assert_eq!(
            batch.active_state().await.unwrap(),
            "active",
            "round {round}"
        );
        assert_eq!(batch.desired_state().await.unwrap(), "started");
    }

    // Reverted: autostart rules again from the next start-up on.
    let web = service(&conn, "web").await;
    web.revert().await.unwrap();
    service(&conn, "batch").await.revert().await.unwrap();
    assert_eq!(web.desired_state().await.unwrap(), "");
    assert_eq!(
        web.active_state().await.unwrap(),
        "inactive",
        "revert changes no process"
    );
    assert_eq!(corrald.terminate().await, Some(0));
    corrald.start_again().await;
    assert_eq!(
        service(&conn, "web").await.active_state().await.unwrap(),
        "active"
    );
    assert_eq!(
        service(&conn, "batch").await.active_state().await.unwrap(),
        "inactive"
    );
}

#[tokio::test]
async fn a_service_removed_by_a_reload_loses_its_desired_state() {
    let bus = TestBus::start();
    let config = CONFIG.replace("9601", "9631").replace("9602", "9632");
    let corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    service(&conn, "web").await.stop().await.unwrap();
    corrald.write_config("[services.batch]\nautostart = false\nexec = [\"sleep\", \"9632\"]\n");
    m.reload().await.unwrap();
    corrald.write_config(&config);
    m.reload().await.unwrap();
    let web = service(&conn, "web").await;
    assert_eq!(web.desired_state().await.unwrap(), "");
    assert_eq!(
        web.active_state().await.unwrap(),
        "active",
        "back with autostart"
    );
}

#[tokio::test]
async fn after_kill_9_every_service_is_adopted_once_and_unwanted_ones_stop() {
    let bus = TestBus::start();
    let config = r#"
[services.web]
exec = ["sleep", "9611"]
[services.worker]
exec = ["sh", "-c", "sleep 9612 & exec sleep 9613"]
[services.leaving]
exec = ["sleep", "9614"]
[services.notified]
type = "notify"
exec = ["python3", "-c", "import os,socket,time; socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)", "durable-notify"]
"#;
    let mut corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let mut before = std::collections::HashMap::new();
    for name in ["web", "worker", "leaving", "notified"] {
        before.insert(name, service(&conn, name).await.main_pid().await.unwrap());
    }
    // `active` comes with the spawn; the shell forks its helper a moment later.
    eventually("the worker forks its helper", || {
        pids_with_cmdline("sleep 9612").len() == 1
    })
    .await;
    let worker_helper = pids_with_cmdline("sleep 9612");

    for round in 0..2 {
        corrald.kill9().await;
        assert!(
            alive(before["web"]),
            "round {round}: services outlive corrald"
        );
        if round == 1 {
            // While corrald is down, `leaving` is removed from the configuration.
            corrald.write_config(
                &config.replace("[services.leaving]\nexec = [\"sleep\", \"9614\"]\n", ""),
            );
        }
        corrald.start_again().await;
        for name in ["web", "worker", "notified"] {
            let svc = service(&conn, name).await;
            assert_eq!(svc.active_state().await.unwrap(), "active", "{name}");
            assert_eq!(
                svc.main_pid().await.unwrap(),
                before[name],
                "{name} adopted"
            );
        }
        assert_eq!(pids_with_cmdline("sleep 9611").len(), 1, "no second web");
        assert_eq!(pids_with_cmdline("sleep 9613").len(), 1, "no second worker");
        assert_eq!(
            pids_with_cmdline("sleep 9612"),
            worker_helper,
            "its helper too"
        );
        assert_eq!(pids_with_cmdline_containing("durable-notify").len(), 1);
    }
    eventually("a survivor no longer configured is stopped", || {
        pids_with_cmdline("sleep 9614").is_empty()
    })
    .await;

    // The adopted services are supervised as before: a stop ends them, and their group.
    let worker = service(&conn, "worker").await;
    worker.stop().await.unwrap();
    assert!(!alive(before["worker"]));
    assert!(
        pids_with_cmdline("sleep 9612").is_empty(),
        "group stopped too"
    );
    // And one that dies while adopted is restarted (no exit status: not our child).
    let web = service(&conn, "web").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    web.kill(9).await.unwrap();
    wait_until(&mut recorder, || async {
        let pid = web.main_pid().await.unwrap();
        pid != 0 && pid != before["web"] && web.active_state().await.unwrap() == "active"
    })
    .await;
}

#[tokio::test]
async fn a_survivor_stopped_by_request_while_corrald_was_down_is_not_restarted() {
    let bus = TestBus::start();
    let config = "[services.batch]\nautostart = false\nexec = [\"sleep\", \"9621\"]\n";
    let mut corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let batch = service(&conn, "batch").await;
    batch.start().await.unwrap();
    let pid = batch.main_pid().await.unwrap();
    // corrald dies; then its state says batch was stopped by request (as if the stop had
    // been recorded just before the crash) while the process survived.
    corrald.kill9().await;
    let db = corrald.state_dir().join("state.db");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"update desired set state='stopped' where service='batch'\"); c.commit()",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    corrald.start_again().await;
    let batch = service(&conn, "batch").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        batch.active_state().await.unwrap() == "inactive"
    })
    .await;
    // Its cgroup empties at its exit; its new parent (it outlived corrald) reaps it a
    // moment later.
    eventually("the survivor was stopped, not left orphaned", || {
        !alive(pid)
    })
    .await;
    let left = pids_with_cmdline("sleep 9621");
    assert!(
        left.is_empty(),
        "{left:?} {:?}",
        left.iter().map(|p| process_state(*p)).collect::<Vec<_>>()
    );
}
