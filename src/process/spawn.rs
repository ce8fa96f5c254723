//! Spawning a service's process: an explicit environment (never corrald's own), its own
//! process group (so one `killpg` reaches every process it forks), the configured user and
//! working directory, and output routed by [`super::output`].
//!
//! Without `user` or `watchdog`, std's `Command` takes the `posix_spawn` path, which stays
//! fast however big corrald grows (~0.5 ms). Dropping privileges, and writing the child's
//! own PID into `WATCHDOG_PID` (see [`super::watchdog_pid`]), need a `pre_exec` hook, which
//! forces a fork; that cost is paid only by services that set `user` or `watchdog`.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::unistd::{AccessFlags, Gid, Uid, User, access, getgrouplist, setgid, setgroups, setuid};

use super::output::{self, OutputMode};
use super::watchdog_pid::exec_with_own_pid;
use crate::config::{Service, ServiceType};

/// What [`spawn`] needs to start one process of a service.
pub struct SpawnRequest<'a> {
    pub name: &'a str,
    pub service: &'a Service,
    /// For `type = "notify"` and services with a `watchdog`: corrald's notify socket,
    /// passed as `NOTIFY_SOCKET`.
    pub notify_socket: Option<&'a Path>,
    pub output: &'a OutputMode,
}

/// Why a process could not be started; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(
        "command {program:?} not found in PATH={path}; use an absolute path in exec or set PATH in environment"
    )]
    NotFound { program: String, path: String },
    #[error("user {0:?} does not exist on this machine")]
    NoSuchUser(String),
    #[error("cannot look up user {user:?}: {source}")]
    UserLookup { user: String, source: nix::Error },
    #[error("cannot execute {program}: {source}")]
    Exec { program: String, source: io::Error },
}

/// Starts the process of `request.service` and returns the child; its owner must await it.
pub fn spawn(request: &SpawnRequest<'_>) -> Result<tokio::process::Child, SpawnError> {
    let service = request.service;
    let program = resolve_program(&service.exec[0], service.path_env())?;
    let mut command = std::process::Command::new(&program);
    command
        .arg0(&service.exec[0])
        .args(&service.exec[1..])
        .env_clear()
        .env("PATH", service.path_env())
        .envs(&service.environment)
        .current_dir(&service.working_directory)
        .process_group(0)
        .stdin(Stdio::null());

    if let Some(socket) = request.notify_socket {
        command.env("NOTIFY_SOCKET", socket);
    }
    if let Some(timeout) = service.watchdog {
        command.env("WATCHDOG_USEC", timeout.as_micros().to_string());
    }
    if let Some(user) = &service.user {
        drop_privileges(&mut command, user, service)?;
    }
    // The spawned process is the main one except for `forking`, whose daemon does not exist
    // yet: there WATCHDOG_PID stays unset, which sd_watchdog_enabled() accepts.
    if service.watchdog.is_some() && service.service_type != ServiceType::Forking {
        exec_with_own_pid(&mut command, &program, &service.exec).map_err(|source| {
            SpawnError::Exec {
                program: program.display().to_string(),
                source,
            }
        })?;
    }
    let out = output::prepare(request.output, request.name);
    command.stdout(out.stdout).stderr(out.stderr);

    let mut child = tokio::process::Command::from(command)
        .spawn()
        .map_err(|source| SpawnError::Exec {
            program: program.display().to_string(),
            source,
        })?;
    if out.piped {
        let pid = child.id().unwrap_or(0);
        output::forward(request.name, pid, child.stdout.take(), child.stderr.take());
    }
    Ok(child)
}

/// Finds `program` the way `execvp` would, but in the *service's* `PATH`, so a bare name
/// resolves the same whatever corrald's own environment is.
pub fn resolve_program(program: &str, path: &str) -> Result<PathBuf, SpawnError> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file() && access(candidate, AccessFlags::X_OK).is_ok())
        .ok_or_else(|| SpawnError::NotFound {
            program: program.to_owned(),
            path: path.to_owned(),
        })
}

/// Makes the child run as `user` with its supplementary groups, and gives it the login
/// variables systemd sets for `User=` (unless `environment` sets them).
pub(crate) fn drop_privileges(
    command: &mut std::process::Command,
    user: &str,
    service: &Service,
) -> Result<(), SpawnError> {
    let entry = User::from_name(user)
        .map_err(|source| SpawnError::UserLookup {
            user: user.to_owned(),
            source,
        })?
        .ok_or_else(|| SpawnError::NoSuchUser(user.to_owned()))?;
    let login_vars = [
        ("HOME", entry.dir.display().to_string()),
        ("USER", entry.name.clone()),
        ("LOGNAME", entry.name.clone()),
        ("SHELL", entry.shell.display().to_string()),
    ];
    for (key, value) in login_vars {
        if !service.environment.contains_key(key) {
            command.env(key, value);
        }
    }
    // Resolve the group list now: after fork only async-signal-safe calls are allowed, and
    // reading /etc/group is not one.
    let name =
        CString::new(entry.name.as_bytes()).map_err(|_| SpawnError::NoSuchUser(user.into()))?;
    let groups = getgrouplist(&name, entry.gid).map_err(|source| SpawnError::UserLookup {
        user: user.to_owned(),
        source,
    })?;
    let (uid, gid): (Uid, Gid) = (entry.uid, entry.gid);
    // SAFETY: setgroups/setgid/setuid are async-signal-safe syscalls and touch no memory
    // the parent's other threads could hold locked.
    unsafe {
        command.pre_exec(move || {
            setgroups(&groups)?;
            setgid(gid)?;
            setuid(uid)?;
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        let request = SpawnRequest {
            name: "t",
            service: &svc,
            notify_socket: None,
            output: &OutputMode::Stderr,
        };
        let mut child = spawn(&request).unwrap();
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
        // After dropping privileges too (both hooks run, in order).
        let fields = watchdog_env(ServiceType::Notify, Some("nobody")).await;
        assert_eq!(fields[1], fields[0]);
        // A forking service's daemon is not the process spawned: no WATCHDOG_PID at all.
        let fields = watchdog_env(ServiceType::Forking, None).await;
        assert_eq!(fields[1], "unset");
        assert_eq!(fields[2], "2500000");
    }

    #[tokio::test]
    async fn a_watchdog_service_that_cannot_exec_is_a_spawn_error() {
        let mut svc = service(&["/dev/null"]);
        svc.watchdog = Some(std::time::Duration::from_secs(1));
        let request = SpawnRequest {
            name: "t",
            service: &svc,
            notify_socket: None,
            output: &OutputMode::Stderr,
        };
        let err = spawn(&request).unwrap_err();
        assert!(
            err.to_string().contains("cannot execute /dev/null"),
            "{err}"
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
        };
        let err = spawn(&request).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/daemon"), "{err}");
    }
}
