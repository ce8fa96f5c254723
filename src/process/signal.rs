//! Signalling a service's processes: whole process groups where we own one, single
//! processes otherwise.

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};

/// Sends `signal` to the process group `pgid`. Refuses a pgid ≤ 1: `killpg(0)` is our own
/// group and `killpg(1)` would hit init's, so either would be a catastrophe. A group that is
/// already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) -> nix::Result<()> {
    if pgid <= 1 {
        return Err(Errno::EINVAL);
    }
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Sends `signal` to a process we did not start (adopted, or a forking daemon's main PID):
/// to its whole group when it leads one (daemons call `setsid()`), else to it alone, so we
/// never signal a group that belongs to someone else.
pub fn signal_main(pid: u32, signal: Signal) -> nix::Result<()> {
    if pid <= 1 {
        return Err(Errno::EINVAL);
    }
    let target = Pid::from_raw(pid as i32);
    let result = match getpgid(Some(target)) {
        Ok(pgid) if pgid == target => killpg(target, signal),
        _ => kill(target, signal),
    };
    match result {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Parses a signal given over D-Bus (`Kill(i signal)`) into a [`Signal`].
pub fn from_number(number: i32) -> Option<Signal> {
    Signal::try_from(number).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_dangerous_groups() {
        assert_eq!(signal_group(0, Signal::SIGTERM), Err(Errno::EINVAL));
        assert_eq!(signal_group(1, Signal::SIGTERM), Err(Errno::EINVAL));
        assert_eq!(signal_main(1, Signal::SIGTERM), Err(Errno::EINVAL));
    }

    #[test]
    fn signals_a_real_group() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        signal_group(child.id(), Signal::SIGKILL).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // The group is gone now: signalling it again is not an error.
        assert_eq!(signal_group(child.id(), Signal::SIGTERM), Ok(()));
    }

    #[test]
    fn numbers_map_to_signals() {
        assert_eq!(from_number(9), Some(Signal::SIGKILL));
        assert_eq!(from_number(0), None);
        assert_eq!(from_number(1000), None);
    }
}
