//! The driver against the real cgroup v2 hierarchy of this host, with real processes:
//! what happens to the processes of a cgroup in `processes`, the subtree and its limits in
//! `subtree`; the harness here. Each test makes its own subtree below the v2 root and removes
//! it even when it fails ([`Scratch`]). Without a writable cgroup v2 (not root, or none
//! mounted) the tests say so and pass without checking anything — the only case they skip.

mod processes;
mod subtree;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;
use crate::config::{CgroupLimits, Max, Service};
use crate::process::spawn::{SpawnRequest, spawn};
use crate::process::{OutputMode, cgroup::detect::v2_mount};

pub(super) const PATIENCE: Duration = Duration::from_secs(20);

/// A subtree of its own for one test: on drop, everything in it is killed and every
/// cgroup below it removed, whatever the test left.
pub(super) struct Scratch {
    pub cgroups: Cgroups,
    dir: std::path::PathBuf,
}

impl Scratch {
    /// `None` (after saying why) when this host has no writable cgroup v2.
    pub fn new(test: &str) -> Option<Scratch> {
        let (mount, path) = scratch_path(test)?;
        match Cgroups::at(&mount, &path) {
            Ok(cgroups) => Some(Scratch {
                cgroups,
                dir: detect::dir_of(&mount, &path),
            }),
            Err(why) if why.contains("Permission denied") || why.contains("Read-only") => {
                eprintln!("SKIPPED {test}: cgroup v2 is not writable here: {why}");
                None
            }
            Err(why) => panic!("cannot make a test cgroup subtree: {why}"),
        }
    }
}

/// A fresh cgroup path for a test below the v2 root, or `None` when there is no v2.
pub(super) fn scratch_path(test: &str) -> Option<(std::path::PathBuf, String)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some(mount) = v2_mount() else {
        eprintln!("SKIPPED {test}: no cgroup v2 hierarchy on this host");
        return None;
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Some((mount, format!("/corral-test-{}-{n}", std::process::id())))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

/// Kills everything below `dir` (`cgroup.kill` reaches descendants), waits until it is
/// empty, and removes every cgroup below it, bottom up.
pub(super) fn remove_tree(dir: &Path) {
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    // Killed processes leave asynchronously: wait for the event (on a thread of its own,
    // since this may run inside a test's runtime).
    let top = ServiceCgroup::new(dir.to_owned(), String::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ =
                runtime.block_on(async { tokio::time::timeout(PATIENCE, top.wait_empty()).await });
        });
    });
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    remove(dir);
}

/// A FIFO a test's child writes a line to when it is ready.
pub(super) struct Ready {
    dir: tempfile::TempDir,
}

impl Ready {
    pub fn new() -> Ready {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("ready"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        Ready { dir }
    }

    pub fn fifo(&self) -> String {
        self.dir.path().join("ready").display().to_string()
    }

    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Resolves once the child wrote its line (and closed the FIFO).
    pub async fn wait(&self) -> String {
        use tokio::io::AsyncReadExt;
        let mut pipe = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(self.dir.path().join("ready"))
            .unwrap();
        let mut text = String::new();
        tokio::time::timeout(PATIENCE, pipe.read_to_string(&mut text))
            .await
            .expect("the child says it is ready")
            .unwrap();
        text
    }
}

/// Resolves once `file` is longer than `len` bytes (inotify, not polling).
pub(super) async fn wait_growth(file: &Path, len: u64) {
    let watch = events::Watch::open(file).unwrap();
    let size = || std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    tokio::time::timeout(PATIENCE, async {
        while size() <= len {
            watch.changed().await.unwrap();
        }
    })
    .await
    .expect("the file grows");
}

pub(super) fn service(exec: &[&str]) -> Service {
    Service {
        exec: exec.iter().map(|s| s.to_string()).collect(),
        ..Service::default()
    }
}

/// Spawns `svc` into `cgroup` through the real spawn path.
pub(super) fn spawn_into(svc: &Service, cgroup: &ServiceCgroup) -> crate::process::Child {
    spawn(&SpawnRequest {
        name: "t",
        service: svc,
        notify_socket: None,
        output: &OutputMode::Stderr,
        cgroup: Some(cgroup),
    })
    .expect("spawn")
}

/// The cgroup v2 path of process `pid`.
pub(super) fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    detect::own_cgroup(&text).unwrap()
}

/// The state letter of `/proc/PID/stat` (R, S, D, T, …).
pub(super) fn state_of(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after.trim_start().chars().next().unwrap()
}
