//! Live re-execution (`Manager.Reexecute()`, `corralctl daemon-reexec`, package upgrades):
//! corrald writes its runtime state to a memfd, replies, and `exec`s its binary — possibly
//! a new version — in place. Same PID, so every service stays corrald's child: the new
//! corrald takes the state back (the same runs and `MainPID`s, timers, `NRestarts`, running
//! jobs), keeps the notify socket (same path, same socket: a `READY=1` sent meanwhile is
//! read, not lost) and the pipes of services' output, re-dials control channels and takes
//! the bus name again.
//!
//! What can go wrong, and what happens then:
//! - the binary on disk cannot take over (missing, not executable, a build that does not
//!   know this format): checked first by running it with `--reexec-format`, which must
//!   print [`FORMAT`]; if not, `Reexecute` fails and nothing changed;
//! - the state store cannot write: refused likewise — what it keeps in memory would be lost;
//! - `execve` itself fails: corrald thaws and carries on as before, and `Reexecute` says so;
//! - with `[fleet]`: the etcd lease (so this host keeps its report and owner keys) and the
//!   fence's pipe (so the fence does not kill the grouped services at the exec) are handed
//!   over too; without a live lease (not connected to etcd) the re-exec is refused;
//! - the new corrald cannot read the handover: it starts the way it does after a crash,
//!   re-adopting every service from the state store's run records (nothing is started
//!   twice); if it dies, systemd restarts it and the same happens.

use std::ffi::{CString, OsString};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{CommandError, CommandResult};
use crate::fence::FenceHandle;
use crate::jobs::JobsHandle;
use crate::jobs::reexec::JobsState;
use crate::process::fds::set_cloexec;
use crate::store::Store;
use crate::supervisor::Handle;
use crate::supervisor::reexec::SupervisorState;
use crate::transitions::reloader::{Held, ReloadHandle};

/// The version of the handover's format; a binary that does not print exactly this for
/// `--reexec-format` is not exec'd into.
pub const FORMAT: u32 = 1;

/// How long the binary on disk gets to answer `--reexec-format`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What one corrald hands to the one it re-executes into.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    pub format: u32,
    /// The configuration generation applied; the new corrald continues from it.
    pub generation: u64,
    pub supervisor: SupervisorState,
    pub jobs: JobsState,
    /// Pipes of services' output being copied (`--child-output stderr`), with their prefix.
    pub output: Vec<(RawFd, String)>,
    /// The fence's pipe (write end) and PID, with `[fleet]`.
    #[serde(default)]
    pub fence: Option<(RawFd, u32)>,
    /// The etcd lease this host's report and owner keys are held under, with `[fleet]`.
    #[serde(default)]
    pub fleet_lease: Option<i64>,
}

/// The fleet's parts a re-exec hands over, when corrald runs one (`[fleet]`).
#[derive(Clone, Default)]
pub struct FleetHandover {
    #[cfg(feature = "fleet")]
    pub fleet: Option<crate::fleet::FleetHandle>,
    pub fence: Option<FenceHandle>,
}

impl FleetHandover {
    /// The live lease to hand over: `Ok(None)` without a fleet, an error when there is a
    /// fleet but no live lease (the new image could not keep the owner keys).
    async fn lease(&self) -> CommandResult<Option<i64>> {
        #[cfg(feature = "fleet")]
        if let Some(fleet) = &self.fleet {
            return match fleet.lease().await {
                Some(lease) => Ok(Some(lease)),
                None => Err(CommandError::StartFailed(
                    "not re-executing: this host holds no live etcd lease to hand over (Fleet \
                     is not `connected`); try again once it is"
                        .into(),
                )),
            };
        }
        Ok(None)
    }
}

impl Handover {
    /// Reads the handover from descriptor `fd` (`--deserialize FD`) and closes it.
    pub fn read(fd: RawFd) -> Result<Handover, String> {
        // SAFETY: the previous corrald passed this descriptor for this purpose only.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut text = String::new();
        file.rewind()
            .and_then(|()| file.read_to_string(&mut text))
            .map_err(|err| format!("cannot read the handover (descriptor {fd}): {err}"))?;
        let handover: Handover = serde_json::from_str(&text)
            .map_err(|err| format!("the handover is not readable: {err}"))?;
        if handover.format != FORMAT {
            return Err(format!(
                "the handover has format {}, this corrald reads {FORMAT}",
                handover.format
            ));
        }
        Ok(handover)
    }
}

/// Everything a re-exec touches; cheap to clone.
#[derive(Clone)]
pub struct Reexec(Arc<Parts>);

struct Parts {
    supervisor: Handle,
    jobs: JobsHandle,
    reloader: ReloadHandle,
    store: Store,
    /// The binary to exec (resolved when corrald started) and its arguments.
    exe: PathBuf,
    args: Vec<OsString>,
    fleet: FleetHandover,
}

/// A re-exec ready to go: the state written out, every part frozen.
pub struct Prepared {
    memfd: OwnedFd,
    /// Descriptors that must survive the exec, besides the memfd.
    keep: Vec<RawFd>,
    _held: Held,
}

impl Reexec {
    pub fn new(
        supervisor: Handle,
        jobs: JobsHandle,
        reloader: ReloadHandle,
        store: Store,
        exe: PathBuf,
        args: Vec<OsString>,
        fleet: FleetHandover,
    ) -> Reexec {
        Reexec(Arc::new(Parts {
            supervisor,
            jobs,
            reloader,
            store,
            exe,
            args,
            fleet,
        }))
    }

