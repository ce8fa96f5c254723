//! The driver against the real cgroup v2 hierarchy of this host, with real processes.
//! Each test makes its own subtree below the v2 root and removes it even when it fails
//! ([`Scratch`]). Without a writable cgroup v2 (not root, or none mounted) the tests say so
//! and pass without checking anything — the only case they skip.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;
use crate::config::{CgroupLimits, Max, Service};
use crate::process::spawn::{SpawnRequest, spawn};
use crate::process::{OutputMode, cgroup::detect::v2_mount};

const PATIENCE: Duration = Duration::from_secs(20);

/// A subtree of its own for one test: on drop, everything in it is killed and every
/// cgroup below it removed, whatever the test left.
struct Scratch {
    cgroups: Cgroups,
    dir: std::path::PathBuf,
}

impl Scratch {
    /// `None` (after saying why) when this host has no writable cgroup v2.
    fn new(test: &str) -> Option<Scratch> {
        let (mount, path) = scratch_path(test)?;
        match Cgroups::at(&mount, &path) {
            Ok(cgroups) => Some(Scratch {
                cgroups,
                dir: detect::dir_of(&mount, &path),
            }),
            Err(why) if why.contains("Permission denied") || why.contains("Read-only") => {
                eprintln!("SKIPPED {test}: cgroup v2 is not writable here: {why}");
                None
            }
            Err(why) => panic!("cannot make a test cgroup subtree: {why}"),
        }
    }
}

/// A fresh cgroup path for a test below the v2 root, or `None` when there is no v2.
fn scratch_path(test: &str) -> Option<(std::path::PathBuf, String)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some(mount) = v2_mount() else {
        eprintln!("SKIPPED {test}: no cgroup v2 hierarchy on this host");
        return None;
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Some((mount, format!("/corral-test-{}-{n}", std::process::id())))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

/// Kills everything below `dir` (`cgroup.kill` reaches descendants), waits until it is
/// empty, and removes every cgroup below it, bottom up.
fn remove_tree(dir: &Path) {
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    // Killed processes leave asynchronously: wait for the event (on a thread of its own,
    // since this may run inside a test's runtime).
    let top = ServiceCgroup::new(dir.to_owned(), String::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ =
                runtime.block_on(async { tokio::time::timeout(PATIENCE, top.wait_empty()).await });
        });
    });
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    remove(dir);
}

/// A FIFO a test's child writes a line to when it is ready.
struct Ready {
    dir: tempfile::TempDir,
}

impl Ready {
    fn new() -> Ready {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("ready"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        Ready { dir }
    }

    fn fifo(&self) -> String {
        self.dir.path().join("ready").display().to_string()
    }

    fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Resolves once the child wrote its line (and closed the FIFO).
    async fn wait(&self) -> String {
        use tokio::io::AsyncReadExt;
        let mut pipe = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(self.dir.path().join("ready"))
            .unwrap();
        let mut text = String::new();
        tokio::time::timeout(PATIENCE, pipe.read_to_string(&mut text))
            .await
            .expect("the child says it is ready")
            .unwrap();
        text
    }
}

/// Resolves once `file` is longer than `len` bytes (inotify, not polling).
async fn wait_growth(file: &Path, len: u64) {
    let watch = events::Watch::open(file).unwrap();
    let size = || std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    tokio::time::timeout(PATIENCE, async {
        while size() <= len {
            watch.changed().await.unwrap();
        }
    })
    .await
    .expect("the file grows");
}

fn service(exec: &[&str]) -> Service {
    Service {
        exec: exec.iter().map(|s| s.to_string()).collect(),
        ..Service::default()
    }
}

/// Spawns `svc` into `cgroup` through the real spawn path.
fn spawn_into(svc: &Service, cgroup: &ServiceCgroup) -> crate::process::Child {
    spawn(&SpawnRequest {
        name: "t",
        service: svc,
        notify_socket: None,
        output: &OutputMode::Stderr,
        cgroup: Some(cgroup),
    })
    .expect("spawn")
}

/// The cgroup v2 path of process `pid`.
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    detect::own_cgroup(&text).unwrap()
}

