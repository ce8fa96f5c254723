//! One service's control connection (glusterd's connection management): a task that
//! connects to the service's `control_socket` once its process runs, retries with back-off
//! until it is up, reconnects after the connection drops or the service restarts, and
//! keeps the service's `Online` property true while connected.
//!
//! Requests from many D-Bus callers are pipelined on the one connection, each matched to
//! its response by id; each caller bounds its own wait with `frame_timeout`, and a response
//! that arrives after its caller gave up is discarded. Notifications (frames without id)
//! go to the upcall relay. Malformed frames are logged and dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::frame::{self, FrameError, Incoming, MAX_FRAME};
use crate::supervisor::{ActiveState, Handle, ServiceStatus};

/// First and longest delay between connection attempts.
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// A notification from a service, for the upcall relay.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub service: String,
    pub method: String,
    pub params: Value,
}

/// Why a control call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error(
        "the control channel of {0:?} is not connected (is the service running and listening on its control_socket?)"
    )]
    NotConnected(String),
    #[error("{service:?} did not answer {method:?} within {timeout:?} (frame_timeout)")]
    Timeout {
        service: String,
        method: String,
        timeout: Duration,
    },
    #[error("{0}")]
    Failed(String),
    #[error("the control connection of {0:?} closed before the answer came")]
    Closed(String),
}

struct Call {
    method: String,
    params: Vec<String>,
    reply: oneshot::Sender<Result<Value, CallError>>,
}

/// A cheap handle on one service's control connection.
#[derive(Clone)]
pub struct ControlHandle {
    service: String,
    calls: mpsc::Sender<Call>,
}

impl ControlHandle {
    /// Sends `method(params)` and waits up to `timeout` for the response.
    pub async fn call(
        &self,
        method: &str,
        params: Vec<String>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            method: method.to_owned(),
            params,
            reply,
        };
        self.calls
            .send(call)
            .await
            .map_err(|_| CallError::NotConnected(self.service.clone()))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::Closed(self.service.clone())),
            Err(_) => Err(CallError::Timeout {
                service: self.service.clone(),
                method: method.to_owned(),
                timeout,
            }),
        }
    }
}

/// Starts the connection task of `service`; it runs until aborted.
pub fn spawn(
    service: String,
    socket: PathBuf,
    status: watch::Receiver<Arc<ServiceStatus>>,
    supervisor: Handle,
    notifications: mpsc::Sender<Notification>,
) -> (ControlHandle, tokio::task::AbortHandle) {
    let (calls, rx) = mpsc::channel(256);
    let handle = ControlHandle {
        service: service.clone(),
        calls,
    };
    let task = Connection {
        service,
        socket,
        status,
        supervisor,
        notifications,
        calls: rx,
    };
    (handle, tokio::spawn(task.run()).abort_handle())
}

struct Connection {
    service: String,
    socket: PathBuf,
    status: watch::Receiver<Arc<ServiceStatus>>,
    supervisor: Handle,
    notifications: mpsc::Sender<Notification>,
    calls: mpsc::Receiver<Call>,
}

/// The main PID when the service has a process, else `None`.
fn running_pid(status: &ServiceStatus) -> Option<u32> {
    let running = matches!(
        status.active,
        ActiveState::Activating | ActiveState::Active | ActiveState::Paused
    );
    (running && status.main_pid != 0).then_some(status.main_pid)
}

impl Connection {
    async fn run(mut self) {
        // How long to wait before dialling the same process again after it dropped us.
        let mut redial = Duration::ZERO;
        let mut last_pid = None;
        loop {
            let Some(pid) = self.wait_for_process().await else {
                return;
            };
            if last_pid != Some(pid) {
                redial = Duration::ZERO;
                last_pid = Some(pid);
            }
            let Some(stream) = self.connect(pid, redial).await else {
                continue;
            };
            let connected = tokio::time::Instant::now();
            tracing::info!(
                service = self.service,
                "control channel connected to {}",
                self.socket.display()
            );
            self.supervisor.set_online(&self.service, true).await;
            let why = self.serve(stream, pid).await;
            self.supervisor.set_online(&self.service, false).await;
            tracing::info!(
                service = self.service,
                "control channel disconnected: {why}"
            );
            // A connection dropped by a process that is dying (SIGKILL closes its
            // connections before its listener, which still accepts) or that keeps closing
            // on us is not redialled at once: that would flap Online, or spin. Waiting
            // lets the supervisor report the exit first; quick drops back off further.
            redial = if connected.elapsed() < RETRY_MAX {
                (redial * 2).clamp(RETRY_FIRST, RETRY_MAX)
            } else {
                RETRY_FIRST
            };
        }
    }

