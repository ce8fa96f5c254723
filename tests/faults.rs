//! Faults injected from outside while corrald runs: its bus dies, its runtime directory
//! vanishes, it is killed in the middle of a reload, services are killed in the middle of
//! a reload, a service's binary disappears, services that ignore SIGTERM and fork or that
//! close their stdout. After each, every service has exactly one running process and the
//! state it should have, and corrald answers (or, for the bus, exits so that systemd
//! restarts it, and the new corrald re-adopts every service).

mod support;

use support::*;

#[tokio::test]
async fn when_the_bus_dies_corrald_exits_non_zero_and_its_successor_adopts_the_services() {
    let mut bus = TestBus::start();
    let config = r#"
[services.web]
exec = ["sleep", "47201"]
[services.worker]
exec = ["sh", "-c", "sleep 47202 & exec sleep 47203"]
"#;
    let mut corrald = Corrald::start(&bus, config).await;
    let pids = {
        let conn = bus.connect().await;
        let web = service(&conn, "web").await.main_pid().await.unwrap();
        let worker = service(&conn, "worker").await.main_pid().await.unwrap();
        (web, worker)
    };
    bus.restart();
    let code = corrald.wait_exit().await;
    assert!(
        matches!(code, Some(c) if c != 0),
        "exits non-zero so systemd restarts it: {code:?}"
    );
    assert!(
        corrald.log().contains("lost its connection to the bus"),
        "says why in the journal"
    );
    assert!(alive(pids.0) && alive(pids.1), "services keep running");
    corrald.start_again().await;
    let conn = bus.connect().await;
    let web = service(&conn, "web").await;
    let worker = service(&conn, "worker").await;
    assert_eq!(web.main_pid().await.unwrap(), pids.0, "re-adopted");
    assert_eq!(worker.main_pid().await.unwrap(), pids.1, "re-adopted");
    assert_eq!(web.active_state().await.unwrap(), "active");
    assert_eq!(pids_with_cmdline("sleep 47201").len(), 1);
    assert_eq!(pids_with_cmdline("sleep 47202").len(), 1);
    assert_eq!(pids_with_cmdline("sleep 47203").len(), 1);
}

/// `n` services `s0..`: `sleep <base + i>.<version zeros>`, so a changed definition is
/// another command line for the same long sleep.
fn services(n: u32, base: u32, version: usize, extra: &str) -> String {
    (0..n)
        .map(|i| {
            let arg = format!("{}.{}", base + i, "0".repeat(version + 1));
            format!("[services.s{i}]\nexec = [\"sleep\", \"{arg}\"]\n{extra}\n")
        })
        .collect()
}

/// The sleep argument of a process, if it is one of ours.
fn sleep_arg(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    if args.first() != Some(&&b"sleep"[..]) {
        return None;
    }
    Some(String::from_utf8_lossy(args.get(1)?).into_owned())
}

/// The PIDs of every copy of service `i` (under any definition).
fn copies(base: u32, i: u32) -> Vec<u32> {
    let prefix = format!("{}.", base + i);
    pids_with_cmdline_containing(&format!("sleep {prefix}"))
        .into_iter()
        .filter(|pid| sleep_arg(*pid).is_some_and(|a| a.starts_with(&prefix)))
        .collect()
}

/// After a fault: every service `s0..s{n}` is active with exactly one process, which is its
/// MainPID.
async fn exactly_one_each(conn: &zbus::Connection, n: u32, base: u32) {
    for i in 0..n {
        // One recorder per service, dropped before the next: an undrained zbus stream
        // stops its connection from reading (replies too) once its queue is full.
        let mut recorder = SignalRecorder::new(conn).await;
        let svc = service(conn, &format!("s{i}")).await;
        // Settled: active, and its one process is its MainPID (a stop the killed corrald
        // sent may still end a re-adopted process, which is then restarted).
        let mut seen = (0, Vec::new());
        let settled = tokio::time::timeout(PATIENCE, async {
            loop {
                let pid = svc.main_pid().await.unwrap();
                let active = svc.active_state().await.unwrap() == "active";
                seen = (pid, copies(base, i));
                if active && seen.1 == vec![pid] {
                    return;
                }
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(100), recorder.next())
                        .await;
            }
        })
        .await;
        assert!(settled.is_ok(), "s{i}: MainPID and copies {seen:?}");
    }
}

