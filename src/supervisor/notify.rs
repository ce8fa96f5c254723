//! sd_notify from services: the one notify socket's reader task, and attributing each
//! message to the service its sender belongs to.
//!
//! A sender belongs to a service when it is the main process of the service's current run,
//! or a member of a process group that run leads (corrald starts every service as a group
//! leader; a forking or adopted daemon usually leads its own). That is systemd's
//! `NotifyAccess=all`, bounded to the service's own processes: a helper the daemon forks
//! may report for it, another user's process may not.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::unistd::{Pid, getpgid};
use tokio::sync::mpsc;

use super::actor::Supervisor;
use super::internal::Internal;
use super::unit::Run;
use crate::fs_trust::{self, PrivateDirError};
use crate::process::notify::{Datagram, NotifyMessage, NotifySocket};

/// Binds `<runtime_dir>/notify` (or takes over `inherited`, the socket a previous corrald
/// passed across a live re-exec) and starts the task that hands its datagrams to the
/// supervisor. Returns the path for `NOTIFY_SOCKET` and the socket's descriptor, or why
/// there is none (then notify-type services fail to start with that reason; everything
/// else works).
pub(super) fn listen(
    runtime_dir: &Path,
    inherited: Option<RawFd>,
    supervisor: &mpsc::UnboundedSender<Internal>,
) -> Result<(PathBuf, RawFd), String> {
    let path = runtime_dir.join("notify");
    let socket = match inherited {
        Some(fd) => NotifySocket::inherit(&path, fd),
        None => NotifySocket::bind(&path),
    }
    .map_err(|err| {
        let why = format!("cannot create the notify socket {}: {err}", path.display());
        tracing::error!("{why}");
        why
    })?;
    let fd = socket.raw_fd();
    let tx = supervisor.clone();
    tokio::spawn(async move {
        // The socket lives as long as this task, which ends with the supervisor.
        loop {
            match socket.recv().await {
                Ok(datagram) if datagram.messages.is_empty() => {}
                Ok(datagram) => {
                    if tx.send(Internal::Notify(datagram)).is_err() {
                        return;
                    }
                }
                Err(err) => {
                    tracing::error!("reading the notify socket failed: {err}");
                    return;
                }
            }
        }
    });
    Ok((path, fd))
}

impl Supervisor {
    /// The notify socket's path for a start. When its file is gone — the runtime directory
    /// removed underneath (by hand, or a clean-up of `/run`) — the directory and the socket
    /// are made again first, so services that connect to it still can. (The old socket,
    /// no longer reachable, stays with its reader task.)
    pub(super) fn notify_path(&mut self) -> Result<PathBuf, String> {
        if let Ok(path) = &self.notify_socket
            && !path.exists()
        {
            tracing::warn!(
                "the notify socket {} was removed underneath corrald; making it again",
                path.display()
            );
            let dir = &self.settings.runtime_dir;
            // Made and checked as at start-up: someone else's directory in its place could
            // plant the socket the services are told to trust.
            fs_trust::make_private_dir(dir).map_err(|err| match err {
                PrivateDirError::Create(err) => format!(
                    "cannot make the runtime directory {} again: {err}",
                    dir.display()
                ),
                PrivateDirError::Untrusted(why) => {
                    format!("refusing the runtime directory: {why}")
                }
            })?;
            let (path, fd) = listen(dir, None, &self.internal_tx)?;
            self.notify_fd = Some(fd);
            self.notify_socket = Ok(path);
        }
        self.notify_socket.clone()
    }

    /// Acts on a datagram from the notify socket, for the service its sender belongs to.
    pub(super) fn on_notify(&mut self, datagram: Datagram) {
        let Datagram { pid, uid, messages } = datagram;
        let Some(name) = self.owner_of(pid) else {
            tracing::debug!(
                pid,
                uid,
                "notify message from a process of no service ignored"
            );
            return;
        };
        let mut ready = false;
        for message in messages {
            match message {
                NotifyMessage::Ready => ready = true,
                NotifyMessage::Status(text) => {
                    if let Some(unit) = self.units.get_mut(&name) {
                        unit.status_text = text;
                    }
                }
                NotifyMessage::MainPid(new) => self.change_main_pid(&name, new, uid),
                NotifyMessage::Stopping => tracing::debug!(service = name, "STOPPING=1"),
                NotifyMessage::Watchdog => self.watchdog_ping(&name),
                NotifyMessage::WatchdogTrigger => self.watchdog_missed(
                    &name,
                    "watchdog triggered by the service (WATCHDOG=trigger)".to_owned(),
                ),
                NotifyMessage::WatchdogUsec(usec) => self.watchdog_timeout(&name, usec),
                NotifyMessage::ExtendTimeoutUsec(usec) => self.extend_timeout(&name, usec),
            }
        }
        if ready {
            self.become_ready(&name);
        }
        self.publish(&name);
    }

    /// `MAINPID=`: accepted when the new main process is one of the service's own (or root
    /// says so), so a service cannot make corrald adopt, and later signal, a stranger.
    fn change_main_pid(&mut self, name: &str, new: u32, sender_uid: u32) {
        if sender_uid != 0 && self.owner_of(new).as_deref() != Some(name) {
            tracing::warn!(
                service = name,
                "MAINPID={new} ignored: that process is not one of the service's"
            );
            return;
        }
        let Some(run) = self.units.get_mut(name).and_then(|u| u.run_mut()) else {
            return;
        };
        let old = [Some(run.main_pid), run.main_group];
        let own_group = run.own_group;
        run.main_pid = new;
        run.main_group = group_led_by(new);
        let (main, group) = (run.main_pid, run.main_group);
        for pid in old
            .into_iter()
            .flatten()
            .filter(|&pid| Some(pid) != own_group)
        {
            self.pids.remove(&pid);
        }
        self.track(name, [Some(main), group]);
        self.save_run(name);
    }

    /// The service a process belongs to: a tracked PID, or a member of a tracked group.
    pub(super) fn owner_of(&self, pid: u32) -> Option<String> {
        if let Some(name) = self.pids.get(&pid) {
            return Some(name.clone());
        }
        let group = getpgid(Some(Pid::from_raw(pid as i32))).ok()?.as_raw() as u32;
        let name = self.pids.get(&group)?;
        // Only a group the run really leads, not a PID that merely equals a member's group.
        let run = self.units.get(name)?.run()?;
        (run.own_group == Some(group) || run.main_group == Some(group)).then(|| name.clone())
    }

    /// Remembers that these PIDs (main process, group leaders) belong to `name`.
    pub(super) fn track(&mut self, name: &str, pids: impl IntoIterator<Item = Option<u32>>) {
        for pid in pids.into_iter().flatten().filter(|&pid| pid > 1) {
            self.pids.insert(pid, name.to_owned());
        }
    }

    /// Forgets the PIDs of a run that is over.
    pub(super) fn untrack(&mut self, name: &str, run: &Run) {
        for pid in [Some(run.main_pid), run.own_group, run.main_group]
            .into_iter()
            .flatten()
        {
            if self.pids.get(&pid).is_some_and(|owner| owner == name) {
                self.pids.remove(&pid);
            }
        }
    }
}

/// The process group `pid` leads, if it leads one.
pub(super) fn group_led_by(pid: u32) -> Option<u32> {
    let pid = Pid::from_raw(pid as i32);
    (getpgid(Some(pid)).ok() == Some(pid)).then_some(pid.as_raw() as u32)
}
