//! Services in cgroups, through the real corrald on this host's cgroup v2: the cgroup is
//! the authority on a service's processes (a `setsid` + double-forked grandchild is gone
//! after `Stop`), `Pause` freezes it, each run gets a fresh one that is removed when the
//! run is over, limits are written or reported unenforced, a kill -9 of corrald keeps it
//! all working, and `--no-cgroups` keeps process groups.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use support::*;

/// The directory of cgroup `path` (as `ControlGroup` shows it) in the cgroup v2 mount.
fn cgroup_dir(path: &str) -> PathBuf {
    let mount = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    };
    Path::new(mount).join(path.trim_start_matches('/'))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The PIDs in a cgroup.
fn procs(dir: &Path) -> Vec<u32> {
    read(&dir.join("cgroup.procs"))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn frozen(dir: &Path) -> bool {
    read(&dir.join("cgroup.events")).contains("frozen 1")
}

fn parent_of(pid: u32) -> Option<u32> {
    corral::process::procfs::stat(pid).map(|s| s.ppid)
}

/// Waits for `file` to hold a PID (written by a service's shell) and returns it.
async fn pid_in(file: &Path) -> u32 {
    let mut pid = 0;
    eventually("the service wrote its grandchild's PID", || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    })
    .await;
    pid
}

/// A service whose main process leaves a grandchild in a session of its own that ignores
/// SIGTERM (what escapes a process group), its PID written to `file`.
fn escaping_service(name: &str, number: u32, file: &Path) -> String {
    format!(
        r#"
[services.{name}]
exec = ["sh", "-c", "setsid sh -c 'trap \"\" TERM; sleep {number}1 & echo $! > {file}'; exec sleep {number}2"]
"#,
        file = file.display()
    )
}

async fn start_in_cgroup_mode(bus: &TestBus, config: &str) -> Corrald {
    let corrald = Corrald::start(bus, config).await;
    let conn = bus.connect().await;
    let mode = manager(&conn).await.supervision_mode().await.unwrap();
    assert_eq!(
        mode,
        "cgroup",
        "these tests need a writable cgroup v2 (root, /sys/fs/cgroup or \
         /sys/fs/cgroup/unified):\n{}",
        corrald.log()
    );
    corrald
}

#[tokio::test]
async fn stop_kills_a_setsid_double_forked_grandchild_through_the_cgroup() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grandchild");
    let corrald = start_in_cgroup_mode(&bus, &escaping_service("esc", 760, &file)).await;
    let conn = bus.connect().await;
    let esc = service(&conn, "esc").await;
    let grandchild = pid_in(&file).await;
    let cgroup = cgroup_dir(&esc.control_group().await.unwrap());
    assert!(procs(&cgroup).contains(&grandchild), "it is in the cgroup");
    // Its parent exited: corrald, a child subreaper, is its parent now, not init.
    eventually("reparented to corrald", || {
        parent_of(grandchild) == Some(corrald.pid())
    })
    .await;
    esc.stop().await.unwrap();
    assert!(
        !alive(grandchild),
        "Stop returned with the grandchild alive"
    );
    assert!(
        !cgroup.exists(),
        "the cgroup is removed once the run is over"
    );
}

#[tokio::test]
async fn pause_freezes_every_process_and_resume_thaws_them() {
    let bus = TestBus::start();
    let config = r#"
[services.frost]
exec = ["sh", "-c", "sleep 76111 & exec sleep 76112"]
"#;
    let _corrald = start_in_cgroup_mode(&bus, config).await;
    let conn = bus.connect().await;
    let frost = service(&conn, "frost").await;
    let cgroup = cgroup_dir(&frost.control_group().await.unwrap());
    eventually("both processes run", || procs(&cgroup).len() == 2).await;
    let pids = procs(&cgroup);

    for round in 0..2 {
        frost.pause().await.unwrap();
        assert_eq!(frost.active_state().await.unwrap(), "paused");
        assert!(frozen(&cgroup), "round {round}: Pause returns once frozen");
        assert_eq!(read(&cgroup.join("cgroup.freeze")).trim(), "1");
        for &pid in &pids {
            // Frozen, not stopped: nothing the process or its parent could see.
            assert_ne!(process_state(pid).as_deref(), Some("T"), "pid {pid}");
            assert!(alive(pid));
        }
        frost.resume().await.unwrap();
        assert_eq!(frost.active_state().await.unwrap(), "active");
        assert!(
            !frozen(&cgroup),
            "round {round}: Resume returns once thawed"
        );
    }

    // A paused service stops: it is thawed so it can act on SIGTERM.
    frost.pause().await.unwrap();
    frost.stop().await.unwrap();
    assert!(pids.iter().all(|&pid| !alive(pid)));
    assert_eq!(frost.control_group().await.unwrap(), "");
}

