//! Test harness: real parts only. A private `dbus-daemon` with the system bus's policy and
//! corral's policy file, the real `corrald` binary started against it with a NOTIFY_SOCKET
//! the test listens on, zbus clients, and helpers to inspect real processes.

#![allow(dead_code)] // each test binary uses a different part of the harness

#[cfg(feature = "fleet")]
pub mod etcd;
#[cfg(feature = "fleet")]
pub mod hosts;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corral::client::{BusError, ManagerProxy, ServiceProxy};
use futures_util::StreamExt;
use tempfile::TempDir;
use zbus::Connection;
use zbus::message::Type as MessageType;
use zbus::{MatchRule, MessageStream};

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A private bus with a system-bus-like (deny by default) policy.
pub struct TestBus {
    child: Child,
    dir: TempDir,
    pub address: String,
}

impl TestBus {
    pub fn start() -> TestBus {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("bus");
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/org.corral.Corral1.conf");
        let config = include_str!("system-bus.conf.in")
            .replace("@SOCKET@", socket.to_str().unwrap())
            .replace("@POLICY@", policy.to_str().unwrap());
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is installed (apt-get install dbus)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("dbus-daemon prints its address");
        // Allow unprivileged test clients (run as `nobody`) to reach the socket.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        // Without its `guid=`: a bus restarted on the same socket has another one, and a
        // system bus address names none either.
        let address = line
            .trim()
            .split(',')
            .filter(|part| !part.starts_with("guid="))
            .collect::<Vec<_>>()
            .join(",");
        TestBus {
            child,
            dir,
            address,
        }
    }

    /// A new client connection.
    pub async fn connect(&self) -> Connection {
        zbus::connection::Builder::address(self.address.as_str())
            // A call that hangs fails the test instead of stalling the suite.
            .method_timeout(PATIENCE)
            .build()
            .await
            .expect("connect to the test bus")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("bus")
    }

    /// Kills the dbus-daemon (as a crash would end it) and starts a new one on the same
    /// socket; returns once the new one listens.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.socket_path());
        let mut child = Command::new("dbus-daemon")
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("bus.conf").display()
            ))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("dbus-daemon prints its address");
        self.child = child;
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `corrald` binary.
pub struct Corrald {
    child: Option<tokio::process::Child>,
    pub dir: TempDir,
    notify: tokio::net::UnixDatagram,
    pub bus_address: String,
    /// What it was started with, to start it again the same way.
    extra: Vec<String>,
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
}

/// Runs the corrald binary on the configuration, runtime and state directories in `dir`,
/// logging to `dir/corrald.log` (appended to).
/// `wrapper` is a command that execs the rest of its argv (e.g. `prlimit … --`), or empty.
fn launch(
    dir: &Path,
    bus_address: &str,
    extra: &[String],
    env: &[(String, String)],
    wrapper: &[String],
) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("corrald.log"))
        .unwrap();
    let corrald = env!("CARGO_BIN_EXE_corrald").to_owned();
    let (program, wrapped) = match wrapper.split_first() {
        Some((program, args)) => (program.clone(), [args, &[corrald]].concat()),
        None => (corrald, Vec::new()),
    };
    tokio::process::Command::new(program)
        .args(wrapped)
        .arg("--config")
        .arg(dir.join("corral.toml"))
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        .args(
            (!extra.iter().any(|a| a == "--state-dir"))
                .then(|| ["--state-dir".into(), dir.join("state")])
                .into_iter()
                .flatten(),
        )
        .args([
            "--log-target",
            "stderr",
            "--child-output",
            "stderr",
            "--log-level",
            "debug",
        ])
        .args(extra)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus_address)
        .env("NOTIFY_SOCKET", dir.join("notify"))
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn corrald")
}

impl Corrald {
    /// Starts corrald with `config` (TOML text) and waits for READY=1.
    pub async fn start(bus: &TestBus, config: &str) -> Corrald {
        let corrald = Corrald::spawn(bus, config, &[]);
        corrald.wait_notify("READY=1").await;
        corrald
    }

