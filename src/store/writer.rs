//! The writer thread: the one owner of the SQLite connection (rusqlite blocks, so a std
//! thread, never a tokio worker). It takes requests off a channel; every request already
//! queued joins the batch, and a batch is one transaction, so a burst of a thousand writes
//! costs a handful of commits. Callers never wait for it, except through `flush`.
//!
//! When a commit fails (read-only or full file system, a directory where the file should
//! be, a newer schema…) the connection is dropped, what was pending stays in memory
//! ([`Pending`] coalesces it), the health turns `Degraded` with the reason, and the writer
//! tries again on a timer with back-off — opening the file anew each time, so it notices
//! when the admin fixed things. A corrupt file is moved aside and replaced by a fresh one.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use super::StoreSettings;
use super::lock::{DirLock, LockError, lock_dir};
use super::pending::{Pending, Write};
use super::records::{JobRecord, StoreError, StoreHealth};
use super::schema;

/// What a [`super::Store`] handle asks of the writer.
pub(super) enum Request {
    Write(Write),
    /// Answered once everything sent before is committed, or known not to be.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    ListJobs {
        service: Option<String>,
        reply: oneshot::Sender<Vec<JobRecord>>,
    },
    /// A last attempt to write, then the thread ends; answered after the lock is released.
    Close(oneshot::Sender<()>),
}

/// Requests taken into one batch at most, so a steady stream of writes still commits.
const MAX_BATCH: usize = 10_000;

pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) settings: StoreSettings,
    pub(super) lock: Option<DirLock>,
    pub(super) conn: Option<Connection>,
    pub(super) pending: Pending,
    /// Why writes do not reach the disk right now.
    pub(super) failure: Option<String>,
    /// State lost during this run (a corrupt file moved aside). It stays in the health until
    /// corrald restarts: the admin must see it even after writes work again.
    pub(super) lost: Option<String>,
    pub(super) health: watch::Sender<StoreHealth>,
    /// Transactions committed, for [`super::Store::transactions`].
    pub(super) commits: Arc<AtomicU64>,
    /// Whether the file passed `PRAGMA quick_check` (or is one this writer created).
    pub(super) checked: bool,
    pub(super) backoff: Duration,
    /// When to try again while `failure` is set.
    pub(super) retry_at: Option<Instant>,
}

impl Writer {
    pub(super) fn run(mut self, requests: Receiver<Request>) {
        let mut flushes = Vec::new();
        let mut queries = Vec::new();
        loop {
            let first = match self.retry_at {
                Some(at) => requests.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let (mut close, mut disconnected) = (None, false);
            let mut batch = vec![];
            match first {
                Ok(request) => batch.push(request),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
            while !disconnected && batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => disconnected = true,
                }
            }
            for request in batch {
                match request {
                    Request::Write(write) => self.pending.absorb(write),
                    Request::Flush(reply) => flushes.push(reply),
                    Request::ListJobs { service, reply } => queries.push((service, reply)),
                    // Whatever came after the close is not taken: the thread ends here.
                    Request::Close(reply) => {
                        close = Some(reply);
                        break;
                    }
                }
            }
            let ending = close.is_some() || disconnected;
            let due = self.retry_at.is_none_or(|at| Instant::now() >= at);
            if (due || ending || !flushes.is_empty())
                && (!self.pending.is_empty() || self.failure.is_some())
            {
                self.commit();
            }
            for reply in flushes.drain(..) {
                let _ = reply.send(self.flush_result());
            }
            for (service, reply) in queries.drain(..) {
                let _ = reply.send(self.list_jobs(service.as_deref()));
            }
            if ending {
                self.finish();
                if let Some(reply) = close {
                    let _ = reply.send(());
                }
                return;
            }
        }
    }

    pub(super) fn commit(&mut self) {
        match self.try_commit() {
            Ok(()) => self.succeeded(),
            Err(reason) => self.failed(reason),
        }
    }

