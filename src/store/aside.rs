//! Where a corrupt database goes: `state.db.corrupt-<UTC time>` beside it (`-2`, `-3`… if
//! that name is taken), with its `-wal` file renamed along, so that the admin can inspect
//! it (`sqlite3 state.db.corrupt-… .recover`) while corrald starts a fresh one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A name for the corrupt copy of `db` that nothing uses yet.
pub(super) fn free_name(db: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    free_name_at(db, secs)
}

fn free_name_at(db: &Path, secs: u64) -> PathBuf {
    let base = with_suffix(db, &format!(".corrupt-{}", utc_stamp(secs)));
    let mut candidate = base.clone();
    let mut n = 2;
    while candidate.exists() || candidate.is_symlink() {
        candidate = with_suffix(&base, &format!("-{n}"));
        n += 1;
    }
    candidate
}

/// Renames `db`'s write-ahead log along with it and removes its shared-memory index (which
/// SQLite rebuilds). A WAL left behind would be replayed into the fresh database.
pub(super) fn move_companions(db: &Path, aside: &Path) {
    let wal = with_suffix(db, "-wal");
    if wal.exists()
        && let Err(err) = std::fs::rename(&wal, with_suffix(aside, "-wal"))
    {
        tracing::warn!("cannot move {} aside: {err}; removing it", wal.display());
        let _ = std::fs::remove_file(&wal);
    }
    let _ = std::fs::remove_file(with_suffix(db, "-shm"));
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// `20260515T093000Z` for a time in seconds since the epoch (proleptic Gregorian, UTC).
fn utc_stamp(secs: u64) -> String {
    let t = crate::utc::Utc::from_epoch_secs(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_match_known_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_767_225_599), "20251231T235959Z");
    }

    #[test]
    fn a_taken_name_gets_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let first = free_name_at(&db, 0);
        assert_eq!(first, dir.path().join("state.db.corrupt-19700101T000000Z"));
        std::fs::write(&first, "x").unwrap();
        let second = free_name_at(&db, 0);
        assert_eq!(
            second,
            dir.path().join("state.db.corrupt-19700101T000000Z-2")
        );
    }
}
