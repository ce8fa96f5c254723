//! Giving the heap's free pages back to the kernel after a burst of short-lived allocations.
//!
//! Start-up and each reload read, parse, validate and diff the whole configuration, and
//! announce a transition per service: at 10,000 services, tens of megabytes allocated and
//! freed again, interleaved with what lives on (definitions, units, D-Bus objects). glibc's
//! malloc keeps the freed chunks in its arenas for reuse, so without this corrald's RSS
//! would stay at the burst's high-water mark for as long as it runs — measured at 10,000
//! services, over a kilobyte per service (README, "Performance").

/// Returns the free pages of every malloc arena to the kernel (`malloc_trim(0)`, which
/// `madvise`s them away; live allocations are untouched). It walks the arenas' free
/// lists, so it belongs after work that is itself O(services): applying a configuration.
/// A no-op where the C library is not glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes malloc's own locks and only touches free chunks.
    unsafe {
        libc::malloc_trim(0);
    }
}
