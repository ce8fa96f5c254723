//! The state store on a real SQLite file, as corrald uses it: what is written comes back
//! after a restart (and after a kill -9), job ids never go back, the history is bounded,
//! bursts are written in full, and one state directory serves one corrald.

mod store_support;

use std::collections::HashMap;
use std::time::Duration;

use corral::store::{
    DB_FILE, Desired, JobState, KEEP_JOBS, Store, StoreError, StoreHealth, now_us,
};
use store_support::*;

#[tokio::test]
async fn what_was_written_is_loaded_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert_eq!(loaded.max_job_id, 0, "a new store has used no job id");
    assert!(loaded.desired.is_empty() && loaded.runs.is_empty());
    assert_eq!(*store.health().borrow(), StoreHealth::Ok);
    let before = now_us();
    store.set_desired("web", Desired::Started, "uid 0");
    store.set_desired("db", Desired::Started, "uid 0");
    store.set_desired("db", Desired::Stopped, ":1.42 (uid 1000, corralctl)");
    store.set_desired("gone", Desired::Started, "uid 0");
    store.clear_desired("gone");
    store.record_job(job(1, "web", JobState::Queued));
    store.record_job(job(2, "web", JobState::Finished));
    store.record_job(job(3, "db", JobState::Running));
    store.record_job(job(1, "web", JobState::Failed));
    store.save_run("web", run(4242));
    store.save_run("db", run(4343));
    store.clear_run("db");
    store.flush().await.unwrap();
    store.close().await;

    for round in 0..2 {
        let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
        assert_eq!(
            loaded.desired.len(),
            2,
            "round {round}: {:?}",
            loaded.desired
        );
        assert_eq!(loaded.desired["web"].state, Desired::Started);
        assert_eq!(loaded.desired["db"].state, Desired::Stopped);
        assert_eq!(loaded.desired["db"].by, ":1.42 (uid 1000, corralctl)");
        assert!(loaded.desired["db"].since_us >= before);
        assert_eq!(loaded.runs, HashMap::from([("web".to_owned(), run(4242))]));
        assert_eq!(
            loaded.unfinished_jobs,
            vec![job(3, "db", JobState::Running)]
        );
        assert_eq!(loaded.max_job_id, 3);
        let jobs = store.list_jobs(Some("web")).await;
        assert_eq!(
            jobs,
            vec![
                job(1, "web", JobState::Failed),
                job(2, "web", JobState::Finished)
            ]
        );
        assert_eq!(store.list_jobs(None).await.len(), 3);
        assert_eq!(*store.health().borrow(), StoreHealth::Ok);
        store.close().await;
    }
}

#[tokio::test]
async fn history_keeps_the_last_thousand_jobs_per_service_and_ids_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open_with(dir.path(), settings()).await.unwrap();
    let total = KEEP_JOBS as u64 + 150;
    for id in 1..=total {
        store.record_job(job(id, "web", JobState::Finished));
    }
    store.record_job(job(total + 1, "db", JobState::Finished));
    store.flush().await.unwrap();
    let web = store.list_jobs(Some("web")).await;
    assert_eq!(web.len(), KEEP_JOBS);
    assert_eq!(web.first().unwrap().id, total - KEEP_JOBS as u64 + 1);
    assert_eq!(web.last().unwrap().id, total);
    // Pruning in later batches too, one job at a time.
    for id in total + 2..total + 12 {
        store.record_job(job(id, "web", JobState::Finished));
        store.flush().await.unwrap();
    }
    assert_eq!(store.list_jobs(Some("web")).await.len(), KEEP_JOBS);
    assert_eq!(store.list_jobs(Some("db")).await.len(), 1);
    store.close().await;

    // Even when the newest jobs are gone from the table, the highest id is remembered.
    let db = dir.path().join(DB_FILE);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM jobs", []).unwrap();
    drop(conn);
    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert_eq!(loaded.max_job_id, total + 11);
    store.close().await;
}

