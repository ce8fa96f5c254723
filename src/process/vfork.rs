//! Starting a process the way `posix_spawn` does — `clone(CLONE_VM | CLONE_VFORK)`, so the
//! child borrows corrald's memory until it execs instead of copying its page tables — but
//! with corrald's own steps between clone and exec: join the service's cgroup, set its
//! rlimits and umask, close every descriptor but 0–2, become its user, set
//! no_new_privileges.
//!
//! Why not std's `Command`: with a `pre_exec` hook it forks, and a fork copies the page
//! tables of all of corrald. Every service needs such a step (at least its descriptor
//! limit back to 1024), and measured here (`examples/spawn_cost.rs`, 1000 spawns) a fork
//! with those steps from a 20 MB parent took ~5.0 ms against ~1.1 ms for `posix_spawn`
//! and ~0.9 ms for this path; a cold start of 1000 services took 2–2.7 times the floor
//! with the fork, and stays at the floor with this path.
//!
//! A fresh service cgroup is not joined from the child but given at the clone: `clone3`
//! with `CLONE_INTO_CGROUP` ([`super::clone3`]) where the kernel can, since a write to
//! `cgroup.procs` waits for an RCU grace period; otherwise the child writes it.
//!
//! With many services corrald holds many descriptors; the child then also shares corrald's
//! descriptor table (`CLONE_FILES`) and leaves it in O(1) as its first step, keeping only
//! its stdio staged in low slots (`super::stdio_slots`), instead of copying and closing
//! the whole table.
//!
//! The child shares corrald's memory and runs on a stack of its own until it execs, while
//! the cloning thread waits. So everything it needs is prepared before the clone, it calls
//! only async-signal-safe functions, allocates nothing, and uses raw syscalls where glibc's
//! wrapper would act on corrald's threads (`setuid` and friends broadcast to every thread
//! of the process). All signals are blocked across the clone, and the child resets every
//! handler to the default before it unblocks them, so no handler of corrald ever runs in
//! the child (what glibc's `posix_spawn` does too).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use super::child_stack::{BlockedSignals, STACK_SIZE, Stack};
use super::clone3::{self, Clone3Error};
use super::limits::ChildLimits;
use super::stdio_slots::{self, Staged};
use super::watchdog_pid;

/// Everything the child needs, prepared before the clone.
pub(crate) struct ExecPlan {
    /// The program, as `execve` takes it (resolved against the service's `PATH`).
    pub path: CString,
    /// `argv`, `argv[0]` first.
    pub argv: Vec<CString>,
    /// The whole environment, `NAME=value`.
    pub envp: Vec<CString>,
    pub cwd: CString,
    /// Become fds 0, 1, 2.
    pub stdio: [OwnedFd; 3],
    /// Lead a new process group (`setpgid(0, 0)`).
    pub new_process_group: bool,
    /// `cgroup.procs` of the cgroup to join, opened for writing.
    pub cgroup_procs: Option<OwnedFd>,
    /// The same cgroup's directory: the child is started in it (`clone3` with
    /// `CLONE_INTO_CGROUP`, see [`super::clone3`]) where the kernel can; else it joins
    /// through `cgroup_procs`.
    pub cgroup_dir: Option<OwnedFd>,
    pub limits: ChildLimits,
    /// (supplementary groups, gid, uid) to become.
    pub user: Option<(Vec<libc::gid_t>, libc::gid_t, libc::uid_t)>,
    /// Add `WATCHDOG_PID=<the child's own PID>` to the environment, as systemd does for a
    /// service with a watchdog: only the child knows its PID before it execs.
    pub watchdog_pid: bool,
}

/// The step of the child that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Signals,
    ProcessGroup,
    Cgroup,
    Limits,
    Stdio,
    User,
    WorkingDirectory,
    NoNewPrivileges,
    Exec,
}

impl Step {
    /// What the child could not do, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Signals => "reset its signal handlers",
            Step::ProcessGroup => "start its process group",
            Step::Cgroup => "join its cgroup",
            Step::Limits => "set its rlimits or umask",
            Step::Stdio => "set up its stdin, stdout and stderr",
            Step::User => "become its user",
            Step::WorkingDirectory => "change to its working directory",
            Step::NoNewPrivileges => "set no_new_privileges",
            Step::Exec => "execute its program",
        }
    }
}

/// A child that could not exec: which step failed, and why. It has been reaped.
#[derive(Debug)]
pub(crate) struct StartFailure {
    pub step: Step,
    pub error: io::Error,
}

