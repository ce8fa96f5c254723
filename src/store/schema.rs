//! The database file: opening it (WAL, `synchronous=NORMAL`, a busy timeout), its schema
//! and the migrations that bring an older file up to date, and reading it back at start-up.
//!
//! The schema version is `PRAGMA user_version`. Migration `i` takes a file from version
//! `i` to `i + 1`; all that are due run in one `BEGIN IMMEDIATE` transaction, so a crash
//! halfway leaves the old version. A file of a version newer than this binary knows was
//! written by a newer corral: it is refused and never written to — even the probe that
//! finds its version opens it read-only.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::records::{Desired, DesiredRecord, JobRecord, JobState, Loaded, RunRecord};

/// Migrations in order; the schema version is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: desired state, job history, run records.
    "CREATE TABLE desired (
         service  TEXT PRIMARY KEY,
         state    TEXT NOT NULL CHECK (state IN ('started', 'stopped')),
         since_us INTEGER NOT NULL,
         by       TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE jobs (
         id          INTEGER PRIMARY KEY,
         service     TEXT NOT NULL,
         recipe      TEXT NOT NULL,
         state       TEXT NOT NULL
                     CHECK (state IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
         queued_us   INTEGER NOT NULL,
         finished_us INTEGER NOT NULL DEFAULT 0,
         exit_status INTEGER NOT NULL DEFAULT -1,
         error       TEXT NOT NULL DEFAULT ''
     );
     CREATE INDEX jobs_by_service ON jobs (service, id);
     CREATE TABLE runs (
         service    TEXT PRIMARY KEY,
         main_pid   INTEGER NOT NULL,
         start_time INTEGER NOT NULL,
         pgid       INTEGER NOT NULL,
         cgroup     TEXT NOT NULL,
         run_id     INTEGER NOT NULL,
         n_restarts INTEGER NOT NULL,
         extra      TEXT NOT NULL
     ) WITHOUT ROWID;
     -- max_job_id: the highest job id ever used, kept apart from the jobs table so that
     -- pruning the history never lowers it.
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;",
];

/// The schema version this binary writes.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for a lock another connection holds (`sqlite3` run by an
/// admin, say) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the file could not be opened for writing.
#[derive(Debug)]
pub(super) enum OpenFailure {
    /// Not a database, or a damaged one: to be moved aside.
    Corrupt(String),
    /// Written by a newer corral: to be left alone.
    NewerSchema(i64),
    /// Anything else (read-only, full, unreadable, a directory in its place…): retried.
    Other(String),
}

impl OpenFailure {
    fn from_sqlite(path: &Path, err: &rusqlite::Error) -> OpenFailure {
        if is_corruption(err) {
            OpenFailure::Corrupt(err.to_string())
        } else {
            OpenFailure::Other(describe(path, err))
        }
    }
}

/// Whether an error means the file's contents are damaged (not that the disk refuses).
pub(super) fn is_corruption(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// An error as the admin should read it: the file, SQLite's words, and what usually helps.
pub(super) fn describe(path: &Path, err: &rusqlite::Error) -> String {
    let hint = match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => " (the file system is full: free some space)",
        // A full disk often shows as an I/O error on the WAL or its index.
        _ if no_space_left(path) => " (the file system is full: free some space)",
        Some(ErrorCode::ReadOnly) => " (the state directory is read-only)",
        Some(ErrorCode::CannotOpen) if path.is_dir() => " (a directory is in its place)",
        Some(ErrorCode::CannotOpen) => " (check that the state directory exists and is writable)",
        Some(ErrorCode::PermissionDenied) => " (permission denied)",
        _ => "",
    };
    format!("{}: {err}{hint}", path.display())
}

fn no_space_left(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(Path::new("/"));
    nix::sys::statvfs::statvfs(dir).is_ok_and(|fs| fs.blocks_free() == 0)
}

/// Opens `path` for writing, creating it if missing, and brings its schema up to date. With
/// `check`, an existing file is checked first (`PRAGMA quick_check`, which reads every page:
/// done once per start, not on every reconnect of a retry).
pub(super) fn connect(path: &Path, check: bool) -> Result<Connection, OpenFailure> {
    if path.exists() || path.is_symlink() {
        if !path.is_file() {
            return Err(OpenFailure::Other(format!(
                "{}: not a regular file (remove whatever is in its place)",
                path.display()
            )));
        }
        // Read-only, so that neither a newer corral's file nor a damaged one is written to.
        let fail = |err: rusqlite::Error| OpenFailure::from_sqlite(path, &err);
        let probe = read_only(path).map_err(fail)?;
        let version: i64 = probe
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(OpenFailure::NewerSchema(version));
        }
        if check {
            let result: String = probe
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(fail)?;
            if result != "ok" {
                return Err(OpenFailure::Corrupt(result));
            }
        }
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let fail = |err: rusqlite::Error| OpenFailure::from_sqlite(path, &err);
    let mut conn = Connection::open_with_flags(path, flags).map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)? {
        // SQLite falls back to read-only when the file cannot be opened for writing.
        return Err(OpenFailure::Other(format!(
            "{}: can only be opened read-only (is the state directory read-only?)",
            path.display()
        )));
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("{}: journal mode is {mode}, not WAL", path.display());
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    migrate(&mut conn).map_err(|err| match err {
        MigrateError::Sqlite(err) => fail(err),
        MigrateError::Newer(version) => OpenFailure::NewerSchema(version),
    })?;
    Ok(conn)
}