    /// Checks that the re-exec can go ahead, then freezes corrald's parts and writes the
    /// handover. On an error nothing changed.
    pub async fn prepare(&self) -> CommandResult<Prepared> {
        let parts = &self.0;
        check_binary(&parts.exe).await?;
        let fleet_lease = parts.fleet.lease().await?;
        if let crate::store::StoreHealth::Degraded { reason } = &*parts.store.health().borrow() {
            return Err(CommandError::StartFailed(format!(
                "not re-executing: the state store cannot write ({reason}), and what it keeps \
                 in memory would be lost; fix that first"
            )));
        }
        let held = parts.reloader.hold().await?;
        if let Err(err) = parts.store.flush().await {
            return Err(CommandError::StartFailed(format!(
                "not re-executing: {err}"
            )));
        }
        let Some(supervisor) = parts.supervisor.freeze().await else {
            return Err(CommandError::ShuttingDown);
        };
        let Some(jobs) = parts.jobs.freeze().await else {
            parts.supervisor.thaw().await;
            return Err(CommandError::ShuttingDown);
        };
        // Frozen: nothing is spawned any more, so every target is named to the fence now.
        let fence = match &parts.fleet.fence {
            Some(fence) => match fence.flush().await {
                Ok(descriptor) => Some((descriptor.fd, descriptor.pid)),
                Err(err) => {
                    self.thaw().await;
                    return Err(CommandError::StartFailed(format!(
                        "not re-executing: the fence cannot be handed over: {err}"
                    )));
                }
            },
            None => None,
        };
        let output = crate::process::output::forwarded();
        let keep: Vec<RawFd> = supervisor
            .notify_fd
            .into_iter()
            .chain(output.iter().map(|(fd, _)| *fd))
            .chain(fence.map(|(fd, _)| fd))
            .collect();
        let handover = Handover {
            format: FORMAT,
            generation: held.generation,
            supervisor,
            jobs,
            output,
            fence,
            fleet_lease,
        };
        match write_memfd(&handover) {
            Ok(memfd) => Ok(Prepared {
                memfd,
                keep,
                _held: held,
            }),
            Err(err) => {
                self.thaw().await;
                Err(CommandError::StartFailed(format!(
                    "cannot write the state for the re-exec: {err}"
                )))
            }
        }
    }

    /// Execs the binary with the handover. Returns only if `execve` failed: corrald has
    /// thawed and carries on.
    pub async fn exec(&self, prepared: Prepared) -> CommandError {
        let parts = &self.0;
        let error = exec(&parts.exe, &parts.args, &prepared);
        tracing::error!("re-exec of {} failed: {error}", parts.exe.display());
        for fd in &prepared.keep {
            // SAFETY: only flags change; the descriptors stay owned where they are.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
            let _ = set_cloexec(borrowed, true);
        }
        self.thaw().await;
        CommandError::StartFailed(format!(
            "cannot execute {}: {error}; corrald carries on as before",
            parts.exe.display()
        ))
    }

    async fn thaw(&self) {
        self.0.supervisor.thaw().await;
        self.0.jobs.thaw();
    }
}

/// Runs `exe --reexec-format`: it must print exactly [`FORMAT`].
async fn check_binary(exe: &Path) -> CommandResult {
    let refuse = |why: String| {
        Err(CommandError::StartFailed(format!(
            "not re-executing: {} cannot take over: {why}; corrald carries on as before",
            exe.display()
        )))
    };
    let run = tokio::process::Command::new(exe)
        .arg("--reexec-format")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(CHECK_TIMEOUT, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return refuse(err.to_string()),
        Err(_) => return refuse(format!("it did not answer within {CHECK_TIMEOUT:?}")),
    };
    let said = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && said.trim() == FORMAT.to_string() {
        Ok(())
    } else {
        refuse(format!(
            "`--reexec-format` gave {} and {:?} (this corrald writes format {FORMAT})",
            output.status,
            said.trim()
        ))
    }
}

fn write_memfd(handover: &Handover) -> std::io::Result<OwnedFd> {
    let name = CString::new("corral-handover").expect("no NUL");
    // SAFETY: memfd_create takes a NUL-terminated name and flags; returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(&serde_json::to_vec(handover).map_err(std::io::Error::other)?)?;
    Ok(OwnedFd::from(file))
}

/// `execve` with the handover; only returns on failure.
fn exec(exe: &Path, args: &[OsString], prepared: &Prepared) -> std::io::Error {
    for fd in prepared
        .keep
        .iter()
        .copied()
        .chain([prepared.memfd.as_raw_fd()])
    {
        // SAFETY: only the close-on-exec flag changes.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Err(err) = set_cloexec(borrowed, false) {
            return err;
        }
    }
    let mut argv: Vec<CString> = Vec::with_capacity(args.len() + 3);
    let to_c = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).map_err(std::io::Error::other);
    let program = match to_c(exe.as_os_str()) {
        Ok(p) => p,
        Err(err) => return err,
    };
    argv.push(program.clone());
    let mut skip = false;
    for arg in args {
        // A --deserialize left from an earlier re-exec names a descriptor long closed.
        if skip {
            skip = false;
            continue;
        }
        if arg == "--deserialize" {
            skip = true;
            continue;
        }
        match to_c(arg) {
            Ok(arg) => argv.push(arg),
            Err(err) => return err,
        }
    }
    argv.push(CString::new("--deserialize").expect("no NUL"));
    argv.push(CString::new(prepared.memfd.as_raw_fd().to_string()).expect("digits"));
    match nix::unistd::execv(&program, &argv) {
        Err(errno) => std::io::Error::from(errno),
        Ok(never) => match never {},
    }
}
