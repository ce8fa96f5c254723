//! A spawned service process, owned by one task that awaits its exit through its pidfd:
//! the kernel makes the pidfd readable when the process exits, and `waitid(P_PIDFD)` reaps
//! it and gives its status. No SIGCHLD handler, no `waitpid(-1)`: tokio's own children are
//! untouched. Each such child is registered with [`super::reaper`] from its start until it
//! is reaped, so the orphan reaper leaves it to its owner.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::reaper;

/// A child process of corrald (see [`super::spawn()`]).
#[derive(Debug)]
pub struct Child {
    pid: u32,
    pidfd: Option<AsyncFd<OwnedFd>>,
    /// Set once reaped.
    status: Option<ExitStatus>,
}

impl Child {
    /// Wraps a child and its pidfd; the child was registered with [`super::reaper`] when it
    /// was started. Must be called inside the tokio runtime.
    pub(crate) fn new(pid: u32, pidfd: OwnedFd) -> io::Result<Child> {
        // SAFETY: we own `pidfd` and neither close nor replace it while the AsyncFd holds it.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE)? };
        Ok(Child {
            pid,
            pidfd: Some(pidfd),
            status: None,
        })
    }

    /// Takes over process `pid` as a [`Child`] if it is corrald's child — a forking
    /// daemon whose launcher exited, reparented to corrald as a child subreaper — so that
    /// its exit status is known. `Ok(None)` when it is someone else's child (then only its
    /// exit can be awaited, through [`super::pidfd::ProcessWatch`]); `Err` when it is gone.
    pub fn adopt(pid: u32) -> io::Result<Option<Child>> {
        let registering = reaper::registering();
        let pidfd = super::pidfd::open(pid)?;
        // A child another owner awaits already stays that owner's.
        if registering.owns(pid) || !reaper::is_own_child(&pidfd)? {
            return Ok(None);
        }
        registering.own(pid);
        drop(registering);
        Child::new(pid, pidfd).map(Some).inspect_err(|_| {
            reaper::disown(pid);
        })
    }

    /// Takes over `pid`, a child of this process that an earlier program in this same
    /// process spawned (a live re-exec keeps the children): it can be awaited and reaped
    /// like any other, and the orphan reaper leaves it alone. Fails when there is no such
    /// process (it was reaped already).
    pub fn inherit(pid: u32) -> io::Result<Child> {
        let registering = reaper::registering();
        let pidfd = super::pidfd::open(pid)?;
        registering.own(pid);
        drop(registering);
        Child::new(pid, pidfd).inspect_err(|_| reaper::disown(pid))
    }

    /// Its PID; `None` once it has been reaped (the number may belong to another process
    /// by then), as tokio's `Child::id`.
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid)
    }

    /// Waits for it to exit and reaps it. Cancel-safe; later calls return the same status.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let pidfd = self.pidfd.as_ref().expect("present until reaped");
            let mut ready = pidfd.readable().await?;
            // Readable means exited; reap in the next round. Clearing first means a
            // spurious wake-up only costs one more waitid.
            ready.clear_ready();
        }
    }

    /// Resolves once it has exited, without reaping it: until [`Child::wait`], its exit
    /// status stays with the kernel (where a live re-exec's next corrald can collect it).
    pub async fn exited(&self) -> io::Result<()> {
        let Some(pidfd) = &self.pidfd else {
            return Ok(());
        };
        let _ready = pidfd.readable().await?;
        Ok(())
    }

    /// Its status if it has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let pidfd = self.pidfd.as_ref().expect("present until reaped");
        let Some(status) = reap(pidfd.get_ref())? else {
            return Ok(None);
        };
        self.status = Some(status);
        self.pidfd = None;
        reaper::disown(self.pid);
        Ok(Some(status))
    }

    /// Sends SIGKILL (through the pidfd, so never to a recycled PID).
    pub fn start_kill(&mut self) -> io::Result<()> {
        match &self.pidfd {
            Some(pidfd) => send_signal(pidfd.get_ref(), libc::SIGKILL),
            None => Ok(()),
        }
    }

    /// Kills it and waits until it is reaped.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(drop)
    }
}

impl Drop for Child {
    /// A child dropped before it was reaped is reaped by a task of its own when it exits,
    /// so it never lingers as a zombie (tokio's `Child` does the same).
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else {
            return;
        };
        let pid = self.pid;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                while reap(pidfd.get_ref()).ok().flatten().is_none() {
                    match pidfd.readable().await {
                        Ok(mut ready) => ready.clear_ready(),
                        Err(_) => return,
                    }
                }
                reaper::disown(pid);
            });
        }
    }
}

/// `waitid(P_PIDFD, WEXITED | WNOHANG)`: the status if the process exited (and is now
/// reaped), `None` if it runs.
fn reap(pidfd: &OwnedFd) -> io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is plain data, zeroed so that si_pid reads 0 when nothing exited.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a pidfd of our own child and a local siginfo.
    let result = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful waitid the SIGCHLD fields are valid.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    // Back to the wait-status encoding ExitStatus takes.
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => status | 0x80,
        _ => status,
    };
    Ok(Some(ExitStatus::from_raw(raw)))
}

/// `pidfd_send_signal(pidfd, signal)`.
pub(crate) fn send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: the syscall takes the fd, the signal, a NULL siginfo and flags 0.
    let result = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if result < 0 {
        let err = io::Error::last_os_error();
        // Exited but not reaped yet: nothing left to signal.
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}
