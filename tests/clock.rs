//! The wall clock stepped back an hour, then forward an hour, under a running corrald (an
//! NTP daemon's first sync, an admin's `date -s`): its timers run on the monotonic clock, so
//! a `restart_delay`, a `start_timeout`, a watchdog and a health check's interval each
//! take as long as they say — not nothing, not an hour more — and the timestamps it
//! publishes are what the wall clock said when the thing happened.
//!
//! Stepping `CLOCK_REALTIME` changes it for the whole host, so this binary holds this one
//! test (cargo runs test binaries one after another), keeps the clock wrong for seconds
//! only, and puts the real time back when it ends, panics included. The forward step is
//! the one back to the real time: a clock ahead of it would stamp files (build outputs,
//! say) with times still in the future an hour later. It needs root (`CAP_SYS_TIME`);
//! without it, it says so and checks nothing.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::*;

/// The host's wall clock, stepped by the test and put right by `Drop`: the real time is
/// the wall time when it was made plus the monotonic time since.
struct SteppedClock {
    wall: SystemTime,
    mono: Instant,
}

impl SteppedClock {
    fn new() -> SteppedClock {
        SteppedClock {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// Sets the wall clock to the real time plus `offset` seconds.
    fn set(&self, offset: i64) {
        let real = (self.wall + self.mono.elapsed())
            .duration_since(UNIX_EPOCH)
            .unwrap();
        let time = libc::timespec {
            tv_sec: real.as_secs() as i64 + offset,
            tv_nsec: real.subsec_nanos() as i64,
        };
        // SAFETY: a valid timespec; clock_settime reads it only.
        let rc = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &time) };
        assert_eq!(rc, 0, "clock_settime: {}", std::io::Error::last_os_error());
    }
}

impl Drop for SteppedClock {
    fn drop(&mut self) {
        self.set(0);
        eprintln!("wall clock put back to {:?}", SystemTime::now());
    }
}

/// The wall clock now, in µs since the epoch (as corrald's timestamps are).
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn config(checks: &std::path::Path) -> String {
    let ready = "import os,socket; socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])";
    format!(
        r#"
[services.crasher]
exec = ["sleep", "88021"]
restart = "always"
restart_delay = "2s"
restart_delay_max = "2s"

[services.never_ready]
type = "notify"
autostart = false
restart = "no"
start_timeout = "3s"
exec = ["sleep", "88022"]

[services.dog_quiet]
type = "notify"
autostart = false
restart = "no"
watchdog = "2s"
exec = ["python3", "-c", "{ready}; import time; time.sleep(1000)", "clock-dog-quiet"]

[services.dog_good]
type = "notify"
watchdog = "2s"
exec = ["python3", "-c", "{ready}; import time\nwhile True:\n    time.sleep(0.3); socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'WATCHDOG=1', os.environ['NOTIFY_SOCKET'])", "clock-dog-good"]

[services.checked]
exec = ["sleep", "88023"]
[services.checked.health]
exec = ["sh", "-c", "cut -d' ' -f1 /proc/uptime >> {checks}"]
interval = "1s"

[services.box]
exec = ["sleep", "88024"]
[services.box.recipes.ok]
steps = [["true"]]
"#,
        checks = checks.display()
    )
}

/// Asserts that something timed to take `nominal` took between 3/4 of it and 30 s.
fn took(what: &str, elapsed: Duration, nominal: Duration) {
    eprintln!("{what}: {elapsed:?} (configured {nominal:?})");
    assert!(
        elapsed >= nominal * 3 / 4,
        "{what} fired early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "{what} stalled: {elapsed:?}"
    );
}

