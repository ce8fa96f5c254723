//! What `/proc` says about a process that is not necessarily our child: its parent,
//! process group and session, the users it runs as, and its executable (for messages). The
//! control channel's peer check, pidfile trust and the orphan reaper are built on these.
//!
//! Every answer is a snapshot: the process may exit, and its PID be reused, right after.
//! Callers that act on a PID combine these with a check the kernel makes atomically (the
//! socket's SO_PEERCRED, a pidfd), never with these alone.

use std::fs;

/// Parent and process group of a process, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    pub pgrp: u32,
    /// Its session (the session leader's PID).
    pub session: u32,
    /// Zombie or dead: the process has exited and is no longer anyone's member.
    pub exited: bool,
}

/// The `/proc/PID/stat` of a process; `None` when there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Fields after the command name (which may itself contain spaces and parentheses, so it
/// ends at the *last* `)`): state, ppid, pgrp, …
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(Stat {
        ppid,
        pgrp,
        session,
        exited: matches!(state, "Z" | "X"),
    })
}

/// When the process started, in clock ticks since boot (`/proc/PID/stat` field 22). With
/// the PID it names one process for good: a reused PID has a later start.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&text)
}

fn parse_start_ticks(text: &str) -> Option<u64> {
    // Field 22; the fields after the command name start at field 3.
    text.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// When the process started, as wall-clock time (boot time plus its start ticks).
pub fn started_at(pid: u32) -> Option<std::time::SystemTime> {
    let ticks = start_ticks(pid)?;
    let boot = fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let since_boot = std::time::Duration::from_millis(ticks * 1000 / hz);
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(btime) + since_boot)
}

/// The executable a process runs (`/proc/PID/exe`), as the kernel sees it now; a binary
/// replaced on disk since the process started shows with a `" (deleted)"` suffix, which
/// this removes.
pub fn exe(pid: u32) -> Option<std::path::PathBuf> {
    let path = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let text = path.to_string_lossy();
    Some(match text.strip_suffix(" (deleted)") {
        Some(stripped) => std::path::PathBuf::from(stripped),
        None => path,
    })
}

/// The real, effective, saved and filesystem user ids of a process, from
/// `/proc/PID/status`; `None` when there is no such process.
pub fn uids(pid: u32) -> Option<[u32; 4]> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_uids(&text)
}

fn parse_uids(status: &str) -> Option<[u32; 4]> {
    let line = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    let mut ids = line.split_whitespace().map(|id| id.parse::<u32>().ok());
    Some([ids.next()??, ids.next()??, ids.next()??, ids.next()??])
}

/// Whether `pid` runs as `uid` and only as `uid` (real, effective, saved and filesystem
/// ids): such a process can do nothing that user could not, so trusting it is trusting
/// that user.
pub fn runs_only_as(pid: u32, uid: u32) -> bool {
    uids(pid).is_some_and(|ids| ids.iter().all(|&id| id == uid))
}

/// The process's executable for messages: `/proc/PID/exe`, else its `comm`, else
/// `"(exited)"`.
pub fn executable(pid: u32) -> String {
    if let Ok(path) = fs::read_link(format!("/proc/{pid}/exe")) {
        return path.display().to_string();
    }
    match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => format!("({})", comm.trim_end()),
        Err(_) => "(exited)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_odd_command_names() {
        let text = "42 (a) b (c) S 7 42 42 0 -1 4194560 100 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                ppid: 7,
                pgrp: 42,
                session: 42,
                exited: false
            })
        );
        assert!(parse_stat("9 (x) Z 1 9 9 9").unwrap().exited);
        assert_eq!(parse_stat("9 (x) S"), None);
    }

    #[test]
    fn start_ticks_is_field_22() {
        let text = "9 (odd) name) S 1 9 9 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 123456 1000 50";
        assert_eq!(parse_start_ticks(text), Some(123456));
        assert_eq!(parse_start_ticks("9 (x) S 1 9"), None);
        let me = start_ticks(std::process::id()).unwrap();
        assert!(me > 0);
        let started = started_at(std::process::id()).unwrap();
        let age = std::time::SystemTime::now()
            .duration_since(started)
            .unwrap();
        assert!(age < std::time::Duration::from_secs(24 * 3600), "{age:?}");
    }

    #[test]
    fn uids_are_read_in_order() {
        let status = "Name:\tx\nUid:\t1000\t0\t1000\t0\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_uids(status), Some([1000, 0, 1000, 0]));
        assert_eq!(parse_uids("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_is_seen_as_it_is() {
        let me = std::process::id();
        let stat = stat(me).unwrap();
        assert_eq!(stat.ppid, nix::unistd::getppid().as_raw() as u32);
        assert_eq!(stat.pgrp, nix::unistd::getpgrp().as_raw() as u32);
        assert_eq!(
            stat.session,
            nix::unistd::getsid(None).unwrap().as_raw() as u32
        );
        assert!(!stat.exited);
        let uid = nix::unistd::geteuid().as_raw();
        assert!(runs_only_as(me, uid));
        assert!(!runs_only_as(me, uid + 1));
        assert_eq!(
            executable(me),
            std::env::current_exe().unwrap().display().to_string()
        );
        assert_eq!(stat_of_nothing(), None);
    }

    fn stat_of_nothing() -> Option<Stat> {
        // PIDs never reach u32::MAX (pid_max is at most 2^22).
        stat(u32::MAX)
    }
}
