//! The fence: a tiny process that kills the services of fleet groups when corrald dies.
//!
//! corral keeps services running when corrald itself is killed, so that a new corrald can
//! take them over. For a group of a fleet that is wrong: once this host's lease expires,
//! another host takes the group and starts its services, and the old ones must be gone by
//! then. So with `[fleet]`, corrald starts a fence at start-up (its own executable, as
//! `corrald --fence`), connected by a pipe whose write end only corrald holds. corrald
//! tells it, as lines on the pipe ([`wire`]), which process groups, processes and cgroups
//! belong to grouped services; ungrouped services are never named. When corrald dies,
//! however it dies, the kernel closes the write end, the fence reads end-of-file, SIGKILLs
//! everything it was told about, and exits ([`serve`]). A lease TTL later, at the
//! earliest, another host may start the group.
//!
//! The fence runs in its own session and ignores SIGINT, SIGTERM, SIGHUP and SIGQUIT: it
//! ends when corrald closes the pipe (at an orderly shutdown, once every service is
//! stopped and nothing is guarded any more). If it is killed anyway, corrald starts a new
//! one and sends it everything again.
//!
//! # Carrying the fence across a re-exec of corrald
//!
//! A corrald that replaces itself with `execve` (same PID) must keep the pipe, or the
//! fence would see end-of-file and kill the services corrald meant to keep.
//! [`FenceHandle::inherit_across_exec`] clears `FD_CLOEXEC` on the write end and returns
//! its descriptor number and the fence's PID ([`FenceDescriptor`]); pass both to the new
//! image (an argument or an environment variable) and call [`adopt`] there, which sets
//! `FD_CLOEXEC` again. The fence keeps guarding what the old image named; once the new
//! image has taken its services over (and `set` their targets), [`FenceHandle::resync`]
//! replaces the fence's list with exactly those, in one write. Clear the flag just before
//! `execve`, once no more services are spawned: a child spawned while the flag is clear
//! would hold the write end too, and the fence would never see corrald die. The fence
//! stays corrald's child across the exec; the adopting corrald reaps it through a pidfd.
//!
//! # Limits
//!
//! A target is named right after the spawn that creates it, by the supervisor's task: a
//! corrald killed in the microseconds between the two leaves that one process running. A
//! fence killed together with corrald (`kill -9` of both, a cgroup-wide kill) cannot act.

mod keeper;
pub mod serve;
pub mod wire;

use std::io;
use std::os::fd::RawFd;
use std::path::Path;

use tokio::sync::{mpsc, oneshot};

pub use wire::{Message, Target};

/// The write end of the fence's pipe and the fence's PID: what a re-exec carries over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceDescriptor {
    pub fd: RawFd,
    pub pid: u32,
}

/// Tells the fence what to kill if corrald dies. Cheap to clone; sending never blocks.
#[derive(Debug, Clone)]
pub struct FenceHandle {
    requests: mpsc::UnboundedSender<keeper::Request>,
}

/// Starts a fence (`program --fence`) and the task that keeps it.
pub fn start(program: &Path) -> io::Result<FenceHandle> {
    let fence = keeper::Running::spawn(program)?;
    Ok(keeper::Keeper::start(program, fence))
}

/// Takes over the fence a previous corrald image left (see the module doc).
///
/// # Safety
///
/// `descriptor.fd` must be the write end of that fence's pipe, open in this process and
/// owned by nobody else in it.
pub unsafe fn adopt(program: &Path, descriptor: FenceDescriptor) -> io::Result<FenceHandle> {
    // SAFETY: the caller vouches for the descriptor.
    let fence = unsafe { keeper::Running::adopt(descriptor)? };
    Ok(keeper::Keeper::start(program, fence))
}

impl FenceHandle {
    /// `service`'s processes are exactly `targets` now (empty: nothing to kill for it).
    pub fn set(&self, service: &str, targets: Vec<Target>) {
        let _ = self.requests.send(keeper::Request::Set {
            service: service.to_owned(),
            targets,
        });
    }

    /// Resolves once every earlier `set` is written to the fence (for tests and exec).
    pub async fn flush(&self) -> io::Result<FenceDescriptor> {
        self.ask(keeper::Request::Flush).await
    }

    /// Clears `FD_CLOEXEC` on the pipe's write end, so an `execve` keeps it; returns what
    /// the new image needs for [`adopt`]. Every earlier `set` is written first.
    pub async fn inherit_across_exec(&self) -> io::Result<FenceDescriptor> {
        self.ask(keeper::Request::Inherit).await
    }

    /// Replaces the fence's list with exactly what was `set` in this process (`clear`, then
    /// every target, in one write): after [`adopt`], once the services are taken over.
    pub async fn resync(&self) -> io::Result<FenceDescriptor> {
        self.ask(keeper::Request::Resync).await
    }

    /// Closes the pipe and waits for the fence to exit (it kills whatever is still guarded:
    /// call this once every grouped service is stopped).
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.requests.send(keeper::Request::Shutdown(reply)).is_ok() {
            let _ = done.await;
        }
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<FenceDescriptor>>) -> keeper::Request,
    ) -> io::Result<FenceDescriptor> {
        let (reply, answer) = oneshot::channel();
        let gone = || io::Error::other("the fence keeper has stopped");
        self.requests.send(make(reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
