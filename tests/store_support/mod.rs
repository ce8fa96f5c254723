//! Helpers for the state store's tests: records to write, waiting on the health, and real
//! file systems to break (a tmpfs that can be made read-only or filled, an ext4 image that
//! the kernel remounts read-only on an error), each unmounted when dropped.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use corral::store::{JobRecord, JobState, RunRecord, StoreHealth, StoreSettings};
use tempfile::TempDir;
use tokio::sync::watch;

/// How long any single wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Quick retries, so that recovery shows within the tests' patience.
pub fn settings() -> StoreSettings {
    StoreSettings {
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(500),
        ..StoreSettings::default()
    }
}

pub fn job(id: u64, service: &str, state: JobState) -> JobRecord {
    JobRecord {
        id,
        service: service.into(),
        recipe: "backup".into(),
        state,
        queued_us: 1_000 + id,
        finished_us: if state.is_final() { 2_000 + id } else { 0 },
        exit_status: if state == JobState::Finished { 0 } else { -1 },
        error: String::new(),
    }
}

pub fn run(pid: u32) -> RunRecord {
    RunRecord {
        main_pid: pid,
        start_time: 12345,
        pgid: pid,
        cgroup: format!("/corral.slice/{pid}"),
        run_id: 7,
        n_restarts: 2,
        extra: serde_json::json!({"notify_socket": "/run/corral/x.sock"}),
    }
}

/// Waits until the health satisfies `pred`; returns it.
pub async fn wait_health(
    health: &mut watch::Receiver<StoreHealth>,
    what: &str,
    pred: impl FnMut(&StoreHealth) -> bool,
) -> StoreHealth {
    let current = health.borrow().clone();
    match tokio::time::timeout(PATIENCE, health.wait_for(pred)).await {
        Ok(Ok(h)) => h.clone(),
        _ => panic!("health never became {what} within {PATIENCE:?}; it was {current:?}"),
    }
}

pub fn degraded_reason(health: &StoreHealth) -> &str {
    match health {
        StoreHealth::Degraded { reason } => reason,
        StoreHealth::Ok => "",
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A file system mounted on a temporary directory; unmounted (lazily if busy) on drop.
pub struct Mount {
    pub path: PathBuf,
    image: Option<PathBuf>,
    _dir: TempDir,
}

impl Mount {
    /// A tmpfs of `size` (as `mount -o size=` takes it).
    pub fn tmpfs(size: &str) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let options = format!("size={size},mode=0755");
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &options,
                "tmpfs",
                path.to_str().unwrap(),
            ],
        )
        .unwrap();
        Mount {
            path,
            image: None,
            _dir: dir,
        }
    }

    /// A small ext4 on a loop device that the kernel remounts read-only on an error (as a
    /// failing disk does); `None` where loop devices or mkfs.ext4 are missing.
    pub fn ext4_remount_ro_on_error() -> Result<Mount, String> {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        sh("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()])?;
        sh(
            "mount",
            &[
                "-o",
                "loop,errors=remount-ro",
                image.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
        )?;
        Ok(Mount {
            path,
            image: Some(image),
            _dir: dir,
        })
    }

    pub fn remount(&self, mode: &str) {
        sh(
            "mount",
            &[
                "-o",
                &format!("remount,{mode}"),
                self.path.to_str().unwrap(),
            ],
        )
        .unwrap();
    }

    /// Makes the kernel see an ext4 error on this file system, which remounts it read-only.
    pub fn trigger_ext4_error(&self) -> Result<(), String> {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE", self.path.to_str().unwrap()])
            .output()
            .map_err(|e| e.to_string())?;
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let device = Path::new(&source)
            .file_name()
            .ok_or("no loop device")?
            .to_string_lossy()
            .into_owned();
        std::fs::write(
            format!("/sys/fs/ext4/{device}/trigger_fs_error"),
            "corral store test",
        )
        .map_err(|e| format!("/sys/fs/ext4/{device}/trigger_fs_error: {e}"))
    }

    /// Fills the file system; returns the filler file, whose removal frees the space.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xa5u8; 64 << 10];
        loop {
            if file.write_all(&chunk).is_err() {
                break;
            }
        }
        // Small writes for what is left below one chunk.
        while file.write_all(&[0xa5u8; 512]).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let path = self.path.to_str().unwrap();
        if sh("umount", &[path]).is_err() {
            let _ = sh("umount", &["-l", path]);
        }
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}