    /// Waits until the service has a process; refuses calls meanwhile. `None` when the
    /// service is gone.
    async fn wait_for_process(&mut self) -> Option<u32> {
        loop {
            if let Some(pid) = running_pid(&self.status.borrow_and_update()) {
                return Some(pid);
            }
            tokio::select! {
                changed = self.status.changed() => changed.ok()?,
                Some(call) = self.calls.recv() => self.refuse(call),
            }
        }
    }

    /// Connects after `first` (at once when zero), retrying with doubling delays while the
    /// same process runs.
    async fn connect(&mut self, pid: u32, first: Duration) -> Option<UnixStream> {
        if !first.is_zero() && !self.wait_unless_process_changes(pid, first).await {
            return None;
        }
        let mut delay = first.max(RETRY_FIRST);
        loop {
            match UnixStream::connect(&self.socket).await {
                // `pid` may be stale: when this task lags behind a restart, the socket
                // already belongs to the next process. Serving it as `pid`'s would flap
                // Online (true, then false at the status change); start over instead.
                Ok(_) if running_pid(&self.status.borrow_and_update()) != Some(pid) => {
                    return None;
                }
                Ok(stream) => return Some(stream),
                Err(err) => tracing::debug!(
                    service = self.service,
                    "control connect: {err}; retrying in {delay:?}"
                ),
            }
            if !self.wait_unless_process_changes(pid, delay).await {
                return None;
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    /// Sleeps for `delay`, refusing calls meanwhile; `false` as soon as the service no
    /// longer runs `pid` (or is gone).
    async fn wait_unless_process_changes(&mut self, pid: u32, delay: Duration) -> bool {
        let retry = tokio::time::sleep(delay);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = &mut retry => return true,
                changed = self.status.changed() => {
                    if changed.is_err() || running_pid(&self.status.borrow_and_update()) != Some(pid) {
                        return false;
                    }
                }
                Some(call) = self.calls.recv() => self.refuse(call),
            }
        }
    }

    fn refuse(&self, call: Call) {
        let _ = call
            .reply
            .send(Err(CallError::NotConnected(self.service.clone())));
    }

    /// Carries requests and responses until the connection ends or the process changes;
    /// returns why it ended.
    async fn serve(&mut self, stream: UnixStream, pid: u32) -> &'static str {
        let (read, mut write) = stream.into_split();
        let mut frames = FrameReader::new(read);
        let mut pending: HashMap<u64, oneshot::Sender<Result<Value, CallError>>> = HashMap::new();
        let mut next_id = 0u64;
        let why = loop {
            tokio::select! {
                Some(call) = self.calls.recv() => {
                    next_id += 1;
                    // Callers that timed out dropped their receivers: forget them.
                    pending.retain(|_, reply| !reply.is_closed());
                    let request = frame::request(next_id, &call.method, &call.params);
                    if let Err(err) = write.write_all(request.as_bytes()).await {
                        let _ = call.reply.send(Err(CallError::Failed(format!("writing to the control socket failed: {err}"))));
                        break "writing failed";
                    }
                    pending.insert(next_id, call.reply);
                }
                read = frames.next() => match read {
                    // Awaits room for a notification: a full relay stops this reading,
                    // which holds back the service (see upcall::relay).
                    Ok(true) => self.dispatch(frames.line(), &mut pending).await,
                    Ok(false) => break "the service closed the connection",
                    Err(ReadError::TooLong) => tracing::warn!(service = self.service, "dropped a control frame: {}", FrameError::TooLong),
                    Err(ReadError::Io(err)) => {
                        tracing::warn!(service = self.service, "control socket read failed: {err}");
                        break "reading failed";
                    }
                },
                changed = self.status.changed() => {
                    if changed.is_err() {
                        break "the service was removed";
                    }
                    if running_pid(&self.status.borrow_and_update()) != Some(pid) {
                        break "its process ended";
                    }
                }
            }
        };
        for (_, reply) in pending {
            let _ = reply.send(Err(CallError::Closed(self.service.clone())));
        }
        why
    }

    async fn dispatch(
        &self,
        line: &[u8],
        pending: &mut HashMap<u64, oneshot::Sender<Result<Value, CallError>>>,
    ) {
        match frame::parse(line) {
            Ok(Incoming::Response { id, outcome }) => match pending.remove(&id) {
                Some(reply) => {
                    let _ = reply.send(outcome.map_err(CallError::Failed));
                }
                None => tracing::debug!(
                    service = self.service,
                    id,
                    "late or unknown response discarded"
                ),
            },
            Ok(Incoming::Notification { method, params }) => {
                let _ = self
                    .notifications
                    .send(Notification {
                        service: self.service.clone(),
                        method,
                        params,
                    })
                    .await;
            }
            Err(err) => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
                tracing::warn!(
                    service = self.service,
                    "dropped a malformed control frame ({err}): {shown}"
                );
            }
        }
    }
}

