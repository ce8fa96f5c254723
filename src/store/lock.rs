//! Two small pieces of the store that talk to the kernel: the exclusive lock on the state
//! directory (one corrald per state directory), and a process's start time from
//! `/proc/PID/stat` (a PID plus its start time names one process, across PID reuse).
//!
//! The lock is `flock` on the directory itself rather than on a lock file inside it: it
//! needs nothing written, so it is also taken on a read-only state directory, and it
//! leaves no file behind. The kernel drops it when corrald dies, however it dies.

use std::fs::File;
use std::io;
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

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks after boot.
pub fn process_start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no start time"),
        )
    })
}

/// The command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`: field 3 comes right after it.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_counted_from_the_last_parenthesis() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 20 \
                    18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("42 (x) S 1"), None);
    }

    #[test]
    fn a_process_start_time_is_stable_and_tells_processes_apart() {
        let me = process_start_time(std::process::id()).unwrap();
        assert_eq!(process_start_time(std::process::id()).unwrap(), me);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let theirs = process_start_time(child.id()).unwrap();
        assert!(theirs >= me);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(process_start_time(child.id()).is_err());
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        assert!(matches!(lock_dir(dir.path()), Err(LockError::Held)));
        drop(first);
        lock_dir(dir.path()).unwrap();
    }
}
