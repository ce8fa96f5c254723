//! corrald as a child subreaper: a forking daemon stays its child, so its exit status is
//! known; an orphan a service leaves behind is reaped when it exits, leaving no zombie; and
//! the exit statuses of manager methods and recipe steps still reach their owners while
//! orphans come and go.

mod support;

use std::path::Path;

use support::*;

/// Zombie children of `pid`.
fn zombie_children(pid: u32) -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|&child| process_state(child).as_deref() == Some("Z"))
        .collect()
}

#[tokio::test]
async fn a_forking_daemons_exit_status_is_known() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    // The launcher forks a daemon into a session of its own and exits 0; the daemon writes
    // its pidfile and exits 7 on SIGUSR1.
    let script = format!(
        "import os, signal, sys\n\
         if os.fork() == 0:\n\
         \x20   os.setsid()\n\
         \x20   signal.signal(signal.SIGUSR1, lambda *a: os._exit(7))\n\
         \x20   open('{pid}.tmp', 'w').write(str(os.getpid()))\n\
         \x20   os.rename('{pid}.tmp', '{pid}')\n\
         \x20   while True: signal.pause()\n\
         sys.exit(0)\n",
        pid = pidfile.display()
    );
    let config = format!(
        "[services.fork]\ntype = \"forking\"\nrestart = \"no\"\npidfile = \"{}\"\nexec = [\"python3\", \"-c\", {}]\n",
        pidfile.display(),
        toml_string(&script)
    );
    for extra in [&[][..], &["--no-cgroups"][..]] {
        std::fs::remove_file(&pidfile).ok();
        let corrald = Corrald::spawn(&bus, &config, extra);
        corrald.wait_notify("READY=1").await;
        let conn = bus.connect().await;
        let fork = service(&conn, "fork").await;
        assert_eq!(fork.active_state().await.unwrap(), "active", "{extra:?}");
        let daemon = fork.main_pid().await.unwrap();
        assert_eq!(
            corral::process::procfs::stat(daemon).unwrap().ppid,
            corrald.pid(),
            "the daemon is corrald's child once its launcher exited"
        );
        let mut recorder = SignalRecorder::new(&conn).await;
        fork.kill(10).await.unwrap(); // SIGUSR1
        wait_until(&mut recorder, || async {
            fork.active_state().await.unwrap() == "failed"
        })
        .await;
        assert_eq!(fork.exec_main_status().await.unwrap(), 7, "{extra:?}");
        let error = fork.last_error().await.unwrap();
        assert!(
            error.contains(&format!("main process {daemon} exited with status 7")),
            "{error}"
        );
        drop(corrald);
    }
}

#[tokio::test]
async fn an_orphan_that_exits_leaves_no_zombie() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orphan");
    // The middle shell exits at once: its `sleep` is an orphan, a child of corrald's.
    let config = format!(
        "[services.z]\nexec = [\"sh\", \"-c\", \"sh -c 'sleep 2 & echo $! > {}'; exec sleep 7711\"]\n",
        file.display()
    );
    for extra in [&[][..], &["--no-cgroups"][..]] {
        std::fs::remove_file(&file).ok();
        let corrald = Corrald::spawn(&bus, &config, extra);
        corrald.wait_notify("READY=1").await;
        let orphan = pid_written_to(&file).await;
        eventually("the orphan is reparented to corrald, not to init", || {
            corral::process::procfs::stat(orphan).map(|s| s.ppid) == Some(corrald.pid())
        })
        .await;
        eventually("the orphan is reaped, not left a zombie", || {
            !Path::new(&format!("/proc/{orphan}")).exists()
        })
        .await;
        assert!(zombie_children(corrald.pid()).is_empty());
        drop(corrald);
    }
}

#[tokio::test]
async fn methods_and_recipes_keep_their_exit_statuses_while_orphans_are_reaped() {
    let bus = TestBus::start();
    // A service that makes an orphan every few milliseconds: SIGCHLD after SIGCHLD.
    let config = r#"
[services.churn]
exec = ["sh", "-c", "while :; do sh -c 'sleep 0.01 &'; sleep 0.01; done"]

[services.churn.methods.fine]
exec = ["sh", "-c", "echo fine"]

[services.churn.methods.three]
exec = ["sh", "-c", "echo oops >&2; exit 3"]

[services.churn.recipes.five]
steps = [["sh", "-c", "exit 5"]]
"#;
    let corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let churn = service(&conn, "churn").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    for round in 0..15 {
        assert_eq!(
            churn.call("fine", &[]).await.unwrap(),
            "fine\n",
            "round {round}"
        );
        let err = churn.call("three", &[]).await.unwrap_err();
        assert_eq!(error_name(&err), "org.corral.Corral1.Error.MethodFailed");
        assert!(
            err.to_string().contains("exit status: 3"),
            "round {round}: {err}"
        );
        let job = churn.run_recipe("five").await.unwrap();
        let seen = recorder.until("JobFinished", &format!("[{job},")).await;
        let finished = seen.last().unwrap();
        assert_eq!(finished.args[2], 5, "round {round}: {finished:?}");
    }
    churn.stop().await.unwrap();
    eventually("no zombie is left", || {
        zombie_children(corrald.pid()).is_empty()
    })
    .await;
}

/// Waits for `file` to hold a PID and returns it.
async fn pid_written_to(file: &Path) -> u32 {
    let mut pid = 0;
    eventually("the PID is written", || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    })
    .await;
    pid
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}
