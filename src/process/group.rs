//! A service's process group after its main process is gone: whether anything is left in
//! it, and waiting (on pidfds, not by polling) until it is empty — the process-group
//! counterpart of systemd waiting for a cgroup to empty.

use nix::sys::signal::killpg;
use nix::unistd::Pid;

use super::pidfd::ProcessWatch;

/// Whether any process is in group `pgid` (zombies included).
pub fn has_members(pgid: u32) -> bool {
    pgid > 1 && killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

/// The live (non-zombie) processes of group `pgid`, found by scanning `/proc`. Used only
/// when a group outlives its main process, so the scan is not on any hot path.
pub fn members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the command name (which may contain spaces and parentheses):
            // state, ppid, pgrp, ...
            let mut fields = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest)
                .unwrap_or("")
                .split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
            pgrp == Some(pgid) && !matches!(state, Some("Z" | "X"))
        })
        .collect()
}

/// Resolves once group `pgid` has no live process left. Callers SIGKILL the group first,
/// so this normally takes microseconds.
pub async fn wait_empty(pgid: u32) {
    loop {
        let left = members(pgid);
        if left.is_empty() {
            return;
        }
        for pid in left {
            if let Ok(watch) = ProcessWatch::open(pid) {
                let _ = watch.exited().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[tokio::test]
    async fn waits_for_every_member() {
        // A group whose leader exits at once, leaving a member behind.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & exit 0"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id();
        assert!(leader.wait().unwrap().success());
        assert!(
            has_members(pgid),
            "the background sleep is still in the group"
        );
        assert_eq!(members(pgid).len(), 1);
        crate::process::signal::signal_group(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
        wait_empty(pgid).await;
        assert!(members(pgid).is_empty());
    }
}
