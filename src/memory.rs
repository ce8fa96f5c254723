//! corrald's use of glibc's malloc: its parameters, and giving the heap's free pages back
//! to the kernel once start-up is done.
//!
//! Start-up reads, parses, validates and diffs the whole configuration, and announces a
//! transition per service: at 10,000 services, tens of megabytes allocated and freed
//! again, interleaved with what lives on (definitions, units, D-Bus objects). glibc keeps
//! freed memory for reuse, so without a trim corrald's RSS would stay at start-up's
//! high-water mark for as long as it runs (README, "Performance", "At 10,000 services").
//! Elsewhere than glibc both functions do nothing.

/// Sets malloc's parameters; call before any other thread exists.
///
/// Two arenas: glibc gives every thread that allocates its own (up to 8 per core), and
/// corrald's threads — tokio's workers, the blocking pool, the spawn threads of a start
/// batch — each leave theirs partly used; corrald's state lives in one task. Measured
/// with 1000 services: RSS 20.3 MB → 17.8 MB, start-up time unchanged.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called before any other thread exists; mallopt only sets an allocator
    // parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the free pages of every malloc arena to the kernel (`malloc_trim(0)`, which
/// `madvise`s them away; live allocations are untouched). It walks the arenas' free
/// lists (2–6 ms at 10,000 services).
///
/// Called once, after start-up, not after each reload: a reload frees what it allocated
/// too, but trimming it away makes the next reload fault the same pages back in —
/// measured at 10,000 services, +6,000 page faults and +25–40 ms per reload, against a
/// reload target of 100 ms. The reload's working set stays resident for the next one.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes malloc's own locks and only touches free chunks.
    unsafe {
        libc::malloc_trim(0);
    }
}
