//! The notify socket of corrald's `type = "notify"` services and of every service with a
//! `watchdog`: one datagram socket for all of them at `<runtime dir>/notify`, passed to
//! each such child as `NOTIFY_SOCKET` — the way systemd does it with `/run/systemd/notify`.
//!
//! One socket, not one per service: its path never changes, so a restarted service (or one
//! that connects a moment after it starts) always finds it, and corrald keeps one
//! descriptor instead of one per notify service. Anyone may send to it (mode 0666); a
//! message counts only for the service its *sender* belongs to, which the kernel tells us
//! (`SO_PASSCRED`: the sender's PID and UID, which it cannot forge). The supervisor maps
//! that PID to a service.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// One `KEY=VALUE` line of the sd_notify protocol that corrald acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyMessage {
    /// `READY=1`: start-up finished.
    Ready,
    /// `STATUS=…`: free-form status, published as the `StatusText` property.
    Status(String),
    /// `STOPPING=1`: the service began shutting down on its own.
    Stopping,
    /// `MAINPID=…`: the main process changed (e.g. after a re-exec).
    MainPid(u32),
    /// `WATCHDOG=1`: the service is alive; its watchdog timer starts over.
    Watchdog,
    /// `WATCHDOG=trigger`: the service asks to be treated as if it missed its watchdog.
    WatchdogTrigger,
    /// `WATCHDOG_USEC=…`: the watchdog timeout of this run, in µs (0 turns it off).
    WatchdogUsec(u64),
    /// `EXTEND_TIMEOUT_USEC=…`: the start or stop in progress may take this many µs more
    /// from now (it never shortens a timeout).
    ExtendTimeoutUsec(u64),
}

/// Parses one datagram; unknown or malformed lines are skipped (the protocol says so).
/// Lines end at `\n`; carriage returns before it are dropped from every line alike, so a
/// sender's `\r\n` does not end up in a `STATUS=` text.
pub fn parse(datagram: &[u8]) -> Vec<NotifyMessage> {
    let text = String::from_utf8_lossy(datagram);
    text.split('\n')
        .map(|line| line.trim_end_matches('\r'))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            match key {
                "READY" if value == "1" => Some(NotifyMessage::Ready),
                "STATUS" => Some(NotifyMessage::Status(value.to_owned())),
                "STOPPING" if value == "1" => Some(NotifyMessage::Stopping),
                "MAINPID" => super::parse_pid(value).map(NotifyMessage::MainPid),
                "WATCHDOG" if value == "1" => Some(NotifyMessage::Watchdog),
                "WATCHDOG" if value == "trigger" => Some(NotifyMessage::WatchdogTrigger),
                "WATCHDOG_USEC" => value.parse().ok().map(NotifyMessage::WatchdogUsec),
                "EXTEND_TIMEOUT_USEC" => value.parse().ok().map(NotifyMessage::ExtendTimeoutUsec),
                _ => None,
            }
        })
        .collect()
}

/// A datagram with who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's PID and UID, as the kernel reports them.
    pub pid: u32,
    pub uid: u32,
    pub messages: Vec<NotifyMessage>,
}

