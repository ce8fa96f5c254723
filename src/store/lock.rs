//! The exclusive lock on the state directory: one corrald per state directory.
//!
//! The lock is `flock` on the directory itself rather than on a lock file inside it: it
//! needs nothing written, so it is also taken on a read-only state directory, and it
//! leaves no file behind. The kernel drops it when corrald dies, however it dies.

use std::fs::File;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held for as long as the store runs; dropping it unlocks.
#[derive(Debug)]
pub(super) struct DirLock {
    _flock: Flock<File>,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub(super) enum LockError {
    /// Another process holds it.
    Held,
    /// The directory cannot be created or opened.
    Io(String),
}

/// Creates `dir` if needed and takes its lock without waiting.
pub(super) fn lock_dir(dir: &Path) -> Result<DirLock, LockError> {
    std::fs::create_dir_all(dir).map_err(|err| {
        LockError::Io(format!(
            "cannot create the state directory {}: {err}",
            dir.display()
        ))
    })?;
    let file = File::open(dir).map_err(|err| {
        LockError::Io(format!(
            "cannot open the state directory {}: {err}",
            dir.display()
        ))
    })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => Ok(DirLock { _flock: flock }),
        Err((_, Errno::EWOULDBLOCK)) => Err(LockError::Held),
        Err((_, errno)) => Err(LockError::Io(format!(
            "cannot lock the state directory {}: {errno}",
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        assert!(matches!(lock_dir(dir.path()), Err(LockError::Held)));
        drop(first);
        lock_dir(dir.path()).unwrap();
    }
}
