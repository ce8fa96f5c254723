//! What a cloned child runs on and under until it execs: a stack of its own (with a guard
//! page), and every signal blocked in the cloning thread across the clone, so that no
//! handler of corrald's runs in the child before it has reset them.

use std::io;
use std::ptr;

/// The child's stack size. It only runs corrald's steps before exec; glibc's posix_spawn
/// uses 32 KiB plus the argument size, and a debug build needs more.
pub(super) const STACK_SIZE: usize = 256 << 10;

/// The child's stack: a mapping with a guard page below it, unmapped when dropped (after
/// the clone returned, when the child no longer runs on it).
pub(super) struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    pub(super) fn new() -> io::Result<Stack> {
        let guard = page_size();
        let len = STACK_SIZE + guard;
        // SAFETY: a fresh anonymous mapping; the lowest page is made inaccessible so that
        // an overflow faults instead of writing into other memory.
        unsafe {
            let base = libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let stack = Stack { base, len };
            if libc::mprotect(base, guard, libc::PROT_NONE) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(stack)
        }
    }

    /// The top of the stack (it grows down), as `clone` takes it.
    pub(super) fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our own mapping.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

/// All signals blocked in the calling thread until dropped.
pub(super) struct BlockedSignals {
    previous: libc::sigset_t,
}

impl BlockedSignals {
    pub(super) fn all() -> BlockedSignals {
        // SAFETY: sigset_t is plain data; pthread_sigmask only touches this thread's mask.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
            BlockedSignals { previous }
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restoring this thread's own mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, ptr::null_mut()) };
    }
}
