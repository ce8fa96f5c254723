//! Pidfiles: reading a forking daemon's main PID, and deciding whether a pidfile names a
//! daemon that is already running so it can be adopted instead of started twice.
//!
//! "The daemon `exec` would start" is judged by what survives a daemon's own changes to
//! itself: the executable it runs (`/proc/PID/exe`), so a daemon that rewrites its command
//! line (nginx's "nginx: master process …") is still recognised; its arguments, as long
//! as its command line still names the program; and its start time, which must not be
//! later than the pidfile — a PID reused by a process started after the daemon wrote its
//! pidfile is never adopted.
//!
//! corrald adopts the PID a pidfile names, and later signals it. So a pidfile that a
//! non-root user could have written ([`fs_trust::writable_by_others`]) is believed only
//! when it names a process of that service's `user`: a forged PID must not make corrald
//! adopt — and kill — someone else's process. For a service running as root such a pidfile
//! is refused outright.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::procfs;
use super::spawn::resolve_program;
use crate::config::Service;
use crate::fs_trust;

/// Why a pidfile gave no PID to act on.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    /// Missing, not a PID, or naming no process: perhaps not written yet.
    #[error("{0}")]
    Unreadable(#[from] io::Error),
    /// Someone other than root could have written it, and the PID it names is not a process
    /// of the service's user. The message names the file and how to fix it.
    #[error("{0}")]
    Untrusted(String),
}

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

/// The PID in `path` if corrald may act on it: the pidfile is trusted (only root could
/// have written it), or the PID is a process that runs only as `user`, the service's user.
/// With no `user` (the service runs as root), an untrusted pidfile is refused.
pub fn read_trusted(path: &Path, user: Option<&str>) -> Result<u32, PidfileError> {
    let pid = read(path)?;
    let Some(why) = fs_trust::writable_by_others(path)? else {
        return Ok(pid);
    };
    if procfs::uids(pid).is_none() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} names PID {pid}, which does not run", path.display()),
        )
        .into());
    }
    let refusal = |what: String| {
        PidfileError::Untrusted(format!(
            "refusing PID {pid} from the pidfile {}: {why}, so a user other than root could \
             have written it, and {what}. Fix: make the pidfile and its directory owned and \
             writable by root only, or set `user` to the user that writes it",
            path.display()
        ))
    };
    let Some(user) = user else {
        return Err(refusal(
            "the service runs as root (it sets no `user`)".to_owned(),
        ));
    };
    let uid = match nix::unistd::User::from_name(user) {
        Ok(Some(found)) => found.uid.as_raw(),
        _ => return Err(refusal(format!("its user {user:?} cannot be looked up"))),
    };
    if procfs::runs_only_as(pid, uid) {
        Ok(pid)
    } else {
        let owner = procfs::uids(pid).map_or_else(
            || "nobody any more".to_owned(),
            |ids| fs_trust::describe_uid(ids[1]),
        );
        Err(refusal(format!(
            "PID {pid} runs as {owner}, not only as the service's user {user:?}"
        )))
    }
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

/// The PID of an already-running daemon that `pidfile` names and that is the daemon
/// `service` would start (see the module doc); `None` when there is none (no file, stale
/// PID, PID reused by something else) or the pidfile is not trusted to name it (see
/// [`read_trusted`]; logged).
pub fn adoptable(pidfile: &Path, service: &Service) -> Option<u32> {
    let pid = match read_trusted(pidfile, service.user.as_deref()) {
        Ok(pid) => pid,
        Err(PidfileError::Untrusted(why)) => {
            tracing::warn!("not adopting: {why}");
            return None;
        }
        Err(PidfileError::Unreadable(_)) => return None,
    };
    let program = resolve_program(&service.exec[0], service.path_env()).ok()?;
    let written = std::fs::metadata(pidfile).and_then(|m| m.modified()).ok();
    is_the_daemon(pid, &program, &service.exec, written).then_some(pid)
}

