//! corrald as systemd sees it: the sd_notify protocol (READY, STATUS, RELOADING, STOPPING,
//! WATCHDOG), start-up with a bad configuration, shutdown leaving nothing behind, where
//! children's output goes, and the descriptor limits of corrald and its children.

mod support;

use support::*;

#[tokio::test]
async fn notifies_ready_with_a_status_summary_and_stopping_on_sigterm() {
    let bus = TestBus::start();
    let config = r#"
[services.a]
exec = ["sleep", "7701"]
[services.b]
exec = ["sh", "-c", "sleep 7702 & sleep 7703 & wait"]
[services.c]
exec = ["/nonexistent/cmd"]
restart = "no"
"#;
    let mut corrald = Corrald::spawn(&bus, config, &[]);
    let before_ready = corrald.wait_notify("READY=1").await;
    let status = before_ready
        .iter()
        .find(|m| m.starts_with("STATUS="))
        .expect("a STATUS= before READY=1");
    assert_eq!(status.trim(), "STATUS=3 services: 2 active, 1 failed");

    // The bus name is owned by the time READY=1 is sent.
    let conn = bus.connect().await;
    assert_eq!(manager(&conn).await.list_services().await.unwrap().len(), 3);
    // READY=1 means b's shell was spawned; its own children come a moment later.
    eventually("b's shell forked sleep 7702", || {
        pids_with_cmdline("sleep 7702").len() == 1
    })
    .await;

    corrald.signal(nix::sys::signal::Signal::SIGTERM);
    corrald.wait_notify("STOPPING=1").await;
    assert_eq!(corrald.wait_exit().await, Some(0));
    for cmd in ["sleep 7701", "sleep 7702", "sleep 7703"] {
        assert!(pids_with_cmdline(cmd).is_empty(), "{cmd} left behind");
    }
}

#[tokio::test]
async fn children_never_inherit_corralds_own_notify_socket() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let config = format!(
        "[services.envdump]\nrestart = \"no\"\nenvironment = {{ FOO = \"bar\" }}\nexec = [\"sh\", \"-c\", \"env > {}\"]\n",
        out.display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    eventually("env written", || {
        std::fs::metadata(&out).is_ok_and(|m| m.len() > 0)
    })
    .await;
    let env = std::fs::read_to_string(&out).unwrap();
    assert!(!env.contains("NOTIFY_SOCKET"), "{env}");
    assert!(
        !env.contains("DBUS_SYSTEM_BUS_ADDRESS"),
        "corrald's environment leaked: {env}"
    );
    assert!(env.contains("FOO=bar"), "{env}");
    assert!(env.contains("PATH=/usr/local/sbin:"), "{env}");
}

#[tokio::test]
async fn an_invalid_config_at_startup_exits_nonzero_naming_file_and_line() {
    let bus = TestBus::start();
    let config = "[services.a]\nexec = [\"sleep\", \"1\"]\n\n[services.b]\nexec = []\nafter = [\"nosuch\"]\n";
    let mut corrald = Corrald::spawn(&bus, config, &[]);
    assert_eq!(corrald.wait_exit().await, Some(2));
    let log = corrald.log();
    let file = corrald.config_path().display().to_string();
    assert!(
        log.contains(&format!("{file}:5:")),
        "names file and line of exec: {log}"
    );
    assert!(log.contains("nosuch"), "reports every problem: {log}");
}

#[tokio::test]
async fn check_mode_validates_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[services.a]\nexec = [\"true\"]\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corrald"))
        .args(["--check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration ok: 1 services"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[services.a]\nexec = [\"true\"]\nstop_signal = \"SIGNOPE\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corrald"))
        .args(["--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:3:"), "{stderr}");
}

#[tokio::test]
async fn without_journald_child_output_is_prefixed_on_stderr() {
    let bus = TestBus::start();
    let config = "[services.talker]\nrestart = \"no\"\nexec = [\"sh\", \"-c\", \"echo hello out; echo hello err >&2\"]\n";
    let corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let talker = service(&conn, "talker").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        talker.active_state().await.unwrap() == "inactive"
    })
    .await;
    eventually("output copied", || corrald.log().contains("hello err")).await;
    let log = corrald.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("talker[") && l.ends_with("]: hello out")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("talker[") && l.ends_with("]: hello err")),
        "{log}"
    );
}

