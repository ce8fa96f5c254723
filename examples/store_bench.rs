//! The state store's figures (`bench/run --only store` runs it; or by hand:
//! `cargo run --release --example store_bench -- [DIR]`), printed as one JSON object:
//!
//! - `enqueue_p50_ns` / `enqueue_p99_ns`: what a caller (the supervisor on `Start`) pays to
//!   hand one write to the store — a channel send, never the disk;
//! - `writes_per_s`: sustained writes (jobs and desired states, alternating) from the first
//!   send until a `flush` says all are committed;
//! - `flush_1000_p50_ms` / `flush_1000_p99_ms`: 1000 writes sent, then `flush` timed until
//!   it resolves; `transactions_per_1000` how many commits those 1000 writes took (the
//!   writer takes all that is queued into one);
//! - `open_ms`: opening a store that holds `services` × 1000 jobs (the history bound), with
//!   its `PRAGMA quick_check` and the start-up load; `db_mb` its size.
//!
//! DIR (default: a fresh directory under /var/tmp) must be on the disk to measure: the
//! figures are about fsync-free WAL commits, so a tmpfs flatters them.

use std::path::PathBuf;
use std::time::Instant;

use corral::store::{Desired, JobRecord, JobState, Store, now_us};

const WRITES: u64 = 100_000;
const FLUSH_ROUNDS: usize = 30;
const HISTORY_SERVICES: u64 = 200;

fn job(id: u64, service: &str) -> JobRecord {
    JobRecord {
        id,
        service: service.to_owned(),
        recipe: "backup".into(),
        state: JobState::Finished,
        queued_us: now_us(),
        finished_us: now_us(),
        exit_status: 0,
        error: String::new(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let base = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            tempfile::Builder::new()
                .prefix("corral-store-bench-")
                .tempdir_in("/var/tmp")
                .expect("a directory under /var/tmp")
                .keep()
        });
    let dir = base.join("throughput");
    let (store, _) = Store::open(&dir).await.expect("open");

    // Enqueue latency and sustained rate: 100 services, jobs and desired states alternating.
    let services: Vec<String> = (0..100).map(|i| format!("svc{i}")).collect();
    let mut enqueue = Vec::with_capacity(WRITES as usize);
    let started = Instant::now();
    for i in 0..WRITES {
        let service = &services[(i % 100) as usize];
        let t = Instant::now();
        if i % 2 == 0 {
            store.record_job(job(i + 1, service));
        } else {
            store.set_desired(service, Desired::Started, "uid 0");
        }
        enqueue.push(t.elapsed().as_nanos() as f64);
    }
    store.flush().await.expect("flush");
    let writes_per_s = WRITES as f64 / started.elapsed().as_secs_f64();
    enqueue.sort_by(f64::total_cmp);

    // A flush of 1000 pending writes.
    let mut flushes = Vec::new();
    let commits_before = store.transactions();
    for round in 0..FLUSH_ROUNDS as u64 {
        for i in 0..1000 {
            let id = WRITES + round * 1000 + i + 1;
            store.record_job(job(id, &services[(i % 100) as usize]));
        }
        let t = Instant::now();
        store.flush().await.expect("flush");
        flushes.push(t.elapsed().as_secs_f64() * 1e3);
    }
    flushes.sort_by(f64::total_cmp);
    let transactions_per_1000 =
        (store.transactions() - commits_before) as f64 / FLUSH_ROUNDS as f64;
    let transactions_100k = commits_before;
    store.close().await;

    // Opening a full history: HISTORY_SERVICES × 1000 jobs.
    let dir = base.join("history");
    let (store, _) = Store::open(&dir).await.expect("open");
    let mut id = 0;
    for s in 0..HISTORY_SERVICES {
        let service = format!("svc{s}");
        store.set_desired(&service, Desired::Started, "uid 0");
        for _ in 0..1000 {
            id += 1;
            store.record_job(job(id, &service));
        }
        store.flush().await.expect("flush");
    }
    store.close().await;
    let db_mb = std::fs::metadata(dir.join("state.db")).map_or(0, |m| m.len()) as f64 / 1e6;
    let t = Instant::now();
    let (store, loaded) = Store::open(&dir).await.expect("open");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(loaded.max_job_id, id);
    store.close().await;
    let _ = std::fs::remove_dir_all(&base);

    println!(
        "{}",
        serde_json::json!({
            "writes": WRITES,
            "enqueue_p50_ns": percentile(&enqueue, 0.5),
            "enqueue_p99_ns": percentile(&enqueue, 0.99),
            "writes_per_s": writes_per_s.round(),
            "flush_1000_p50_ms": percentile(&flushes, 0.5),
            "flush_1000_p99_ms": percentile(&flushes, 0.99),
            "flush_rounds": FLUSH_ROUNDS,
            "transactions_per_1000": transactions_per_1000,
            "transactions_for_writes": transactions_100k,
            "history_jobs": id,
            "db_mb": (db_mb * 10.0).round() / 10.0,
            "open_ms": open_ms,
        })
    );
}