/// Reloads that change every service's definition (so each is restarted), with corrald
/// killed a little later into the reload each round; then a new corrald on the same state.
/// Returns whether every service ended up running its new definition.
async fn kill_9_mid_reload(base: u32) -> bool {
    const N: u32 = 12;
    let bus = TestBus::start();
    let mut corrald = Corrald::start(&bus, &services(N, base, 0, "")).await;
    let conn = bus.connect().await;
    let mut current = true;
    for round in 0..4u32 {
        corrald.write_config(&services(N, base, round as usize + 1, ""));
        {
            let mut recorder = SignalRecorder::new(&conn).await;
            corrald.signal(nix::sys::signal::Signal::SIGHUP);
            recorder.until("ReloadStarted", "").await;
            for _ in 0..round * 3 {
                recorder.next().await;
            }
        }
        corrald.kill9().await;
        corrald.start_again().await;
        exactly_one_each(&conn, N, base).await;
        for i in 0..N {
            let pid = service(&conn, &format!("s{i}"))
                .await
                .main_pid()
                .await
                .unwrap();
            let arg = sleep_arg(pid).unwrap();
            current &= arg == format!("{}.{}", base + i, "0".repeat(round as usize + 2));
        }
    }
    current
}

#[tokio::test]
async fn kill_9_of_corrald_in_the_middle_of_a_reload_leaves_one_copy_of_each_service() {
    kill_9_mid_reload(47300).await;
}

/// Found by the test above: a service the interrupted reload had not restarted yet was
/// re-adopted by the next corrald as it ran, with its old definition, and nothing
/// restarted it. The run record now keeps the definition's fingerprint.
#[tokio::test]
async fn a_service_readopted_after_a_crash_mid_reload_runs_its_new_definition() {
    assert!(
        kill_9_mid_reload(47350).await,
        "a service runs an outdated definition"
    );
}

#[tokio::test]
async fn services_killed_at_random_moments_of_a_reload_all_end_up_running_once() {
    const BASE: u32 = 47400;
    const N: u32 = 12;
    let bus = TestBus::start();
    let extra = "restart = \"always\"\nrestart_delay = \"0s\"\nstart_limit_burst = 100000";
    let corrald = Corrald::start(&bus, &services(N, BASE, 0, extra)).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        // xorshift: reproducible "random" moments without a dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..4u32 {
        corrald.write_config(&services(N, BASE, round as usize + 1, extra));
        let reload = tokio::spawn({
            let m = m.clone();
            async move { m.reload().await }
        });
        // Kill -9 a random service every few milliseconds until the reload returns.
        let mut killed = 0;
        while !reload.is_finished() {
            let victim = (next() % N as u64) as u32;
            for pid in copies(BASE, victim) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                killed += 1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(next() % 4)).await;
        }
        let outcome = reload.await.unwrap();
        println!("round {round}: {killed} kills during the reload; reload {outcome:?}");
        exactly_one_each(&conn, N, BASE).await;
    }
    assert_eq!(m.state().await.unwrap(), "running");
}

#[tokio::test]
async fn a_deleted_binary_fails_its_start_clearly_and_harms_no_other_service() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("mysleep");
    std::fs::copy("/bin/sleep", &binary).unwrap();
    let config = |arg: &str| {
        format!(
            "[services.doomed]\nrestart = \"no\"\nexec = [\"{}\", \"{arg}\"]\n[services.bystander]\nexec = [\"sleep\", \"47501\"]\n",
            binary.display()
        )
    };
    let corrald = Corrald::start(&bus, &config("47502")).await;
    let conn = bus.connect().await;
    let bystander = service(&conn, "bystander").await;
    let pid = bystander.main_pid().await.unwrap();
    std::fs::remove_file(&binary).unwrap();
    corrald.write_config(&config("47503"));
    let reload = manager(&conn).await.reload().await;
    let doomed = service(&conn, "doomed").await;
    let error = doomed.last_error().await.unwrap();
    assert!(
        error.contains(&binary.display().to_string()),
        "LastError names the missing binary: {error:?} (reload: {reload:?})"
    );
    assert_eq!(doomed.active_state().await.unwrap(), "failed");
    let err = doomed.start().await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.StartFailed");
    assert!(err.to_string().contains("mysleep"), "{err}");
    assert_eq!(
        bystander.main_pid().await.unwrap(),
        pid,
        "bystander untouched"
    );
    assert_eq!(bystander.active_state().await.unwrap(), "active");
}

#[tokio::test]
async fn a_service_that_ignores_sigterm_and_forks_is_stopped_with_its_children() {
    let bus = TestBus::start();
    let config = r#"
[services.stubborn]
exec = ["sh", "-c", "trap '' TERM; sleep 47601 & sleep 47602 & while :; do sleep 47603; done"]
stop_timeout = "1s"
[services.bystander]
exec = ["sleep", "47604"]
"#;
    let _corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let stubborn = service(&conn, "stubborn").await;
    let bystander = service(&conn, "bystander").await;
    let pid = bystander.main_pid().await.unwrap();
    eventually("its children run", || {
        ["sleep 47601", "sleep 47602", "sleep 47603"]
            .iter()
            .all(|c| pids_with_cmdline(c).len() == 1)
    })
    .await;
    stubborn.stop().await.unwrap();
    for child in ["sleep 47601", "sleep 47602", "sleep 47603"] {
        assert!(
            pids_with_cmdline(child).is_empty(),
            "{child} was stopped too"
        );
    }
    assert_eq!(stubborn.active_state().await.unwrap(), "inactive");
    assert_eq!(bystander.main_pid().await.unwrap(), pid);
    stubborn.start().await.unwrap();
    assert_eq!(stubborn.active_state().await.unwrap(), "active");
}

