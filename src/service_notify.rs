//! The notify socket corrald gives each `type = "notify"` service: a datagram socket of its
//! own at `<runtime dir>/notify/<name>`, passed to the child as `NOTIFY_SOCKET`. Having one
//! socket per service means a message's service is known from the socket it arrived on, with
//! no PID-to-service lookup; the socket is owned by the service's user and mode 0600, so no
//! other local user can claim readiness on its behalf.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, chown};
use tokio::net::UnixDatagram;

use crate::process::parse_pid;

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
                "MAINPID" => parse_pid(value).map(NotifyMessage::MainPid),
                _ => None,
            }
        })
        .collect()
}

/// A bound notify socket; the socket file is removed when this is dropped.
pub struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    /// Binds the socket for `service` in `dir`, replacing a stale one, and gives it to `owner`
    /// (the service's user) when the service does not run as root.
    pub fn bind(dir: &Path, service: &str, owner: Option<(Uid, Gid)>) -> io::Result<NotifySocket> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(service);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let socket = UnixDatagram::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            chown(&path, Some(uid), Some(gid)).map_err(io::Error::from)?;
        }
        Ok(NotifySocket { path, socket })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next datagram and returns the messages in it.
    pub async fn recv(&self) -> io::Result<Vec<NotifyMessage>> {
        // The protocol allows large STATUS= texts; 4 KiB covers every real message, and a
        // longer datagram is truncated, never a reason to fail.
        let mut buf = vec![0u8; 4096];
        let len = self.socket.recv(&mut buf).await?;
        Ok(parse(&buf[..len]))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse(b"READY=0\nWATCHDOG=1\ngarbage\nMAINPID=x"), vec![]);
        assert_eq!(
            parse(b"STATUS="),
            vec![NotifyMessage::Status(String::new())]
        );
    }

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

    #[tokio::test]
    async fn receives_from_a_real_client_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let socket = NotifySocket::bind(dir.path(), "svc", None).unwrap();
        let path = socket.path().to_owned();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client
            .send_to(b"STATUS=warming up\nREADY=1", &path)
            .unwrap();
        assert_eq!(
            socket.recv().await.unwrap(),
            vec![
                NotifyMessage::Status("warming up".into()),
                NotifyMessage::Ready
            ]
        );
        drop(socket);
        assert!(!path.exists(), "socket file removed on drop");
    }
}
