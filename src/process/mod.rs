//! The process driver: everything that touches a child process directly — spawning it with
//! an explicit environment in its own process group and cgroup, with its limits, routing
//! its output, signalling its group, watching processes that are not our children, and
//! adopting daemons from a pidfile.
//!
//! The supervisor decides *what* happens to a service; this module knows *how*.

pub mod cgroup;
pub mod check;
pub mod child;
mod child_stack;
mod clone3;
pub mod command;
pub mod fds;
pub mod group;
pub mod limits;
pub mod notify;
pub mod output;
pub mod pidfd;
pub mod pidfile;
pub mod procfs;
pub mod reaper;
pub mod signal;
pub mod spawn;
pub mod stdio_slots;
mod vfork;
mod watchdog_pid;

pub use child::Child;
pub use output::OutputMode;
pub use spawn::{SpawnError, SpawnRequest, spawn};

/// A PID as a service reports it (`MAINPID=`, a pidfile): a decimal number above 1 (init
/// is never a service's process) that a `pid_t` holds. A larger number would wrap to a
/// negative `pid_t`, which `kill(2)` reads as a process group, and -1 as every process.
pub fn parse_pid(text: &str) -> Option<u32> {
    let pid = text.parse::<libc::pid_t>().ok().filter(|&pid| pid > 1)?;
    u32::try_from(pid).ok()
}

/// A process's exit as one number: the exit code, or 128 + the signal number that killed
/// it (the shell's convention); -1 when it is neither. `ExecMainStatus` and `JobFinished`
/// report this.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::parse_pid;

    #[test]
    fn a_pid_is_above_one_and_fits_pid_t() {
        assert_eq!(parse_pid("4242"), Some(4242));
        assert_eq!(parse_pid("2147483647"), Some(2147483647));
        for refused in [
            "",
            "0",
            "1",
            "-5",
            "x",
            "2147483648",
            "4294967295",
            "99999999999",
        ] {
            assert_eq!(parse_pid(refused), None, "{refused:?}");
        }
    }
}
