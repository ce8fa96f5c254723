//! Spawning a service's process: an explicit environment (never corrald's own), its own
//! process group (so one `killpg` reaches every process it forks), the configured user and
//! working directory, its cgroup, rlimits, umask and no_new_privileges, and output routed
//! by [`super::output`].
//!
//! What the child must do between fork and exec — join its cgroup (before it can fork
//! anything that would escape), set its rlimits and umask, drop privileges, set
//! no_new_privileges — is one `pre_exec` hook, in that order. A hook makes std's `Command`
//! fork instead of using `posix_spawn`, and a fork copies corrald's page tables: measured
//! here (`examples/spawn_cost.rs`, 1000 spawns of `sleep`, parent of 20 MB) ~1.3 ms per
//! spawn with `posix_spawn`, ~4.8 ms with a fork, ~5.1 ms with corrald's whole hook; with a
//! 2 MB parent ~1.1, ~1.8 and ~2.4 ms. So the hook is installed only when the child needs
//! one of these; one that needs none (no cgroup, no `user`, no limit that differs from
//! corrald's own) keeps `posix_spawn`.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::unistd::{AccessFlags, Gid, Uid, User, access, getgrouplist, setgid, setgroups, setuid};

use super::cgroup::ServiceCgroup;
use super::limits::ChildLimits;
use super::output::{self, OutputMode};
use crate::config::Service;

/// What [`spawn`] needs to start one process of a service.
pub struct SpawnRequest<'a> {
    pub name: &'a str,
    pub service: &'a Service,
    /// For `type = "notify"`: the service's own notify socket, passed as `NOTIFY_SOCKET`.
    pub notify_socket: Option<&'a Path>,
    pub output: &'a OutputMode,
    /// The cgroup the child joins before it execs; `None` in process-group mode.
    pub cgroup: Option<&'a ServiceCgroup>,
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
    #[error("cannot open {path}/cgroup.procs to put the process into its cgroup: {source}")]
    Cgroup { path: String, source: io::Error },
    #[error("{0}")]
    Limits(String),
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
    prepare_child(&mut command, service, request.cgroup)?;
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

/// Installs what the child does between fork and exec: join `cgroup`, set the service's
/// rlimits and umask, become its `user` (with the login variables systemd sets for
/// `User=`), set no_new_privileges. Everything is resolved here, before the fork; a child
/// that needs none of it gets no hook and keeps the fast `posix_spawn`.
pub(crate) fn prepare_child(
    command: &mut std::process::Command,
    service: &Service,
    cgroup: Option<&ServiceCgroup>,
) -> Result<(), SpawnError> {
    let limits = ChildLimits::for_service(&service.process_limits).map_err(SpawnError::Limits)?;
    let procs: Option<OwnedFd> = cgroup
        .map(|cgroup| {
            cgroup.open_procs().map_err(|source| SpawnError::Cgroup {
                path: cgroup.dir().display().to_string(),
                source,
            })
        })
        .transpose()?;
    let user = match &service.user {
        Some(user) => Some(resolve_user(command, user, service)?),
        None => None,
    };
    if procs.is_none() && user.is_none() && limits.is_empty() {
        return Ok(());
    }
    // SAFETY: the hook makes only async-signal-safe syscalls (write, setrlimit, umask,
    // setgroups, setgid, setuid, prctl) on data prepared before the fork; it allocates
    // nothing and takes no lock another thread could hold.
    unsafe {
        command.pre_exec(move || {
            if let Some(procs) = &procs {
                // "0" is the writing process itself.
                nix::unistd::write(procs, b"0")?;
            }
            limits.apply_before_user()?;
            if let Some(user) = &user {
                user.become_user()?;
            }
            limits.apply_after_user()?;
            Ok(())
        });
    }
    Ok(())
}

/// The ids of a service's `user`, resolved before the fork.
struct UserIds {
    groups: Vec<Gid>,
    gid: Gid,
    uid: Uid,
}

impl UserIds {
    /// In the child: async-signal-safe.
    fn become_user(&self) -> io::Result<()> {
        setgroups(&self.groups)?;
        setgid(self.gid)?;
        setuid(self.uid)?;
        Ok(())
    }
}

/// Looks up `user` and gives the child the login variables systemd sets for `User=`
/// (unless `environment` sets them).
fn resolve_user(
    command: &mut std::process::Command,
    user: &str,
    service: &Service,
) -> Result<UserIds, SpawnError> {
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
    Ok(UserIds {
        groups,
        gid: entry.gid,
        uid: entry.uid,
    })
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

    fn spawn_plain(svc: &Service) -> tokio::process::Child {
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
}
