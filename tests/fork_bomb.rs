//! A fork bomb inside one service, bounded the way a careful admin bounds one: the service
//! runs as `nobody` with `limit_nproc`, so the kernel refuses its forks at the cap (this
//! host has no pids controller to do it per service; `RLIMIT_NPROC` is not enforced for
//! root). While it churns at the cap, forking and exiting as fast as two cores allow
//! (each orphan is reaped by corrald, its subreaper): another service keeps its PID,
//! corrald answers `Get` and `ListServices` (their p99 is printed), and `Stop` of the bomb
//! returns with no process of it left. Then it is started and stopped a second time.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use support::*;

/// The bomb's cap. `RLIMIT_NPROC` counts every process of the uid on the host, so other
/// tests' brief `setpriv --reuid=nobody` clients take from it too: the assertions below
/// hold for any share of it above [`REACHED`].
const CAP: usize = 1000;
/// The most bomb processes a scan of `/proc` may count: the scan is no snapshot (while it
/// reads, copies exit and others take their slots), and the kernel checks the cap before
/// it counts a new process, so forks on both cores at once can pass it by one or two.
const SEEN_AT_MOST: usize = CAP + CAP / 10;
/// How many bomb processes at once show that it really bombed (well below the cap).
const REACHED: usize = 400;
/// How many `Get`s and `ListServices` are timed, quiet and while the bomb churns.
const SAMPLES: usize = 500;
/// The marker in the bomb's command line (its `$0`, which every forked copy keeps).
const MARKER: &str = "corral-fork-bomb-8801";

/// The classic bomb, `:(){ :|:& };:` in bash: each copy forks two more and exits. At the
/// cap bash retries each refused fork (with a growing pause) instead of giving up, so the
/// population stays at the cap, every exit's slot taken at once by a waiting fork, until
/// the bomb is killed. (dash gives up on a refused fork, and its bomb dies out by itself.)
/// The main process then becomes a plain sleep, so the service stays active.
fn config() -> String {
    format!(
        r#"
[services.steady]
exec = ["sleep", "88011"]

[services.bomb]
user = "nobody"
limit_nproc = {CAP}
autostart = false
restart = "no"
stop_timeout = "5s"
exec = ["bash", "-c", "b() {{ b | b & }}; b; exec sleep 88012", "{MARKER}"]
"#
    )
}

fn nobody_uid() -> u32 {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody exists")
        .uid
        .as_raw()
}

/// Live processes of the bomb: owned by `nobody` and carrying the marker (or its final
/// `sleep`). Other tests' `nobody` clients carry neither.
fn bomb_processes(uid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                line.contains(MARKER) || line.trim_end() == "sleep 88012"
            }) && alive(pid)
        })
        .collect()
}

/// Kills whatever is left of the bomb if the test fails half-way, so that a failure does
/// not leave a thousand processes churning on the CI machine. Only the bomb's processes
/// (by uid and marker) are signalled.
struct Defuse(u32);

impl Drop for Defuse {
    fn drop(&mut self) {
        for _ in 0..100 {
            let left = bomb_processes(self.0);
            if left.is_empty() {
                return;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The 99th percentile of `samples` (sorted in place).
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// Times `Get(ActiveState)` of `steady` and `ListServices`, `n` of each, alternating.
async fn answer_times(
    m: &corral::client::ManagerProxy<'_>,
    steady: &corral::client::ServiceProxy<'_>,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut gets, mut lists) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(steady.active_state().await.unwrap(), "active");
        gets.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(m.list_services().await.unwrap().len(), 2);
        lists.push(t.elapsed());
    }
    (gets, lists)
}

#[tokio::test]
async fn a_fork_bomb_in_one_service_harms_no_other_and_stops_completely() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: running a service as nobody needs corrald to run as root");
        return;
    }
    let uid = nobody_uid();
    assert!(
        bomb_processes(uid).is_empty(),
        "a bomb from an earlier run is still there"
    );
    let _defuse = Defuse(uid);
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, &config()).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let steady = service(&conn, "steady").await;
    let bomb = service(&conn, "bomb").await;
    let steady_pid = steady.main_pid().await.unwrap();
    let (mut quiet_gets, mut quiet_lists) = answer_times(&m, &steady, SAMPLES).await;

    const REFUSED: &str = "fork: retry: Resource temporarily unavailable";
    let mut kills = 0;
    for round in 1..=2 {
        let refused = corrald.log().matches(REFUSED).count();
        bomb.start().await.unwrap();
        // It bombs: hundreds of copies at once, never more than the cap.
        let mut most = 0;
        eventually("the bomb reaches hundreds of processes", || {
            let n = bomb_processes(uid).len();
            assert!(n <= SEEN_AT_MOST, "{n} bomb processes, limit_nproc {CAP}");
            most = most.max(n);
            n >= REACHED
        })
        .await;
        // ... and the kernel refuses its forks: the cap, not the bomb, bounds it.
        eventually("bash reports refused forks", || {
            corrald.log().matches(REFUSED).count() > refused
        })
        .await;

        // corrald answers while it churns; the other service is untouched.
        let (mut gets, mut lists) = answer_times(&m, &steady, SAMPLES).await;
        let during = bomb_processes(uid).len();
        assert!(during <= SEEN_AT_MOST, "{during} bomb processes");
        assert_eq!(steady.main_pid().await.unwrap(), steady_pid);
        assert_eq!(bomb.active_state().await.unwrap(), "active");
        eprintln!(
            "round {round}: {most}+ bomb processes (cap {CAP}), {during} after the calls; \
             Get p99 {:?} (quiet {:?}), ListServices p99 {:?} (quiet {:?}) over {SAMPLES} each",
            p99(&mut gets),
            p99(&mut quiet_gets),
            p99(&mut lists),
            p99(&mut quiet_lists),
        );

        // Stop returns, and when it has, nothing of the bomb is left.
        let t = Instant::now();
        bomb.stop().await.expect("Stop of a fork bomb returns");
        let left = bomb_processes(uid);
        assert!(left.is_empty(), "left after Stop: {left:?}");
        let killed = corrald
            .log()
            .matches("after the stop signal; killing")
            .count();
        eprintln!(
            "round {round}: Stop took {:?} ({})",
            t.elapsed(),
            if killed > kills {
                "SIGTERM missed a copy: killed after stop_timeout"
            } else {
                "SIGTERM ended every copy"
            }
        );
        kills = killed;
        assert_eq!(bomb.active_state().await.unwrap(), "inactive");
        assert_eq!(steady.main_pid().await.unwrap(), steady_pid);
        assert_eq!(steady.active_state().await.unwrap(), "active");
    }
    assert_eq!(m.state().await.unwrap(), "running");
    drop(corrald);
}
