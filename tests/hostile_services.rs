//! corrald against services that abuse their control channel (tests/support/
//! hostile_service.py): a frame of 1 MiB + 1 bytes, bytes that never end in a newline,
//! invalid UTF-8, replies for ids corrald never sent, 10,000 notifications a second, and a
//! socket that accepts and never reads. All of them at once, beside a well-behaved service
//! and a plain one: corrald keeps answering, the others are unaffected, the bad services'
//! calls either work (where the abuse was only a bad frame, dropped) or fail with a clear
//! error, and corrald's memory stays bounded.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const MODES: &[&str] = &["huge", "endless", "badutf8", "unknownid", "flood", "deaf"];

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

fn config(dir: &Path) -> String {
    let mut text = format!(
        r#"
[services.plain]
exec = ["sleep", "47101"]

[services.good]
exec = ["python3", "{control}", "{dir}/good.sock"]
control_socket = "{dir}/good.sock"
[services.good.methods.echo]
control = "echo"
"#,
        control = script("control_service.py").display(),
        dir = dir.display(),
    );
    for mode in MODES {
        text += &format!(
            r#"
[services.{mode}]
exec = ["python3", "{hostile}", "{dir}/{mode}.sock", "{mode}"]
control_socket = "{dir}/{mode}.sock"
frame_timeout = "2s"
upcall = true
[services.{mode}.methods.echo]
control = "echo"
"#,
            hostile = script("hostile_service.py").display(),
            dir = dir.display(),
        );
    }
    text
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn services_abusing_the_control_channel_harm_nobody_but_themselves() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let corrald = Corrald::start(&bus, &config(dir.path())).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    // Everyone who answers on their socket comes online (even the deaf one: it accepts).
    for name in ["good"].iter().chain(MODES) {
        let svc = service(&conn, name).await;
        wait_until(&mut recorder, || async { svc.online().await.unwrap() }).await;
    }
    let plain = service(&conn, "plain").await;
    let good = service(&conn, "good").await;
    let plain_pid = plain.main_pid().await.unwrap();
    let good_pid = good.main_pid().await.unwrap();
    drop(recorder);
    // A watcher of the flooding service's resource, on its own connection, counting the
    // Invalidate signals relayed to it. (It drains its stream: a zbus connection with an
    // undrained stream stops reading, replies included.)
    let watcher = bus.connect().await;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .member("Invalidate")
        .build()
        .unwrap();
    let mut invalidations =
        zbus::MessageStream::for_match_rule(rule, &watcher, std::num::NonZeroUsize::new(1 << 16))
            .await
            .unwrap();
    watcher
        .call_method(
            Some("org.corral.Corral1"),
            "/org/corral/Corral1",
            Some("org.corral.Corral1.Upcall"),
            "Watch",
            &("flood", "/flood"),
        )
        .await
        .unwrap();
    let (stop_counting, mut stop) = tokio::sync::oneshot::channel::<()>();
    let relayed = tokio::spawn(async move {
        use futures_util::StreamExt;
        let started = std::time::Instant::now();
        let mut count = 0u64;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                message = invalidations.next() => match message {
                    Some(_) => count += 1,
                    None => break,
                },
            }
        }
        (count, started.elapsed())
    });
    let warm = rss_kib(corrald.pid());

    // Several rounds, so a leak would show; each round calls every service.
    let mut rounds = Vec::new();
    for round in 0..3 {
        for mode in ["huge", "badutf8", "unknownid", "flood"] {
            // The abuse was a bad frame (dropped, logged) or a stray one: calls still work.
            let svc = service(&conn, mode).await;
            let args = strings(&["round", &round.to_string()]);
            assert_eq!(
                svc.call("echo", &args).await.expect(mode),
                format!("round {round}"),
                "{mode}"
            );
        }
        for mode in ["endless", "deaf"] {
            // Never a whole frame back: each call ends at frame_timeout with a clear error.
            let svc = service(&conn, mode).await;
            let err = svc.call("echo", &strings(&["x"; 3])).await.expect_err(mode);
            assert_eq!(
                error_name(&err),
                "org.corral.Corral1.Error.Timeout",
                "{mode}"
            );
            let message = err.to_string();
            assert!(
                message.contains(mode) && message.contains("frame_timeout"),
                "{message}"
            );
        }
        assert_eq!(
            good.call("echo", &strings(&["fine"])).await.unwrap(),
            "fine"
        );
        rounds.push(rss_kib(corrald.pid()));
    }
    // The deaf service's socket buffer fills up: corrald's writes must not block anyone.
    let deaf = service(&conn, "deaf").await;
    let big = vec!["z".repeat(60_000); 4];
    let calls = (0..20).map(|_| deaf.call("echo", &big));
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(
            error_name(&result.unwrap_err()),
            "org.corral.Corral1.Error.Timeout"
        );
    }
    assert_eq!(
        good.call("echo", &strings(&["still"])).await.unwrap(),
        "still"
    );

    // Let the endless one stream and the flooder flood a while, then look again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(corrald.pid());
    stop_counting.send(()).unwrap();
    let (count, elapsed) = relayed.await.unwrap();
    println!(
        "figure: {count} Invalidate signals relayed to the watcher in {elapsed:?} ({:.0}/s)",
        count as f64 / elapsed.as_secs_f64()
    );
    assert!(count > 0, "the flood's notifications were relayed");
    println!(
        "figure: corrald RSS {warm} KiB after start, {rounds:?} KiB after each round, {after} KiB at the end"
    );
    assert!(
        after < warm + 32 * 1024,
        "corrald grew from {warm} KiB to {after} KiB"
    );
    assert_eq!(
        plain.main_pid().await.unwrap(),
        plain_pid,
        "plain untouched"
    );
    assert_eq!(good.main_pid().await.unwrap(), good_pid, "good untouched");
    assert_eq!(plain.active_state().await.unwrap(), "active");
    let log = corrald.log();
    assert!(
        log.contains("dropped a control frame: longer than 1048576 bytes"),
        "the 1 MiB + 1 frame is named in the journal"
    );
    for mode in MODES {
        assert_eq!(
            service(&conn, mode).await.active_state().await.unwrap(),
            "active",
            "{mode} is not killed for abusing its channel"
        );
    }
}