/// Kills `crasher`, starts `never_ready` and `dog_quiet`, steps the clock to the real time
/// plus `offset` seconds while their timers run, and checks that each fires on time and
/// that the timestamps follow the (stepped) wall clock.
async fn across_a_step(conn: &zbus::Connection, clock: &SteppedClock, offset: i64) {
    let crasher = service(conn, "crasher").await;
    let never_ready = service(conn, "never_ready").await;
    let dog_quiet = service(conn, "dog_quiet").await;
    let old = crasher.main_pid().await.unwrap();

    dog_quiet.start().await.expect("dog_quiet sends READY=1");
    let watched = Instant::now();
    let starting = tokio::spawn({
        let never_ready = never_ready.clone();
        async move { (never_ready.start().await, Instant::now()) }
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let started = Instant::now();
    clock.set(offset);
    let stepped_at = wall_us();
    eprintln!(
        "wall clock stepped to real {offset:+} s: {:?}",
        SystemTime::now()
    );

    let mut recorder = SignalRecorder::new(conn).await;
    wait_until(&mut recorder, || async {
        crasher
            .main_pid()
            .await
            .is_ok_and(|pid| pid != 0 && pid != old)
    })
    .await;
    took("restart_delay", killed.elapsed(), Duration::from_secs(2));
    let since = crasher.state_change_timestamp().await.unwrap();
    assert!(
        (stepped_at..=wall_us()).contains(&since),
        "StateChangeTimestamp {since} follows the stepped wall clock (from {stepped_at})"
    );

    // It was active when its start returned, so "failed" is this run's end.
    wait_until(&mut recorder, || async {
        dog_quiet.active_state().await.is_ok_and(|s| s == "failed")
    })
    .await;
    assert_eq!(dog_quiet.result().await.unwrap(), "watchdog");
    took("watchdog", watched.elapsed(), Duration::from_secs(2));

    let (result, ended) = starting.await.unwrap();
    assert!(
        result.is_err(),
        "never_ready never sent READY=1: {result:?}"
    );
    took("start_timeout", ended - started, Duration::from_secs(3));
    // `Result` says how a run ended once it has: after the stop that follows the timeout.
    wait_until(&mut recorder, || async {
        never_ready
            .active_state()
            .await
            .is_ok_and(|s| s == "failed")
    })
    .await;
    assert_eq!(never_ready.result().await.unwrap(), "timeout");

    // A job's times are the wall clock's, in order.
    let before = wall_us();
    let id = service(conn, "box").await.run_recipe("ok").await.unwrap();
    let m = manager(conn).await;
    let deadline = Instant::now() + PATIENCE;
    let row = loop {
        let rows = m.list_jobs("box").await.unwrap();
        if let Some(row) = rows
            .into_iter()
            .find(|j| j.id == id && j.state == "finished")
        {
            break row;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish");
        // A job's end comes with a signal; the timeout only bounds a missed one.
        let _ = tokio::time::timeout(Duration::from_millis(100), recorder.next()).await;
    };
    let after = wall_us();
    assert!(
        before <= row.queued && row.queued <= row.finished && row.finished <= after,
        "job times {} .. {} within {before} .. {after}",
        row.queued,
        row.finished
    );
}

#[tokio::test]
async fn timers_keep_their_length_when_the_wall_clock_is_stepped() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: stepping the wall clock needs root (CAP_SYS_TIME)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let checks = dir.path().join("checks");
    let bus = TestBus::start();
    let corrald = Corrald::start(&bus, &config(&checks)).await;
    let conn = bus.connect().await;
    let dog_good = service(&conn, "dog_good").await;
    let good_pid = dog_good.main_pid().await.unwrap();
    eventually("the health check runs", || {
        std::fs::read_to_string(&checks).is_ok_and(|t| t.lines().count() >= 2)
    })
    .await;

    let clock = SteppedClock::new();
    // Back an hour, then forward an hour to the real time, each while timers run.
    across_a_step(&conn, &clock, -3600).await;
    across_a_step(&conn, &clock, 0).await;
    let before_restore = std::fs::read_to_string(&checks).unwrap().lines().count();
    drop(clock);

    // The health check kept its interval throughout: never two at once (a timer that
    // caught up), never a long gap (one waiting for an hour). /proc/uptime is the
    // monotonic clock, as the checks saw it.
    eventually("the health check runs after the clock is put back", || {
        std::fs::read_to_string(&checks).is_ok_and(|t| t.lines().count() >= before_restore + 2)
    })
    .await;
    let times: Vec<f64> = std::fs::read_to_string(&checks)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (0.5..10.0).contains(&gap),
            "health checks {gap:.2} s apart in {times:?}"
        );
    }
    let gaps = times.windows(2).map(|p| p[1] - p[0]);
    let (least, most) = gaps.fold((f64::MAX, 0f64), |(l, m), g| (l.min(g), m.max(g)));
    eprintln!(
        "{} health checks (interval 1 s), {least:.2}..{most:.2} s apart across both steps",
        times.len()
    );

    // The service that kept its watchdog fed was never thought hung.
    assert_eq!(dog_good.main_pid().await.unwrap(), good_pid);
    assert_eq!(dog_good.n_restarts().await.unwrap(), 0);
    assert_eq!(dog_good.active_state().await.unwrap(), "active");
    drop(corrald);
}
