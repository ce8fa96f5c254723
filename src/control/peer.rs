//! Who may answer on a service's control socket. corrald dials a *path*, and a path can be
//! bound by anyone who can write its directory — or by anyone at all while the service has
//! not bound it yet. So before a single frame is sent, the listening end is identified by
//! the kernel (SO_PEERCRED: the PID and UID of the process that called `listen`) and
//! accepted only if it is the service:
//!
//! - its UID is the uid of the service's `user` (root when it has none), and
//! - its PID belongs to the service: the main PID, the process corrald spawned (a forking
//!   daemon often listens before it forks, and the launcher is gone by then), a member of
//!   the service's process group, or a descendant of the main PID.
//!
//! The UID is the boundary: no unprivileged user can listen as root or as another user.
//! The PID keeps out other processes of the same user (another service, a login shell).
//! Where cgroups exist, membership in the service's cgroup is one more way to belong; it
//! goes in `belongs`, the one place membership is decided.

use std::fmt;

use crate::process::procfs;

/// How far up the parent chain a peer may be from the main PID. Deeper trees are rare
/// enough that a refusal (logged) is better than walking an arbitrary chain.
const MAX_DEPTH: usize = 64;

/// What the service's end of the control socket must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The uid of the service's `user`, 0 when it has none.
    pub uid: u32,
    /// The user's name as the configuration gives it, for messages (`"root"` when none).
    pub user: String,
    pub main_pid: u32,
    /// The process group corrald created for this run (= the PID it spawned); `None` for an
    /// adopted daemon, whose group is not ours to assume.
    pub spawned_group: Option<u32>,
}

/// The listening end of a connection, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// `None` when the kernel cannot say (the listener is in another PID namespace).
    pub pid: Option<u32>,
    pub uid: u32,
}

impl Peer {
    /// The credentials of the process that listens at the other end of `stream`.
    pub fn of(stream: &tokio::net::UnixStream) -> std::io::Result<Peer> {
        let cred = stream.peer_cred()?;
        Ok(Peer {
            pid: cred.pid().and_then(|pid| u32::try_from(pid).ok()),
            uid: cred.uid(),
        })
    }
}

/// Why a peer belongs to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    MainProcess,
    /// The process corrald spawned (a forking service's launcher).
    Spawned,
    /// In the process group `0`.
    ProcessGroup(u32),
    /// A descendant of the main PID.
    Descendant,
}

/// A peer that is not the service: what it is, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub peer: Peer,
    /// The peer's executable (or what is known of it), for the log.
    pub executable: String,
    pub expected: Expected,
    pub reason: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pid = match self.peer.pid {
            Some(pid) => pid.to_string(),
            None => "unknown".to_owned(),
        };
        let expected = &self.expected;
        write!(
            f,
            "refused the process listening there (pid {pid}, uid {}, {}): {}; expected uid {} \
             ({}) and the service's main PID {}",
            self.peer.uid,
            self.executable,
            self.reason,
            expected.uid,
            expected.user,
            expected.main_pid
        )?;
        if let Some(group) = expected.spawned_group {
            write!(
                f,
                ", the process corrald spawned or its process group {group}"
            )?;
        }
        write!(
            f,
            ", or a descendant of {}. Not a single frame was sent to it",
            expected.main_pid
        )
    }
}

/// The uid a service's listener must have — its `user`'s, root's when `None` — and the
/// name for messages.
pub fn uid_of(user: Option<&str>) -> Result<(u32, String), String> {
    let Some(name) = user else {
        return Ok((0, "root".to_owned()));
    };
    match nix::unistd::User::from_name(name) {
        Ok(Some(found)) => Ok((found.uid.as_raw(), name.to_owned())),
        Ok(None) => Err(format!(
            "user {name:?} no longer exists, so no listener can be trusted as the service"
        )),
        Err(err) => Err(format!("cannot look up user {name:?}: {err}")),
    }
}