#[tokio::test]
async fn each_run_gets_a_fresh_cgroup_that_goes_when_the_run_is_over() {
    let bus = TestBus::start();
    let config = "[services.cg]\nexec = [\"sleep\", \"7621\"]\n";
    let mut corrald = start_in_cgroup_mode(&bus, config).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let base = m.control_group().await.unwrap();
    let cg = service(&conn, "cg").await;
    let path = cg.control_group().await.unwrap();
    assert_eq!(path, format!("{base}/services/cg.service"));
    let dir = cgroup_dir(&path);
    let first = cg.main_pid().await.unwrap();
    assert_eq!(procs(&dir), [first]);
    assert_eq!(
        read(Path::new(&format!("/proc/{first}/cgroup")))
            .lines()
            .find(|l| l.starts_with("0::"))
            .unwrap(),
        format!("0::{path}"),
        "the process joined its cgroup before it ran"
    );
    let before = std::fs::metadata(&dir).unwrap().ino();

    // The second run of the path: a new cgroup in the same place, the old one removed.
    cg.restart().await.unwrap();
    let second = cg.main_pid().await.unwrap();
    assert_ne!(second, first);
    assert!(!alive(first));
    assert_eq!(cg.control_group().await.unwrap(), path);
    assert_eq!(procs(&dir), [second]);
    assert_ne!(
        std::fs::metadata(&dir).unwrap().ino(),
        before,
        "a fresh cgroup"
    );

    cg.stop().await.unwrap();
    assert_eq!(cg.control_group().await.unwrap(), "");
    assert!(!dir.exists());
    // At a clean shutdown corrald removes the private subtree it made.
    assert_eq!(corrald.terminate().await, Some(0));
    assert!(!cgroup_dir(&base).exists(), "{base} left behind");
}

