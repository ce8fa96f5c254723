//! One service's control connection (glusterd's connection management): a task that
//! connects to the service's `control_socket` once its process runs, retries with back-off
//! until it is up, reconnects after the connection drops or the service restarts, and
//! keeps the service's `Online` property true while connected. The task is the one owner
//! of `Online`: it sets it, and it clears it when it is stopped ([`Stopper`]). Whoever
//! listens on the path is identified first ([`super::peer`]): a process that is not the
//! service gets no frame, and the task dials again later, as if nobody had answered.
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
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::frame::{self, FrameError, Incoming};
use super::peer::{self, Expected, Peer};
use super::reader::{FrameReader, ReadError};
use crate::events::{ActiveState, ServiceStatus};
use crate::supervisor::Handle;

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
        // The bound covers the queue too: a service that never reads holds the connection
        // task in a write, and the queue behind it fills up.
        let exchange = async {
            self.calls
                .send(call)
                .await
                .map_err(|_| CallError::NotConnected(self.service.clone()))?;
            answer
                .await
                .map_err(|_| CallError::Closed(self.service.clone()))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => Err(err),
            Err(_) => Err(CallError::Timeout {
                service: self.service.clone(),
                method: method.to_owned(),
                timeout,
            }),
        }
    }
}

/// Ends a connection task and waits until it has: its last act is to clear `Online`, so a
/// task started after [`Stopper::stop`] returns can never be overtaken by it.
pub struct Stopper {
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl Stopper {
    pub async fn stop(self) {
        self.token.cancel();
        let _ = self.task.await;
    }
}

/// Starts the connection task of `service`, which runs as `user` (root when `None`); it
/// runs until stopped.
pub fn spawn(
    service: String,
    socket: PathBuf,
    user: Option<String>,
    status: watch::Receiver<Arc<ServiceStatus>>,
    supervisor: Handle,
    notifications: mpsc::Sender<Notification>,
) -> (ControlHandle, Stopper) {
    let (calls, rx) = mpsc::channel(256);
    let handle = ControlHandle {
        service: service.clone(),
        calls,
    };
    let task = Connection {
        service,
        socket,
        user,
        refused: None,
        status,
        supervisor,
        notifications,
        calls: rx,
        online: false,
    };
    let token = CancellationToken::new();
    let task = tokio::spawn(task.main(token.clone()));
    (handle, Stopper { token, task })
}

struct Connection {
    service: String,
    socket: PathBuf,
    /// The service's `user`: the listener must run as it (as root when `None`).
    user: Option<String>,
    /// The last refused listener (main PID, listener's PID), so an impostor that stays is
    /// reported once per run of the service, not at every redial.
    refused: Option<(u32, Option<u32>)>,
    status: watch::Receiver<Arc<ServiceStatus>>,
    supervisor: Handle,
    notifications: mpsc::Sender<Notification>,
    calls: mpsc::Receiver<Call>,
    /// What this task last published as `Online`.
    online: bool,
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
    /// Serves until stopped (or the service is gone), then clears `Online`.
    async fn main(mut self, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.run() => {}
        }
        self.set_online(false).await;
    }

    async fn set_online(&mut self, online: bool) {
        if self.online != online {
            self.online = online;
            self.supervisor.set_online(&self.service, online).await;
        }
    }

    async fn run(&mut self) {
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
            self.refused = None;
            self.set_online(true).await;
            let why = self.serve(stream, pid).await;
            self.set_online(false).await;
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
                Ok(stream) => {
                    if self.verify(&stream, pid) {
                        return Some(stream);
                    }
                }
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

    /// Whether the process listening at the other end of `stream` is the service running
    /// `pid`; logs a refusal (once per listener and run) and an acceptance.
    fn verify(&mut self, stream: &UnixStream, pid: u32) -> bool {
        let peer = match Peer::of(stream) {
            Ok(peer) => peer,
            Err(err) => {
                tracing::warn!(
                    service = self.service,
                    "control socket {}: cannot tell who listens there ({err}); not using it",
                    self.socket.display()
                );
                return false;
            }
        };
        let (uid, user) = match peer::uid_of(self.user.as_deref()) {
            Ok(found) => found,
            Err(message) => {
                tracing::warn!(service = self.service, "control socket: {message}");
                return false;
            }
        };
        let spawned_group = self.status.borrow().spawned_group;
        let expected = Expected {
            uid,
            user,
            main_pid: pid,
            spawned_group: (spawned_group != 0).then_some(spawned_group),
        };
        match peer::verify(peer, &expected) {
            Ok(membership) => {
                tracing::info!(
                    service = self.service,
                    "control channel connected to {} (listener pid {}: {membership:?})",
                    self.socket.display(),
                    peer.pid.unwrap_or(0),
                );
                true
            }
            Err(refused) => {
                let key = Some((pid, peer.pid));
                let message = format!("control socket {}: {refused}", self.socket.display());
                if self.refused == key {
                    tracing::debug!(service = self.service, "{message}");
                } else {
                    tracing::warn!(service = self.service, "{message}");
                    self.refused = key;
                }
                false
            }
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