    fn try_commit(&mut self) -> Result<(), String> {
        if self.lock.is_none() {
            self.lock = Some(lock_dir(&self.dir).map_err(|err| {
                match err {
                    LockError::Held => StoreError::Locked {
                        dir: self.dir.clone(),
                    }
                    .to_string(),
                    LockError::Io(reason) => reason,
                }
            })?);
        }
        // A second round only after a corrupt file was replaced by a fresh one.
        for _ in 0..2 {
            if self.conn.is_none() {
                let conn = self.reconnect().map_err(|f| self.explain(f))?;
                self.conn = Some(conn);
            }
            let conn = self.conn.as_mut().expect("connected just above");
            if self.pending.is_empty() {
                return Ok(());
            }
            let result = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .and_then(|tx| {
                    self.pending.write(&tx)?;
                    tx.commit()
                });
            match result {
                Ok(()) => {
                    self.pending.written();
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(err) => {
                    // Open anew next time: a connection that failed may be stuck in a state
                    // that a fixed file system would not clear.
                    self.conn = None;
                    if !schema::is_corruption(&err) {
                        return Err(schema::describe(&self.path, &err));
                    }
                    self.move_aside(&err.to_string())?;
                }
            }
        }
        Err(format!(
            "{}: corrupt again right after it was created: is the disk failing?",
            self.path.display()
        ))
    }

    pub(super) fn failed(&mut self, reason: String) {
        self.backoff = if self.failure.is_some() {
            (self.backoff * 2).min(self.settings.retry_max)
        } else {
            self.settings.retry_initial
        };
        self.failure = Some(reason);
        self.retry_at = Some(Instant::now() + self.backoff);
        self.publish_health();
    }

    fn succeeded(&mut self) {
        self.retry_at = None;
        if self.failure.take().is_some() {
            tracing::info!(
                "state store: writes reach {} again; everything kept in memory is saved",
                self.path.display()
            );
        }
        self.publish_health();
    }

    /// Sends the health to its watchers and logs it — only when it changed.
    pub(super) fn publish_health(&self) {
        let health = match self.failure.as_ref().or(self.lost.as_ref()) {
            Some(reason) => StoreHealth::Degraded {
                reason: reason.clone(),
            },
            None => StoreHealth::Ok,
        };
        let pending = self.pending.len();
        self.health.send_if_modified(|current| {
            if *current == health {
                return false;
            }
            match (&health, self.failure.is_some()) {
                (StoreHealth::Degraded { reason }, true) => tracing::error!(
                    "state store degraded: {reason}. corrald keeps supervising; {pending} \
                     unsaved changes are kept in memory and retried"
                ),
                (StoreHealth::Degraded { reason }, false) => {
                    tracing::warn!("state store: {reason}")
                }
                (StoreHealth::Ok, _) => tracing::info!("state store ok: {}", self.path.display()),
            }
            *current = health;
            true
        });
    }

    fn flush_result(&self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let reason = self
            .failure
            .clone()
            .unwrap_or_else(|| "not yet written".into());
        Err(StoreError::NotWritten { reason })
    }

    /// Every kept job of `service` (all services for `None`), oldest first: the database's
    /// rows with the unwritten ones laid over them.
    fn list_jobs(&self, service: Option<&str>) -> Vec<JobRecord> {
        let query = |conn: &Connection| match service {
            Some(s) => schema::query_jobs(conn, "WHERE service = ?1 ORDER BY id", [s]),
            None => schema::query_jobs(conn, "ORDER BY id", []),
        };
        let stored = match &self.conn {
            Some(conn) => query(conn),
            None if self.lock.is_some() && self.path.is_file() => {
                schema::read_only(&self.path).and_then(|conn| query(&conn))
            }
            None => Ok(Vec::new()),
        };
        let stored = stored.unwrap_or_else(|err| {
            tracing::warn!("state store: cannot read the job history: {err}");
            Vec::new()
        });
        let mut jobs: std::collections::BTreeMap<u64, JobRecord> =
            stored.into_iter().map(|j| (j.id, j)).collect();
        jobs.extend(
            self.pending
                .unwritten_jobs(service)
                .into_iter()
                .map(|j| (j.id, j)),
        );
        jobs.into_values().collect()
    }

    /// One last try, then say what could not be saved; the connection closes (checkpointing
    /// the WAL into the file) and the lock is released.
    fn finish(&mut self) {
        if !self.pending.is_empty() {
            self.commit();
        }
        if !self.pending.is_empty() {
            tracing::error!(
                "state store: {} changes could not be saved before the store closed: {}",
                self.pending.len(),
                self.failure.as_deref().unwrap_or("unknown reason")
            );
        }
        self.conn = None;
        self.lock = None;
    }
}