/// Whether live process `pid` is the daemon `exec` (whose program resolves to `program`)
/// would start, named by a pidfile last written at `written`.
pub fn is_the_daemon(
    pid: u32,
    program: &Path,
    exec: &[String],
    written: Option<std::time::SystemTime>,
) -> bool {
    let Some(actual) = cmdline(pid) else {
        return false;
    };
    // Started after its pidfile was written: the PID was reused. (A second of slack for
    // clock-tick and file-time granularity.)
    if let (Some(started), Some(written)) = (procfs::started_at(pid), written)
        && started > written + Duration::from_secs(1)
    {
        return false;
    }
    let same_executable = procfs::exe(pid).is_some_and(|exe| canonical(&exe) == canonical(program));
    let program_name = canonical(program);
    let names_the_program = actual.first().is_some_and(|argv0| {
        let argv0 = file_name(argv0);
        argv0 == file_name(&exec[0])
            || Some(argv0) == program_name.file_name().and_then(|n| n.to_str())
    });
    if same_executable && !names_the_program {
        // It rewrote its command line; the executable is what still tells.
        return true;
    }
    // Its command line names the program: the arguments must match too. (This is also how
    // a script is recognised, whose executable is its interpreter.)
    cmdline_matches(&actual, exec)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
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

    /// A root process (this test) named in a pidfile that `nobody` owns.
    fn forged_pidfile(dir: &Path) -> std::path::PathBuf {
        let pidfile = dir.join("forged.pid");
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        nix::unistd::chown(&pidfile, Some(nobody.uid), Some(nobody.gid)).unwrap();
        pidfile
    }

    #[test]
    fn a_pidfile_a_user_could_write_names_only_that_users_processes() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = forged_pidfile(dir.path());
        let why = read_trusted(&pidfile, None).unwrap_err().to_string();
        assert!(
            why.contains(&format!(
                "refusing PID {} from the pidfile {}: {} is owned by nobody (uid 65534)",
                std::process::id(),
                pidfile.display(),
                pidfile.display()
            )),
            "{why}"
        );
        assert!(why.contains("the service runs as root"), "{why}");
        assert!(why.contains("or set `user`"), "says how to fix it: {why}");
        let why = read_trusted(&pidfile, Some("nobody"))
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("runs as root (uid 0), not only as the service's user \"nobody\""),
            "{why}"
        );
        // Trusted again once only root can write it.
        nix::unistd::chown(&pidfile, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        assert_eq!(read_trusted(&pidfile, None).unwrap(), std::process::id());
    }

    #[test]
    fn a_users_pidfile_naming_that_users_process_is_believed() {
        use std::os::unix::process::CommandExt;
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .uid(nobody.uid.as_raw())
            .gid(nobody.gid.as_raw())
            .spawn()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = forged_pidfile(dir.path());
        std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
        assert_eq!(read_trusted(&pidfile, Some("nobody")).unwrap(), child.id());
        assert!(
            read_trusted(&pidfile, None).is_err(),
            "not for a root service"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // A stale PID is "not yet", not a forgery: the daemon may be about to rewrite it.
        assert!(matches!(
            read_trusted(&pidfile, Some("nobody")),
            Err(PidfileError::Unreadable(_))
        ));
    }

    fn service(exec: &[String]) -> Service {
        Service {
            exec: exec.to_vec(),
            ..Service::default()
        }
    }

    /// Spawns `program args…`, waits until it says it runs, and returns it.
    fn running(program: &str, args: &[&str]) -> std::process::Child {
        use std::io::BufRead;
        // The child says when it runs: right after spawn() returns it may still be inside
        // execve (glibc's posix_spawn resumes the parent early), with no cmdline yet.
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "up\n");
        child
    }

    #[test]
    fn a_forged_pidfile_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = forged_pidfile(dir.path());
        let me = service(&cmdline(std::process::id()).unwrap());
        assert_eq!(adoptable(&pidfile, &me), None);
        nix::unistd::chown(&pidfile, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        assert_eq!(adoptable(&pidfile, &me), Some(std::process::id()));
    }

    #[test]
    fn a_daemon_that_rewrites_its_command_line_is_recognised_by_its_executable() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("nginx-like.pid");
        // Like nginx's "nginx: master process …": Perl's $0 rewrites /proc/PID/cmdline.
        let script = "$| = 1; $0 = 'worker: master process'; print qq(up\\n); sleep 30";
        let mut child = running("perl", &["-e", script]);
        assert_eq!(cmdline(child.id()).unwrap(), ["worker: master process"]);
        std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
        let exec = strings(&["perl", "-e", script]);
        assert_eq!(adoptable(&pidfile, &service(&exec)), Some(child.id()));
        // Another program is not it, rewritten command line or not.
        assert_eq!(
            adoptable(&pidfile, &service(&strings(&["sleep", "30"]))),
            None
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_pid_reused_after_the_pidfile_was_written_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("old.pid");
        let script = "print('up', flush=True); import time; time.sleep(30)";
        let exec = strings(&["python3", "-c", script]);
        let mut child = running("python3", &["-c", script]);
        std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
        // The pidfile claims to be from long before this process started.
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        let file = std::fs::File::options().write(true).open(&pidfile).unwrap();
        file.set_modified(long_ago).unwrap();
        assert_eq!(adoptable(&pidfile, &service(&exec)), None);
        file.set_modified(std::time::SystemTime::now()).unwrap();
        assert_eq!(adoptable(&pidfile, &service(&exec)), Some(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn adopts_only_a_live_matching_process() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("x.pid");
        let script = "print('up', flush=True); import time; time.sleep(30)";
        let exec = service(&strings(&["python3", "-c", script]));
        let mut child = running("python3", &["-c", script]);
        std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
        assert_eq!(adoptable(&pidfile, &exec), Some(child.id()));
        let other = service(&strings(&["python3", "-c", "other"]));
        assert_eq!(
            adoptable(&pidfile, &other),
            None,
            "same executable, other arguments"
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
