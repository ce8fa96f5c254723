//! What corrald tells its fence, one line per message, so that `strace` of either side is
//! readable and a message is never split across a partial read:
//!
//! | line | meaning |
//! |---|---|
//! | `guard group 1234` | kill process group 1234 if corrald dies |
//! | `guard process 1234` | kill process 1234 (and the group it leads, if it leads one) |
//! | `guard cgroup /sys/fs/cgroup/corral/web` | kill every process of that cgroup (`cgroup.kill`) |
//! | `unguard …` | the same target, no longer to be killed |
//! | `clear` | forget every target (before a full re-send) |
//!
//! A line the fence does not understand is reported and skipped, so an older fence keeps
//! guarding what it does understand.

use std::fmt;
use std::path::PathBuf;

/// Something the fence kills when corrald dies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A process group corrald created for a service (the spawned child's PID).
    Group(u32),
    /// A main process corrald did not spawn (forking, adopted): it and the group it leads.
    Process(u32),
    /// A service's cgroup directory: every process in it, however it was started.
    Cgroup(PathBuf),
}

/// One message to the fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Guard(Target),
    Unguard(Target),
    Clear,
}

impl Target {
    /// Whether the fence may act on it: no PID ≤ 1 (our own group, init), no cgroup path
    /// that is not absolute or holds a line break (it would not survive the line format).
    pub fn is_valid(&self) -> bool {
        match self {
            Target::Group(pid) | Target::Process(pid) => *pid > 1,
            Target::Cgroup(path) => {
                path.is_absolute()
                    && path
                        .to_str()
                        .is_some_and(|p| !p.contains('\n') && !p.contains('\r'))
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Group(pgid) => write!(f, "group {pgid}"),
            Target::Process(pid) => write!(f, "process {pid}"),
            Target::Cgroup(path) => write!(f, "cgroup {}", path.display()),
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Guard(target) => writeln!(f, "guard {target}"),
            Message::Unguard(target) => writeln!(f, "unguard {target}"),
            Message::Clear => writeln!(f, "clear"),
        }
    }
}

impl Message {
    /// Parses one line (without its line break).
    pub fn parse(line: &str) -> Result<Message, String> {
        let line = line.trim_end_matches('\r');
        if line == "clear" {
            return Ok(Message::Clear);
        }
        let (verb, rest) = line
            .split_once(' ')
            .ok_or_else(|| format!("not a fence message: {line:?}"))?;
        let (kind, value) = rest
            .split_once(' ')
            .ok_or_else(|| format!("no target in {line:?}"))?;
        let target = match kind {
            "group" | "process" => {
                let pid: u32 = value
                    .parse()
                    .map_err(|_| format!("not a PID in {line:?}"))?;
                if kind == "group" {
                    Target::Group(pid)
                } else {
                    Target::Process(pid)
                }
            }
            "cgroup" => Target::Cgroup(PathBuf::from(value)),
            other => return Err(format!("unknown target kind {other:?} in {line:?}")),
        };
        if !target.is_valid() {
            return Err(format!("refusing target {target} in {line:?}"));
        }
        match verb {
            "guard" => Ok(Message::Guard(target)),
            "unguard" => Ok(Message::Unguard(target)),
            other => Err(format!("unknown verb {other:?} in {line:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Message::Guard(Target::Group(1234)),
            Message::Unguard(Target::Process(77)),
            Message::Guard(Target::Cgroup("/sys/fs/cgroup/corral/a b".into())),
            Message::Clear,
        ];
        for message in messages {
            let line = message.to_string();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Message::parse(line.trim_end_matches('\n')), Ok(message));
        }
    }

    #[test]
    fn dangerous_or_garbled_lines_are_refused() {
        for line in [
            "guard group 1",
            "guard group 0",
            "guard process -5",
            "guard cgroup relative/path",
            "guard pid 12",
            "kill group 12",
            "guard",
            "guard group",
            "",
        ] {
            assert!(Message::parse(line).is_err(), "{line:?}");
        }
        assert!(!Target::Cgroup("/a\nb".into()).is_valid());
    }
}
