//! The fleet end to end: real corrald processes (hosts a, b, c), each on its own private
//! system-like bus, one real etcd, the real `corralctl`. Every test checks "never served
//! twice" two ways: etcd's owner-key history (each owner created the key while nobody held
//! it) and the grouped services' own logs of when they ran (no two overlap).

#![cfg(feature = "fleet")]

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use corral::client::BusError;
use support::etcd::Etcd;
use support::hosts::{Host, PREFIX, TTL, lives, never_served_twice, now_nanos, stubborn, worker};
use support::{
    Corrald, PATIENCE, Recorded, SignalRecorder, TestBus, alive, error_name, eventually, manager,
    reexecute,
};

fn corralctl(bus: &TestBus, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Group `g` over `peers` (placed on the first), its worker, and an ungrouped service.
fn one_group(peers: &[&str], dir: &Path, fleet_extra: &str) -> String {
    let list: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "{fleet_extra}[groups.g]\npeers = [{}]\n{}[services.local]\nexec = [\"sleep\", \"1000\"]\n",
        list.join(", "),
        worker("g", dir)
    )
}

/// The transition signals among `seen`, as "Member args" (generations left out).
fn transitions(seen: &[Recorded]) -> Vec<String> {
    const KINDS: [&str; 12] = [
        "ServiceToBeUnserved",
        "ReloadStarted",
        "GroupCreated",
        "ServiceCreated",
        "ServiceUnserved",
        "GroupMoved",
        "ServiceMoved",
        "ServiceChanged",
        "ServiceServed",
        "ServiceDestroyed",
        "GroupDestroyed",
        "ReloadFinished",
    ];
    seen.iter()
        .filter(|s| KINDS.contains(&s.member.as_str()))
        .map(|s| match s.member.as_str() {
            "ReloadStarted" => s.member.clone(),
            "ReloadFinished" => format!("{} ok={}", s.member, s.args[1]),
            _ => {
                let args: Vec<String> = s
                    .args
                    .iter()
                    .map(|a| a.as_str().unwrap_or_default().to_owned())
                    .collect();
                format!("{} {}", s.member, args.join(" "))
            }
        })
        .collect()
}