/// Accepts `peer` if it is the service `expected` describes.
pub fn verify(peer: Peer, expected: &Expected) -> Result<Membership, Box<Refused>> {
    let refuse = |reason| {
        Box::new(Refused {
            peer,
            executable: peer
                .pid
                .map_or_else(|| "(unknown)".to_owned(), procfs::executable),
            expected: expected.clone(),
            reason,
        })
    };
    let Some(pid) = peer.pid.filter(|&pid| pid > 0) else {
        return Err(refuse("the kernel does not say which process it is"));
    };
    if peer.uid != expected.uid {
        return Err(refuse("it runs as another user"));
    }
    belongs(pid, expected).ok_or_else(|| refuse("it is not a process of the service"))
}

/// Whether `pid` is one of the service's processes, and why. The one place membership is
/// decided: a cgroup test belongs here too.
fn belongs(pid: u32, expected: &Expected) -> Option<Membership> {
    if expected.main_pid <= 1 {
        return None;
    }
    if pid == expected.main_pid {
        return Some(Membership::MainProcess);
    }
    if expected
        .spawned_group
        .is_some_and(|group| group > 1 && group == pid)
    {
        return Some(Membership::Spawned);
    }
    let stat = procfs::stat(pid).filter(|stat| !stat.exited)?;
    // A group led by the main PID (adopted and forking daemons that lead their own), or
    // the one corrald created. Group 1 or 0 would be everyone's: never accepted.
    let groups = [Some(expected.main_pid), expected.spawned_group];
    if stat.pgrp > 1 && groups.contains(&Some(stat.pgrp)) {
        return Some(Membership::ProcessGroup(stat.pgrp));
    }
    descends_from(stat.ppid, expected.main_pid).then_some(Membership::Descendant)
}