#[tokio::test]
async fn a_service_that_closes_its_stdout_keeps_running_and_others_keep_logging() {
    let bus = TestBus::start();
    let config = r#"
[services.mute]
exec = ["sh", "-c", "echo before-closing; exec >&- 2>&-; exec sleep 47701"]
[services.chatty]
exec = ["sh", "-c", "while :; do echo chatty-line; sleep 0.2; done"]
"#;
    let corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let mute = service(&conn, "mute").await;
    let pid = mute.main_pid().await.unwrap();
    eventually("mute's last words reach the log", || {
        corrald.log().contains("before-closing")
    })
    .await;
    let lines = corrald.log().matches("chatty-line").count();
    eventually("chatty keeps logging", || {
        corrald.log().matches("chatty-line").count() > lines + 2
    })
    .await;
    assert_eq!(mute.main_pid().await.unwrap(), pid);
    assert_eq!(mute.active_state().await.unwrap(), "active");
    mute.restart().await.unwrap();
    assert_eq!(mute.active_state().await.unwrap(), "active");
    assert_eq!(pids_with_cmdline("sleep 47701").len(), 1);
}

/// With the runtime directory removed underneath corrald (a careless `rm -rf /run/corral`,
/// a tmpfiles clean-up), the shared notify socket's file was gone, so every `type =
/// "notify"` service failed its next start until corrald restarted. The next start now
/// makes the socket again.
#[tokio::test]
async fn a_notify_service_restarts_after_the_runtime_directory_was_removed() {
    let bus = TestBus::start();
    let config = r#"
[services.plain]
exec = ["sleep", "47801"]
[services.notified]
type = "notify"
exec = ["python3", "-c", "import os,socket,time; time.sleep(0.3); socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)", "faults-notify"]
"#;
    let corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    std::fs::remove_dir_all(corrald.dir.path().join("run")).unwrap();
    service(&conn, "plain").await.restart().await.unwrap();
    service(&conn, "notified")
        .await
        .restart()
        .await
        .expect("a notify service restarts without the old runtime directory");
}

/// corrald killed with SIGKILL while a start waits for `READY=1`, and while a stop waits
/// for a service that takes its time to exit: the next corrald finds each in the state
/// its client asked for, with exactly one process or none.
#[tokio::test]
async fn kill_9_of_corrald_mid_start_and_mid_stop_ends_in_the_asked_state() {
    let bus = TestBus::start();
    let config = r#"
[services.slowstart]
type = "notify"
autostart = false
exec = ["python3", "-c", "import os,socket,time; time.sleep(1.5); socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)", "faults-midstart"]
[services.slowstop]
type = "notify"
stop_timeout = "20s"
exec = ["python3", "-c", "import os,signal,socket,sys,time; signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1.5), sys.exit(0))); socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)", "faults-midstop"]
"#;
    let mut corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let slowstop = service(&conn, "slowstop").await;
    let stopping_pid = slowstop.main_pid().await.unwrap();

    // A start in flight (the service has not sent READY=1 yet) and a stop in flight (the
    // service, ready once its SIGTERM handler is in place, still cleaning up) when
    // corrald dies.
    let slowstart = service(&conn, "slowstart").await;
    let starting = tokio::spawn(async move { slowstart.start().await });
    let stopping = tokio::spawn({
        let slowstop = slowstop.clone();
        async move { slowstop.stop().await }
    });
    eventually("the start is under way", || {
        pids_with_cmdline_containing("faults-midstart").len() == 1
    })
    .await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        slowstop.sub_state().await.unwrap() == "stop-sigterm"
    })
    .await;
    drop(recorder);
    corrald.kill9().await;
    let _ = (starting.await, stopping.await);
    corrald.start_again().await;

    // The start: one process, the same one, active once its READY=1 arrives.
    let starter = pids_with_cmdline_containing("faults-midstart");
    assert_eq!(starter.len(), 1, "no second copy: {starter:?}");
    let slowstart = service(&conn, "slowstart").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        slowstart.active_state().await.unwrap() == "active"
    })
    .await;
    assert_eq!(slowstart.main_pid().await.unwrap(), starter[0]);
    // The stop: the service was asked to stop, so it is not started again, and the process
    // that survived corrald is gone.
    let slowstop = service(&conn, "slowstop").await;
    wait_until(&mut recorder, || async {
        slowstop.active_state().await.unwrap() == "inactive"
    })
    .await;
    eventually("the stopping survivor is gone", || !alive(stopping_pid)).await;
    assert!(pids_with_cmdline_containing("faults-midstop").is_empty());
}