/// Regression: a call to a service whose control socket is never read waited without any
/// bound once 256 calls were queued behind the stuck write (the queue's send was outside
/// `frame_timeout`), so its D-Bus caller hung until the service died.
#[tokio::test]
async fn calls_to_a_service_that_never_reads_time_out_even_when_its_queue_is_full() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[services.deaf]
exec = ["python3", "{hostile}", "{dir}/deaf.sock", "deaf"]
control_socket = "{dir}/deaf.sock"
frame_timeout = "2s"
[services.deaf.methods.echo]
control = "echo"
"#,
        hostile = script("hostile_service.py").display(),
        dir = dir.path().display(),
    );
    let _corrald = Corrald::start(&bus, &text).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    let deaf = service(&conn, "deaf").await;
    wait_until(&mut recorder, || async { deaf.online().await.unwrap() }).await;
    drop(recorder);
    // 400 calls of 64 KiB each: the socket buffer fills after a few, the queue after 256.
    // The bus allows 128 pending replies per connection, so they come from 4 connections.
    let big = vec!["z".repeat(65_536)];
    let mut callers = Vec::new();
    for _ in 0..4 {
        let conn = bus.connect().await;
        let big = big.clone();
        callers.push(tokio::spawn(async move {
            let deaf = service(&conn, "deaf").await;
            let calls = (0..100).map(|_| deaf.call("echo", &big));
            futures_util::future::join_all(calls).await
        }));
    }
    let mut timeouts = 0;
    for caller in callers {
        for result in caller.await.unwrap() {
            let err = result.expect_err("a deaf service cannot answer");
            assert_eq!(
                error_name(&err),
                "org.corral.Corral1.Error.Timeout",
                "{err}"
            );
            timeouts += 1;
        }
    }
    assert_eq!(timeouts, 400);
    assert_eq!(deaf.active_state().await.unwrap(), "active");
}
