//! Awaiting the exit of a process that is not our child (an adopted daemon) through a
//! pidfd: the kernel makes it readable when the process exits, so we await that instead of
//! polling `/proc`. [`MainWatch`] takes a main process that is corrald's child (a forking
//! daemon, reparented to corrald the subreaper) as a child instead, to know its status.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A handle on a live process that resolves when the process exits.
pub struct ProcessWatch {
    fd: AsyncFd<OwnedFd>,
}

impl ProcessWatch {
    /// Opens a pidfd for `pid`. Fails with `ESRCH` when no such process exists.
    pub fn open(pid: u32) -> io::Result<ProcessWatch> {
        let fd = open(pid)?;
        // SAFETY: we own `fd` and neither close nor replace it while the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(ProcessWatch { fd })
    }

    /// Resolves once the process has exited. Its exit status is not ours to collect.
    pub async fn exited(self) -> io::Result<()> {
        let _ready = self.fd.readable().await?;
        Ok(())
    }
}

/// A main process corrald awaits: its own child, whose exit status it reaps, or another
/// process's (an adopted daemon), of which only the exit is known.
pub enum MainWatch {
    Child(super::Child),
    Other(ProcessWatch),
}

impl MainWatch {
    /// Watches `pid`: as a [`super::Child`] when it is corrald's child (a forking daemon
    /// reparented to corrald, the subreaper), else through a pidfd. Fails when it is gone.
    pub fn open(pid: u32) -> io::Result<MainWatch> {
        Ok(match super::Child::adopt(pid)? {
            Some(child) => MainWatch::Child(child),
            None => MainWatch::Other(ProcessWatch::open(pid)?),
        })
    }

    /// Resolves once it has exited, with its exit status when it was corrald's child.
    pub async fn exited(self) -> Option<std::process::ExitStatus> {
        match self {
            MainWatch::Child(mut child) => child.wait().await.ok(),
            MainWatch::Other(watch) => {
                let _ = watch.exited().await;
                None
            }
        }
    }
}

/// `pidfd_open(pid)`: a pidfd for `pid`, or `ESRCH` when no such process exists.
pub(crate) fn open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes (pid, flags) and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .unwrap();
        let watch = ProcessWatch::open(child.id()).unwrap();
        watch.exited().await.unwrap();
        // The process is a zombie of ours now: reap it so the test leaves nothing behind.
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn fails_for_a_missing_process() {
        // PIDs are below 2^22 on Linux.
        let err = ProcessWatch::open(0x7fff_fff0).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }
}