/// What the child reads, and where it reports a failure. Raw pointers into the plan and
/// the arrays built for it, all alive until the clone returns.
struct ChildArgs<'a> {
    plan: &'a ExecPlan,
    /// The plan's stdio and `cgroup.procs`, or their copies in low slots.
    stdio: [RawFd; 3],
    cgroup_procs: Option<RawFd>,
    /// With staged slots: the child shares corrald's table and keeps only what is below.
    unshare_below: Option<RawFd>,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// The `WATCHDOG_PID=` entry of `envp` for the child to complete, or null.
    pid_slot: *mut u8,
    failed: Option<(Step, i32)>,
}

/// Starts the process of `plan`; returns its PID and a pidfd for it. When the child fails
/// before its program runs, it is reaped and the failure returned.
pub(crate) fn start(plan: &ExecPlan) -> Result<(u32, OwnedFd), StartFailure> {
    let argv = null_terminated(&plan.argv);
    let mut envp = null_terminated(&plan.envp);
    let mut pid_slot = watchdog_pid::slot();
    if plan.watchdog_pid {
        envp.insert(envp.len() - 1, pid_slot.as_ptr().cast());
    }
    let staged =
        Staged::new(&plan.stdio, plan.cgroup_procs.as_ref()).map_err(|error| StartFailure {
            step: Step::Stdio,
            error,
        })?;
    let (stdio, cgroup_procs, unshare_below) = match &staged {
        Some(staged) => (
            staged.stdio(),
            plan.cgroup_procs.as_ref().map(|_| staged.group[3]),
            Some(staged.limit),
        ),
        None => (
            [0, 1, 2].map(|i| plan.stdio[i].as_raw_fd()),
            plan.cgroup_procs.as_ref().map(|fd| fd.as_raw_fd()),
            None,
        ),
    };
    let share_files = if staged.is_some() {
        libc::CLONE_FILES
    } else {
        0
    };
    let mut args = ChildArgs {
        plan,
        stdio,
        cgroup_procs,
        unshare_below,
        path: plan.path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        pid_slot: if plan.watchdog_pid {
            pid_slot.as_mut_ptr()
        } else {
            ptr::null_mut()
        },
        failed: None,
    };
    let stack = Stack::new().map_err(|error| StartFailure {
        step: Step::Signals,
        error,
    })?;
    let mut pidfd: RawFd = -1;
    // SAFETY: all signals are blocked across the clone and restored after it;
    // `child_main` only reads `args` (alive on this frame, which is suspended until the
    // child execs or exits: CLONE_VFORK) and writes `args.failed`. With CLONE_PIDFD the
    // kernel stores the pidfd through the parent_tid argument.
    let started: io::Result<i32> = unsafe {
        let blocked = BlockedSignals::all();
        let mut started = None;
        if let Some(dir) = &plan.cgroup_dir {
            // Started in its cgroup: nothing for the child to join.
            let join = args.cgroup_procs.take();
            let flags = (libc::CLONE_VM | libc::CLONE_VFORK | share_files) as u64;
            let arg: *mut libc::c_void = (&mut args as *mut ChildArgs).cast();
            match clone3::start(
                flags,
                dir.as_raw_fd(),
                stack.top(),
                STACK_SIZE,
                child_main,
                arg,
                &mut pidfd,
            ) {
                Ok(pid) => started = Some(Ok(pid as i32)),
                Err(Clone3Error::Failed(errno)) => {
                    started = Some(Err(io::Error::from_raw_os_error(errno)))
                }
                Err(Clone3Error::Unsupported) => args.cgroup_procs = join,
            }
        }
        let started = started.unwrap_or_else(|| {
            let pid = libc::clone(
                child_main,
                stack.top(),
                libc::CLONE_VM
                    | libc::CLONE_VFORK
                    | libc::CLONE_PIDFD
                    | share_files
                    | libc::SIGCHLD,
                (&mut args as *mut ChildArgs).cast(),
                &mut pidfd as *mut RawFd,
            );
            if pid < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(pid)
            }
        });
        drop(blocked);
        started
    };
    // The child has exec'd or exited: the slots go back to /dev/null and the free list.
    drop(staged);
    let pid = started.map_err(|error| StartFailure {
        step: Step::Exec,
        error,
    })?;
    // SAFETY: the kernel gave us this pidfd (CLONE_PIDFD), close-on-exec; we own it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    if let Some((step, errno)) = args.failed {
        // The child called _exit: reap it so that it does not linger as a zombie.
        // SAFETY: waiting for our own child, which has exited.
        unsafe { libc::waitpid(pid, ptr::null_mut(), 0) };
        return Err(StartFailure {
            step,
            error: io::Error::from_raw_os_error(errno),
        });
    }
    Ok((pid as u32, pidfd))
}