    /// Starts corrald without waiting; `extra` are extra command-line arguments.
    pub fn spawn(bus: &TestBus, config: &str, extra: &[&str]) -> Corrald {
        Corrald::spawn_full(bus, config, extra, &[])
    }

    /// Starts corrald without waiting, with extra environment variables.
    pub fn spawn_with_env(bus: &TestBus, config: &str, env: &[(&str, &str)]) -> Corrald {
        Corrald::spawn_full(bus, config, &[], env)
    }

    /// Starts corrald through `wrapper` (a command that execs the rest of its argv, e.g.
    /// `prlimit --nofile=1024:20000 --`) and waits for READY=1; corrald keeps the PID.
    pub async fn start_wrapped(bus: &TestBus, config: &str, wrapper: &[&str]) -> Corrald {
        let corrald = Corrald::spawn_inner(bus, config, &[], &[], wrapper);
        corrald.wait_notify("READY=1").await;
        corrald
    }

    fn spawn_full(bus: &TestBus, config: &str, extra: &[&str], env: &[(&str, &str)]) -> Corrald {
        Corrald::spawn_inner(bus, config, extra, env, &[])
    }

    fn spawn_inner(
        bus: &TestBus,
        config: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Corrald {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("corral.toml"), config).unwrap();
        let notify_path = dir.path().join("notify");
        let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        let child = launch(dir.path(), &bus.address, &extra, &env, &wrapper);
        Corrald {
            child: Some(child),
            dir,
            notify,
            bus_address: bus.address.clone(),
            extra,
            env,
            wrapper,
        }
    }

    /// SIGKILLs corrald (as the OOM killer or a crash would end it) and reaps it; its
    /// services are left running.
    pub async fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait_exit().await;
    }

    /// Starts corrald again after it exited, with the same configuration, runtime and
    /// state directories (its log continues), and waits for READY=1.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "corrald still runs");
        self.child = Some(launch(
            self.dir.path(),
            &self.bus_address,
            &self.extra,
            &self.env,
            &self.wrapper,
        ));
        self.wait_notify("READY=1").await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("running")
    }

    /// The state directory it was given (unless `extra` named another).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("corral.toml")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("corrald.log")).unwrap_or_default()
    }

    /// The next sd_notify datagram corrald sends to systemd (our socket).
    pub async fn next_notify(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, self.notify.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no sd_notify message within {PATIENCE:?}\n{}", self.log()))
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Reads sd_notify datagrams until one contains `needle`; returns all read.
    pub async fn wait_notify(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let message = self.next_notify().await;
            let found = message.contains(needle);
            seen.push(message);
            if found {
                return seen;
            }
        }
    }

    /// Sends `signal` to corrald.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// SIGTERM, then waits for corrald to exit; returns its exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit().await
    }

    pub async fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .unwrap_or_else(|_| panic!("corrald did not exit within {PATIENCE:?}\n{}", self.log()))
            .unwrap();
        status.code()
    }
}

impl Drop for Corrald {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- corrald log ----\n{}", self.log());
        }
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let Some(pid) = child.id() else { return };
        // Ask nicely, so corrald stops its services (SIGKILLing stubborn ones itself), and
        // give it the time that takes before making sure.
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

pub async fn manager(connection: &Connection) -> ManagerProxy<'static> {
    ManagerProxy::builder(connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

pub async fn service(connection: &Connection, name: &str) -> ServiceProxy<'static> {
    corral::client::service(connection, name).await.unwrap()
}

/// The D-Bus error name of a failed call, e.g. `org.corral.Corral1.Error.NoSuchService`:
/// of a typed error from corral's proxies, or of a raw call's `zbus::Error`.
pub fn error_name(err: &impl WireError) -> String {
    err.wire_name()
}

pub trait WireError: std::fmt::Debug {
    fn wire_name(&self) -> String;
}

impl WireError for zbus::Error {
    fn wire_name(&self) -> String {
        match self {
            zbus::Error::MethodError(name, _, _) => name.to_string(),
            other => panic!("not a D-Bus method error: {other:?}"),
        }
    }
}

impl WireError for BusError {
    fn wire_name(&self) -> String {
        match self {
            BusError::ZBus(other) => other.wire_name(),
            corral => zbus::DBusError::name(corral).to_string(),
        }
    }
}

