//! A service's real process, as the kernel shows it in `/proc`: its environment, group,
//! user and directory, its rlimits, umask and no_new_privileges, its signals and
//! descriptors, and the errors of a start that fails.

use super::*;

#[test]
fn resolves_in_the_services_path() {
    assert_eq!(
        resolve_program("sh", "/nonexistent:/bin").unwrap(),
        PathBuf::from("/bin/sh")
    );
    assert_eq!(
        resolve_program("/x/y", "").unwrap(),
        PathBuf::from("/x/y"),
        "absolute paths are left to exec"
    );
    let err = resolve_program("no-such-program-xyz", "/bin:/usr/bin").unwrap_err();
    assert!(err.to_string().contains("no-such-program-xyz"), "{err}");
    assert!(err.to_string().contains("PATH=/bin:/usr/bin"), "{err}");
}

fn service(exec: &[&str]) -> Service {
    Service {
        exec: exec.iter().map(|s| s.to_string()).collect(),
        ..Service::default()
    }
}

#[tokio::test]
async fn child_gets_only_its_own_environment_and_group() {
    let mut svc = service(&[
        "sh",
        "-c",
        "echo \"$PATH|$FOO|${NOTIFY_SOCKET-unset}|$(ps -o pgid= -p $$)\" > \"$OUT\"",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    svc.environment.insert("FOO".into(), "bar".into());
    svc.environment
        .insert("OUT".into(), out.display().to_string());
    let request = SpawnRequest {
        name: "t",
        service: &svc,
        notify_socket: None,
        output: &OutputMode::Stderr,
        cgroup: None,
    };
    let mut child = spawn(&request).unwrap();
    let pid = child.id().unwrap();
    assert!(child.wait().await.unwrap().success());
    let text = std::fs::read_to_string(&out).unwrap();
    let fields: Vec<&str> = text.trim().split('|').collect();
    assert_eq!(fields[0], crate::config::DEFAULT_PATH);
    assert_eq!(fields[1], "bar");
    // That corrald's own NOTIFY_SOCKET never leaks is checked end to end in
    // tests/daemon_notify.rs, where corrald really has one (set_var here would race).
    assert_eq!(fields[2], "unset", "not a notify service");
    assert_eq!(
        fields[3].trim(),
        pid.to_string(),
        "child leads its own group"
    );
}

#[tokio::test]
async fn missing_command_is_a_clear_error() {
    let svc = service(&["/nonexistent/daemon"]);
    let request = SpawnRequest {
        name: "t",
        service: &svc,
        notify_socket: None,
        output: &OutputMode::Stderr,
        cgroup: None,
    };
    let err = spawn(&request).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/daemon"), "{err}");
}

/// A field of `/proc/PID/limits`: (soft, hard) of the line starting with `name`.
fn proc_limit(pid: u32, name: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} in {text}"));
    let mut fields = line.split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

/// A field of `/proc/PID/status` (`NoNewPrivs`, `Umask`).
fn proc_status(pid: u32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .to_owned()
}

/// Whether this process may raise hard limits (bit 24 of `CapEff`).
fn has_cap_sys_resource() -> bool {
    let caps = proc_status(std::process::id(), "CapEff");
    u64::from_str_radix(&caps, 16).is_ok_and(|bits| bits & (1 << 24) != 0)
}

fn spawn_plain(svc: &Service) -> Child {
    spawn(&SpawnRequest {
        name: "t",
        service: svc,
        notify_socket: None,
        output: &OutputMode::Stderr,
        cgroup: None,
    })
    .unwrap()
}

#[tokio::test]
async fn a_child_of_a_raised_corrald_gets_1024_descriptors_back() {
    // What corrald does at start (raising is harmless to the other tests).
    let (_, raised) = crate::process::limits::raise_nofile().unwrap();
    let mut child = spawn_plain(&service(&["sleep", "1000"]));
    let pid = child.id().unwrap();
    let (soft, hard) = proc_limit(pid, "Max open files");
    assert_eq!(
        soft,
        raised.hard.min(1024).to_string(),
        "the conventional soft limit"
    );
    assert_eq!(hard, raised.hard.to_string(), "the hard limit is corrald's");
    child.kill().await.unwrap();

    // A service that sets limit_nofile gets exactly that.
    let mut svc = service(&["sleep", "1000"]);
    svc.process_limits.limit_nofile = Some(crate::config::Rlimit {
        soft: 4096,
        hard: 8192,
    });
    let mut child = spawn_plain(&svc);
    assert_eq!(
        proc_limit(child.id().unwrap(), "Max open files"),
        ("4096".to_owned(), "8192".to_owned())
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn rlimits_umask_and_no_new_privileges_reach_the_child() {
    use crate::config::Rlimit;
    use nix::sys::resource::{Resource, getrlimit};
    // Limits this process may set without CAP_SYS_RESOURCE (which this host's root
    // lacks): at most the current hard limits.
    let (_, memlock_hard) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
    let mut svc = service(&["sleep", "1000"]);
    svc.process_limits = crate::config::ProcessLimits {
        limit_nofile: None,
        limit_core: Some(Rlimit { soft: 0, hard: 0 }),
        limit_nproc: Some(Rlimit {
            soft: 100,
            hard: 200,
        }),
        limit_memlock: Some(Rlimit {
            soft: 4 << 10,
            hard: memlock_hard,
        }),
        umask: Some(0o027),
        no_new_privileges: true,
    };
    let mut child = spawn_plain(&svc);
    let pid = child.id().unwrap();
    let owned = |(a, b): (&str, &str)| (a.to_owned(), b.to_owned());
    assert_eq!(proc_limit(pid, "Max core file size"), owned(("0", "0")));
    assert_eq!(proc_limit(pid, "Max processes"), owned(("100", "200")));
    let memlock_hard = match memlock_hard {
        nix::sys::resource::RLIM_INFINITY => "unlimited".to_owned(),
        n => n.to_string(),
    };
    assert_eq!(
        proc_limit(pid, "Max locked memory"),
        ("4096".to_owned(), memlock_hard)
    );
    assert_eq!(proc_status(pid, "Umask"), "0027");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    child.kill().await.unwrap();

    // Without them: the parent's umask, and privileges may be gained.
    let mut child = spawn_plain(&service(&["sleep", "1000"]));
    let pid = child.id().unwrap();
    assert_eq!(proc_status(pid, "NoNewPrivs"), "0");
    assert_eq!(
        proc_status(pid, "Umask"),
        proc_status(std::process::id(), "Umask")
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn rlimits_are_set_before_privileges_are_dropped() {
    // A hard limit above corrald's own needs root: set after setuid it would fail.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if !has_cap_sys_resource() {
        eprintln!("SKIPPED: raising a hard limit needs CAP_SYS_RESOURCE, which we lack here");
        return;
    }
    let mut svc = service(&["sleep", "1000"]);
    svc.user = Some("nobody".into());
    svc.process_limits.limit_nofile = Some(crate::config::Rlimit {
        soft: 1024,
        hard: hard + 1000,
    });
    svc.process_limits.no_new_privileges = true;
    let mut child = spawn_plain(&svc);
    let pid = child.id().unwrap();
    assert_eq!(
        proc_limit(pid, "Max open files"),
        ("1024".to_owned(), (hard + 1000).to_string())
    );
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let uid = proc_status(pid, "Uid");
    let nobody = User::from_name("nobody").unwrap().unwrap().uid;
    assert!(uid.starts_with(&format!("{nobody}\t")), "{uid}");
    child.kill().await.unwrap();
}

#[test]
fn a_limit_the_kernel_cannot_take_is_a_clear_error() {
    let mut svc = service(&["sleep", "1000"]);
    svc.process_limits.limit_nofile = Some(crate::config::Rlimit {
        soft: u64::MAX - 1,
        hard: u64::MAX - 1,
    });
    let err = spawn(&SpawnRequest {
        name: "t",
        service: &svc,
        notify_socket: None,
        output: &OutputMode::Stderr,
        cgroup: None,
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("above the kernel's maximum fs.nr_open"),
        "{err}"
    );
}

#[tokio::test]
async fn the_child_has_clean_signals_and_only_its_own_descriptors() {
    let mut child = spawn_plain(&service(&["sleep", "1000"]));
    let pid = child.id().unwrap();
    // Every signal was blocked across the clone: the program must get an empty mask.
    assert_eq!(proc_status(pid, "SigBlk"), "0000000000000000");
    // corrald (like every Rust program) ignores SIGPIPE; a service gets the default.
    let ignored = u64::from_str_radix(&proc_status(pid, "SigIgn"), 16).unwrap();
    assert_eq!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE is not ignored"
    );
    // Nothing of corrald's leaks: stdin, stdout, stderr only.
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2]);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(),
        PathBuf::from("/dev/null")
    );
    child.kill().await.unwrap();
    assert_eq!(child.id(), None, "reaped");
}

#[tokio::test]
async fn the_child_runs_as_its_user_in_its_directory() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncReadExt;
    // The child reports its environment through a FIFO it may write as nobody (its
    // /proc/PID/environ is only filled in a moment after exec).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = dir.path().join("env");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = format!(
        "echo \"$USER|$LOGNAME|$HOME|$(pwd)\" > {}; exec sleep 1000",
        fifo.display()
    );
    let mut svc = service(&["sh", "-c", &script]);
    svc.user = Some("nobody".into());
    svc.working_directory = PathBuf::from("/tmp");
    let mut child = spawn_plain(&svc);
    let pid = child.id().unwrap();
    let mut reader = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&fifo)
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        reader.read_to_string(&mut text),
    )
    .await
    .expect("the child writes its environment")
    .unwrap();
    let nobody = User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        text.trim(),
        format!("nobody|nobody|{}|/tmp", nobody.dir.display())
    );
    let nobody_uid = nobody.uid.to_string();
    assert_eq!(
        proc_status(pid, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [nobody_uid.as_str(); 4],
        "real, effective, saved and fs uid"
    );
    assert_eq!(
        proc_status(pid, "Gid").split_whitespace().next().unwrap(),
        nobody.gid.to_string()
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        PathBuf::from("/tmp")
    );
    child.kill().await.unwrap();
}

