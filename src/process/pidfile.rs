//! Pidfiles: reading a forking daemon's main PID, and deciding whether a pidfile names a
//! daemon that is already running so it can be adopted instead of started twice.

use std::io;
use std::path::Path;

/// Reads the PID in `path`: one decimal number, surrounding whitespace allowed.
pub fn read(path: &Path) -> io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    parse(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} does not hold a PID: {:?}", path.display(), text.trim()),
        )
    })
}

/// The PID a pidfile's `text` holds: one decimal number, surrounding whitespace allowed;
/// `None` for anything else, for PID 1 (init is never a service's process) and for
/// numbers no `pid_t` holds ([`super::parse_pid`]).
pub fn parse(text: &str) -> Option<u32> {
    super::parse_pid(text.trim())
}

/// The command line of a live process, or `None` if it does not exist (or is a zombie,
/// whose cmdline is empty).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let args = raw
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    Some(args)
}

/// Whether a process with command line `actual` is the daemon `exec` would start: the
/// arguments must be equal, and the program must match by file name (a daemon started as
/// `ganesha.nfsd` shows up as such whether `exec` says `/usr/bin/ganesha.nfsd` or not).
pub fn cmdline_matches(actual: &[String], exec: &[String]) -> bool {
    let (Some(program), Some(expected)) = (actual.first(), exec.first()) else {
        return false;
    };
    file_name(program) == file_name(expected) && actual[1..] == exec[1..]
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The PID of an already-running daemon that `pidfile` names and whose command line matches
/// `exec`; `None` when there is none (no file, stale PID, PID reused by something else).
pub fn adoptable(pidfile: &Path, exec: &[String]) -> Option<u32> {
    let pid = read(pidfile).ok()?;
    let actual = cmdline(pid)?;
    cmdline_matches(&actual, exec).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_pids() {
        assert_eq!(parse("123\n"), Some(123));
        assert_eq!(parse("  42  "), Some(42));
        assert_eq!(parse("1"), None, "init is never a service's PID");
        assert_eq!(parse("abc"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn pid_beyond_pid_t_is_not_read() {
        // Found by the pidfile fuzz target: "4100196143" was read as a PID, which the
        // supervisor would hand to pidfd_open(2) and kill(2) as a negative pid_t.
        assert_eq!(parse("4100196143\n"), None);
        assert_eq!(parse("4294967295"), None);
        assert_eq!(parse("2147483647\n"), Some(2147483647));
    }

    #[test]
    fn matches_by_file_name_and_args() {
        let exec = strings(&["/usr/bin/sleep", "100"]);
        assert!(cmdline_matches(&strings(&["sleep", "100"]), &exec));
        assert!(cmdline_matches(&strings(&["/bin/sleep", "100"]), &exec));
        assert!(!cmdline_matches(&strings(&["sleep", "200"]), &exec));
        assert!(!cmdline_matches(&strings(&["bash", "100"]), &exec));
        assert!(!cmdline_matches(&[], &exec));
    }

    #[test]
    fn adopts_only_a_live_matching_process() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("x.pid");
        // The child says when it runs: right after spawn() returns it may still be inside
        // execve (glibc's posix_spawn resumes the parent early), with no cmdline yet.
        let script = "print('up', flush=True); import time; time.sleep(30)";
        let exec = strings(&["python3", "-c", script]);
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "up\n");
        std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
        assert_eq!(adoptable(&pidfile, &exec), Some(child.id()));
        assert_eq!(
            adoptable(&pidfile, &strings(&["python3", "-c", "other"])),
            None
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            adoptable(&pidfile, &exec),
            None,
            "a dead PID is never adopted"
        );
        assert_eq!(adoptable(&dir.path().join("missing"), &exec), None);
    }
}