/// The state letter of `/proc/PID/stat` (R, S, D, T, …).
fn state_of(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after.trim_start().chars().next().unwrap()
}

#[tokio::test]
async fn a_double_forked_setsid_grandchild_stays_in_the_cgroup_until_kill() {
    let Some(scratch) = Scratch::new("double fork") else {
        return;
    };
    let prepared = scratch
        .cgroups
        .prepare("escaper", &CgroupLimits::default())
        .unwrap();
    let cgroup = prepared.cgroup.expect("cgroup mode");
    assert!(prepared.unapplied.is_empty(), "no limits were configured");
    assert!(cgroup.path().ends_with("/services/escaper.service"));
    // The classic daemonization a process-group kill misses: a new session, and a double
    // fork whose middle process exits so the grandchild is reparented.
    let ready = Ready::new();
    let script = format!(
        "setsid sh -c 'sleep 1000 & echo $! > {grandchild}; exit 0' & wait; \
         echo ready > {fifo}; exec sleep 1000",
        grandchild = ready.file("grandchild").display(),
        fifo = ready.fifo()
    );
    let mut child = spawn_into(&service(&["sh", "-c", &script]), &cgroup);
    let main = child.id().unwrap();
    ready.wait().await;
    let grandchild: u32 = std::fs::read_to_string(ready.file("grandchild"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let session = |pid: u32| nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32)));
    assert_ne!(session(grandchild), session(main), "it left the session");
    assert_eq!(cgroup_of(grandchild), cgroup.path(), "but not the cgroup");
    assert_eq!(cgroup_of(main), cgroup.path());
    let pids = cgroup.pids().unwrap();
    assert!(
        pids.contains(&main) && pids.contains(&grandchild),
        "{pids:?}"
    );
    assert!(cgroup.is_populated().unwrap());

    cgroup.kill().unwrap();
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .expect("the cgroup empties after kill")
        .unwrap();
    assert!(cgroup.pids().unwrap().is_empty());
    assert!(!cgroup.is_populated().unwrap());
    // Gone, or at most a zombie until init reaps it.
    let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
        .map(|_| state_of(grandchild))
        .unwrap_or('X');
    assert!(matches!(state, 'X' | 'Z'), "{grandchild} is {state}");
    let status = child.wait().await.unwrap();
    assert_eq!(crate::process::exit_code(status), 128 + 9);
    cgroup.remove().unwrap();
    assert!(!cgroup.dir().exists());
}