/// The bound notify socket; its file is removed when this is dropped.
pub struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    /// Binds the socket at `path`, replacing a stale one, open to every local sender.
    pub fn bind(path: &Path) -> io::Result<NotifySocket> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let socket = UnixDatagram::bind(path)?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(io::Error::from)?;
        // Services run as any user; who sent a message is checked by its credentials.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        Ok(NotifySocket {
            path: path.to_owned(),
            socket,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The socket's descriptor, for a live re-exec to hand over (see
    /// [`NotifySocket::inherit`]).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }

    /// Takes over the socket bound at `path` that a previous corrald passed as descriptor
    /// `fd` across `exec`: same path, same socket, so a message a service sends during the
    /// re-exec is read, not lost.
    pub fn inherit(path: &Path, fd: std::os::fd::RawFd) -> io::Result<NotifySocket> {
        // SAFETY: the previous corrald passed this descriptor to us for exactly this
        // purpose, and nothing else in this process owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        crate::process::fds::set_cloexec(&owned, true)?;
        let std = std::os::unix::net::UnixDatagram::from(owned);
        std.set_nonblocking(true)?;
        Ok(NotifySocket {
            path: path.to_owned(),
            socket: UnixDatagram::from_std(std)?,
        })
    }

    /// Waits for the next datagram that carries its sender's credentials.
    pub async fn recv(&self) -> io::Result<Datagram> {
        loop {
            self.socket.readable().await?;
            match self
                .socket
                .try_io(Interest::READABLE, || receive(self.socket.as_raw_fd()))
            {
                Ok(Some(datagram)) => return Ok(datagram),
                Ok(None) => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One `recvmsg`. `None` for a datagram without credentials (cannot happen with
/// `SO_PASSCRED` set, but nothing unauthenticated is ever acted on).
fn receive(fd: i32) -> io::Result<Option<Datagram>> {
    // The protocol allows large STATUS= texts; 4 KiB covers every real message, and a
    // longer datagram is truncated, never a reason to fail.
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    // Room for the credentials and for descriptors a sender might attach (FDSTORE=1, which
    // corrald does not support): received descriptors are closed at once; any that do not
    // fit are discarded by the kernel.
    let mut space = nix::cmsg_space!(UnixCredentials, [i32; 8]);
    let message = recvmsg::<UnixAddr>(
        fd,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let mut sender = None;
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        match cmsg {
            ControlMessageOwned::ScmCredentials(creds) => {
                sender = Some((creds.pid() as u32, creds.uid()));
            }
            ControlMessageOwned::ScmRights(fds) => {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor for us; nobody else
                    // knows it, so owning and closing it here is sound.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
            _ => {}
        }
    }
    let len = message.bytes;
    Ok(sender.map(|(pid, uid)| Datagram {
        pid,
        uid,
        messages: parse(&buf[..len]),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_loses_its_carriage_returns_on_the_last_line_too() {
        // Found by the notify fuzz target: "STATUS=x\r" kept its "\r" as the last line of
        // a datagram but lost it before a "\n", so the text depended on what followed.
        for datagram in [
            &b"STATUS=x\r"[..],
            b"STATUS=x\r\n",
            b"STATUS=x\r\r\nREADY=1",
        ] {
            assert_eq!(parse(datagram)[0], NotifyMessage::Status("x".into()));
        }
        assert_eq!(parse(b"READY=1\r"), vec![NotifyMessage::Ready]);
        assert_eq!(
            parse(b"STATUS=a\rb\n"),
            vec![NotifyMessage::Status("a\rb".into())]
        );
    }

    #[test]
    fn mainpid_beyond_pid_t_is_ignored() {
        // Found by the notify fuzz target: MAINPID=4294967295 was taken as the main PID,
        // and stopping the service then sent SIGTERM to pid_t -1: every process.
        for pid in ["4294967295", "4294967294", "2147483648", "4004325263"] {
            let datagram = format!("MAINPID={pid}\nREADY=1");
            assert_eq!(parse(datagram.as_bytes()), vec![NotifyMessage::Ready]);
        }
        assert_eq!(
            parse(b"MAINPID=2147483647"),
            vec![NotifyMessage::MainPid(2147483647)]
        );
    }

    #[test]
    fn parses_the_messages_we_act_on() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=Serving 3 exports\nMAINPID=4242\nSTOPPING=1\n"),
            vec![
                NotifyMessage::Ready,
                NotifyMessage::Status("Serving 3 exports".into()),
                NotifyMessage::MainPid(4242),
                NotifyMessage::Stopping,
            ]
        );
        assert_eq!(
            parse(b"WATCHDOG=1\nWATCHDOG=trigger\nWATCHDOG_USEC=2500000\nEXTEND_TIMEOUT_USEC=0"),
            vec![
                NotifyMessage::Watchdog,
                NotifyMessage::WatchdogTrigger,
                NotifyMessage::WatchdogUsec(2_500_000),
                NotifyMessage::ExtendTimeoutUsec(0),
            ]
        );
        assert_eq!(
            parse(
                b"READY=0\nWATCHDOG=0\nWATCHDOG=yes\nWATCHDOG_USEC=-1\nWATCHDOG_USEC=1s\n\
                  EXTEND_TIMEOUT_USEC=\nEXTEND_TIMEOUT_USEC=99999999999999999999\ngarbage\nMAINPID=x"
            ),
            vec![]
        );
        assert_eq!(
            parse(b"STATUS="),
            vec![NotifyMessage::Status(String::new())]
        );
    }

    #[tokio::test]
    async fn tells_who_sent_each_message_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let socket = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        let path = socket.path().to_owned();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client
            .send_to(b"STATUS=warming up\nREADY=1", &path)
            .unwrap();
        let datagram = socket.recv().await.unwrap();
        assert_eq!(datagram.pid, std::process::id());
        assert_eq!(datagram.uid, nix::unistd::getuid().as_raw());
        assert_eq!(
            datagram.messages,
            vec![
                NotifyMessage::Status("warming up".into()),
                NotifyMessage::Ready
            ]
        );
        drop(socket);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[tokio::test]
    async fn a_sender_in_another_process_is_named_by_its_own_pid() {
        let dir = tempfile::tempdir().unwrap();
        let socket = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', sys.argv[1])",
            ])
            .arg(socket.path())
            .spawn()
            .unwrap();
        let datagram = socket.recv().await.unwrap();
        assert_eq!(datagram.pid, child.id());
        assert_eq!(datagram.messages, vec![NotifyMessage::Ready]);
        assert!(child.wait().unwrap().success());
    }

    #[tokio::test]
    async fn descriptors_passed_along_are_closed_not_leaked() {
        use nix::sys::socket::{ControlMessage, sendmsg};
        let dir = tempfile::tempdir().unwrap();
        let socket = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        // Pass the write end of a pipe: once every copy of it is closed, the read end sees
        // end-of-file. A copy leaked by the receiver would keep it open.
        let (read, write) = nix::unistd::pipe().unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let addr = UnixAddr::new(socket.path()).unwrap();
        let fds = [write.as_raw_fd(); 3];
        sendmsg(
            client.as_raw_fd(),
            &[std::io::IoSlice::new(b"FDSTORE=1")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            Some(&addr),
        )
        .unwrap();
        drop(write);
        let datagram = socket.recv().await.unwrap();
        assert_eq!(datagram.messages, vec![]);
        nix::fcntl::fcntl(
            &read,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            nix::unistd::read(&read, &mut byte),
            Ok(0),
            "every received descriptor was closed"
        );
    }
}
