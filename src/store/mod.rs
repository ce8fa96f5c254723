//! The durable state store: what must outlive corrald — each service's desired state, the
//! job history, and the run records needed to re-adopt children after corrald was killed —
//! in SQLite at `<state dir>/state.db` (default `/var/lib/corral`, `--state-dir`).
//!
//! [`Store`] is a cheap `Clone` handle. Writes are fire-and-forget: they go over a channel
//! to one writer thread that owns the connection (`writer`), so a `Start` never waits on
//! the disk; [`Store::flush`] waits for everything sent before it. The thread groups what
//! is queued into one transaction (WAL, `synchronous=NORMAL`: a crash of corrald keeps
//! every committed batch; a power cut may lose the last ones).
//!
//! The store never stops corrald: a corrupt, unreadable, read-only or full store makes the
//! [`StoreHealth`] `Degraded` (watch it with [`Store::health`]; every change is logged
//! once), keeps unsaved changes in memory and retries. The one fatal case is another
//! corrald holding the state directory ([`StoreError::Locked`]).
//!
//! Layout: `records` the data, `schema` the file and its migrations, `pending` the
//! writer's memory, `writer` the thread, `opening` what it does at start-up, `lock`
//! the directory lock, `aside` where corrupt files go.

mod aside;
mod lock;
mod opening;
mod pending;
mod records;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

pub use records::{
    Desired, DesiredRecord, JobRecord, JobState, Loaded, RunRecord, StoreError, StoreHealth, now_us,
};

use pending::Write;
use writer::{Request, Writer};

/// Where corrald keeps its state unless `--state-dir` says otherwise (the unit's
/// `StateDirectory=corral`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corral";
/// The database's file name inside the state directory.
pub const DB_FILE: &str = "state.db";
/// Jobs kept per service; older ones are pruned in the transaction that adds newer ones.
pub const KEEP_JOBS: usize = 1000;

/// How the writer retries after a failed write.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// The first retry comes this long after a failure …
    pub retry_initial: Duration,
    /// … and each following one twice as long after the previous, up to this.
    pub retry_max: Duration,
    /// Check an existing file at start (`PRAGMA quick_check`, which reads every page).
    /// After a live re-exec it is skipped: the same process wrote and flushed the file a
    /// moment before.
    pub check_file: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            check_file: true,
        }
    }
}

/// A handle on the store; clone it freely.
#[derive(Debug, Clone)]
pub struct Store {
    requests: mpsc::Sender<Request>,
    health: watch::Receiver<StoreHealth>,
    path: Arc<PathBuf>,
    commits: Arc<AtomicU64>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with the default retry timings.
    pub async fn open(dir: &Path) -> Result<(Store, Loaded), StoreError> {
        Store::open_with(dir, StoreSettings::default()).await
    }

    /// Opens the store in `dir`: locks the directory, runs the migrations that are due, and
    /// returns what corrald needs at start-up. Fails only when another process holds the
    /// directory's lock; any other problem gives an empty [`Loaded`] (or what could be read)
    /// and a `Degraded` health that says why.
    pub async fn open_with(
        dir: &Path,
        settings: StoreSettings,
    ) -> Result<(Store, Loaded), StoreError> {
        let (health_tx, health) = watch::channel(StoreHealth::Ok);
        let (requests, incoming) = mpsc::channel();
        let (opened_tx, opened) = oneshot::channel();
        let dir = dir.to_owned();
        let path = Arc::new(dir.join(DB_FILE));
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name("corral-store".into())
            .spawn(move || {
                let (writer, loaded) =
                    match Writer::open(&dir, settings, health_tx.clone(), counter) {
                        Ok(opened) => opened,
                        Err(err) => {
                            let _ = opened_tx.send(Err(err));
                            return;
                        }
                    };
                let _ = opened_tx.send(Ok(loaded));
                let run = std::panic::AssertUnwindSafe(|| writer.run(incoming));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let reason = format!(
                        "the state store's writer failed ({what}); nothing more is saved until \
                         corrald restarts"
                    );
                    tracing::error!("{reason}");
                    health_tx.send_replace(StoreHealth::Degraded { reason });
                }
            })
            .expect("cannot start the state store's thread");
        let loaded = opened.await.map_err(|_| StoreError::Closed)??;
        Ok((
            Store {
                requests,
                health,
                path,
                commits,
            },
            loaded,
        ))
    }

    /// Records that `by` asked for `service` to be `state`, now.
    pub fn set_desired(&self, service: &str, state: Desired, by: &str) {
        let record = DesiredRecord {
            state,
            since_us: now_us(),
            by: by.to_owned(),
        };
        self.send(Request::Write(Write::Desired(
            service.to_owned(),
            Some(record),
        )));
    }

    /// Forgets `service`'s desired state (it was destroyed by a reload).
    pub fn clear_desired(&self, service: &str) {
        self.send(Request::Write(Write::Desired(service.to_owned(), None)));
    }

    /// Inserts or replaces the job with `job.id`.
    pub fn record_job(&self, job: JobRecord) {
        self.send(Request::Write(Write::Job(job)));
    }

    /// Records `service`'s current run, replacing the previous one.
    pub fn save_run(&self, service: &str, run: RunRecord) {
        self.send(Request::Write(Write::Run(service.to_owned(), Some(run))));
    }

    /// Forgets `service`'s run (it is over: nothing to re-adopt).
    pub fn clear_run(&self, service: &str) {
        self.send(Request::Write(Write::Run(service.to_owned(), None)));
    }

    /// Resolves once everything sent before it is committed, or with the reason it could not
    /// be (the writes stay queued and are retried).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Request::Flush(reply));
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// The kept jobs of `service` (of every service for `None`), oldest first, including
    /// those not written yet.
    pub async fn list_jobs(&self, service: Option<&str>) -> Vec<JobRecord> {
        let (reply, jobs) = oneshot::channel();
        self.send(Request::ListJobs {
            service: service.map(str::to_owned),
            reply,
        });
        jobs.await.unwrap_or_default()
    }

    /// The store's health, to publish on the bus; its changes are logged by the store.
    pub fn health(&self) -> watch::Receiver<StoreHealth> {
        self.health.clone()
    }

    /// How many transactions the writer has committed since the store was opened (each
    /// carries every write that was queued when it began).
    pub fn transactions(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what is pending (one last try), closes the database and releases the state
    /// directory's lock. Other handles' later writes are dropped.
    pub async fn close(self) {
        let (reply, done) = oneshot::channel();
        self.send(Request::Close(reply));
        let _ = done.await;
    }

    fn send(&self, request: Request) {
        // The writer is gone only after close or a panic; the health says so already.
        let _ = self.requests.send(request);
    }
}