#[tokio::test]
async fn wait_empty_resolves_when_the_last_process_exits_on_its_own() {
    let Some(scratch) = Scratch::new("wait_empty") else {
        return;
    };
    let cgroup = scratch.cgroups.service("short").unwrap();
    cgroup.create().unwrap();
    // The main process exits at once; its background child outlives it a little.
    let svc = service(&["sh", "-c", "sleep 0.3 & exit 0"]);
    let mut child = spawn_into(&svc, &cgroup);
    assert!(child.wait().await.unwrap().success());
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .expect("wait_empty resolves once the background sleep exits")
        .unwrap();
    assert!(cgroup.pids().unwrap().is_empty());
    // A second run in the same cgroup (a restart) works the same way.
    let mut child = spawn_into(&service(&["true"]), &cgroup);
    assert!(child.wait().await.unwrap().success());
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn freeze_stops_every_process_and_thaw_resumes_them() {
    let Some(scratch) = Scratch::new("freeze") else {
        return;
    };
    let cgroup = scratch.cgroups.service("frozen").unwrap();
    cgroup.create().unwrap();
    // A writer that appends a line every 10 ms, and an idle child of it.
    let ready = Ready::new();
    let ticks = ready.file("ticks");
    // Made here, so that it can be watched before the writer's first line.
    std::fs::write(&ticks, "").unwrap();
    let script = format!(
        "sleep 1000 & echo ready > {}; while :; do echo x >> {}; sleep 0.01; done",
        ready.fifo(),
        ticks.display()
    );
    let mut child = spawn_into(&service(&["sh", "-c", &script]), &cgroup);
    ready.wait().await;
    wait_growth(&ticks, 0).await;

    tokio::time::timeout(PATIENCE, cgroup.freeze())
        .await
        .expect("freeze settles")
        .unwrap();
    assert!(cgroup.is_frozen().unwrap());
    let pids = cgroup.pids().unwrap();
    assert!(pids.len() >= 2, "{pids:?}");
    // The freezer is not SIGSTOP: no process shows as stopped ('T') to itself or its
    // parent, and the writer writes nothing while frozen.
    for &pid in &pids {
        assert_ne!(state_of(pid), 'T', "{pid} must not look SIGSTOPped");
    }
    let frozen_len = std::fs::metadata(&ticks).unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        std::fs::metadata(&ticks).unwrap().len(),
        frozen_len,
        "a frozen writer writes nothing"
    );
    assert!(cgroup.is_frozen().unwrap());

    tokio::time::timeout(PATIENCE, cgroup.thaw())
        .await
        .expect("thaw settles")
        .unwrap();
    assert!(!cgroup.is_frozen().unwrap());
    wait_growth(&ticks, frozen_len).await;
    cgroup.kill().unwrap();
    let _ = child.wait().await;
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_frozen_cgroup_can_still_be_killed() {
    let Some(scratch) = Scratch::new("kill frozen") else {
        return;
    };
    let cgroup = scratch.cgroups.service("paused").unwrap();
    cgroup.create().unwrap();
    let mut child = spawn_into(&service(&["sleep", "1000"]), &cgroup);
    assert_eq!(
        cgroup.pids().unwrap(),
        [child.id().unwrap()],
        "in it from exec on"
    );
    tokio::time::timeout(PATIENCE, cgroup.freeze())
        .await
        .unwrap()
        .unwrap();
    cgroup.kill().unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("SIGKILL reaches a frozen process")
        .unwrap();
    assert_eq!(crate::process::exit_code(status), 128 + 9);
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn limits_without_their_controller_are_reported_with_the_reason() {
    let Some(scratch) = Scratch::new("limits") else {
        return;
    };
    let limits = CgroupLimits {
        memory_max: Some(Max::Value(512 << 20)),
        tasks_max: Some(Max::Value(64)),
        cpu_weight: Some(200),
    };
    let prepared = scratch.cgroups.prepare("limited", &limits).unwrap();
    let cgroup = prepared.cgroup.unwrap();
    let Mode::Cgroups { controllers, .. } = scratch.cgroups.mode() else {
        panic!("cgroup mode expected");
    };
    let missing = scratch.cgroups.missing();
    // Every limit is either written or reported, never dropped.
    for (key, controller, file, written) in [
        ("memory_max", "memory", "memory.max", "536870912"),
        ("tasks_max", "pids", "pids.max", "64"),
        ("cpu_weight", "cpu", "cpu.weight", "200"),
    ] {
        let report = prepared.unapplied.iter().find(|u| u.key == key);
        if controllers.iter().any(|c| c == controller) {
            assert!(report.is_none(), "{report:?}");
            let value = std::fs::read_to_string(cgroup.dir().join(file)).unwrap();
            assert_eq!(value.trim(), written, "{file}");
        } else {
            let report = report.unwrap_or_else(|| panic!("{key} is neither written nor reported"));
            let shown = report.to_string();
            assert!(shown.starts_with(&format!("{key} = ")), "{shown}");
            assert!(
                shown.contains(&format!(
                    "the {controller} controller is not available to corrald's cgroups: {}",
                    missing[controller]
                )),
                "{shown}"
            );
        }
    }
    // This host (hybrid, the controllers bound to v1) says so in the reason.
    let v1 = detect::v1_controllers(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
    if v1.contains("memory") && !controllers.iter().any(|c| c == "memory") {
        let memory = prepared
            .unapplied
            .iter()
            .find(|u| u.key == "memory_max")
            .unwrap();
        assert_eq!(memory.value, "512M");
        assert!(
            memory.reason.contains("bound to the cgroup v1 hierarchy"),
            "{memory}"
        );
    }
}

#[test]
fn process_group_mode_reports_every_configured_limit() {
    let cgroups = Cgroups::disabled("no cgroup v2 hierarchy here");
    assert_eq!(
        cgroups.mode().to_string(),
        "process groups (no cgroup v2 hierarchy here)"
    );
    assert!(cgroups.service("x").is_none());
    let prepared = cgroups
        .prepare(
            "x",
            &CgroupLimits {
                tasks_max: Some(Max::Infinity),
                ..CgroupLimits::default()
            },
        )
        .unwrap();
    assert!(prepared.cgroup.is_none());
    assert_eq!(
        prepared.unapplied[0].to_string(),
        "tasks_max = infinity is not enforced: corrald runs without cgroups (no cgroup v2 \
         hierarchy here)"
    );
}

#[test]
fn service_cgroups_are_listed_and_released() {
    let Some(scratch) = Scratch::new("release") else {
        return;
    };
    for name in ["b", "a", "cgroup.procs"] {
        scratch.cgroups.service(name).unwrap().create().unwrap();
    }
    let listed: Vec<String> = scratch
        .cgroups
        .service_cgroups()
        .iter()
        .map(|c| c.path().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["_cgroup.procs.service", "a.service", "b.service"]);
    // One holds a process: release leaves it and says so.
    let busy = scratch.cgroups.service("a").unwrap();
    let mut sleeper = Command::new("sleep");
    sleeper.arg("1000").process_group(0);
    let procs = busy.open_procs().unwrap();
    // SAFETY: one async-signal-safe write.
    unsafe {
        sleeper.pre_exec(move || {
            nix::unistd::write(&procs, b"0")?;
            Ok(())
        });
    }
    let mut sleeper = sleeper.spawn().unwrap();
    let left = scratch.cgroups.release();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with("a.service"), "{left:?}");
    assert!(!scratch.cgroups.service("b").unwrap().dir().exists());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[test]
fn names_are_escaped_like_systemd_does() {
    assert_eq!(escape("web.service"), "web.service");
    assert_eq!(escape("getty@tty1.service"), "getty@tty1.service");
    assert_eq!(escape("cpu.service"), "_cpu.service");
    assert_eq!(escape("memory.max.service"), "_memory.max.service");
    assert_eq!(escape("cgroup.procs.service"), "_cgroup.procs.service");
    assert_eq!(escape(".hidden.service"), "_.hidden.service");
    assert_eq!(escape("_x.service"), "__x.service");
    assert_eq!(escape("tasks"), "_tasks");
    assert_eq!(instance_name(Path::new("/run/corral")), "run-corral");
    assert_eq!(
        instance_name(Path::new("/tmp/.tmpAb3/run")),
        "tmp-.tmpAb3-run"
    );
    assert_eq!(instance_name(Path::new("/")), "root");
    assert_eq!(instance_name(Path::new("/a b/c\nd")), "a_b-c_d");
    assert!(instance_name(Path::new(&format!("/{}", "x".repeat(300)))).len() <= 200);
}

#[test]
fn a_delegated_cgroup_gets_a_leaf_for_corrald_and_a_services_node() {
    let Some((mount, path)) = scratch_path("delegated") else {
        return;
    };
    let dir = detect::dir_of(&mount, &path);
    if let Err(err) = std::fs::create_dir(&dir) {
        eprintln!("SKIPPED delegated: cannot make {}: {err}", dir.display());
        return;
    }
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            remove_tree(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    // What systemd does for Delegate=yes: the xattr, and the main process in the cgroup.
    let c_path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated strings and a value of its length.
    let set = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"trusted.delegate".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    assert!(detect::is_delegated(&dir));
    let mut stand_in = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = stand_in.id();
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();

    let base = detect::choose_base(&mount, &path, "unused", &detect::is_delegated);
    assert_eq!(base.kind, detect::BaseKind::Delegated { move_self: true });
    let tree = tree::build(base, &Default::default(), pid).unwrap();
    assert_eq!(
        cgroup_of(pid),
        format!("{path}/corrald"),
        "moved into its leaf"
    );
    assert!(
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap()
            .trim()
            .is_empty(),
        "the base holds no process, so it may pass controllers down"
    );
    assert_eq!(tree.services_path, format!("{path}/services"));
    assert!(dir.join("services").is_dir());

    // After a re-exec the process is in the leaf already: the same base, nothing moved.
    let again = detect::choose_base(&mount, &format!("{path}/corrald"), "unused", &|_| false);
    assert_eq!(again.path, path);
    assert_eq!(again.kind, detect::BaseKind::Delegated { move_self: false });
    tree::build(again, &Default::default(), pid).unwrap();
    assert_eq!(cgroup_of(pid), format!("{path}/corrald"));

    stand_in.kill().unwrap();
    stand_in.wait().unwrap();
}

#[tokio::test]
async fn an_oom_kill_is_counted_where_the_memory_controller_is() {
    let Some(scratch) = Scratch::new("oom") else {
        return;
    };
    let Mode::Cgroups { controllers, .. } = scratch.cgroups.mode() else {
        unreachable!()
    };
    let limits = CgroupLimits {
        memory_max: Some(Max::Value(16 << 20)),
        ..CgroupLimits::default()
    };
    let prepared = scratch.cgroups.prepare("hog", &limits).unwrap();
    let cgroup = prepared.cgroup.unwrap();
    if !controllers.iter().any(|c| c == "memory") {
        assert_eq!(cgroup.oom_kills(), None, "no memory controller, no count");
        eprintln!("SKIPPED oom: no memory controller for cgroups on this host");
        return;
    }
    assert_eq!(cgroup.oom_kills(), Some(0));
    // `tail` keeps a line in memory until it sees a newline, which /dev/zero never sends.
    let mut child = spawn_into(&service(&["tail", "/dev/zero"]), &cgroup);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the OOM killer ends it")
        .unwrap();
    assert_eq!(crate::process::exit_code(status), 128 + 9);
    assert!(cgroup.oom_kills().unwrap() >= 1);
}

#[test]
fn setup_outside_systemd_makes_a_private_subtree_and_release_removes_it() {
    // Only where setup would not move this test process (it does under a delegated
    // cgroup, which a test must not do to its harness).
    let instance = format!("test-setup-{}", std::process::id());
    match detect::find_base(&instance) {
        Ok(base) if base.kind == detect::BaseKind::Private => {}
        other => {
            eprintln!("SKIPPED setup: {other:?}");
            return;
        }
    }
    let own_before = cgroup_of(std::process::id());
    let cgroups = Cgroups::setup(&instance);
    let Mode::Cgroups { root, .. } = cgroups.mode() else {
        eprintln!("SKIPPED setup: {}", cgroups.mode());
        return;
    };
    assert_eq!(root, &format!("/corral/{instance}"));
    assert_eq!(
        cgroup_of(std::process::id()),
        own_before,
        "corrald stays where it was"
    );
    let web = cgroups.service("web").unwrap();
    assert_eq!(
        web.path(),
        format!("/corral/{instance}/services/web.service")
    );
    web.create().unwrap();
    assert!(cgroups.release().is_empty());
    assert!(!web.dir().exists());
    assert!(
        !web.dir().parent().unwrap().exists(),
        "the private subtree is gone too"
    );
}

#[tokio::test]
async fn signal_reaches_every_process_including_one_in_another_session() {
    let Some(scratch) = Scratch::new("signal") else {
        return;
    };
    let cgroup = scratch.cgroups.service("term").unwrap();
    cgroup.create().unwrap();
    // Both processes note SIGTERM in a file of their own and exit. The main shell sets its
    // trap before it forks; the escaped one says it is ready once its own trap is set.
    let ready = Ready::new();
    let trap = |file: &str| {
        format!(
            "trap 'echo term > {}; exit 0' TERM",
            ready.file(file).display()
        )
    };
    let script = format!(
        "{}; setsid sh -c \"{}; echo ready > {}; while :; do sleep 0.05; done\" & \
         while :; do sleep 0.05; done",
        trap("main"),
        trap("escaped"),
        ready.fifo(),
    );
    let mut child = spawn_into(&service(&["sh", "-c", &script]), &cgroup);
    ready.wait().await;
    assert!(cgroup.signal(nix::sys::signal::Signal::SIGTERM).unwrap() >= 2);
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .expect("both handled SIGTERM and exited")
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    for file in ["main", "escaped"] {
        assert_eq!(
            std::fs::read_to_string(ready.file(file)).unwrap().trim(),
            "term",
            "{file}"
        );
    }
}
