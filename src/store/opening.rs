//! Opening the store: the directory lock, the file (created, migrated, or found corrupt and
//! moved aside), and what corrald gets back at start-up. Every problem but a lock held by
//! another corrald leaves a working [`Writer`] whose health says what is wrong.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use super::lock::{LockError, lock_dir};
use super::pending::Pending;
use super::records::{Loaded, StoreError, StoreHealth, now_us};
use super::schema::{self, OpenFailure, SCHEMA_VERSION};
use super::writer::Writer;
use super::{DB_FILE, StoreSettings, aside};

impl Writer {
    /// Locks the directory and reads the database. Only a lock held by someone else is an
    /// error; every other problem leaves an empty [`Loaded`] and a `Degraded` health.
    pub(super) fn open(
        dir: &Path,
        settings: StoreSettings,
        health: watch::Sender<StoreHealth>,
        commits: Arc<AtomicU64>,
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
            commits,
            checked: !settings.check_file,
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
    pub(super) fn reconnect(&mut self) -> Result<Connection, OpenFailure> {
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

    pub(super) fn explain(&self, failure: OpenFailure) -> String {
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
    pub(super) fn move_aside(&mut self, detail: &str) -> Result<(), String> {
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
}