/// A read-only connection; for a file on a read-only file system that SQLite cannot open
/// even read-only (WAL needs its `-shm` file), an `immutable` one.
pub(super) fn read_only(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    match conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)) {
        Ok(_) => Ok(conn),
        Err(err) if err.sqlite_error_code() == Some(ErrorCode::CannotOpen) => {
            Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
        }
        Err(err) => Err(err),
    }
}

fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            b'%' | b'?' | b'#' => uri.push_str(&format!("%{byte:02X}")),
            _ => uri.push(*byte as char),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

enum MigrateError {
    Sqlite(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(err: rusqlite::Error) -> Self {
        MigrateError::Sqlite(err)
    }
}

/// Runs the migrations that are due. The version is read again inside the write
/// transaction, so the decision and the change cannot be split by another writer.
fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(MigrateError::Newer(version));
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        tracing::info!(
            "state store: schema migrated from version {from} to {}",
            from + 1
        );
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Reads what corrald needs at start-up. Rows that do not parse (edited by hand) are
/// skipped with a warning rather than failing the whole load.
pub(super) fn load(conn: &Connection) -> rusqlite::Result<Loaded> {
    let mut loaded = Loaded::default();
    let mut stmt = conn.prepare("SELECT service, state, since_us, by FROM desired")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let service: String = row.get(0)?;
        let state: String = row.get(1)?;
        let Some(state) = Desired::parse(&state) else {
            tracing::warn!("state store: desired state of {service} is {state:?}; ignored");
            continue;
        };
        let record = DesiredRecord {
            state,
            since_us: row.get::<_, i64>(2)? as u64,
            by: row.get(3)?,
        };
        loaded.desired.insert(service, record);
    }
    let mut stmt = conn.prepare(
        "SELECT service, main_pid, start_time, pgid, cgroup, run_id, n_restarts, extra FROM runs",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let service: String = row.get(0)?;
        let extra: String = row.get(7)?;
        let extra = serde_json::from_str(&extra).unwrap_or_else(|err| {
            tracing::warn!("state store: run record of {service}: extra is not JSON ({err})");
            serde_json::Value::Null
        });
        let record = RunRecord {
            main_pid: row.get(1)?,
            start_time: row.get::<_, i64>(2)? as u64,
            pgid: row.get(3)?,
            cgroup: row.get(4)?,
            run_id: row.get::<_, i64>(5)? as u64,
            n_restarts: row.get(6)?,
            extra,
        };
        loaded.runs.insert(service, record);
    }
    loaded.unfinished_jobs =
        query_jobs(conn, "WHERE state IN ('queued', 'running') ORDER BY id", [])?;
    let from_meta: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'max_job_id'", [], |r| {
            r.get(0)
        })
        .or_else(|err| match err {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            err => Err(err),
        })?;
    let from_jobs: Option<i64> = conn.query_row("SELECT max(id) FROM jobs", [], |r| r.get(0))?;
    loaded.max_job_id = from_meta.unwrap_or(0).max(from_jobs.unwrap_or(0)) as u64;
    Ok(loaded)
}

/// Job rows matching `filter` (an SQL tail: `WHERE … ORDER BY …`).
pub(super) fn query_jobs<P: rusqlite::Params>(
    conn: &Connection,
    filter: &str,
    params: P,
) -> rusqlite::Result<Vec<JobRecord>> {
    let sql = format!(
        "SELECT id, service, recipe, state, queued_us, finished_us, exit_status, error
         FROM jobs {filter}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params)?;
    let mut jobs = Vec::new();
    while let Some(row) = rows.next()? {
        let state: String = row.get(3)?;
        let Some(state) = JobState::parse(&state) else {
            continue;
        };
        jobs.push(JobRecord {
            id: row.get::<_, i64>(0)? as u64,
            service: row.get(1)?,
            recipe: row.get(2)?,
            state,
            queued_us: row.get::<_, i64>(4)? as u64,
            finished_us: row.get::<_, i64>(5)? as u64,
            exit_status: row.get(6)?,
            error: row.get(7)?,
        });
    }
    Ok(jobs)
}
