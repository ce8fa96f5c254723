//! Spawning a service's process: an explicit environment (never corrald's own), its own
//! process group (so one `killpg` reaches every process it forks), its cgroup, the
//! configured user and working directory, its rlimits, umask and no_new_privileges, and
//! output routed by [`super::output`].
//!
//! Everything is resolved here, before the process exists; `process::vfork` then starts it
//! with `clone(CLONE_VM | CLONE_VFORK)` and the child's steps before exec, in this order:
//! process group, join the cgroup (before it can fork anything that would escape), rlimits
//! and umask (before dropping privileges: raising a hard limit needs root), stdio (every
//! other descriptor closed), user,
//! working directory, no_new_privileges. The result is a [`Child`] awaited through its
//! pidfd.
//!
//! `prepare_child` applies the same user and limits to a std `Command` (a manager
//! method's or recipe's command), where a fork is cheap enough for how rarely they run.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, User, access, getgrouplist};

use super::cgroup::ServiceCgroup;
use super::child::Child;
use super::limits::ChildLimits;
use super::output::{self, OutputMode};
use super::reaper;
use super::vfork::{self, ExecPlan, Step};
use crate::config::{Service, ServiceType};

/// What [`spawn`] needs to start one process of a service.
pub struct SpawnRequest<'a> {
    pub name: &'a str,
    pub service: &'a Service,
    /// For `type = "notify"` and services with a `watchdog`: corrald's notify socket,
    /// passed as `NOTIFY_SOCKET`.
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
    #[error("cannot start {program}: the new process could not {what}: {source}")]
    Setup {
        program: String,
        what: String,
        source: io::Error,
    },
    /// Out of descriptors: the message names the limit and how to raise it
    /// ([`super::limits::too_many_open_files`]).
    #[error("cannot start {program}: the new process could not {what}: {message}")]
    TooManyOpenFiles {
        program: String,
        what: String,
        message: String,
    },
}

impl SpawnError {
    /// The same error, as [`SpawnError::TooManyOpenFiles`] when that is what it is.
    fn naming_the_limit(self, exec: &str) -> SpawnError {
        let (program, what, source) = match &self {
            SpawnError::Setup {
                program,
                what,
                source,
            } => (program.as_str(), what.clone(), source),
            SpawnError::Cgroup { path, source } => {
                (exec, format!("join its cgroup {path}"), source)
            }
            // `clone` itself: the pidfd it returns is corrald's descriptor.
            SpawnError::Exec { program, source } => (program.as_str(), "be created".into(), source),
            _ => return self,
        };
        match super::limits::too_many_open_files(source) {
            Some(message) => SpawnError::TooManyOpenFiles {
                program: program.to_owned(),
                what,
                message,
            },
            None => self,
        }
    }
}

/// Starts the process of `request.service` and returns the child; its owner must await it.
/// Must be called inside the tokio runtime. Running out of descriptors fails with
/// [`SpawnError::TooManyOpenFiles`], whatever step ran out.
pub fn spawn(request: &SpawnRequest<'_>) -> Result<Child, SpawnError> {
    spawn_with_descriptors(request).map_err(|err| err.naming_the_limit(&request.service.exec[0]))
}

