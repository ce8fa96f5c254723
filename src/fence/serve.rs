//! The fence process itself (`corrald --fence`): it reads corrald's messages from its
//! standard input until end-of-file, which comes exactly when the last holder of the pipe's
//! write end — corrald — is gone, however it went (SIGKILL, a crash, the OOM killer). Then
//! it SIGKILLs everything still guarded and exits.
//!
//! It is a plain blocking loop with no runtime and no threads: nothing in it can fail
//! in a way that leaves the services running, short of the fence being killed itself
//! (which corrald notices, and starts a new one).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::unistd::Pid;

use super::wire::{Message, Target};
use crate::process::signal::{signal_group, signal_main};

/// `corrald --fence`: serves standard input, then kills, then exits.
pub fn run() -> ExitCode {
    // Its own session: a ^C in corrald's terminal, or a signal to corrald's process group,
    // must not take the fence down before it could act.
    let _ = nix::unistd::setsid();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: setting a signal to "ignore" installs no handler code.
        unsafe {
            let _ = signal(sig, SigHandler::SigIgn);
        }
    }
    let mut log = std::io::stderr();
    let guarded = follow(std::io::stdin().lock(), &mut log);
    if !guarded.is_empty() {
        let _ = writeln!(
            log,
            "corrald-fence: corrald is gone; killing the {} processes, groups and cgroups of the fleet groups it served",
            guarded.len()
        );
        kill_all(&guarded, &mut log);
    }
    ExitCode::SUCCESS
}

/// Applies every message of `input` until its end; returns what is guarded then.
pub fn follow(mut input: impl BufRead, log: &mut impl Write) -> BTreeSet<Target> {
    let mut guarded = BTreeSet::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return guarded,
            Ok(_) => {}
            // A read error on a pipe means it is unusable: treat it as corrald gone.
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let _ = writeln!(log, "corrald-fence: reading from corrald: {error}");
                return guarded;
            }
        }
        // A last line without its line break was cut off by corrald's death: ignored,
        // since half a message cannot be trusted.
        let Some(text) = line.strip_suffix(b"\n") else {
            continue;
        };
        match Message::parse(&String::from_utf8_lossy(text)) {
            Ok(Message::Guard(target)) => {
                guarded.insert(target);
            }
            Ok(Message::Unguard(target)) => {
                guarded.remove(&target);
            }
            Ok(Message::Clear) => guarded.clear(),
            Err(problem) => {
                let _ = writeln!(log, "corrald-fence: ignoring a message: {problem}");
            }
        }
    }
}

/// SIGKILLs every target. Returns how many could be signalled (the rest were gone).
pub fn kill_all(targets: &BTreeSet<Target>, log: &mut impl Write) -> usize {
    let mut killed = 0;
    for target in targets {
        let result = match target {
            Target::Group(pgid) => signal_group(*pgid, Signal::SIGKILL).map_err(|e| e.to_string()),
            Target::Process(pid) => signal_main(*pid, Signal::SIGKILL).map_err(|e| e.to_string()),
            Target::Cgroup(path) => kill_cgroup(path),
        };
        match result {
            Ok(()) => killed += 1,
            Err(error) => {
                let _ = writeln!(log, "corrald-fence: cannot kill {target}: {error}");
            }
        }
    }
    killed
}

/// Kills every process of a cgroup: `cgroup.kill` (Linux 5.14+), else each PID it lists
/// (again, for processes forked meanwhile, a bounded number of times).
fn kill_cgroup(path: &Path) -> Result<(), String> {
    if std::fs::write(path.join("cgroup.kill"), "1").is_ok() {
        return Ok(());
    }
    for _ in 0..10 {
        let procs = std::fs::read_to_string(path.join("cgroup.procs"))
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|&pid| pid > 1)
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_last_word_wins_and_a_cut_off_line_is_ignored() {
        let input = "guard group 100\nguard process 200\nunguard group 100\nbogus\n\
                     guard group 300\nclear\nguard group 400\nguard group 5";
        let mut log = Vec::new();
        let guarded = follow(input.as_bytes(), &mut log);
        assert_eq!(guarded, BTreeSet::from([Target::Group(400)]));
        let log = String::from_utf8(log).unwrap();
        assert!(log.contains("ignoring a message"), "{log}");
    }

    #[test]
    fn kills_groups_and_processes_and_skips_what_is_gone() {
        use std::os::unix::process::CommandExt;
        let mut leader = Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut alone = Command::new("sleep").arg("60").spawn().unwrap();
        let targets = BTreeSet::from([
            Target::Group(leader.id()),
            Target::Process(alone.id()),
            // PIDs are below 2^22 on Linux: this one exists nowhere.
            Target::Group(0x7fff_fff0),
        ]);
        let mut log = Vec::new();
        assert_eq!(kill_all(&targets, &mut log), 3, "a gone group is no error");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(leader.wait().unwrap().signal(), Some(9));
        assert_eq!(alone.wait().unwrap().signal(), Some(9));
    }
}
