//! `WATCHDOG_PID=<pid>` in a watchdog service's environment, as systemd sets it: only the
//! child knows its PID before it execs, so the parent prepares the entry with room for the
//! digits, and the child (sharing the parent's memory between clone and exec) writes them
//! in without allocating.

/// The entry's name; room for the digits of any PID and the NUL follows.
const PREFIX: &[u8] = b"WATCHDOG_PID=";
const SLOT_LEN: usize = PREFIX.len() + 11;

/// The entry, its digits still to be written by [`fill`].
pub(super) fn slot() -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[..PREFIX.len()].copy_from_slice(PREFIX);
    slot
}

/// Completes a [`slot`] with the calling process's PID. Async-signal-safe.
///
/// # Safety
/// `slot` must point to a whole slot from [`slot`] that nothing else uses meanwhile.
pub(super) unsafe fn fill(slot: *mut u8) {
    // SAFETY: as the caller promises.
    let slot = unsafe { std::slice::from_raw_parts_mut(slot, SLOT_LEN) };
    // SAFETY: plain syscall (glibc's getpid is one too, but say so).
    let pid = unsafe { libc::syscall(libc::SYS_getpid) } as u32;
    write_decimal(&mut slot[PREFIX.len()..], pid);
}

/// Writes `n` in decimal, NUL-terminated, into `out` (11 bytes hold any `u32`); no
/// allocation, for the child.
pub(super) fn write_decimal(out: &mut [u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, digit) in digits[..len].iter().rev().enumerate() {
        out[i] = *digit;
    }
    out[len] = 0;
}