#[test]
fn a_step_that_fails_in_the_child_is_named() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut svc = service(&["sleep", "1000"]);
    svc.working_directory = PathBuf::from("/nonexistent/dir");
    let err = spawn_plain_result(&svc).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot start /usr/bin/sleep: the new process could not change to its working \
         directory /nonexistent/dir: No such file or directory (os error 2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let program = script.display().to_string();
    let err = spawn_plain_result(&service(&[&program])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot execute {program}: Permission denied (os error 13)")
    );
}

fn spawn_plain_result(svc: &Service) -> Result<Child, SpawnError> {
    spawn(&SpawnRequest {
        name: "t",
        service: svc,
        notify_socket: None,
        output: &OutputMode::Stderr,
        cgroup: None,
    })
}

#[tokio::test]
async fn an_exit_status_and_a_signal_are_reported_as_std_does() {
    let mut child = spawn_plain(&service(&["sh", "-c", "exit 3"]));
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(
        child.wait().await.unwrap(),
        status,
        "a second wait: the same"
    );
    let mut child = spawn_plain(&service(&["sleep", "1000"]));
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(crate::process::exit_code(status), 137);
}

/// The environment a watchdog service sees: `WATCHDOG_USEC`, and `WATCHDOG_PID` equal to
/// its own PID (what `sd_watchdog_enabled()` compares), for the main process only.
async fn watchdog_env(service_type: ServiceType, user: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut svc = service(&[
        "sh",
        "-c",
        "echo \"$$|${WATCHDOG_PID-unset}|$WATCHDOG_USEC|$FOO|$0|$1\" > \"$OUT\"",
        "arg1",
    ]);
    svc.watchdog = Some(std::time::Duration::from_millis(2500));
    svc.service_type = service_type;
    svc.user = user.map(str::to_owned);
    svc.environment.insert("FOO".into(), "bar".into());
    svc.environment
        .insert("OUT".into(), out.display().to_string());
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut child = spawn_plain(&svc);
    assert!(child.wait().await.unwrap().success());
    let text = std::fs::read_to_string(&out).unwrap();
    text.trim().split('|').map(str::to_owned).collect()
}

