//! The state store when its file or file system is broken, with real files and real
//! mounts: garbage or a truncated file, a read-only state directory, a full disk, an ext4
//! that the kernel turned read-only, a directory in the file's place, a newer schema.
//! In each, the store does not fail its caller, says why in its health, keeps what it could
//! not write, and — where the admin can fix things — writes it once they are fixed.

mod store_support;

use corral::store::{DB_FILE, Desired, JobState, Store, StoreHealth, now_us};
use store_support::*;

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: this test mounts file systems and must run as root");
            return;
        }
    };
}

/// The corrupt copies in `dir` (`state.db.corrupt-…`, without their `-wal` companions).
fn corrupt_copies(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.db.corrupt-")
                && !p.to_string_lossy().ends_with("-wal")
        })
        .collect();
    found.sort();
    found
}

/// A store that held `web` started and a few jobs, closed.
async fn populated(dir: &std::path::Path) {
    let (store, _) = Store::open_with(dir, settings()).await.unwrap();
    store.set_desired("web", Desired::Started, "uid 0");
    for id in 1..=300 {
        let mut j = job(id, "web", JobState::Finished);
        j.error = "x".repeat(200);
        store.record_job(j);
    }
    store.flush().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn garbage_in_the_file_is_moved_aside_and_a_fresh_database_started() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"this is not a database, it is a shopping list\n".repeat(100);
    std::fs::write(dir.path().join(DB_FILE), &garbage).unwrap();
    let before = now_us();
    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert!(loaded.desired.is_empty());
    assert!(
        loaded.max_job_id >= before,
        "with the history lost, job ids continue from the clock: {}",
        loaded.max_job_id
    );
    let copies = corrupt_copies(dir.path());
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        std::fs::read(&copies[0]).unwrap(),
        garbage,
        "kept as it was"
    );
    let health = store.health().borrow().clone();
    let reason = degraded_reason(&health);
    assert!(reason.contains("corrupt"), "{reason}");
    assert!(reason.contains(copies[0].to_str().unwrap()), "{reason}");
    // The fresh database works, and the loss stays visible until corrald restarts.
    store.set_desired("web", Desired::Stopped, "uid 0");
    store.record_job(job(loaded.max_job_id + 1, "web", JobState::Finished));
    store.flush().await.unwrap();
    assert!(!store.health().borrow().is_ok());
    store.close().await;
    let (store, again) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert_eq!(*store.health().borrow(), StoreHealth::Ok);
    assert_eq!(again.desired["web"].state, Desired::Stopped);
    assert_eq!(again.max_job_id, loaded.max_job_id + 1);
    assert_eq!(corrupt_copies(dir.path()).len(), 1);
    store.close().await;
}

#[tokio::test]
async fn the_job_id_floor_after_a_lost_history_is_saved_before_any_job() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), b"garbage".repeat(1000)).unwrap();
    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert!(loaded.max_job_id >= now_us() - 60_000_000);
    // On disk before any job: a corrald killed now must not count from 1 at its next start.
    let on_disk: i64 = rusqlite::Connection::open(dir.path().join(DB_FILE))
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'max_job_id'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(on_disk as u64, loaded.max_job_id);
    store.close().await;
    let (store, reopened) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert_eq!(reopened.max_job_id, loaded.max_job_id);
    store.close().await;
}

