//! corrald as a child subreaper (`PR_SET_CHILD_SUBREAPER`, as systemd is for its
//! services): a process that a service's process leaves behind when it exits — the
//! daemon a `forking` launcher forks, a double-forked grandchild — is reparented to
//! corrald, not to init. So a forking daemon's main process is corrald's child, whose exit
//! status corrald reads through its pidfd, and no process of a service is ever reparented
//! away from corral.
//!
//! Such orphans become corrald's zombies when they exit, and nobody else will reap them.
//! Reaping them must not take an exit status from its owner (STYLE rule 4: no
//! `waitpid(-1)`): every child corrald starts has one owner that awaits it — a service's
//! process through its pidfd ([`super::child`]), a method's or recipe's command through
//! tokio. So the reaper, on each SIGCHLD, looks at corrald's zombie children one by one
//! and reaps a zombie only when it is no owner's:
//! - not registered here: services' processes and the forking daemons taken over as
//!   children are registered, under a lock the reaper takes too, before the reaper could
//!   see them (so a child that exits at once is never mistaken for an orphan);
//! - and not what a direct child of corrald looks like: corrald's commands are started in
//!   corrald's session, in corrald's process group or in one of their own. An orphan of a
//!   service is in the service's process group (a member, not the leader) or in a session
//!   of its own (it called `setsid`). A command started by code that registers nothing
//!   therefore keeps its exit status for its owner.
//!
//! The registry is process-wide because the kernel's list of children is: whatever part
//! of corrald starts a child, the reaper sees it.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use super::procfs;

/// Children whose owner reaps them through a pidfd. A std `Mutex`: held for an insert or a
/// lookup, never across an `.await`.
static OWNED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Shared by every spawn until its child is registered; exclusive while the reaper looks
/// at zombies, so it never sees a child of ours before its registration.
static REGISTERING: RwLock<()> = RwLock::new(());

/// Makes corrald a child subreaper: orphans of its descendants become its children.
/// Process-wide; call it once, from the binary.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Held across the start of a child until [`Registering::own`] registered it.
pub struct Registering {
    _shared: RwLockReadGuard<'static, ()>,
}

/// Begins a registration: take it before the child exists.
pub fn registering() -> Registering {
    Registering {
        _shared: REGISTERING.read().unwrap_or_else(|e| e.into_inner()),
    }
}

impl Registering {
    /// `pid` has an owner that reaps it.
    pub fn own(&self, pid: u32) {
        owned().insert(pid);
    }

    /// Whether `pid` has an owner already.
    pub fn owns(&self, pid: u32) -> bool {
        owned().contains(&pid)
    }
}

/// The owner of `pid` has reaped it (call after the reap, never before).
pub fn disown(pid: u32) {
    owned().remove(&pid);
}

fn owned() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reaper task: reaps orphaned zombies at each SIGCHLD, until the runtime ends.
pub async fn run() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::error!("cannot watch SIGCHLD, so orphaned processes are not reaped: {err}");
            return;
        }
    };
    loop {
        reap_orphans();
        if sigchld.recv().await.is_none() {
            return;
        }
    }
}

/// Reaps every zombie child of corrald that no owner will reap; returns their PIDs.
pub fn reap_orphans() -> Vec<u32> {
    let _exclusive = REGISTERING.write().unwrap_or_else(|e| e.into_inner());
    // Usually every zombie is reaped by its owner before this runs: one syscall says so.
    if !any_zombie_child() {
        return Vec::new();
    }
    let Some(me) = procfs::stat(std::process::id()) else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for pid in children() {
        if owned().contains(&pid) {
            continue;
        }
        let Some(stat) = procfs::stat(pid) else {
            continue;
        };
        if !stat.exited || stat.ppid != std::process::id() {
            continue;
        }
        let looks_direct = stat.session == me.session && (stat.pgrp == me.pgrp || stat.pgrp == pid);
        if looks_direct {
            continue;
        }
        if let Some(code) = reap(pid) {
            tracing::debug!(pid, "reaped an orphaned process (exit status {code})");
            reaped.push(pid);
        }
    }
    reaped
}

/// Whether some child of corrald is a zombie (`waitid(P_ALL, WNOWAIT)` reaps nothing).
fn any_zombie_child() -> bool {
    // SAFETY: siginfo_t is plain data; zeroed so that si_pid reads 0 when none exited.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a local siginfo; WNOWAIT leaves the zombie in place.
    let result = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: after a successful waitid the SIGCHLD fields are valid.
    result == 0 && unsafe { info.si_pid() } != 0
}

/// corrald's children: the `children` list of each of its threads (a child belongs to the
/// thread that started it; orphans go to the main thread).
fn children() -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|thread| std::fs::read_to_string(thread.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Reaps the zombie `pid`; its exit code (or 128 + signal), `None` if it was not ours.
fn reap(pid: u32) -> Option<i32> {
    // SAFETY: as in `any_zombie_child`, for one PID, reaping it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let result = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    // SAFETY: after a successful waitid the SIGCHLD fields are valid.
    let (found, status) = unsafe { (info.si_pid(), info.si_status()) };
    (result == 0 && found != 0).then(|| match info.si_code {
        libc::CLD_EXITED => status,
        _ => 128 + status,
    })
}

/// Whether the process behind `pidfd` is a child of corrald (running or a zombie): the
/// kernel answers `waitid(P_PIDFD, WNOWAIT)` only for its own children.
pub(crate) fn is_own_child(pidfd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: as in `any_zombie_child`, for one pidfd.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let result = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if result == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ECHILD) => Ok(false),
        _ => Err(err),
    }
}
