//! `clone3` with `CLONE_INTO_CGROUP`: the child starts in its cgroup, so joining it is no
//! migration. Writing a PID to `cgroup.procs` takes the kernel's `cgroup_threadgroup_rwsem`
//! for writing, which waits for an RCU grace period unless one is under way: ~15 ms for
//! each start of a service that restarts every few tens of milliseconds (README
//! "Performance"). systemd starts its services this way for the same reason.
//!
//! glibc has no public `clone3` wrapper, and a child that runs on a stack of its own right
//! after the syscall cannot be written in Rust: the few instructions between the syscall
//! and the child's entry function are assembly, x86_64 only. Elsewhere, or on a kernel
//! without `clone3` (before 5.7 for `CLONE_INTO_CGROUP`), [`start`] says so and the caller
//! falls back to `clone` and a write to `cgroup.procs`.

use std::os::fd::RawFd;

/// `CLONE_INTO_CGROUP` (linux/sched.h).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args`, version 2 (with `cgroup`).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Why [`start`] made no child.
pub(super) enum Clone3Error {
    /// This kernel or architecture cannot do it: use `clone` instead.
    Unsupported,
    /// It can, and failed with this errno.
    Failed(i32),
}

/// Starts `child(arg)` on `stack` (`stack_size` bytes below `stack_top`) in the cgroup
/// `cgroup_dir`, with `flags` (`CLONE_VM | CLONE_VFORK | …`) and `CLONE_PIDFD`, the pidfd
/// stored in `pidfd`. Returns the child's PID once it has exec'd or exited (vfork).
///
/// # Safety
/// As for `clone(2)` with `CLONE_VM`: `child` must never return into this frame (it execs
/// or `_exit`s), must only use `arg` and its own stack, and the caller's frame must stay
/// alive until this returns.
#[allow(unused_variables)]
pub(super) unsafe fn start(
    flags: u64,
    cgroup_dir: RawFd,
    stack_top: *mut libc::c_void,
    stack_size: usize,
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
    pidfd: &mut RawFd,
) -> Result<u32, Clone3Error> {
    #[cfg(target_arch = "x86_64")]
    {
        let args = CloneArgs {
            flags: flags | libc::CLONE_PIDFD as u64 | CLONE_INTO_CGROUP,
            pidfd: pidfd as *mut RawFd as u64,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack_top as u64 - stack_size as u64,
            stack_size: stack_size as u64,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: cgroup_dir as u64,
        };
        let ret: i64;
        // SAFETY: the caller's promises. The parent gets the PID (or -errno) in rax and
        // jumps over the child's part. The child gets 0 and the new stack (the kernel
        // sets rsp to its top, 16-byte aligned: the `call` leaves it as the ABI wants at
        // a function's entry) and calls `child(arg)`, which never returns. Only rax, rcx
        // and r11 change across `syscall`; r12 and r13 carry `arg` and `child` over.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "mov rdi, r12",
                "call r13",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 => ret,
                in("rdi") &args as *const CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") arg,
                in("r13") child as usize,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        match ret {
            pid if pid > 0 => Ok(pid as u32),
            // No clone3 (before 5.3), a `clone_args` without `cgroup` (before 5.7: E2BIG),
            // or a flag this kernel does not know (EINVAL): the caller's fallback works
            // wherever this does not.
            err if [libc::ENOSYS, libc::E2BIG, libc::EINVAL, libc::EOPNOTSUPP]
                .iter()
                .any(|&code| -err == i64::from(code)) =>
            {
                Err(Clone3Error::Unsupported)
            }
            err => Err(Clone3Error::Failed(-err as i32)),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Err(Clone3Error::Unsupported)
}
