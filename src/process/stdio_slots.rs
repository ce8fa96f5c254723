//! A new child's stdin, stdout, stderr and `cgroup.procs`: staged in low descriptor slots
//! so that the child can leave corrald's descriptor table behind in O(1), then installed.
//!
//! A child cloned without `CLONE_FILES` gets a copy of corrald's whole descriptor table,
//! and closing it again before `exec` flushes every file: with 10,000 services (10,000
//! descriptors) that was a third of corrald's time in a crash storm of 1000 restarts
//! (`perf`: `dnotify_flush`, `filp_flush`, `dup_fd`), and made a cold start of 10,000
//! 1.4× the spawn floor. Instead the child shares the table (`CLONE_FILES`) and its first
//! step is `close_range(LIMIT, ~0, CLOSE_RANGE_UNSHARE)`: the kernel gives it a table of
//! only the descriptors below `LIMIT` and never touches the others. What the child needs
//! must then be below `LIMIT`: [`reserve`] opens a few groups of slots at start-up (the
//! lowest free descriptors then), and each spawn `dup3`s its four descriptors into a free
//! group, and puts `/dev/null` back into it once the child has exec'd, so corrald keeps
//! no reference to the child's ends.
//!
//! Without [`reserve`] (unit tests, a kernel before 5.9, start-up descriptors already
//! high) nothing is staged and the child copies the table as before.

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

/// The descriptors a child needs: stdin, stdout, stderr, `cgroup.procs`.
pub(crate) type Group = [RawFd; 4];

/// The slots reserved at start-up.
struct Slots {
    /// Free groups; a spawn takes one for the time of its clone.
    free: Mutex<Vec<Group>>,
    /// Every slot is below this; the child keeps only descriptors below it.
    limit: RawFd,
    /// `/dev/null`, put back into a slot after use.
    null: OwnedFd,
}

static SLOTS: OnceLock<Slots> = OnceLock::new();

/// Slots are kept only while they are this low: the child copies everything below the
/// highest, so they must be few and early.
const HIGHEST_USEFUL: RawFd = 64;

/// Reserves `groups` groups of slots. Call once, at start-up, before other threads exist
/// (the kernel's support is probed with a fork). Returns whether slots are in use.
pub fn reserve(groups: usize) -> io::Result<bool> {
    if !close_range_unshare_works() {
        return Ok(false);
    }
    let null = std::fs::File::open("/dev/null")?;
    let mut free = Vec::with_capacity(groups);
    let mut limit = 0;
    for _ in 0..groups {
        let mut group: Group = [0; 4];
        for slot in &mut group {
            let fd = null.try_clone()?.into_raw_fd();
            limit = limit.max(fd + 1);
            *slot = fd;
        }
        free.push(group);
    }
    if limit > HIGHEST_USEFUL {
        for fd in free.into_iter().flatten() {
            // SAFETY: descriptors this function opened and owns.
            unsafe { libc::close(fd) };
        }
        return Ok(false);
    }
    let slots = Slots {
        free: Mutex::new(free),
        limit,
        null: null.into(),
    };
    Ok(SLOTS.set(slots).is_ok())
}

/// Whether `close_range(…, CLOSE_RANGE_UNSHARE)` works here (Linux 5.9), tried in a
/// forked child so that corrald's own table is left alone.
fn close_range_unshare_works() -> bool {
    // SAFETY: fork before any other thread exists; the child makes one syscall and
    // _exits.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let r = libc::syscall(
                libc::SYS_close_range,
                3,
                u32::MAX,
                libc::CLOSE_RANGE_UNSHARE,
            );
            libc::_exit(if r == 0 { 0 } else { 1 });
        }
        if pid < 0 {
            return false;
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0) == pid
            && libc::WIFEXITED(status)
            && libc::WEXITSTATUS(status) == 0
    }
}

/// A group of slots holding one child's descriptors; back to `/dev/null` and to the free
/// list when dropped.
pub(crate) struct Staged {
    pub group: Group,
    /// The child keeps only descriptors below this.
    pub limit: RawFd,
}

impl Staged {
    /// Stages `stdio` and `cgroup_procs` in a free group; `None` when no slots are
    /// reserved or all are in use (the child then copies the table).
    pub fn new(stdio: &[OwnedFd; 3], cgroup_procs: Option<&OwnedFd>) -> io::Result<Option<Staged>> {
        let Some(slots) = SLOTS.get() else {
            return Ok(None);
        };
        let Some(group) = slots.free.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
            return Ok(None);
        };
        let staged = Staged {
            group,
            limit: slots.limit,
        };
        let sources = [
            Some(stdio[0].as_raw_fd()),
            Some(stdio[1].as_raw_fd()),
            Some(stdio[2].as_raw_fd()),
            cgroup_procs.map(|fd| fd.as_raw_fd()),
        ];
        for (slot, source) in group.iter().zip(sources) {
            if let Some(source) = source {
                // SAFETY: dup3 onto a slot we own; atomically replaces what it held.
                if unsafe { libc::dup3(source, *slot, libc::O_CLOEXEC) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Some(staged))
    }

    /// The staged stdio, as the child installs it.
    pub fn stdio(&self) -> [RawFd; 3] {
        [self.group[0], self.group[1], self.group[2]]
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let Some(slots) = SLOTS.get() else { return };
        for slot in self.group {
            // SAFETY: dup3 onto a slot we own: drops our reference to the child's end.
            unsafe { libc::dup3(slots.null.as_raw_fd(), slot, libc::O_CLOEXEC) };
        }
        slots
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.group);
    }
}

/// The child's first step with staged slots: a descriptor table of its own with only
/// what is below `limit`, made without touching the rest. Async-signal-safe.
pub(crate) fn leave_table(limit: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall.
    let result = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            limit,
            u32::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `stdio` onto fds 0, 1, 2. A source that is itself one of 0–2 is first moved above
/// them, so that no `dup2` overwrites a source still to be used.
pub(crate) fn install_stdio(stdio: &[RawFd; 3]) -> io::Result<()> {
    let mut sources = [0 as RawFd; 3];
    for (slot, &fd) in sources.iter_mut().zip(stdio) {
        let mut raw = fd;
        if raw < 3 {
            // SAFETY: plain fcntl; the copy is close-on-exec and gone at exec.
            raw = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        *slot = raw;
    }
    for (target, source) in sources.into_iter().enumerate() {
        // SAFETY: plain dup2; the new fd 0–2 is not close-on-exec.
        if unsafe { libc::dup2(source, target as RawFd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