/// Whether `ancestor` is `pid` or one of its ancestors, at most [`MAX_DEPTH`] steps up.
fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..MAX_DEPTH {
        if pid <= 1 {
            return false;
        }
        if pid == ancestor {
            return true;
        }
        match procfs::stat(pid) {
            Some(stat) => pid = stat.ppid,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};

    use super::*;

    fn expected(uid: u32, main_pid: u32, spawned_group: Option<u32>) -> Expected {
        Expected {
            uid,
            user: "someone".into(),
            main_pid,
            spawned_group,
        }
    }

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    /// Real processes for a test, killed when it ends.
    struct Processes(Vec<Child>, Vec<u32>);

    impl Drop for Processes {
        fn drop(&mut self) {
            for &pid in &self.1 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Processes {
        fn new() -> Processes {
            Processes(Vec::new(), Vec::new())
        }

        /// A process unrelated to the others (a child of the test, not of them).
        fn unrelated(&mut self) -> u32 {
            let child = Command::new("sleep").arg("30").spawn().unwrap();
            let pid = child.id();
            self.0.push(child);
            pid
        }

        /// A shell that starts `script` in the background and waits; returns the shell's
        /// PID and the background process's.
        fn parent_of(&mut self, script: &str, own_group: bool) -> (u32, u32) {
            let mut command = Command::new("sh");
            command
                .args(["-c", &format!("{script} & echo $!; wait")])
                .stdout(Stdio::piped());
            if own_group {
                command.process_group(0);
            }
            let mut parent = command.spawn().unwrap();
            let mut line = String::new();
            BufReader::new(parent.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let child = line.trim().parse().unwrap();
            let pid = parent.id();
            self.0.push(parent);
            self.1.push(child);
            (pid, child)
        }
    }

    #[test]
    fn the_main_process_and_its_descendants_belong() {
        let mut processes = Processes::new();
        // The child leaves the parent's group: only the parent chain ties it to `main`.
        let (main, child) = processes.parent_of("exec setsid sleep 30", false);
        let peer = Peer {
            pid: Some(child),
            uid: me(),
        };
        assert_eq!(
            verify(peer, &expected(me(), main, None)),
            Ok(Membership::Descendant)
        );
        let main_peer = Peer {
            pid: Some(main),
            uid: me(),
        };
        assert_eq!(
            verify(main_peer, &expected(me(), main, None)),
            Ok(Membership::MainProcess)
        );
        let other = processes.unrelated();
        let refused = verify(peer, &expected(me(), other, Some(other))).unwrap_err();
        assert_eq!(refused.reason, "it is not a process of the service");
        assert!(
            refused
                .to_string()
                .contains(&format!("pid {child}, uid {}", me())),
            "{refused}"
        );
        // The parent is no descendant of its child.
        assert!(verify(main_peer, &expected(me(), child, None)).is_err());
    }

    #[test]
    fn the_process_group_belongs_even_when_not_descended_from_the_main_pid() {
        let mut processes = Processes::new();
        // A group led by `leader`; `member` is in it but no descendant of `main`.
        let (leader, member) = processes.parent_of("sleep 30", true);
        let main = processes.unrelated();
        let peer = Peer {
            pid: Some(member),
            uid: me(),
        };
        assert_eq!(
            verify(peer, &expected(me(), main, Some(leader))),
            Ok(Membership::ProcessGroup(leader))
        );
        // A group the main PID leads counts too (an adopted daemon's).
        assert_eq!(
            verify(peer, &expected(me(), leader, None)),
            Ok(Membership::ProcessGroup(leader))
        );
        assert!(verify(peer, &expected(me(), main, None)).is_err());
    }

    #[test]
    fn the_spawned_process_belongs_after_it_exited() {
        // A forking daemon's launcher listened, forked and exited: its PID is all we know.
        let launcher = 4_000_000;
        let peer = Peer {
            pid: Some(launcher),
            uid: me(),
        };
        assert_eq!(
            verify(peer, &expected(me(), 1234, Some(launcher))),
            Ok(Membership::Spawned)
        );
        assert!(verify(peer, &expected(me(), 1234, None)).is_err());
    }

    #[test]
    fn another_user_is_refused_even_as_the_main_process() {
        let pid = std::process::id();
        let peer = Peer {
            pid: Some(pid),
            uid: me() + 1,
        };
        let refused = verify(peer, &expected(me(), pid, Some(pid))).unwrap_err();
        assert_eq!(refused.reason, "it runs as another user");
        let shown = refused.to_string();
        assert!(
            shown.contains(&format!("pid {pid}, uid {}, ", me() + 1)),
            "names the peer: {shown}"
        );
        assert!(
            shown.contains(&std::env::current_exe().unwrap().display().to_string()),
            "names its executable: {shown}"
        );
        assert!(
            shown.contains(&format!(
                "expected uid {} (someone) and the service's main PID {pid}",
                me()
            )),
            "{shown}"
        );
    }

    #[test]
    fn a_peer_without_a_pid_is_refused() {
        let refused = verify(Peer { pid: None, uid: 0 }, &expected(0, 5, None)).unwrap_err();
        assert!(refused.to_string().contains("pid unknown"), "{refused}");
        assert!(
            verify(
                Peer {
                    pid: Some(0),
                    uid: 0
                },
                &expected(0, 5, None)
            )
            .is_err()
        );
    }

    #[test]
    fn the_uid_is_the_users_or_roots() {
        assert_eq!(uid_of(None), Ok((0, "root".to_owned())));
        assert_eq!(uid_of(Some("nobody")), Ok((65534, "nobody".to_owned())));
        assert!(
            uid_of(Some("corral-no-such-user"))
                .unwrap_err()
                .contains("no longer exists")
        );
    }

    #[test]
    fn init_is_never_the_service() {
        // Every process descends from PID 1 and many sit in low groups: a main PID or
        // group of 1 (a corrupt status) must not make everyone the service.
        let peer = Peer {
            pid: Some(std::process::id()),
            uid: me(),
        };
        assert!(verify(peer, &expected(me(), 1, Some(1))).is_err());
        assert!(verify(peer, &expected(me(), 0, Some(0))).is_err());
    }
}
