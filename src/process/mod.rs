//! The process driver: everything that touches a child process directly — spawning it with
//! an explicit environment in its own process group, routing its output, signalling its
//! group, watching processes that are not our children, and adopting daemons from a pidfile.
//!
//! The supervisor decides *what* happens to a service; this module knows *how*.

pub mod check;
pub mod command;
pub mod group;
pub mod notify;
pub mod output;
pub mod pidfd;
pub mod pidfile;
pub mod procfs;
pub mod signal;
pub mod spawn;
pub mod watchdog_pid;

pub use output::OutputMode;
pub use spawn::{SpawnError, SpawnRequest, spawn};

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