#[tokio::test]
async fn pings_the_watchdog_while_its_core_answers() {
    let bus = TestBus::start();
    let corrald = {
        // WATCHDOG_USEC is read from the environment, as systemd passes it.
        let c = Corrald::spawn_with_env(&bus, "", &[("WATCHDOG_USEC", "200000")]);
        c.wait_notify("READY=1").await;
        c
    };
    let mut pings = 0;
    while pings < 3 {
        if corrald.next_notify().await.contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    // A stopped corrald stops pinging: that is what lets systemd restart a hung one.
    corrald.signal(nix::sys::signal::Signal::SIGSTOP);
    let silent =
        tokio::time::timeout(std::time::Duration::from_millis(400), corrald.next_notify()).await;
    corrald.signal(nix::sys::signal::Signal::SIGCONT);
    assert!(silent.is_err(), "no ping while stopped: {silent:?}");
}

#[tokio::test]
async fn a_second_corrald_on_the_same_state_dir_refuses_to_start_and_says_why() {
    let config = "[services.a]\nexec = [\"sleep\", \"60\"]\n";
    let first_bus = TestBus::start();
    let mut first = Corrald::start(&first_bus, config).await;
    let state_dir = first.state_dir();
    assert!(
        state_dir.join("state.db").is_file(),
        "--state-dir holds the database"
    );
    // Another bus, so the bus name does not stop it: only the state directory's lock does.
    let second_bus = TestBus::start();
    let mut second = Corrald::spawn(
        &second_bus,
        config,
        &["--state-dir", state_dir.to_str().unwrap()],
    );
    assert_eq!(second.wait_exit().await, Some(1));
    let log = second.log();
    assert!(
        log.contains("another corrald is using the state directory")
            && log.contains(state_dir.to_str().unwrap()),
        "{log}"
    );
    assert!(!log.contains("READY"), "{log}");
    assert_eq!(first.terminate().await, Some(0));
    // Once the first is gone, the directory is free again: the second run of the path.
    let mut third = Corrald::spawn(
        &second_bus,
        config,
        &["--state-dir", state_dir.to_str().unwrap()],
    );
    third.wait_notify("READY=1").await;
    assert_eq!(third.terminate().await, Some(0));
}

/// The (soft, hard) "Max open files" of process `pid`.
fn nofile_of(pid: u32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap();
    let mut fields = line.split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn raises_its_own_descriptor_limit_and_gives_services_1024_back() {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard <= 1024 {
        eprintln!("SKIPPED: the hard descriptor limit is {hard}, nothing to raise");
        return;
    }
    let bus = TestBus::start();
    let config = r#"
[services.plain]
exec = ["sleep", "7711"]
[services.wide]
exec = ["sleep", "7712"]
limit_nofile = "4096:8192"
"#;
    // What a systemd unit without LimitNOFILE= gets: soft 1024.
    let nofile = format!("--nofile=1024:{hard}");
    let corrald = Corrald::start_wrapped(&bus, config, &["prlimit", &nofile, "--"]).await;
    let hard = hard.to_string();
    assert_eq!(
        nofile_of(corrald.pid()),
        (hard.clone(), hard.clone()),
        "raised to the hard limit"
    );
    assert!(
        corrald.log().contains(&format!(
            "descriptor limit (RLIMIT_NOFILE): soft 1024 -> {hard}, hard {hard}"
        )),
        "{}",
        corrald.log()
    );
    let conn = bus.connect().await;
    let plain = service(&conn, "plain").await.main_pid().await.unwrap();
    assert_eq!(
        nofile_of(plain),
        ("1024".to_owned(), hard),
        "select()-safe soft limit"
    );
    let wide = service(&conn, "wide").await.main_pid().await.unwrap();
    assert_eq!(nofile_of(wide), ("4096".to_owned(), "8192".to_owned()));
}