#[tokio::test]
async fn a_burst_of_writes_is_all_there_after_one_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open_with(dir.path(), settings()).await.unwrap();
    let clones: Vec<Store> = (0..4).map(|_| store.clone()).collect();
    let mut tasks = Vec::new();
    for (n, s) in clones.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..1000u64 {
                let service = format!("svc{n}-{}", i % 50);
                let state = if i % 3 == 0 {
                    Desired::Stopped
                } else {
                    Desired::Started
                };
                s.set_desired(&service, state, "uid 0");
                s.record_job(job(n as u64 * 10_000 + i + 1, &service, JobState::Finished));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    store.flush().await.unwrap();
    assert_eq!(store.list_jobs(None).await.len(), 4000);
    store.close().await;
    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert_eq!(loaded.desired.len(), 200);
    // i % 50 == 49 last wrote i = 999: 999 % 3 == 0 → stopped.
    assert_eq!(loaded.desired["svc2-49"].state, Desired::Stopped);
    assert_eq!(loaded.desired["svc2-48"].state, Desired::Started);
    assert_eq!(loaded.max_job_id, 31_000);
    store.close().await;
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = Store::open_with(dir.path(), settings()).await.unwrap();
    let err = Store::open_with(dir.path(), settings()).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Locked {
            dir: dir.path().to_owned()
        }
    );
    let message = err.to_string();
    assert!(message.contains("another corrald") && message.contains("--state-dir"));
    first.set_desired("web", Desired::Started, "uid 0");
    first.close().await;
    let (second, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert_eq!(loaded.desired["web"].state, Desired::Started);
    second.close().await;
}

#[tokio::test]
async fn dropping_every_handle_still_saves_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open_with(dir.path(), settings()).await.unwrap();
    store.set_desired("web", Desired::Stopped, "uid 0");
    drop(store);
    // The thread writes, then releases the lock; opening waits for neither, so retry.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (store, loaded) = loop {
        match Store::open_with(dir.path(), settings()).await {
            Ok(opened) => break opened,
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(err) => panic!("{err}"),
        }
    };
    assert_eq!(loaded.desired["web"].state, Desired::Stopped);
    store.close().await;
}

/// The child half of `a_kill_9_keeps_every_flushed_write_and_frees_the_lock`: run by the
/// test binary itself, it writes, flushes, says so, and keeps writing until killed.
#[tokio::test]
#[ignore = "run by a_kill_9_keeps_every_flushed_write_and_frees_the_lock"]
async fn child_writes_until_killed() {
    let Ok(dir) = std::env::var("CORRAL_STORE_TEST_DIR") else {
        return;
    };
    let (store, _) = Store::open_with(dir.as_ref(), settings()).await.unwrap();
    for id in 1..=500 {
        store.record_job(job(id, "web", JobState::Finished));
    }
    store.set_desired("web", Desired::Started, "uid 0");
    store.flush().await.unwrap();
    println!("flushed");
    for id in 501.. {
        store.record_job(job(id, "web", JobState::Finished));
        if id % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test]
async fn a_kill_9_keeps_every_flushed_write_and_frees_the_lock() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writes_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("CORRAL_STORE_TEST_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    assert!(
        lines.any(|l| l.unwrap().contains("flushed")),
        "the child never flushed"
    );
    // Let it commit a few batches more, then kill it in the middle of whatever it does.
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let (store, loaded) = Store::open_with(dir.path(), settings()).await.unwrap();
    assert_eq!(*store.health().borrow(), StoreHealth::Ok, "no corruption");
    assert_eq!(loaded.desired["web"].state, Desired::Started);
    assert!(loaded.max_job_id >= 500, "{}", loaded.max_job_id);
    let jobs = store.list_jobs(Some("web")).await;
    assert_eq!(jobs.len(), KEEP_JOBS.min(loaded.max_job_id as usize));
    assert_eq!(jobs.last().unwrap().id, loaded.max_job_id);
    store.close().await;
}
