//! Who corrald talks to on a control socket, tried as a local attacker would: an
//! unprivileged impostor (`nobody`) binds the service's `control_socket` path in a sticky,
//! world-writable directory before the service does. corrald must not send it a frame,
//! nor count the service online, nor take its answers; once the real service binds, the
//! channel comes up. And the processes that are the service — its main process running as
//! its `user`, a worker it started — are accepted.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::*;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A directory anyone may create files in, but only remove their own (like /tmp).
fn sticky_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// The impostor, running as `nobody`, listening on `socket`; killed on drop.
struct Impostor {
    child: Child,
    record: PathBuf,
}

impl Impostor {
    fn start(socket: &Path) -> Impostor {
        let record = socket.with_file_name("impostor.record");
        let mut child = Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "/usr/bin/python3",
            ])
            .arg(script("impostor.py"))
            .arg(socket)
            .arg(&record)
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv and python3 are installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line,
            "listening\n",
            "the impostor bound {}",
            socket.display()
        );
        Impostor { child, record }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the impostor saw: one "connection" line per accepted connection, one
    /// "received …" line per frame.
    fn record(&self) -> String {
        std::fs::read_to_string(&self.record).unwrap_or_default()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service_config(socket: &Path, user: Option<&str>, exec: &str) -> String {
    let user = user.map_or(String::new(), |u| format!("user = \"{u}\"\n"));
    format!(
        r#"
[services.svc]
exec = {exec}
control_socket = "{socket}"
{user}restart_delay = "10ms"
upcall = true

[services.svc.methods.echo]
control = "echo"
"#,
        socket = socket.display(),
    )
}

fn control_service(socket: &Path, flags: &[&str]) -> String {
    let mut argv = vec![
        "/usr/bin/python3".to_owned(),
        script("control_service.py").display().to_string(),
        socket.display().to_string(),
    ];
    argv.extend(flags.iter().map(|f| f.to_string()));
    format!("{argv:?}")
}

/// The impostor binds first; the service (running as `user`) waits for the path to be
/// free. corrald dials the impostor and refuses it; once the impostor is gone and the
/// service binds, the channel comes up with the real service.
async fn impostor_is_refused(user: Option<&str>, reason: &str) {
    let bus = TestBus::start();
    let dir = sticky_dir();
    let socket = dir.path().join("svc.sock");
    let impostor = Impostor::start(&socket);
    let exec = control_service(&socket, &["--no-replace"]);
    let corrald = Corrald::start(&bus, &service_config(&socket, user, &exec)).await;
    let conn = bus.connect().await;
    let svc = service(&conn, "svc").await;

    let named = format!(
        "refused the process listening there (pid {}, uid 65534, ",
        impostor.pid()
    );
    eventually("corrald refused the impostor", || {
        corrald.log().contains(&named)
    })
    .await;
    let log = corrald.log();
    let line = log.lines().find(|l| l.contains(&named)).unwrap();
    assert!(line.contains("python3"), "names the executable: {line}");
    assert!(line.contains(reason), "says why: {line}");
    assert!(line.contains(&socket.display().to_string()), "{line}");
    // corrald did dial the impostor (the refusal was tested, not skipped); the impostor
    // accepts a moment after corrald's connect returned.
    eventually("the impostor accepted corrald's connection", || {
        impostor.record().contains("connection")
    })
    .await;

    assert!(!svc.online().await.unwrap());
    let err = svc.call("echo", &strings(&["hunter2"])).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.MethodFailed");
    assert!(err.to_string().contains("not connected"), "{err}");
    // Redials find the impostor again and again; a frame never reaches it.
    let dials = impostor.record().matches("connection").count();
    eventually("corrald redialled the impostor", || {
        impostor.record().matches("connection").count() > dials
    })
    .await;
    assert!(!svc.online().await.unwrap());
    let warnings = corrald.log();
    assert_eq!(
        warnings
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains(&named))
            .count(),
        1,
        "one warning per impostor, not one per redial"
    );

    // The impostor goes; the service binds its path and corrald connects to it.
    let mut recorder = SignalRecorder::new(&conn).await;
    drop(impostor);
    std::fs::remove_file(&socket).unwrap();
    wait_until(&mut recorder, || async { svc.online().await.unwrap() }).await;
    assert_eq!(
        svc.call("echo", &strings(&["the", "real", "one"]))
            .await
            .unwrap(),
        "the real one"
    );
    let record = std::fs::read_to_string(dir.path().join("impostor.record")).unwrap();
    assert!(
        !record.contains("received"),
        "the impostor never got a frame:\n{record}"
    );
}

#[tokio::test]
async fn an_unprivileged_impostor_is_refused_for_a_root_service() {
    impostor_is_refused(None, "it runs as another user").await;
}

#[tokio::test]
async fn an_impostor_of_the_same_user_is_refused_for_not_being_the_service() {
    impostor_is_refused(Some("nobody"), "it is not a process of the service").await;
}

#[tokio::test]
async fn a_service_running_as_its_user_is_accepted() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    nix::unistd::chown(dir.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("svc.sock");
    let exec = control_service(&socket, &[]);
    let corrald = Corrald::start(&bus, &service_config(&socket, Some("nobody"), &exec)).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    let svc = service(&conn, "svc").await;
    wait_until(&mut recorder, || async { svc.online().await.unwrap() }).await;
    assert_eq!(svc.call("echo", &strings(&["hi"])).await.unwrap(), "hi");
    let pid = svc.main_pid().await.unwrap();
    assert!(
        corrald
            .log()
            .contains(&format!("(listener pid {pid}: MainProcess)")),
        "{}",
        corrald.log()
    );
}

#[tokio::test]
async fn a_worker_the_service_started_is_accepted() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("svc.sock");
    // The main process is the shell; the listener is its child in a session of its own, so
    // only the parent chain ties it to the service.
    let worker = control_service(&socket, &["--own-session"]);
    let worker = worker
        .trim_matches(|c| c == '[' || c == ']')
        .replace("\", \"", " ")
        .replace('"', "");
    let exec = format!(r#"["sh", "-c", "{worker} & wait"]"#);
    let corrald = Corrald::start(&bus, &service_config(&socket, None, &exec)).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    let svc = service(&conn, "svc").await;
    wait_until(&mut recorder, || async { svc.online().await.unwrap() }).await;
    assert_eq!(svc.call("echo", &strings(&["hi"])).await.unwrap(), "hi");
    assert!(corrald.log().contains(": Descendant)"), "{}", corrald.log());
    svc.stop().await.unwrap();
}
