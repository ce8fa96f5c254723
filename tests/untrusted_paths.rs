//! Paths corrald must not take on trust, tried as a local user would abuse them: a pidfile
//! `nobody` could write, naming a root process (corrald would adopt it, then kill it on
//! Stop), and a runtime directory someone else owns or can write.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use corral::daemon::{self, DaemonError, Options};
use support::*;
use tokio_util::sync::CancellationToken;

fn nobody() -> nix::unistd::User {
    nix::unistd::User::from_name("nobody").unwrap().unwrap()
}

fn chown(path: &Path, user: &nix::unistd::User) {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
}

/// A directory `nobody` owns (readable by all), as a daemon's own /run/NAME would be.
fn nobodys_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(dir.path(), &nobody());
    dir
}

/// A root process the attacker wants corrald to adopt and kill; killed on drop.
struct Victim(Child);

impl Victim {
    async fn start(arg: &str) -> Victim {
        let child = Command::new("sleep").arg(arg).spawn().unwrap();
        let pid = child.id();
        eventually("the victim runs sleep", || {
            pids_running(&["sleep", arg]).contains(&pid)
        })
        .await;
        Victim(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pidfile naming `pid`, as `nobody` would have written it.
fn forged_pidfile(dir: &Path, pid: u32) -> PathBuf {
    let pidfile = dir.join("svc.pid");
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    chown(&pidfile, &nobody());
    pidfile
}

#[tokio::test]
async fn a_forged_pidfile_does_not_make_corrald_adopt_a_root_process() {
    let bus = TestBus::start();
    let victim = Victim::start("7811").await;
    let dir = nobodys_dir();
    let pidfile = forged_pidfile(dir.path(), victim.pid());
    // The victim's command line is the service's: only the pidfile's trust decides.
    let config = format!(
        "[services.d]\nexec = [\"sleep\", \"7811\"]\npidfile = \"{}\"\nrestart = \"no\"\n",
        pidfile.display()
    );
    let corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let d = service(&conn, "d").await;
    let main = d.main_pid().await.unwrap();
    assert_ne!(main, victim.pid(), "the forged PID was adopted");
    assert!(alive(main), "a copy of its own was started instead");
    let log = corrald.log();
    assert!(
        log.contains(&format!(
            "not adopting: refusing PID {} from the pidfile {}: {} is owned by nobody",
            victim.pid(),
            pidfile.display(),
            pidfile.display()
        )),
        "{log}"
    );
    d.stop().await.unwrap();
    assert!(alive(victim.pid()), "Stop left the victim alone");

    // The same file once only root can write it: adopted, as before.
    nix::unistd::chown(&pidfile, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    d.start().await.unwrap();
    assert_eq!(d.main_pid().await.unwrap(), victim.pid());
}

#[tokio::test]
async fn a_root_forking_service_refuses_an_untrusted_pidfile() {
    let bus = TestBus::start();
    let victim = Victim::start("7812").await;
    let dir = nobodys_dir();
    let pidfile = forged_pidfile(dir.path(), victim.pid());
    // The launcher exits 0 without writing: corrald finds only the forged pidfile.
    let config = format!(
        "[services.f]\ntype = \"forking\"\nexec = [\"true\"]\npidfile = \"{}\"\n\
         restart = \"no\"\nautostart = false\nstart_timeout = \"60s\"\n",
        pidfile.display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let f = service(&conn, "f").await;
    let err = f.start().await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.StartFailed");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(
            "refusing PID {} from the pidfile {}",
            victim.pid(),
            pidfile.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("the service runs as root") && shown.contains("or set `user`"),
        "says why and how to fix it: {shown}"
    );
    let last_error = f.last_error().await.unwrap();
    assert!(last_error.contains("refusing PID"), "{last_error}");
    // With cgroups the failed run's cgroup is emptied after the reply: `failed` follows.
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async {
        f.active_state().await.unwrap() == "failed"
    })
    .await;
    assert_ne!(f.main_pid().await.unwrap(), victim.pid());
    assert!(alive(victim.pid()));
}

#[tokio::test]
async fn a_users_daemon_writing_its_own_pidfile_is_tracked() {
    // The pidfile is nobody's (untrusted), but names a process of the service's user.
    let bus = TestBus::start();
    let dir = nobodys_dir();
    let pidfile = dir.path().join("f.pid");
    let config = format!(
        r#"
[services.f]
type = "forking"
user = "nobody"
pidfile = "{pid}"
exec = ["sh", "-c", "setsid sleep 7813 > /dev/null 2>&1 < /dev/null & echo $! > {pid}"]
"#,
        pid = pidfile.display()
    );
    let _corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let f = service(&conn, "f").await;
    assert_eq!(f.active_state().await.unwrap(), "active");
    assert_eq!(
        std::fs::metadata(&pidfile).unwrap().uid(),
        nobody().uid.as_raw()
    );
    let written: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(f.main_pid().await.unwrap(), written);
    f.stop().await.unwrap();
    assert!(pids_with_cmdline("sleep 7813").is_empty());
}

/// Runs corrald in-process with `runtime_dir` until it is ready, then shuts it down.
async fn run_until_ready(bus: &TestBus, runtime_dir: &Path) -> Result<(), DaemonError> {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("corral.toml");
    std::fs::write(&config, "[services.a]\nexec = [\"sleep\", \"7814\"]\n").unwrap();
    let notify_path = scratch.path().join("notify");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let options = Options {
        config: corral::config::ConfigSource::Path(config),
        bus: corral::bus::BusAddress::Address(bus.address.clone()),
        runtime_dir: runtime_dir.to_owned(),
        state_dir: scratch.path().join("state"),
        output: corral::process::OutputMode::Stderr,
        notifier: corral::daemon::systemd::Notifier::new(Some(notify_path)),
        watchdog: None,
        exe: env!("CARGO_BIN_EXE_corrald").into(),
        args: Vec::new(),
        fence_program: env!("CARGO_BIN_EXE_corrald").into(),
        cgroups: true,
    };
    let shutdown = CancellationToken::new();
    let mut running = tokio::spawn(daemon::run(options, None, shutdown.clone()));
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            ended = &mut running => return ended.unwrap(),
            got = notify.recv(&mut buf) => {
                let n = got.unwrap();
                if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                    break;
                }
            }
            _ = tokio::time::sleep(PATIENCE) => panic!("corrald not ready within {PATIENCE:?}"),
        }
    }
    shutdown.cancel();
    running.await.unwrap()
}

