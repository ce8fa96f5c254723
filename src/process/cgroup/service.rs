//! One service's cgroup: made before each run, joined by the child before it execs, and
//! the authority on which processes belong to the service — killed with `cgroup.kill`,
//! frozen with `cgroup.freeze`, and empty when `cgroup.events` says `populated 0`.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::events;

/// A service's cgroup: where it is. Cheap to clone; the directory may or may not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCgroup {
    dir: PathBuf,
    path: String,
    /// Made for this run by [`super::Cgroups::prepare`] (not one left from before).
    fresh: bool,
}

impl ServiceCgroup {
    pub(crate) fn new(dir: PathBuf, path: String) -> ServiceCgroup {
        ServiceCgroup {
            dir,
            path,
            fresh: false,
        }
    }

    pub(super) fn made(self, fresh: bool) -> ServiceCgroup {
        ServiceCgroup { fresh, ..self }
    }

    /// Whether the cgroup was made for this run. Only into such a cgroup is a child started
    /// with `CLONE_INTO_CGROUP`: on this kernel (6.18) a child started that way in a cgroup
    /// whose leftovers had just been killed with `cgroup.kill` was itself killed at once
    /// (`tests/cgroups.rs`, `after_kill_9_…`). A run that reuses a cgroup joins it through
    /// `cgroup.procs`, as before.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The cgroup path as `/proc/PID/cgroup` shows it: the `ControlGroup` property.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Its directory in the cgroup filesystem.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the cgroup; one that exists already (a run before, or a corrald before this
    /// one) is kept with whatever is in it. Returns whether it was made now.
    pub fn create(&self) -> io::Result<bool> {
        match std::fs::create_dir(&self.dir) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// `cgroup.procs` opened for writing: a child writes "0" to it between fork and exec
    /// to join the cgroup, before it can fork anything that could escape.
    pub fn open_procs(&self) -> io::Result<OwnedFd> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(file.into())
    }

    /// Its directory, for `clone3`'s `CLONE_INTO_CGROUP`.
    pub fn open_dir(&self) -> io::Result<OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&self.dir)?;
        Ok(dir.into())
    }

    /// Whether any process is in it (false when it does not exist).
    pub fn is_populated(&self) -> io::Result<bool> {
        match events::read_key(&self.dir.join("cgroup.events"), "populated") {
            Ok(value) => Ok(value == Some(1)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Resolves once no process is left in it (at once when it does not exist).
    pub async fn wait_empty(&self) -> io::Result<()> {
        match events::wait_for(&self.dir, "populated", 0).await {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// SIGKILL to every process in it, atomically: a process forking at that moment cannot
    /// leave a child behind, and `setsid` or a double fork does not take a process out.
    pub fn kill(&self) -> io::Result<()> {
        match std::fs::write(self.dir.join("cgroup.kill"), "1") {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Sends `signal` to every process in it, as systemd's `KillMode=control-group` does
    /// with the stop signal: `cgroup.procs` is read again until it shows no process not
    /// signalled yet, so one forked meanwhile gets it too. Returns how many were
    /// signalled. For SIGKILL use [`ServiceCgroup::kill`], which is atomic.
    pub fn signal(&self, signal: Signal) -> io::Result<usize> {
        let mut done = BTreeSet::new();
        loop {
            let fresh: Vec<u32> = self
                .pids()?
                .into_iter()
                .filter(|pid| !done.contains(pid))
                .collect();
            if fresh.is_empty() {
                return Ok(done.len());
            }
            for pid in fresh {
                // Gone meanwhile (ESRCH) is fine: it needs no signal any more.
                let _ = kill(Pid::from_raw(pid as i32), signal);
                done.insert(pid);
            }
        }
    }

    /// Freezes every process in it and resolves once all are frozen. Unlike SIGSTOP, this
    /// is invisible to the processes and their parents. A process in an uninterruptible
    /// sleep holds this up until it wakes: bound the wait if that matters.
    pub async fn freeze(&self) -> io::Result<()> {
        std::fs::write(self.dir.join("cgroup.freeze"), "1")?;
        events::wait_for(&self.dir, "frozen", 1).await
    }

    /// Thaws it and resolves once the kernel reports it thawed.
    pub async fn thaw(&self) -> io::Result<()> {
        std::fs::write(self.dir.join("cgroup.freeze"), "0")?;
        events::wait_for(&self.dir, "frozen", 0).await
    }

    /// Whether it is frozen now.
    pub fn is_frozen(&self) -> io::Result<bool> {
        Ok(events::read_key(&self.dir.join("cgroup.events"), "frozen")? == Some(1))
    }

    /// The processes in it (not in cgroups below it; corrald makes none).
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let text = match std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// How many processes the kernel's OOM killer killed in it since it was made; `None`
    /// without the memory controller. Compare before and after a run, or remove the
    /// cgroup after each run so that each starts at 0.
    pub fn oom_kills(&self) -> Option<u64> {
        events::read_key(&self.dir.join("memory.events"), "oom_kill")
            .ok()
            .flatten()
    }

    /// Removes it; it must be empty (`ResourceBusy` otherwise). Gone already is fine.
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_dir(&self.dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
