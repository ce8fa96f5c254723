//! Waiting for a cgroup's state through `cgroup.events` (`populated`, `frozen`): the kernel
//! reports every change of that file as a modification, which inotify delivers to an fd
//! that tokio awaits. No polling, no sleep loop.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Resolves once `key` in `dir/cgroup.events` reads `want`. Fails with `NotFound` when the
/// cgroup does not exist (or is removed while waiting).
pub(crate) async fn wait_for(dir: &Path, key: &str, want: u64) -> io::Result<()> {
    let file = dir.join("cgroup.events");
    // Watch first, then read: a change between the two is then not missed.
    let watch = Watch::open(&file)?;
    loop {
        if read_key(&file, key)? == Some(want) {
            return Ok(());
        }
        watch.changed().await?;
    }
}

/// The value of `key` in a flat-keyed cgroup file (`cgroup.events`, `memory.events`).
pub(crate) fn read_key(file: &Path, key: &str) -> io::Result<Option<u64>> {
    Ok(parse_key(&std::fs::read_to_string(file)?, key))
}

/// `key`'s value in the text of a flat-keyed file ("populated 1\nfrozen 0\n").
pub(crate) fn parse_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// An inotify watch on one file.
pub(crate) struct Watch {
    fd: AsyncFd<OwnedFd>,
}

impl Watch {
    pub(crate) fn open(file: &Path) -> io::Result<Watch> {
        // SAFETY: inotify_init1 takes flags and returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = CString::new(file.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a cgroup path"))?;
        // IN_MODIFY is what the kernel sends for cgroup.events; removal of the cgroup ends
        // the watch with IN_IGNORED, which wakes us too.
        // SAFETY: `fd` is an inotify fd and `path` is NUL-terminated.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: we own `fd` and neither close nor replace it while the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Watch { fd })
    }

    /// Resolves after the next event (or the events queued since the last call).
    pub(crate) async fn changed(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let drained = guard.try_io(|fd| {
                // The events themselves do not matter, only that there were some: the file
                // is read again. One read takes many events.
                let mut buf = [0u8; 4096];
                // SAFETY: reading into a buffer we own, of its length.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match drained {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_files_are_read() {
        let text = "populated 1\nfrozen 0\n";
        assert_eq!(parse_key(text, "populated"), Some(1));
        assert_eq!(parse_key(text, "frozen"), Some(0));
        assert_eq!(parse_key(text, "oom_kill"), None);
        assert_eq!(
            parse_key("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n", "oom_kill"),
            Some(1)
        );
    }

    #[tokio::test]
    async fn a_missing_cgroup_is_not_found() {
        let err = wait_for(Path::new("/nonexistent/cgroup"), "populated", 0)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn wakes_on_a_modification_of_an_ordinary_file() {
        // inotify itself, on a plain file: the same path the kernel's cgroup.events takes.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cgroup.events");
        std::fs::write(&file, "populated 1\nfrozen 0\n").unwrap();
        let waiter = {
            let dir = dir.path().to_owned();
            tokio::spawn(async move { wait_for(&dir, "populated", 0).await })
        };
        tokio::task::yield_now().await;
        std::fs::write(&file, "populated 1\nfrozen 1\n").unwrap();
        std::fs::write(&file, "populated 0\nfrozen 1\n").unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(20), waiter)
            .await
            .expect("the write wakes the waiter")
            .unwrap()
            .unwrap();
    }
}