#[tokio::test]
async fn the_runtime_dir_is_created_private_and_accepted_again() {
    let bus = TestBus::start();
    let scratch = tempfile::tempdir().unwrap();
    let runtime = scratch.path().join("missing/parents/corral");
    run_until_ready(&bus, &runtime).await.unwrap();
    let meta = std::fs::metadata(&runtime).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o755);
    assert_eq!(meta.uid(), 0);
    // The second start finds its own directory and takes it.
    run_until_ready(&bus, &runtime).await.unwrap();
}

#[tokio::test]
async fn a_runtime_dir_someone_else_could_change_is_refused() {
    let bus = TestBus::start();
    let scratch = tempfile::tempdir().unwrap();
    let runtime = scratch.path().join("corral");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(&runtime, &nobody());
    let refused = |result: Result<(), DaemonError>| match result {
        Err(err @ DaemonError::UntrustedRuntimeDir(_)) => err.to_string(),
        other => panic!("not refused: {other:?}"),
    };
    let shown = refused(run_until_ready(&bus, &runtime).await);
    assert!(
        shown.contains(&format!(
            "refusing the runtime directory: {} is owned by nobody (uid 65534)",
            runtime.display()
        )),
        "{shown}"
    );
    nix::unistd::chown(&runtime, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    let shown = refused(run_until_ready(&bus, &runtime).await);
    assert!(
        shown.contains("mode 0777") && shown.contains("chmod go-w"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read_dir(&runtime).unwrap().count(),
        0,
        "nothing was put in it"
    );

    // The binary says so and exits non-zero.
    let config = scratch.path().join("corral.toml");
    std::fs::write(&config, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corrald"))
        .arg("--config")
        .arg(&config)
        .arg("--runtime-dir")
        .arg(&runtime)
        .args(["--log-target", "stderr"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing the runtime directory"),
        "{stderr}"
    );
}