#[tokio::test]
async fn limits_are_written_or_reported_unenforced_also_after_a_reload() {
    let bus = TestBus::start();
    let config = |tasks: u32| {
        format!(
            "[services.lim]\nexec = [\"sleep\", \"7631\"]\nmemory_max = \"64M\"\ntasks_max = {tasks}\n"
        )
    };
    let corrald = start_in_cgroup_mode(&bus, &config(32)).await;
    let conn = bus.connect().await;
    let lim = service(&conn, "lim").await;
    let dir = cgroup_dir(&lim.control_group().await.unwrap());
    let enabled = read(&dir.parent().unwrap().join("cgroup.subtree_control"));
    let has = |controller: &str| enabled.split_whitespace().any(|c| c == controller);

    let check = |unenforced: Vec<String>, log: String, tasks: u32| {
        for (controller, key, file, value, shown) in [
            (
                "memory",
                "memory_max",
                "memory.max",
                "67108864".to_owned(),
                "64M".to_owned(),
            ),
            (
                "pids",
                "tasks_max",
                "pids.max",
                tasks.to_string(),
                tasks.to_string(),
            ),
        ] {
            let report = unenforced.iter().find(|l| l.starts_with(key));
            if has(controller) {
                assert_eq!(read(&dir.join(file)).trim(), value);
                assert!(report.is_none(), "{unenforced:?}");
            } else {
                let report = report.unwrap_or_else(|| panic!("{key} not reported: {unenforced:?}"));
                assert!(
                    report.starts_with(&format!(
                        "{key} = {shown} is not enforced: the {controller} controller is not \
                         available to corrald's cgroups: "
                    )),
                    "{report}"
                );
                assert!(log.contains(report.as_str()), "not in the log: {report}");
            }
        }
    };
    check(lim.unenforced_limits().await.unwrap(), corrald.log(), 32);
    // `corralctl status` shows both.
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .args(["status", "lim"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    let path = lim.control_group().await.unwrap();
    assert!(shown.contains(&format!("    CGroup: {path}\n")), "{shown}");
    for limit in lim.unenforced_limits().await.unwrap() {
        assert!(shown.contains(&format!("   Warning: {limit}\n")), "{shown}");
    }

    // A reload changes a limit of the running service: written at once, no restart.
    let pid = lim.main_pid().await.unwrap();
    corrald.write_config(&config(16));
    manager(&conn).await.reload().await.unwrap();
    assert_eq!(lim.main_pid().await.unwrap(), pid);
    check(lim.unenforced_limits().await.unwrap(), corrald.log(), 16);
}

#[tokio::test]
async fn without_cgroups_services_use_process_groups_and_every_limit_is_reported() {
    let bus = TestBus::start();
    let config = "[services.pg]\nexec = [\"sleep\", \"7661\"]\nmemory_max = \"1G\"\n";
    let corrald = Corrald::spawn(&bus, config, &["--no-cgroups"]);
    corrald.wait_notify("READY=1").await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    assert_eq!(m.supervision_mode().await.unwrap(), "process-groups");
    assert_eq!(m.control_group().await.unwrap(), "");
    let pg = service(&conn, "pg").await;
    assert_eq!(pg.control_group().await.unwrap(), "");
    assert_eq!(
        pg.unenforced_limits().await.unwrap(),
        [
            "memory_max = 1G is not enforced: corrald runs without cgroups (corrald was started \
          with --no-cgroups)"
        ]
    );
    let pid = pg.main_pid().await.unwrap();
    assert_eq!(
        corral::process::procfs::stat(pid).unwrap().pgrp,
        pid,
        "its own process group"
    );
    assert!(
        corrald
            .log()
            .contains("tracking services with process groups")
    );
}

#[tokio::test]
async fn after_kill_9_survivors_keep_their_cgroups_and_leftovers_are_killed() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let (kept, died) = (dir.path().join("kept"), dir.path().join("died"));
    let config = escaping_service("kept", 764, &kept) + &escaping_service("died", 765, &died);
    let mut corrald = start_in_cgroup_mode(&bus, &config).await;
    let conn = bus.connect().await;
    let k = service(&conn, "kept").await;
    let (k_main, k_group) = (
        k.main_pid().await.unwrap(),
        k.control_group().await.unwrap(),
    );
    let k_grandchild = pid_in(&kept).await;
    let d = service(&conn, "died").await;
    let d_main = d.main_pid().await.unwrap();
    let d_grandchild = pid_in(&died).await;
    eventually("died's main runs sleep", || {
        pids_with_cmdline("sleep 7652").contains(&d_main)
    })
    .await;

    corrald.kill9().await;
    // While corrald is down, one service's main process dies; its grandchild stays.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d_main as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("died's main is gone", || !alive(d_main)).await;
    corrald.start_again().await;

    let k = service(&conn, "kept").await;
    assert_eq!(
        k.main_pid().await.unwrap(),
        k_main,
        "re-adopted, not started again"
    );
    assert_eq!(k.control_group().await.unwrap(), k_group);
    assert_eq!(pids_with_cmdline("sleep 7642"), [k_main]);
    // The dead run's leftovers were killed; a new run took its place.
    eventually("the dead run's grandchild is killed", || {
        !alive(d_grandchild)
    })
    .await;
    let d = service(&conn, "died").await;
    assert_eq!(d.active_state().await.unwrap(), "active");
    assert_ne!(d.main_pid().await.unwrap(), d_main);

    // Stop reaches the re-adopted run's escaped grandchild through the cgroup.
    k.stop().await.unwrap();
    assert!(!alive(k_grandchild));
    assert!(!cgroup_dir(&k_group).exists());
}