fn spawn_with_descriptors(request: &SpawnRequest<'_>) -> Result<Child, SpawnError> {
    let service = request.service;
    let program = resolve_program(&service.exec[0], service.path_env())?;
    let shown = program.display().to_string();
    let setup = |what: &str| {
        let (program, what) = (shown.clone(), what.to_owned());
        move |source| SpawnError::Setup {
            program,
            what,
            source,
        }
    };

    let mut env: BTreeMap<&OsStr, &OsStr> = BTreeMap::new();
    env.insert(OsStr::new("PATH"), OsStr::new(service.path_env()));
    for (key, value) in &service.environment {
        env.insert(OsStr::new(key), OsStr::new(value));
    }
    if let Some(socket) = request.notify_socket {
        env.insert(OsStr::new("NOTIFY_SOCKET"), socket.as_os_str());
    }
    let watchdog_usec = service.watchdog.map(|t| t.as_micros().to_string());
    if let Some(usec) = &watchdog_usec {
        env.insert(OsStr::new("WATCHDOG_USEC"), OsStr::new(usec));
    }
    let user = match &service.user {
        Some(name) => Some(resolve_user(name)?),
        None => None,
    };
    if let Some(user) = &user {
        for (key, value) in &user.login_vars {
            if !service.environment.contains_key(*key) {
                env.insert(OsStr::new(key), OsStr::new(value));
            }
        }
    }
    let envp = env
        .iter()
        .map(|(key, value)| {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            vfork::c_string(entry, "the environment")
        })
        .collect::<io::Result<Vec<CString>>>()
        .map_err(setup("take its environment"))?;
    let argv = service
        .exec
        .iter()
        .map(|word| vfork::c_string(word.as_str(), "exec"))
        .collect::<io::Result<Vec<CString>>>()
        .map_err(setup("take its arguments"))?;

    let limits = ChildLimits::for_service(&service.process_limits).map_err(SpawnError::Limits)?;
    let cgroup_procs = request
        .cgroup
        .map(|cgroup| {
            cgroup.open_procs().map_err(|source| SpawnError::Cgroup {
                path: cgroup.dir().display().to_string(),
                source,
            })
        })
        .transpose()?;
    let cgroup_dir = request
        .cgroup
        .filter(|cgroup| cgroup.is_fresh())
        .map(|cgroup| {
            cgroup.open_dir().map_err(|source| SpawnError::Cgroup {
                path: cgroup.dir().display().to_string(),
                source,
            })
        })
        .transpose()?;
    let out = output::prepare(request.output, request.name).map_err(setup("get its output"))?;
    let stdin = vfork::dev_null().map_err(setup("open /dev/null as its stdin"))?;
    let plan = ExecPlan {
        path: vfork::c_string(program.as_os_str().as_bytes(), "exec")
            .map_err(setup("take its program"))?,
        argv,
        envp,
        cwd: vfork::c_string(
            service.working_directory.as_os_str().as_bytes(),
            "working_directory",
        )
        .map_err(setup("take its working directory"))?,
        stdio: [stdin, out.stdout, out.stderr],
        new_process_group: true,
        cgroup_procs,
        cgroup_dir,
        limits,
        user: user.map(|u| (u.groups, u.gid, u.uid)),
        // The spawned process is the main one except for `forking`, whose daemon does not
        // exist yet: there WATCHDOG_PID stays unset, which sd_watchdog_enabled() accepts.
        watchdog_pid: service.watchdog.is_some() && service.service_type != ServiceType::Forking,
    };

    // Registered before the reaper can see it: a child that exits at once is still ours.
    let registering = reaper::registering();
    let (pid, pidfd) = vfork::start(&plan).map_err(|failure| match failure.step {
        Step::Exec => SpawnError::Exec {
            program: shown.clone(),
            source: failure.error,
        },
        Step::WorkingDirectory => setup(&format!(
            "change to its working directory {}",
            service.working_directory.display()
        ))(failure.error),
        step => setup(step.describe())(failure.error),
    })?;
    registering.own(pid);
    drop(registering);
    // The plan's fds (the child's ends of its output, its stdin) close here: the child has
    // its own copies.
    drop(plan);
    if let Some(piped) = out.piped {
        output::forward(request.name, pid, piped);
    }
    Child::new(pid, pidfd).map_err(setup("be watched (pidfd)"))
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

/// Gives a std `Command` (a method's or recipe's command) the service's `user` (with the
/// login variables systemd sets for `User=`), rlimits, umask and no_new_privileges — the
/// same steps, in the same order, as a service's own process gets, as a `pre_exec` hook
/// (a fork; these commands are rare). No hook when none is needed.
pub(crate) fn prepare_child(
    command: &mut std::process::Command,
    service: &Service,
) -> Result<(), SpawnError> {
    let limits = ChildLimits::for_service(&service.process_limits).map_err(SpawnError::Limits)?;
    let user = match &service.user {
        Some(name) => Some(resolve_user(name)?),
        None => None,
    };
    if let Some(user) = &user {
        for (key, value) in &user.login_vars {
            if !service.environment.contains_key(*key) {
                command.env(key, value);
            }
        }
    }
    if user.is_none() && limits.is_empty() {
        return Ok(());
    }
    let ids = user.map(|u| (u.groups, u.gid, u.uid));
    // SAFETY: the hook makes only async-signal-safe syscalls (setrlimit, umask, setgroups,
    // setgid, setuid, prctl) on data prepared before the fork; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            limits.apply_before_user()?;
            if let Some((groups, gid, uid)) = &ids {
                vfork::become_user(groups, *gid, *uid)?;
            }
            limits.apply_after_user()?;
            Ok(())
        });
    }
    Ok(())
}

/// A service's `user`, resolved before the process exists (reading /etc/passwd and
/// /etc/group is not something the child may do).
struct ResolvedUser {
    groups: Vec<libc::gid_t>,
    gid: libc::gid_t,
    uid: libc::uid_t,
    /// HOME, USER, LOGNAME, SHELL, as systemd sets them for `User=`.
    login_vars: [(&'static str, String); 4],
}

fn resolve_user(user: &str) -> Result<ResolvedUser, SpawnError> {
    let entry = User::from_name(user)
        .map_err(|source| SpawnError::UserLookup {
            user: user.to_owned(),
            source,
        })?
        .ok_or_else(|| SpawnError::NoSuchUser(user.to_owned()))?;
    let name =
        CString::new(entry.name.as_bytes()).map_err(|_| SpawnError::NoSuchUser(user.into()))?;
    let groups = getgrouplist(&name, entry.gid).map_err(|source| SpawnError::UserLookup {
        user: user.to_owned(),
        source,
    })?;
    Ok(ResolvedUser {
        groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        gid: entry.gid.as_raw(),
        uid: entry.uid.as_raw(),
        login_vars: [
            ("HOME", entry.dir.display().to_string()),
            ("USER", entry.name.clone()),
            ("LOGNAME", entry.name.clone()),
            ("SHELL", entry.shell.display().to_string()),
        ],
    })
}

#[cfg(test)]
mod tests;
