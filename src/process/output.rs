//! Where a child's stdout and stderr go.
//!
//! With journald present we do what systemd does: open a stream to journald's
//! `stdout` socket, write the stream header naming the service as `SYSLOG_IDENTIFIER`, and
//! hand that socket to the child as its stdout and stderr. The child then writes straight to
//! the journal, with no copy through corrald, and corrald keeps no descriptor for it.
//! Without journald, the output is piped back and each line is written to corrald's stderr
//! prefixed by the service name: stdout and stderr share one pipe, as they share the
//! journal stream, so corrald holds one descriptor per running service for its output (and
//! the lines of both streams keep the order they were written in).
//!
//! The pipes being copied are listed in a process-wide registry, so that a live re-exec of corrald can
//! hand them to the corrald it becomes ([`forwarded`], [`resume`]): a service's output goes
//! on being copied, and the service never writes into a pipe nobody reads.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;

/// journald's stream socket, where systemd connects its services' stdout.
pub const JOURNAL_STDOUT: &str = "/run/systemd/journal/stdout";

/// How children's output is routed; chosen once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputMode {
    /// Stream to journald's stdout socket at this path.
    Journal(PathBuf),
    /// Pipe back and copy to corrald's stderr with a `name[pid]: ` prefix.
    Stderr,
}

impl OutputMode {
    /// Journal when journald's stream socket (normally [`JOURNAL_STDOUT`]) exists, else
    /// stderr.
    pub fn detect(socket: &Path) -> OutputMode {
        if socket.exists() {
            OutputMode::Journal(socket.to_owned())
        } else {
            OutputMode::Stderr
        }
    }
}

/// The stdout/stderr to give one child.
pub struct ChildOutput {
    /// The child's ends.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Our end of the pipe when the output is piped back: [`forward`] it once the child
    /// runs.
    pub piped: Option<OwnedFd>,
}

/// Prepares the output of a child of service `name`. A journal that cannot be reached falls
/// back to piping, so a restarting journald never keeps a service from starting. Fails
/// only when no pipe can be made (out of descriptors).
pub fn prepare(mode: &OutputMode, name: &str) -> io::Result<ChildOutput> {
    if let OutputMode::Journal(socket) = mode {
        match journal_stream(socket, name) {
            Ok(fd) => match fd.try_clone() {
                Ok(dup) => {
                    return Ok(ChildOutput {
                        stdout: fd,
                        stderr: dup,
                        piped: None,
                    });
                }
                Err(err) => tracing::warn!(service = name, "cannot dup journal stream: {err}"),
            },
            Err(err) => tracing::warn!(
                service = name,
                "cannot connect to {}: {err}; copying output to stderr",
                socket.display()
            ),
        }
    }
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    Ok(ChildOutput {
        stderr: write.try_clone()?,
        stdout: write,
        piped: Some(read),
    })
}

/// Opens a journald stream for `identifier` (systemd's stdout-stream protocol: seven header
/// lines, then the output itself).
fn journal_stream(socket: &Path, identifier: &str) -> io::Result<OwnedFd> {
    let mut stream = UnixStream::connect(socket)?;
    // identifier, unit id (none), priority (info), level prefix (honour "<3>" prefixes),
    // forward to syslog, kmsg, console (no).
    let header = format!("{identifier}\n\n6\n1\n0\n0\n0\n");
    stream.write_all(header.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Read)?;
    Ok(OwnedFd::from(stream))
}

/// The pipes being copied, by descriptor, with the prefix of their lines. A std `Mutex`:
/// held for an insert or a removal, never across an `.await`.
static FORWARDED: Mutex<Option<HashMap<RawFd, String>>> = Mutex::new(None);

fn registry<T>(f: impl FnOnce(&mut HashMap<RawFd, String>) -> T) -> T {
    f(FORWARDED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new))
}

/// Copies a piped child's output to corrald's stderr, line by line, as `name[pid]: line`,
/// in a task that ends when every process holding the pipe's other end has closed it.
pub fn forward(name: &str, pid: u32, output: OwnedFd) {
    resume_owned(format!("{name}[{pid}]: "), output);
}

/// The pipes being copied now (descriptor, line prefix), for a live re-exec to hand over.
pub fn forwarded() -> Vec<(RawFd, String)> {
    registry(|fds| fds.iter().map(|(fd, p)| (*fd, p.clone())).collect())
}

/// Goes on copying pipe `fd`, handed over by the corrald this one re-executed from.
///
/// # Safety
/// `fd` must be an open pipe descriptor that nothing else in this process owns.
pub unsafe fn resume(fd: RawFd, prefix: String) {
    // SAFETY: as the caller promises.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = super::fds::set_cloexec(&owned, true);
    resume_owned(prefix, owned);
}

fn resume_owned(prefix: String, stream: OwnedFd) {
    let fd = stream.as_raw_fd();
    match pipe::Receiver::from_owned_fd(stream) {
        Ok(mut receiver) => {
            registry(|fds| fds.insert(fd, prefix.clone()));
            tokio::spawn(async move {
                copy_lines(prefix, &mut receiver).await;
                // Unlisted while still open, so a new pipe that gets the same number
                // after the close is never unlisted by mistake.
                registry(|fds| fds.remove(&fd));
                drop(receiver);
            });
        }
        Err(err) => tracing::warn!("cannot read the output of {prefix}: {err}"),
    }
}

async fn copy_lines(prefix: String, mut stream: impl AsyncRead + Unpin) {
    // Most services never write a byte, and a `BufReader`'s 8 KiB per stream was a third
    // of corrald's heap at 1000 services. So wait for the first bytes with a small
    // buffer, and only then read through a full-sized one.
    let mut first = [0u8; 64];
    let n = match stream.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    let mut lines = BufReader::new((&first[..n]).chain(stream)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        // One locked write per line, so lines of different services never interleave.
        let _ = writeln!(io::stderr().lock(), "{prefix}{line}");
    }
}
