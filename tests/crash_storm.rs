//! A crash storm: every service of many killed at once, `restart = "always"` with
//! `restart_delay = "0s"`. corrald handles the queued exits together and spawns their
//! restarts together (`supervisor::actor`, `RESTARTS_AT_ONCE`); each service must come back
//! exactly once — one new process, `NRestarts` one higher — on the first storm and on the
//! second.

mod support;

use std::collections::BTreeMap;

use support::*;

const SERVICES: u32 = 120;

fn config() -> String {
    (0..SERVICES)
        .map(|i| {
            format!(
                "[services.s{i}]\nexec = [\"sleep\", \"{}\"]\nrestart = \"always\"\nrestart_delay = \"0s\"\n",
                64_000 + i
            )
        })
        .collect()
}

/// Each service's MainPID once all are active, with `NRestarts` equal to `restarts`.
async fn all_active(
    conn: &zbus::Connection,
    recorder: &mut SignalRecorder,
    restarts: u32,
) -> BTreeMap<String, u32> {
    let m = manager(conn).await;
    wait_until(recorder, || async {
        m.list_services()
            .await
            .unwrap()
            .iter()
            .all(|row| row.active_state == "active")
    })
    .await;
    let mut pids = BTreeMap::new();
    for row in m.list_services().await.unwrap() {
        let svc = service(conn, &row.name).await;
        assert_eq!(svc.n_restarts().await.unwrap(), restarts, "{}", row.name);
        pids.insert(row.name, row.main_pid);
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_of_a_crash_storm_comes_back_exactly_once() {
    let bus = TestBus::start();
    let _corrald = Corrald::start(&bus, &config()).await;
    let conn = bus.connect().await;
    // On a connection of its own: a storm's signals fill a recorder's queue faster than
    // `wait_until` drains it, and a full queue stops its connection from reading replies.
    let signals = bus.connect().await;
    let mut recorder = SignalRecorder::new(&signals).await;
    let mut pids = all_active(&conn, &mut recorder, 0).await;
    for storm in 1..=2 {
        for pid in pids.values() {
            // SAFETY: kill with a PID of ours and a signal number.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        // Each killed PID gone first, so "all active" below means all restarted.
        eventually("every killed process reaped", || {
            pids.values()
                .all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .await;
        let now = all_active(&conn, &mut recorder, storm).await;
        for (name, pid) in &now {
            assert_ne!(
                pids[name], *pid,
                "{name} runs a new process after storm {storm}"
            );
            let i: u32 = name[1..].parse().unwrap();
            assert_eq!(
                pids_with_cmdline(&format!("sleep {}", 64_000 + i)).len(),
                1,
                "{name}: exactly one copy after storm {storm}"
            );
        }
        pids = now;
    }
}