/// Why [`FrameReader::next`] returned no frame.
#[derive(Debug)]
pub enum ReadError {
    /// A frame longer than [`MAX_FRAME`] was skipped; the stream goes on after it.
    TooLong,
    /// Reading the stream failed.
    Io(std::io::Error),
}

/// Splits the control stream into `\n`-terminated frames. Its state lives here, not in a
/// future, so `next` is cancel-safe: `serve` polls it in a `select!` that drops it whenever
/// a call or a status change comes first, and a frame read half-way is kept, not lost.
pub struct FrameReader<R> {
    reader: BufReader<R>,
    /// The frame so far (without the newline).
    line: Vec<u8>,
    /// `line` holds a whole frame that was returned: start afresh on the next call.
    complete: bool,
    /// The frame being read passed `limit`: skip it up to its newline.
    too_long: bool,
    /// The longest frame, newline included: [`MAX_FRAME`] on a control channel.
    limit: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of control-channel frames: at most [`MAX_FRAME`] bytes each.
    pub fn new(read: R) -> FrameReader<R> {
        FrameReader::with_limit(read, MAX_FRAME)
    }

    /// A reader of frames of at most `limit` bytes, newline included. (The fuzz target
    /// uses small limits, where every edge of the limit is a few bytes away.)
    pub fn with_limit(read: R, limit: usize) -> FrameReader<R> {
        FrameReader {
            reader: BufReader::new(read),
            line: Vec::new(),
            complete: false,
            too_long: false,
            limit,
        }
    }

    /// The next frame (in `self.line`): `Ok(false)` at end of stream. A frame longer than
    /// the limit is skipped up to its newline and reported, without ever holding more
    /// than the limit.
    pub async fn next(&mut self) -> Result<bool, ReadError> {
        if self.complete {
            self.line.clear();
            self.complete = false;
        }
        loop {
            // The only await; everything after it up to `consume` runs without yielding.
            let buffer = self.reader.fill_buf().await.map_err(ReadError::Io)?;
            if buffer.is_empty() {
                return Ok(false);
            }
            let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
                Some(end) => (&buffer[..end], Some(end + 1)),
                None => (buffer, None),
            };
            if !self.too_long && self.line.len() + chunk.len() < self.limit {
                self.line.extend_from_slice(chunk);
            } else {
                self.too_long = true;
                self.line.clear();
            }
            let consumed = done.unwrap_or(chunk.len());
            self.reader.consume(consumed);
            if done.is_some() {
                self.complete = true;
                return if std::mem::take(&mut self.too_long) {
                    Err(ReadError::TooLong)
                } else {
                    Ok(true)
                };
            }
        }
    }

    /// The frame the last `Ok(true)` returned, without its newline.
    pub fn line(&self) -> &[u8] {
        &self.line
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;

    use super::{FrameReader, MAX_FRAME, ReadError};

    #[tokio::test]
    async fn a_frame_read_half_way_survives_a_cancelled_read() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (read, _write) = ours.into_split();
        let mut frames = FrameReader::new(read);
        theirs.write_all(b"{\"jsonrpc\":\"2.0\",").await.unwrap();
        // serve()'s select! drops the read like this whenever a call comes first.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), frames.next()).await;
        assert!(cancelled.is_err(), "no whole frame yet");
        theirs
            .write_all(b"\"method\":\"m\"}\nnext\n")
            .await
            .unwrap();
        assert!(matches!(frames.next().await, Ok(true)));
        assert_eq!(frames.line, b"{\"jsonrpc\":\"2.0\",\"method\":\"m\"}");
        assert!(matches!(frames.next().await, Ok(true)));
        assert_eq!(frames.line, b"next");
        drop(theirs);
        assert!(matches!(frames.next().await, Ok(false)));
    }

    #[tokio::test]
    async fn an_oversize_frame_is_skipped_and_the_next_one_read() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (read, _write) = ours.into_split();
        let mut frames = FrameReader::new(read);
        let writer = tokio::spawn(async move {
            theirs.write_all(&vec![b'x'; MAX_FRAME + 10]).await.unwrap();
            theirs.write_all(b"\nok\n").await.unwrap();
            theirs
        });
        assert!(matches!(frames.next().await, Err(ReadError::TooLong)));
        assert!(matches!(frames.next().await, Ok(true)));
        assert_eq!(frames.line, b"ok");
        drop(writer.await.unwrap());
    }
}
