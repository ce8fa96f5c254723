//! corrald's own integration with systemd: `sd_notify` messages to the socket systemd gave
//! us (READY, RELOADING, STOPPING, STATUS, WATCHDOG). The socket path is injected, so tests
//! can listen on one of their own.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::transitions::reloader::ReloadObserver;

/// Sends sd_notify messages; does nothing without a socket (not started by systemd).
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<PathBuf>,
}

impl Notifier {
    pub fn new(socket: Option<PathBuf>) -> Notifier {
        Notifier { socket }
    }

    /// From `NOTIFY_SOCKET`, as systemd passes it.
    pub fn from_env() -> Notifier {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from))
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        let Some(path) = &self.socket else { return };
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        if let Err(err) = send_datagram(path, message.as_bytes()) {
            tracing::warn!("cannot notify systemd at {}: {err}", path.display());
        }
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// How long one sd_notify message may wait for room in the receiver's queue.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// Sends one datagram to `path`; a leading `@` names an abstract socket, as in systemd.
fn send_datagram(path: &std::path::Path, message: &[u8]) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    // Bounded, not non-blocking: a busy systemd must still get READY=1 (its queue holds
    // only `net.unix.max_dgram_qlen` datagrams, 10 by default), but a receiver that stops
    // reading must not stall corrald — it once kept `Reload()` from ever returning.
    // A send that blocks with a timeout is never restarted after a signal handler ran
    // (signal(7)), and corrald, a subreaper, takes a SIGCHLD for every exit: an
    // interrupted send is tried again for what is left of the timeout.
    let deadline = std::time::Instant::now() + SEND_TIMEOUT;
    let bytes = path.as_os_str().as_bytes();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        socket.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        let sent = if let Some(name) = bytes.strip_prefix(b"@") {
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &address)
        } else {
            socket.send_to(message, path)
        };
        match sent {
            Err(err)
                if err.kind() == std::io::ErrorKind::Interrupted
                    && std::time::Instant::now() < deadline => {}
            other => return other,
        }
    }
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`, for this PID), if any.
pub fn watchdog_from_env() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// systemd's notify-reload protocol around each reload.
impl ReloadObserver for Notifier {
    fn reloading(&self) {
        Notifier::reloading(self);
    }

    fn reloaded(&self) {
        self.ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(Some(path));
        notifier.status("3 services: 3 active");
        notifier.ready();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=3 services: 3 active\n");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }

    #[test]
    fn reloading_carries_the_monotonic_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        Notifier::new(Some(path)).reloading();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
    }

    #[test]
    fn a_receiver_that_never_reads_does_not_block_us() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(Some(path));
        // More than the receiver's queue holds: once it is full, each send gives up after
        // SEND_TIMEOUT instead of waiting for ever.
        let started = std::time::Instant::now();
        for _ in 0..20 {
            notifier.status("filling the queue of a receiver that never reads");
        }
        assert!(
            started.elapsed() < SEND_TIMEOUT * 25,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        Notifier::new(None).ready();
        assert!(!Notifier::new(None).is_enabled());
    }

    extern "C" fn ignore(_: libc::c_int) {}

    #[test]
    fn a_send_interrupted_by_a_signal_is_tried_again() {
        // A handler that interrupts (as tokio's SIGCHLD handler does), and a receiver
        // whose queue is full, so the send blocks until a datagram is read.
        // SAFETY: installing a handler that does nothing, for SIGUSR2 only.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as *const () as usize;
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let filler = UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        while filler.send_to(b"x", &path).is_ok() {}
        // SAFETY: pthread_self has no preconditions.
        let sender = unsafe { libc::pthread_self() };
        let helper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            // SAFETY: the test thread is alive: it waits for this thread below.
            unsafe { libc::pthread_kill(sender, libc::SIGUSR2) };
            std::thread::sleep(Duration::from_millis(20));
            let mut buf = [0u8; 16];
            listener.recv(&mut buf).unwrap();
            listener
        });
        let sent = send_datagram(&path, b"READY=1");
        let listener = helper.join().unwrap();
        assert_eq!(sent.unwrap(), 7, "sent after the interruption");
        let mut buf = [0u8; 16];
        listener.set_nonblocking(true).unwrap();
        let mut last = Vec::new();
        while let Ok(n) = listener.recv(&mut buf) {
            last = buf[..n].to_vec();
        }
        assert_eq!(last, b"READY=1");
    }
}
