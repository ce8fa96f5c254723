//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the checks the fuzz
//! targets run (`fuzz/checks/`, the same files), as an ordinary test on stable: what the
//! fuzzers found interesting keeps being checked by every `cargo test`, without nightly.
//! A crash reproducer kept under `fuzz/artifacts/<target>/` is replayed as well.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../fuzz/checks/mod.rs"]
mod checks;

/// Fewer files than this in a target's corpus means the corpus was not found (moved,
/// emptied), not that there is nothing to check: the test fails rather than pass on nothing.
const MIN_CORPUS_FILES: usize = 10;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file, and returns the files it failed on, with why.
fn failures(check: fn(&[u8]), files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter_map(|file| {
            let data = fs::read(file).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .err()
                .map(|panic| {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("{}: {why}", file.display())
                })
        })
        .collect()
}

#[test]
fn every_corpus_file_of_every_target_passes_its_check() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failed = Vec::new();
    for (target, check) in checks::TARGETS {
        let corpus = files_in(&fuzz.join("corpus").join(target));
        assert!(
            corpus.len() >= MIN_CORPUS_FILES,
            "fuzz/corpus/{target} has {} files, expected at least {MIN_CORPUS_FILES}",
            corpus.len()
        );
        let artifacts = files_in(&fuzz.join("artifacts").join(target));
        failed.extend(failures(check, &corpus));
        failed.extend(failures(check, &artifacts));
    }
    assert!(failed.is_empty(), "checks failed:\n{}", failed.join("\n"));
}

#[test]
fn a_failing_check_is_reported() {
    // The replay must be able to fail: a check that panics on one file is reported by name.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    fs::write(&good, b"ok").unwrap();
    fs::write(&bad, b"boom").unwrap();
    let check: fn(&[u8]) = |data| assert_ne!(data, b"boom", "exploded");
    let failed = failures(check, &[good, bad.clone()]);
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].starts_with(&bad.display().to_string()),
        "{failed:?}"
    );
    assert!(failed[0].contains("exploded"), "{failed:?}");
}