#[tokio::test]
async fn a_watchdog_service_learns_its_timeout_and_its_own_pid() {
    let fields = watchdog_env(ServiceType::Simple, None).await;
    assert_eq!(fields[1], fields[0], "WATCHDOG_PID is the child's own PID");
    assert_eq!(fields[2], "2500000");
    assert_eq!(
        &fields[3..],
        ["bar", "arg1", ""],
        "environment and argv kept"
    );
    // After dropping privileges too.
    let fields = watchdog_env(ServiceType::Notify, Some("nobody")).await;
    assert_eq!(fields[1], fields[0]);
    // A forking service's daemon is not the process spawned: no WATCHDOG_PID at all.
    let fields = watchdog_env(ServiceType::Forking, None).await;
    assert_eq!(fields[1], "unset");
    assert_eq!(fields[2], "2500000");
}

#[test]
fn pids_are_written_in_decimal_with_their_nul() {
    for (pid, text) in [
        (0, "0"),
        (7, "7"),
        (4_194_304, "4194304"),
        (u32::MAX, "4294967295"),
    ] {
        let mut out = [b'x'; 11];
        super::super::watchdog_pid::write_decimal(&mut out, pid);
        assert_eq!(&out[..text.len()], text.as_bytes());
        assert_eq!(out[text.len()], 0);
    }
}