/// Records every signal corrald sends, in order.
pub struct SignalRecorder {
    stream: MessageStream,
}

/// One recorded signal: its member, path and arguments (as JSON values, and as one text
/// to search in).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub member: String,
    pub path: String,
    pub args: Vec<serde_json::Value>,
    pub body: String,
}

impl Recorded {
    /// The first argument as text (a name, or a generation number).
    pub fn first(&self) -> String {
        match self.args.first() {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    }
}

impl SignalRecorder {
    pub async fn new(connection: &Connection) -> SignalRecorder {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender("org.corral.Corral1")
            .build()
            .unwrap();
        let stream = MessageStream::for_match_rule(rule, connection, None)
            .await
            .unwrap();
        SignalRecorder { stream }
    }

    pub async fn next(&mut self) -> Recorded {
        let message = tokio::time::timeout(PATIENCE, self.stream.next())
            .await
            .expect("a signal within the patience")
            .expect("stream open")
            .expect("valid message");
        let header = message.header();
        let args: Vec<serde_json::Value> =
            match message.body().deserialize::<zbus::wire::Structure<'_>>() {
                Ok(body) => body
                    .fields()
                    .iter()
                    .map(corral::ctl::monitor::to_json)
                    .collect(),
                Err(_) => Vec::new(),
            };
        Recorded {
            member: header.member().map(|m| m.to_string()).unwrap_or_default(),
            path: header.path().map(|p| p.to_string()).unwrap_or_default(),
            body: serde_json::Value::Array(args.clone()).to_string(),
            args,
        }
    }

    /// Reads signals until one named `member` whose body contains `needle`; returns all.
    pub async fn until(&mut self, member: &str, needle: &str) -> Vec<Recorded> {
        let mut seen = Vec::new();
        loop {
            let signal = self.next().await;
            let done = signal.member == member && signal.body.contains(needle);
            seen.push(signal);
            if done {
                return seen;
            }
        }
    }
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The one-letter state of a process (`S`, `T` for stopped, …).
pub fn process_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

/// PIDs of live processes whose whole command line (arguments joined by spaces) is `cmdline`.
pub fn pids_with_cmdline(cmdline: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let actual = String::from_utf8_lossy(&raw).replace('\0', " ");
        if actual.trim_end() == cmdline && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// PIDs of live processes whose command line (arguments joined by spaces) contains `needle`.
pub fn pids_with_cmdline_containing(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .contains(needle)
            && alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until `condition` holds, checking each time corrald publishes a signal. Tests use
/// this instead of sleeping: a state change always comes with a signal.
pub async fn wait_until<F, Fut>(recorder: &mut SignalRecorder, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !remaining.is_zero(),
            "condition not met within {PATIENCE:?}"
        );
        let _ = tokio::time::timeout(remaining, recorder.next()).await;
    }
}

/// Waits until an operating-system condition holds (a process exists, is stopped, is
/// gone). The kernel offers no event for these, so this checks every 10 ms; it is only for
/// tests. Bus-visible state uses [`wait_until`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// PIDs of live processes that `exec` would start (matched like pidfile adoption does: by
/// program file name and arguments).
pub fn pids_running(exec: &[&str]) -> Vec<u32> {
    let exec: Vec<String> = exec.iter().map(|s| s.to_string()).collect();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(args) = corral::process::pidfile::cmdline(pid)
            && corral::process::pidfile::cmdline_matches(&args, &exec)
            && alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Asks for a re-exec and waits until the new corrald serves the bus and runs.
pub async fn reexecute(conn: &zbus::Connection, corrald: &Corrald) {
    let before = corrald.log().matches("re-executed: every service").count();
    let m = manager(conn).await;
    m.reexecute()
        .await
        .expect("Reexecute replies before it execs");
    eventually("the new corrald is up", || {
        corrald.log().matches("re-executed: every service").count() > before
    })
    .await;
    let m = manager(conn).await;
    let mut recorder = SignalRecorder::new(conn).await;
    wait_until(&mut recorder, || async {
        m.state().await.is_ok_and(|s| s == "running")
    })
    .await;
}