/// Waits until every host lists the fleet as `expected` (host, alive, serving), and
/// returns the last listing. No signal announces another host's change, so this asks
/// again every 50 ms.
async fn wait_hosts(hosts: &[&Host], expected: &[(&str, bool, &[&str])]) {
    let deadline = Instant::now() + PATIENCE;
    for host in hosts {
        let m = host.manager().await;
        loop {
            let rows = m.list_host_details().await;
            let seen: Option<Vec<(String, bool, Vec<String>)>> = rows.as_ref().ok().map(|rows| {
                rows.iter()
                    .map(|r| (r.host.clone(), r.alive, r.serving.clone()))
                    .collect()
            });
            let wanted: Vec<(String, bool, Vec<String>)> = expected
                .iter()
                .map(|(h, a, s)| (h.to_string(), *a, s.iter().map(|g| g.to_string()).collect()))
                .collect();
            if seen.as_ref() == Some(&wanted) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} lists {rows:#?}, not {wanted:?}",
                host.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_stops_the_group_on_a_before_b_starts_it_with_signals_in_order() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let body = one_group(&["a", "b", "c"], dir.path(), "");
    let a = Host::start("a", &etcd, &body).await;
    let b = Host::start("b", &etcd, &body).await;
    let c = Host::start("c", &etcd, &body).await;
    a.wait_service("worker-g", "active").await;
    for host in [&a, &b, &c] {
        host.wait_fleet("connected").await;
        host.wait_service("local", "active").await;
    }
    wait_hosts(
        &[&a, &b, &c],
        &[("a", true, &["g"]), ("b", true, &[]), ("c", true, &[])],
    )
    .await;
    let mut on_a = SignalRecorder::new(&a.conn).await;
    let mut on_b = SignalRecorder::new(&b.conn).await;
    let mut on_c = SignalRecorder::new(&c.conn).await;

    // From a third host, with corralctl.
    let moved = corralctl(&c.bus, &["move", "g", "b"]);
    assert!(moved.status.success(), "{moved:?}");
    assert_eq!(String::from_utf8_lossy(&moved.stdout), "g placed on b\n");

    let seen = on_a.until("ReloadFinished", "").await;
    assert_eq!(
        transitions(&seen),
        [
            "ServiceToBeUnserved worker-g",
            "ReloadStarted",
            "ServiceUnserved worker-g",
            "GroupMoved g b",
            "ReloadFinished ok=true"
        ],
        "a: {seen:#?}"
    );
    let mut seen = on_b.until("ServiceServed", "worker-g").await;
    seen.extend(on_b.until("ReloadFinished", "").await);
    assert_eq!(
        transitions(&seen),
        [
            "ReloadStarted",
            "GroupMoved g b",
            "ServiceServed worker-g",
            "ReloadFinished ok=true"
        ],
        "b: {seen:#?}"
    );
    let seen = on_c.until("ReloadFinished", "").await;
    assert_eq!(
        transitions(&seen),
        ["ReloadStarted", "GroupMoved g b", "ReloadFinished ok=true"],
        "c: {seen:#?}"
    );
    b.wait_service("worker-g", "active").await;
    let on_a_worker = support::service(&a.conn, "worker-g").await;
    assert_eq!(on_a_worker.active_state().await.unwrap(), "inactive");
    assert!(!on_a_worker.served().await.unwrap());

    // Every host agrees, through D-Bus and corralctl.
    wait_hosts(
        &[&a, &b, &c],
        &[("a", true, &[]), ("b", true, &["g"]), ("c", true, &[])],
    )
    .await;
    let listed = a.manager().await.list_hosts().await.unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        listed
            .iter()
            .map(|(h, v, _, alive)| (h.as_str(), v.as_str(), *alive))
            .collect::<Vec<_>>(),
        [
            ("a", version, true),
            ("b", version, true),
            ("c", version, true)
        ]
    );
    let details = c.manager().await.list_host_details().await.unwrap();
    assert!(
        details.iter().all(|h| !h.drift && h.problem.is_empty()),
        "{details:#?}"
    );
    let table = corralctl(&a.bus, &["hosts"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{table:?}");
    let b_line = text.lines().find(|l| l.starts_with("b ")).unwrap();
    assert!(b_line.contains(" yes ") && b_line.ends_with(" g"), "{text}");

    assert_eq!(etcd.owners_never_overlapped(PREFIX, "g").await, ["a", "b"]);
    assert_eq!(
        never_served_twice(dir.path(), "g", &[&a, &b, &c]),
        ["a", "b"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_takes_its_group_down_with_it_then_the_next_peer_takes_over() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let body = one_group(&["a", "b", "c"], dir.path(), "");
    let mut a = Host::start("a", &etcd, &body).await;
    let b = Host::start("b", &etcd, &body).await;
    let c = Host::start("c", &etcd, &body).await;
    a.wait_service("worker-g", "active").await;
    a.wait_service("local", "active").await;
    b.wait_fleet("connected").await;
    c.wait_fleet("connected").await;
    let worker_pid = a.main_pid("worker-g").await;
    let local_pid = a.main_pid("local").await;
    let corrald_pid = a.corrald.as_ref().unwrap().pid();
    let fences = fences_of(corrald_pid);
    assert_eq!(fences.len(), 1, "one fence per corrald");

    // A live re-exec first (a package upgrade): the same corrald process keeps its lease,
    // its owner key and its fence, and the group keeps running — nobody fails it over.
    let owner_key = format!("{PREFIX}/groups/g/owner");
    let owners_before = etcd.history(&owner_key).await.len();
    reexecute(&a.conn, a.corrald.as_ref().unwrap()).await;
    assert_eq!(a.corrald.as_ref().unwrap().pid(), corrald_pid);
    assert_eq!(a.main_pid("worker-g").await, worker_pid, "not restarted");
    assert_eq!(a.main_pid("local").await, local_pid);
    assert_eq!(fences_of(corrald_pid), fences, "the same fence, taken over");
    a.wait_fleet("connected").await;
    let owners = etcd.history(&owner_key).await;
    assert_eq!(
        owners.len(),
        owners_before,
        "the owner key was kept, under the same lease: {owners:#?}"
    );
    assert!(
        etcd.history(&format!("{PREFIX}/groups/g/peer"))
            .await
            .is_empty()
    );

    // Then kill -9: the fence, taken over by the new image, still does its job.
    let killed = Instant::now();
    a.crash().await;
    // The fence: a's grouped service dies with corrald, its ungrouped one lives on.
    eventually("a's worker dies with its corrald", || !alive(worker_pid)).await;
    let fenced = killed.elapsed();
    assert!(
        a.crashed_log().contains("corrald-fence: corrald is gone"),
        "{}",
        a.crashed_log()
    );
    assert!(alive(local_pid), "an ungrouped service outlives corrald");

    b.wait_service("worker-g", "active").await;
    eprintln!(
        "kill -9 → worker gone after {fenced:?}, running on b after {:?} (lease TTL {TTL:?})",
        killed.elapsed()
    );
    c.wait_service("local", "active").await;
    // `active` comes with the spawn; the worker's first log line a moment later.
    eventually("b's worker logs its start", || {
        lives(dir.path(), "g", &[&a, &b, &c])
            .iter()
            .any(|life| life.host == "b")
    })
    .await;
    let runs = lives(dir.path(), "g", &[&a, &b, &c]);
    assert!(
        !runs[0].stopped,
        "a's worker was killed, not stopped: {runs:#?}"
    );
    assert_eq!(
        never_served_twice(dir.path(), "g", &[&a, &b, &c]),
        ["a", "b"]
    );
    assert_eq!(etcd.owners_never_overlapped(PREFIX, "g").await, ["a", "b"]);
    let placements: Vec<Option<String>> = etcd
        .history(&format!("{PREFIX}/groups/g/peer"))
        .await
        .into_iter()
        .map(|change| change.value)
        .collect();
    assert_eq!(placements, [Some("b".to_owned())], "one failover, to b");
    wait_hosts(
        &[&b, &c],
        &[("a", false, &[]), ("b", true, &["g"]), ("c", true, &[])],
    )
    .await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(local_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_from_etcd_every_host_stops_in_the_margin_and_serves_again_after() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Without failover the groups come back where they were, so the test knows where to
    // look: with it, the expired leases could send a group anywhere. g1 also has a service
    // that ignores SIGTERM with a stop timeout of a minute: the deadline kills it.
    let body = format!(
        "failover = false\n[groups.g1]\npeers = [\"a\", \"b\"]\n[groups.g2]\npeers = [\"b\", \"c\"]\n\
         [groups.g3]\npeers = [\"c\", \"a\"]\n{}{}{}{}",
        worker("g1", dir.path()),
        stubborn("g1", dir.path()),
        worker("g2", dir.path()),
        worker("g3", dir.path())
    );
    let a = Host::start("a", &etcd, &body).await;
    let b = Host::start("b", &etcd, &body).await;
    let c = Host::start("c", &etcd, &body).await;
    let owners = [(&a, "g1"), (&b, "g2"), (&c, "g3")];
    for (host, group) in owners {
        host.wait_service(&format!("worker-{group}"), "active")
            .await;
    }

    let paused = now_nanos();
    etcd.pause();
    for (host, group) in owners {
        host.wait_fleet("lost").await;
        host.wait_service(&format!("worker-{group}"), "inactive")
            .await;
    }
    // Each stopped before its lease could expire, which is at the earliest a TTL after
    // the last keep-alive etcd answered (before the pause).
    for (host, group) in owners {
        let runs = lives(dir.path(), group, &[&a, &b, &c]);
        let run = runs.last().unwrap();
        assert!(run.stopped, "{}: {runs:#?}", host.name);
        assert!(
            run.end < paused + TTL.as_nanos(),
            "{} stopped {group} {} ms after the pause",
            host.name,
            (run.end - paused) / 1_000_000
        );
    }
    a.wait_service("stubborn-g1", "inactive").await;
    let runs = lives(dir.path(), "stubborn-g1", &[&a, &b, &c]);
    let run = runs.last().unwrap();
    assert!(!run.stopped, "it ignores SIGTERM: {runs:#?}");
    assert!(
        run.end < paused + TTL.as_nanos(),
        "the stubborn service was killed {} ms after the pause",
        (run.end - paused) / 1_000_000
    );
    assert!(
        a.corrald
            .as_ref()
            .unwrap()
            .log()
            .contains("the fleet's deadline passed"),
        "killed by the deadline, not by its stop timeout"
    );
    // Longer than the TTL: etcd expires every lease as soon as it runs again.
    tokio::time::sleep(TTL + Duration::from_secs(1)).await;
    etcd.resume();
    for (host, group) in owners {
        host.wait_fleet("connected").await;
        host.wait_service(&format!("worker-{group}"), "active")
            .await;
    }
    a.wait_service("stubborn-g1", "active").await;
    for (host, group) in owners {
        let name = host.name.clone();
        assert_eq!(
            etcd.owners_never_overlapped(PREFIX, group).await,
            [name.clone(), name.clone()]
        );
        assert_eq!(
            never_served_twice(dir.path(), group, &[&a, &b, &c]),
            [name.clone(), name]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_restarted_under_the_same_name_takes_its_group_back_through_the_owner_key() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No failover: only the owner key decides when a may serve g again.
    let body = one_group(&["a", "b"], dir.path(), "failover = false\n");
    let mut a = Host::start("a", &etcd, &body).await;
    let b = Host::start("b", &etcd, &body).await;
    a.wait_service("worker-g", "active").await;
    b.wait_fleet("connected").await;
    let local_pid = a.main_pid("local").await;
    a.crash().await;
    let restarted = Instant::now();
    a.restart().await;
    a.wait_fleet("connected").await;
    a.wait_service("worker-g", "active").await;
    eprintln!("restart → serving again after {:?}", restarted.elapsed());

    let history = etcd.history(&format!("{PREFIX}/groups/g/owner")).await;
    let leases: Vec<i64> = history
        .iter()
        .filter(|change| change.value.is_some())
        .map(|change| change.lease)
        .collect();
    assert_eq!(leases.len(), 2, "{history:#?}");
    assert_ne!(leases[0], leases[1], "taken again under the new lease");
    assert_eq!(etcd.owners_never_overlapped(PREFIX, "g").await, ["a", "a"]);
    assert_eq!(never_served_twice(dir.path(), "g", &[&a, &b]), ["a", "a"]);
    assert!(
        etcd.history(&format!("{PREFIX}/groups/g/peer"))
            .await
            .is_empty()
    );
    // The ungrouped service survived the crash; the new corrald adopted nothing of it
    // (no pidfile) and started its own.
    assert!(alive(local_pid));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(local_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_bad_moves_bad_values_and_a_reload_that_removes_the_group() {
    let Some(mut etcd) = Etcd::not_started() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let body = one_group(&["a", "b"], dir.path(), "");
    let a = Host::start("a", &etcd, &body).await;
    // No etcd: the ungrouped service runs, the grouped one waits for its owner key.
    a.wait_service("local", "active").await;
    let m = a.manager().await;
    assert_eq!(m.fleet().await.unwrap(), "connecting");
    let worker_g = support::service(&a.conn, "worker-g").await;
    assert_eq!(worker_g.active_state().await.unwrap(), "inactive");
    assert!(!worker_g.served().await.unwrap());
    let refused = m.move_group("g", "b").await.unwrap_err();
    assert_eq!(
        error_name(&refused),
        "org.corral.Corral1.Error.FleetUnavailable"
    );
    assert!(matches!(
        m.list_hosts().await,
        Err(BusError::FleetUnavailable(_))
    ));

    let mut signals = SignalRecorder::new(&a.conn).await;
    etcd.spawn();
    etcd.wait_ready().await;
    // The property is announced like every other.
    let seen = signals.until("PropertiesChanged", "\"connected\"").await;
    assert!(seen.last().unwrap().body.contains("\"Fleet\""), "{seen:#?}");
    a.wait_fleet("connected").await;
    a.wait_service("worker-g", "active").await;

    // Refused by MoveGroup, with InvalidArgs saying what is wrong.
    for (group, peer, says) in [
        ("nosuch", "b", "not defined"),
        ("g", "z", "not one of the group's peers (a, b)"),
        ("g", "b", "no such host is alive"),
    ] {
        let err = m.move_group(group, peer).await.unwrap_err();
        assert!(
            matches!(&err, BusError::InvalidArgs(m) if m.contains(says)),
            "{err:?}"
        );
    }
    let refused = corralctl(&a.bus, &["move", "g", "z"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("InvalidArgs"));

    // Written straight into etcd: logged and ignored; garbage under hosts/ is listed as
    // unreadable. The report written last tells when a has seen both.
    let mut client = etcd.client().await;
    client
        .put(format!("{PREFIX}/groups/g/peer"), "z", None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}/hosts/garbage"), "{not json", None)
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let garbage = loop {
        let rows = m.list_host_details().await.unwrap();
        if let Some(row) = rows.into_iter().find(|r| r.host == "garbage") {
            break row;
        }
        assert!(Instant::now() < deadline, "the garbage report never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(garbage.alive && garbage.problem.starts_with("unreadable report: "));
    assert_eq!(
        worker_g.active_state().await.unwrap(),
        "active",
        "g stays on a"
    );
    let listed = corralctl(&a.bus, &["hosts"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("garbage: unreadable report: "),
        "{listed:?}"
    );

    // A reload that removes the group: its worker stops, its owner key is given back.
    let corrald = a.corrald.as_ref().unwrap();
    corrald.write_config(
        &a.config
            .replace("[groups.g]", "[groups.h]")
            .replace(&worker("g", dir.path()), ""),
    );
    let applied = m.reload().await.unwrap();
    assert!(
        applied.contains(&("ServiceDestroyed".into(), "worker-g".into())),
        "{applied:?}"
    );
    let key = format!("{PREFIX}/groups/g/owner");
    let deadline = Instant::now() + PATIENCE;
    while client.get(key.as_str(), None).await.unwrap().count() != 0 {
        assert!(Instant::now() < deadline, "{key} was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(etcd.owners_never_overlapped(PREFIX, "g").await, ["a"]);
    assert_eq!(never_served_twice(dir.path(), "g", &[&a]), ["a"]);
    assert!(lives(dir.path(), "g", &[&a])[0].stopped);
}

#[tokio::test]
async fn without_a_fleet_table_it_is_one_host_and_groups_move_by_their_peer_key() {
    let bus = TestBus::start();
    let config = "[daemon]\nhost = \"solo\"\n[groups.g]\npeer = \"solo\"\n\
                  [services.w]\ngroup = \"g\"\nexec = [\"sleep\", \"1000\"]\n";
    let corrald = Corrald::start(&bus, config).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    assert_eq!(m.fleet().await.unwrap(), "off");
    let hosts = m.list_hosts().await.unwrap();
    assert_eq!(
        hosts,
        [(
            "solo".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
            1,
            true
        )]
    );
    assert_eq!(m.list_host_details().await.unwrap()[0].serving, ["g"]);
    let refused = m.move_group("g", "other").await.unwrap_err();
    assert!(
        matches!(&refused, BusError::FleetUnavailable(m) if m.contains("no [fleet] table") && m.contains("peer = \"other\"")),
        "{refused:?}"
    );
    let moved = corralctl(&bus, &["move", "g", "other"]);
    assert_eq!(moved.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&moved.stderr).contains("FleetUnavailable"));
    let listed = corralctl(&bus, &["hosts"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("solo  yes") && l.ends_with(" g")),
        "{listed:?}"
    );
    // No fence without a fleet; with one, there is (see the other tests' logs).
    assert!(
        fences_of(corrald.pid()).is_empty(),
        "a fence without a fleet"
    );
}

/// The fences `corrald` started: its children running `corrald --fence`.
fn fences_of(corrald: u32) -> Vec<u32> {
    support::pids_with_cmdline("corrald --fence")
        .into_iter()
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1));
            ppid == Some(corrald.to_string().as_str())
        })
        .collect()
}

/// The fleet's figures (README "Performance", `bench/run --only fleet`): `MoveGroup` until
/// the group's service runs on the new host, a host's `kill -9` until its group runs on
/// the next peer, and what etcd receives from each host at rest. Prints one line,
/// `FLEET_FIGURES {json}`. Run it by name:
/// `cargo test --release --test fleet_daemon -- --ignored --nocapture fleet_figures`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it by name"]
async fn fleet_figures() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let rest_window = Duration::from_secs(
        std::env::var("FLEET_REST_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    // A service that starts and stops at once, so the figures are corral's and etcd's
    // (and that may start more often than the default start limit allows).
    let body = "[groups.g]\npeers = [\"a\", \"b\", \"c\"]\n\
                [services.quick]\ngroup = \"g\"\nexec = [\"sleep\", \"1000\"]\n\
                start_limit_burst = 1000\n";
    let mut a = Host::start("a", &etcd, body).await;
    let b = Host::start("b", &etcd, body).await;
    let c = Host::start("c", &etcd, body).await;
    a.wait_service("quick", "active").await;
    b.wait_fleet("connected").await;
    c.wait_fleet("connected").await;
    let mover = c.manager().await;

    let mut moves = Vec::new();
    for round in 0..10 {
        let (to, target) = if round % 2 == 0 { (&b, "b") } else { (&a, "a") };
        let mut on_target = SignalRecorder::new(&to.conn).await;
        let started = Instant::now();
        mover.move_group("g", target).await.unwrap();
        on_target.until("ServiceStateChanged", "\"active\"").await;
        moves.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    // At rest: nothing changes, so nothing but keep-alives should reach etcd. (After the
    // reports of the last move are written.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = etcd.requests().await;
    tokio::time::sleep(rest_window).await;
    let after = etcd.requests().await;
    let per_host: std::collections::BTreeMap<String, f64> = after
        .iter()
        .map(|(method, count)| {
            let delta = count - before.get(method).copied().unwrap_or(0.0);
            (method.clone(), delta / rest_window.as_secs_f64() / 3.0)
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect();

    let mut failovers = Vec::new();
    for round in 0..3 {
        a.wait_service("quick", "active").await;
        let mut on_b = SignalRecorder::new(&b.conn).await;
        let killed = Instant::now();
        a.crash().await;
        on_b.until("ServiceStateChanged", "\"active\"").await;
        failovers.push(killed.elapsed().as_secs_f64() * 1000.0);
        a.restart().await;
        a.wait_fleet("connected").await;
        if round < 2 {
            b.manager().await.move_group("g", "a").await.unwrap();
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let figures = serde_json::json!({
        "lease_ttl_s": TTL.as_secs(),
        "move_ms_p50": median(&mut moves),
        "move_ms_max": moves.last(),
        "failover_ms_p50": median(&mut failovers),
        "failover_ms_max": failovers.last(),
        "rest_window_s": rest_window.as_secs(),
        "at_rest_per_host_per_s": per_host,
        "moves_ms": moves,
        "failovers_ms": failovers,
    });
    println!("FLEET_FIGURES {figures}");
    let owners = etcd.owners_never_overlapped(PREFIX, "g").await;
    assert_eq!(owners.len(), 1 + moves.len() + 2 * failovers.len() - 1);
}