#[tokio::test]
async fn a_truncated_file_is_moved_aside_and_a_fresh_database_started() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let db = dir.path().join(DB_FILE);
    let len = std::fs::metadata(&db).unwrap().len();
    assert!(len > 16 * 4096, "big enough to cut: {len}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let truncated = std::fs::read(&db).unwrap();
    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert!(loaded.desired.is_empty());
    let copies = corrupt_copies(dir.path());
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        std::fs::read(&copies[0]).unwrap(),
        truncated,
        "kept untouched"
    );
    let health = store.health().borrow().clone();
    assert!(degraded_reason(&health).contains("corrupt"), "{health:?}");
    store.set_desired("db", Desired::Started, "uid 0");
    store.flush().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn a_directory_in_the_files_place_degrades_until_it_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DB_FILE);
    std::fs::create_dir(&db).unwrap();
    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert!(loaded.desired.is_empty());
    let mut health = store.health();
    let reason = degraded_reason(&health.borrow()).to_owned();
    assert!(reason.contains("not a regular file"), "{reason}");
    assert!(reason.contains(db.to_str().unwrap()), "{reason}");
    store.set_desired("web", Desired::Started, "uid 0");
    let err = store.flush().await.unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(
        corrupt_copies(dir.path()).is_empty(),
        "not corrupt: left alone"
    );
    std::fs::remove_dir(&db).unwrap();
    wait_health(&mut health, "ok", StoreHealth::is_ok).await;
    store.close().await;
    let (store, again) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert_eq!(again.desired["web"].state, Desired::Started);
    assert_eq!(
        again.max_job_id, loaded.max_job_id,
        "the clock floor was saved"
    );
    store.close().await;
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_byte_for_byte_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DB_FILE);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE desired (service TEXT PRIMARY KEY, state TEXT, colour TEXT);
             INSERT INTO desired VALUES ('web', 'started', 'blue');
             PRAGMA user_version = 99;",
        )
        .unwrap();
    }
    let bytes = std::fs::read(&db).unwrap();
    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert!(loaded.desired.is_empty(), "a newer schema is not read");
    assert!(loaded.max_job_id >= now_us() - 60_000_000);
    let reason = degraded_reason(&store.health().borrow()).to_owned();
    assert!(reason.contains("schema version 99"), "{reason}");
    assert!(reason.contains("newer"), "{reason}");
    store.set_desired("web", Desired::Stopped, "uid 0");
    assert!(store.flush().await.is_err());
    // Retries (50 ms apart here) come and go without touching it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    store.close().await;
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "the file is unchanged");
    assert!(corrupt_copies(dir.path()).is_empty());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let colour: String = conn
        .query_row("SELECT colour FROM desired", [], |r| r.get(0))
        .unwrap();
    assert_eq!(colour, "blue");
}

#[tokio::test]
async fn a_read_only_state_directory_loads_keeps_writes_and_saves_them_once_writable() {
    require_root!();
    let mount = Mount::tmpfs("8m");
    populated(&mount.path).await;
    mount.remount("ro");
    let (store, loaded) = Store::open_with(&mount.path, settings()).await.unwrap();
    assert_eq!(
        loaded.desired["web"].state,
        Desired::Started,
        "read read-only"
    );
    assert_eq!(loaded.max_job_id, 300);
    let mut health = store.health();
    let reason = degraded_reason(&health.borrow()).to_owned();
    assert!(reason.contains("read-only"), "{reason}");
    // Coalesced: the latest desired state wins; jobs are kept in memory and listed.
    store.set_desired("web", Desired::Stopped, "uid 0");
    store.set_desired("web", Desired::Started, "uid 0");
    store.set_desired("web", Desired::Stopped, "uid 1000");
    store.record_job(job(301, "web", JobState::Finished));
    assert!(store.flush().await.is_err());
    let jobs = store.list_jobs(Some("web")).await;
    assert_eq!(jobs.len(), 301, "the old history and the unwritten job");
    assert_eq!(jobs.last().unwrap().id, 301);
    mount.remount("rw");
    wait_health(&mut health, "ok", StoreHealth::is_ok).await;
    store.flush().await.unwrap();
    store.close().await;
    let (store, again) = Store::open_with(&mount.path, settings()).await.unwrap();
    assert_eq!(again.desired["web"].state, Desired::Stopped);
    assert_eq!(again.desired["web"].by, "uid 1000");
    assert_eq!(again.max_job_id, 301);
    store.close().await;
}