/// A NULL-terminated array of pointers into `strings`.
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// The child, between clone and exec. Runs on its own stack in corrald's memory.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` of `start`, alive while the parent is suspended.
    let args = unsafe { &mut *(arg as *mut ChildArgs) };
    if let Err((step, errno)) = prepare_and_exec(args) {
        args.failed = Some((step, errno));
    }
    // SAFETY: _exit ends the child without running anything of corrald's.
    unsafe { libc::_exit(127) }
}

/// The child's steps; returns only on failure. Async-signal-safe throughout.
fn prepare_and_exec(args: &ChildArgs) -> Result<(), (Step, i32)> {
    let plan = args.plan;
    let fail = |step: Step| move |err: io::Error| (step, err.raw_os_error().unwrap_or(0));
    let check = |step: Step, result: libc::c_int| {
        if result < 0 {
            Err((step, errno()))
        } else {
            Ok(())
        }
    };
    if let Some(limit) = args.unshare_below {
        // First, before anything touches a descriptor: until then the table is corrald's.
        stdio_slots::leave_table(limit).map_err(fail(Step::Stdio))?;
    }
    reset_signal_handlers().map_err(fail(Step::Signals))?;
    if plan.new_process_group {
        // SAFETY: plain syscall.
        check(Step::ProcessGroup, unsafe { libc::setpgid(0, 0) })?;
    }
    if let Some(procs) = args.cgroup_procs {
        // "0" is the writing process itself.
        // SAFETY: writing one byte from a static buffer.
        let written = unsafe { libc::write(procs, c"0".as_ptr().cast(), 1) };
        check(Step::Cgroup, written as libc::c_int)?;
    }
    plan.limits
        .apply_before_user()
        .map_err(fail(Step::Limits))?;
    stdio_slots::install_stdio(&args.stdio).map_err(fail(Step::Stdio))?;
    // Nothing but 0, 1, 2 reaches the program: corrald's own descriptors are close-on-exec,
    // but one it inherited without that flag (or a library's) must not leak either.
    // SAFETY: plain syscall on this process's own fd table (no CLONE_FILES, or unshared).
    if unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) } < 0
        && errno() != libc::ENOSYS
    {
        return Err((Step::Stdio, errno()));
    }
    if let Some((groups, gid, uid)) = &plan.user {
        become_user(groups, *gid, *uid).map_err(fail(Step::User))?;
    }
    // SAFETY: a NUL-terminated path.
    check(Step::WorkingDirectory, unsafe {
        libc::chdir(plan.cwd.as_ptr())
    })?;
    plan.limits
        .apply_after_user()
        .map_err(fail(Step::NoNewPrivileges))?;
    if !args.pid_slot.is_null() {
        // SAFETY: the slot is `start`'s, on its frame, which waits for us.
        unsafe { watchdog_pid::fill(args.pid_slot) };
    }
    // SAFETY: the mask is a local; the pointers are the NULL-terminated arrays of `start`.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
        libc::execve(args.path, args.argv, args.envp);
    }
    Err((Step::Exec, errno()))
}

/// Every signal handler back to the default, SIGPIPE too (corrald ignores it; a service
/// expects the default). Other ignored signals stay ignored, as across `execve`.
fn reset_signal_handlers() -> io::Result<()> {
    // 64 is the kernel's highest signal (_NSIG - 1) on Linux.
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction with local structs; signals are blocked, so no handler runs.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            // glibc reserves two real-time signals and refuses them (EINVAL): skip those.
            if libc::sigaction(signal, ptr::null(), &mut current) != 0 {
                continue;
            }
            if current.sa_sigaction == libc::SIG_DFL
                || (current.sa_sigaction == libc::SIG_IGN && signal != libc::SIGPIPE)
            {
                continue;
            }
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            if libc::sigaction(signal, &default, ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The user's groups, then gid, then uid — raw syscalls: glibc's wrappers would signal
/// corrald's threads to change their ids too.
pub(crate) fn become_user(
    groups: &[libc::gid_t],
    gid: libc::gid_t,
    uid: libc::uid_t,
) -> io::Result<()> {
    // SAFETY: raw syscalls with a pointer to a slice of its length.
    unsafe {
        for result in [
            libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
            libc::syscall(libc::SYS_setgid, gid),
            libc::syscall(libc::SYS_setuid, uid),
        ] {
            if result < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `/dev/null` for reading: a service's stdin.
pub(crate) fn dev_null() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// A C string of `text`, or an error naming `what` when it holds a NUL (the config
/// rejects those, so this does not happen for a validated service).
pub(crate) fn c_string(text: impl Into<Vec<u8>>, what: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL character"),
        )
    })
}
