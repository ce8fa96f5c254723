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

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use super::lock::{DirLock, LockError, lock_dir};
use super::pending::{Pending, Write};
use super::records::{JobRecord, Loaded, StoreError, StoreHealth, now_us};
use super::schema::{self, OpenFailure, SCHEMA_VERSION};
use super::{DB_FILE, StoreSettings, aside};

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
    dir: PathBuf,
    path: PathBuf,
    settings: StoreSettings,
    lock: Option<DirLock>,
    conn: Option<Connection>,
    pending: Pending,
    /// Why writes do not reach the disk right now.
    failure: Option<String>,
    /// State lost during this run (a corrupt file moved aside). It stays in the health until
    /// corrald restarts: the admin must see it even after writes work again.
    lost: Option<String>,
    health: watch::Sender<StoreHealth>,
    /// Whether the file passed `PRAGMA quick_check` (or is one this writer created).
    checked: bool,
    backoff: Duration,
    /// When to try again while `failure` is set.
    retry_at: Option<Instant>,
}

impl Writer {
    /// Locks the directory and reads the database. Only a lock held by someone else is an
    /// error; every other problem leaves an empty [`Loaded`] and a `Degraded` health.
    pub(super) fn open(
        dir: &Path,
        settings: StoreSettings,
        health: watch::Sender<StoreHealth>,
    ) -> Result<(Writer, Loaded), StoreError> {
        let mut writer = Writer {
            dir: dir.to_owned(),
            path: dir.join(DB_FILE),
            settings,
            lock: None,
            conn: None,
            pending: Pending::default(),
            failure: None,
            lost: None,
            health,
            checked: false,
            backoff: Duration::ZERO,
            retry_at: None,
        };
        let loaded = match lock_dir(dir) {
            Ok(lock) => {
                writer.lock = Some(lock);
                writer.open_and_load()
            }
            Err(LockError::Held) => {
                return Err(StoreError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(LockError::Io(reason)) => {
                writer.failed(reason);
                None
            }
        };
        let known = loaded.is_some();
        let loaded = loaded.unwrap_or_else(|| Loaded {
            max_job_id: now_us(),
            ..Loaded::default()
        });
        writer.pending = Pending::from_loaded(&loaded);
        if !known {
            // Whatever happens next, the clock-based job id floor must reach the disk, or
            // the next start would count from 1 again.
            writer.pending.mark_all_dirty();
            if writer.conn.is_some() {
                writer.commit();
            }
        }
        writer.publish_health();
        tracing::info!(
            "state store {}: {} desired states, {} run records, {} unfinished jobs, highest job id {}",
            writer.path.display(),
            loaded.desired.len(),
            loaded.runs.len(),
            loaded.unfinished_jobs.len(),
            loaded.max_job_id
        );
        Ok((writer, loaded))
    }

    /// `None` when the state on disk is unknown (then job ids must start from the clock).
    fn open_and_load(&mut self) -> Option<Loaded> {
        for _ in 0..2 {
            let conn = match self.reconnect() {
                Ok(conn) => conn,
                Err(failure) => {
                    let newer = matches!(failure, OpenFailure::NewerSchema(_));
                    self.failed(self.explain(failure));
                    // A read-only or full file system still lets corrald learn its state.
                    return (!newer && self.path.is_file())
                        .then(|| schema::read_only(&self.path).and_then(|c| schema::load(&c)))
                        .and_then(Result::ok);
                }
            };
            if self.lost.is_some() {
                self.conn = Some(conn);
                return None;
            }
            match schema::load(&conn) {
                Ok(loaded) => {
                    self.conn = Some(conn);
                    return Some(loaded);
                }
                Err(err) if schema::is_corruption(&err) => {
                    drop(conn);
                    if let Err(reason) = self.move_aside(&err.to_string()) {
                        self.failed(reason);
                        return None;
                    }
                }
                Err(err) => {
                    self.failed(schema::describe(&self.path, &err));
                    return None;
                }
            }
        }
        None
    }

    /// Opens the file for writing; a corrupt one is moved aside and a fresh one created.
    fn reconnect(&mut self) -> Result<Connection, OpenFailure> {
        let result = schema::connect(&self.path, !self.checked);
        if result.is_ok() {
            self.checked = true;
        }
        match result {
            Err(OpenFailure::Corrupt(detail)) => {
                self.move_aside(&detail).map_err(OpenFailure::Other)?;
                self.checked = true;
                schema::connect(&self.path, false).map_err(|failure| match failure {
                    OpenFailure::Corrupt(d) => OpenFailure::Other(format!(
                        "{}: a freshly created database is corrupt too ({d}): is the disk failing?",
                        self.path.display()
                    )),
                    failure => failure,
                })
            }
            other => other,
        }
    }

    fn explain(&self, failure: OpenFailure) -> String {
        match failure {
            OpenFailure::NewerSchema(version) => format!(
                "{} has schema version {version}, newer than the {SCHEMA_VERSION} this corrald \
                 knows: a newer corral wrote it. It is left untouched and nothing is saved \
                 until it can be used: upgrade corral again, or move the file aside to start \
                 afresh",
                self.path.display()
            ),
            OpenFailure::Corrupt(detail) | OpenFailure::Other(detail) => detail,
        }
    }

    /// Renames the damaged file (and its WAL) to `state.db.corrupt-<UTC time>` for the
    /// admin, so that a fresh one can be created in its place.
    fn move_aside(&mut self, detail: &str) -> Result<(), String> {
        let target = aside::free_name(&self.path);
        std::fs::rename(&self.path, &target).map_err(|err| {
            format!(
                "{} is corrupt ({detail}) and cannot be moved aside to {}: {err}",
                self.path.display(),
                target.display()
            )
        })?;
        aside::move_companions(&self.path, &target);
        let reason = format!(
            "{} was corrupt ({detail}); it was moved to {} and a fresh database started. What \
             it held is lost, except what this corrald still had in memory (this run's desired \
             states and run records, unwritten jobs), which was written again. Restart corrald \
             to clear this message",
            self.path.display(),
            target.display()
        );
        tracing::error!("state store: {reason}");
        self.lost = Some(reason);
        self.pending.mark_all_dirty();
        Ok(())
    }

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

    fn commit(&mut self) {
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

    fn failed(&mut self, reason: String) {
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
    fn publish_health(&self) {
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