#[tokio::test]
async fn a_full_disk_degrades_and_everything_is_saved_once_space_is_freed() {
    require_root!();
    let mount = Mount::tmpfs("2m");
    let (store, _) = Store::open_with(&mount.path, settings()).await.unwrap();
    store.set_desired("web", Desired::Started, "uid 0");
    store.flush().await.unwrap();
    let filler = mount.fill();
    let mut health = store.health();
    for id in 1..=200 {
        let mut j = job(id, "web", JobState::Finished);
        j.error = "e".repeat(1000);
        store.record_job(j);
    }
    store.set_desired("db", Desired::Started, "uid 0");
    let err = store.flush().await.unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    let reason = degraded_reason(&health.borrow()).to_owned();
    assert!(reason.contains("full"), "{reason}");
    assert_eq!(
        store.list_jobs(Some("web")).await.len(),
        200,
        "kept in memory"
    );
    std::fs::remove_file(&filler).unwrap();
    wait_health(&mut health, "ok", StoreHealth::is_ok).await;
    store.close().await;
    let (store, again) = Store::open_with(&mount.path, settings()).await.unwrap();
    assert_eq!(again.desired.len(), 2);
    assert_eq!(again.max_job_id, 200);
    assert_eq!(store.list_jobs(Some("web")).await.len(), 200);
    store.close().await;
}

#[tokio::test]
async fn a_file_corrupted_while_running_is_replaced_and_the_desired_states_rewritten() {
    require_root!();
    let mount = Mount::tmpfs("2m");
    let (store, _) = Store::open_with(&mount.path, settings()).await.unwrap();
    store.set_desired("web", Desired::Started, "uid 0");
    store.set_desired("db", Desired::Stopped, "uid 0");
    store.flush().await.unwrap();
    // Everything into the file itself, so that damage to it cannot hide behind the WAL.
    rusqlite::Connection::open(mount.path.join(DB_FILE))
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    // A full disk makes the writer let go of the file; meanwhile it is overwritten.
    let filler = mount.fill();
    let mut health = store.health();
    for id in 1..=200 {
        let mut j = job(id, "web", JobState::Finished);
        j.error = "e".repeat(1000);
        store.record_job(j);
    }
    assert!(store.flush().await.is_err());
    let db = mount.path.join(DB_FILE);
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    std::fs::write(&db, vec![0x5au8; len]).unwrap();
    std::fs::remove_file(&filler).unwrap();
    let health = wait_health(&mut health, "degraded by corruption", |h| {
        degraded_reason(h).contains("corrupt")
    })
    .await;
    assert!(degraded_reason(&health).contains("written again"));
    store.flush().await.unwrap();
    assert_eq!(corrupt_copies(&mount.path).len(), 1);
    store.close().await;
    let (store, again) = Store::open_with(&mount.path, settings()).await.unwrap();
    assert_eq!(again.desired["web"].state, Desired::Started);
    assert_eq!(again.desired["db"].state, Desired::Stopped);
    assert_eq!(store.list_jobs(Some("web")).await.len(), 200);
    store.close().await;
}

#[tokio::test]
async fn an_ext4_that_the_kernel_turns_read_only_degrades_without_losing_a_write() {
    require_root!();
    let mount = match Mount::ext4_remount_ro_on_error() {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("SKIPPED: no ext4 on a loop device here: {why}");
            return;
        }
    };
    let (store, _) = Store::open_with(&mount.path, settings()).await.unwrap();
    store.set_desired("web", Desired::Started, "uid 0");
    store.flush().await.unwrap();
    if let Err(why) = mount.trigger_ext4_error() {
        eprintln!("SKIPPED: cannot make the kernel see an ext4 error: {why}");
        store.close().await;
        return;
    }
    let mut health = store.health();
    store.set_desired("web", Desired::Stopped, "uid 0");
    store.record_job(job(1, "web", JobState::Finished));
    assert!(store.flush().await.is_err());
    let health = wait_health(&mut health, "degraded", |h| !h.is_ok()).await;
    assert!(degraded_reason(&health).contains("state.db"), "{health:?}");
    assert_eq!(
        store.list_jobs(Some("web")).await.len(),
        1,
        "kept in memory"
    );
    // The kernel keeps such a file system read-only until it is checked and mounted again:
    // the store goes on retrying and never fails its callers.
    store.set_desired("web", Desired::Started, "uid 0");
    assert!(store.flush().await.is_err());
    store.close().await;
}
