//! Signalling a service's processes: whole process groups where we own one, single
//! processes otherwise.

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};

/// Sends `signal` to the process group `pgid`. Refuses a pgid ≤ 1: `killpg(0)` is our own
/// group and `killpg(1)` would hit init's, so either would be a catastrophe. A group that is
/// already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) -> nix::Result<()> {
    let pgid = target(pgid).ok_or(Errno::EINVAL)?;
    match killpg(pgid, signal) {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Sends `signal` to a process we did not start (adopted, or a forking daemon's main PID):
/// to its whole group when it leads one (daemons call `setsid()`), else to it alone, so we
/// never signal a group that belongs to someone else.
pub fn signal_main(pid: u32, signal: Signal) -> nix::Result<()> {
    let target = target(pid).ok_or(Errno::EINVAL)?;
    let result = match getpgid(Some(target)) {
        Ok(pgid) if pgid == target => killpg(target, signal),
        _ => kill(target, signal),
    };
    match result {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// `pid` as the `pid_t` of one process or group other than init's; `None` for 0, 1 and
/// numbers a `pid_t` does not hold, which `as i32` would turn into -1 ("every process")
/// or another group's -N.
fn target(pid: u32) -> Option<Pid> {
    let pid = libc::pid_t::try_from(pid).ok().filter(|&pid| pid > 1)?;
    Some(Pid::from_raw(pid))
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
    fn pids_beyond_pid_t_are_refused_not_wrapped() {
        // `u32::MAX as i32` is -1, which kill(2) sends to every process.
        assert_eq!(target(u32::MAX), None);
        assert_eq!(target(1 << 31), None);
        assert_eq!(target(i32::MAX as u32), Some(Pid::from_raw(i32::MAX)));
        // killpg refuses a negative group itself, so this is safe to try for real.
        assert_eq!(signal_group(u32::MAX, Signal::SIGTERM), Err(Errno::EINVAL));
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
