//! The fleet against a real etcd: several `Fleet`s in one test process, each in its own
//! tokio runtime (so one can crash: its runtime is dropped without any clean-up), each
//! driven by a small applier that "serves" a group from the moment the fleet places it
//! here until the fleet places it elsewhere, and then releases it.
//!
//! Every test checks the two views of exclusivity: etcd's owner-key history (every owner
//! created the key while nobody held it) and the appliers' own serving intervals on one
//! clock (no two hosts served a group at the same instant).

#![cfg(feature = "fleet")]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral::config::parse_str;
use corral::fleet::{
    Fleet, FleetError, FleetEvent, FleetHandle, FleetState, HostReport, config_hash,
};
use support::PATIENCE;
use support::etcd::Etcd;
use tokio::sync::watch;

const PREFIX: &str = "/corral";

/// One entry of the shared serving log.
#[derive(Debug, Clone)]
struct Serving {
    host: String,
    group: String,
    from: Instant,
    /// `None`: still serving.
    until: Option<Instant>,
    /// The deadline the fleet gave for stopping, if it was a lost contact.
    stop_by: Option<Instant>,
}

type Log = Arc<Mutex<Vec<Serving>>>;

/// One corrald, as far as the fleet is concerned.
struct Host {
    name: String,
    log: Log,
    fleet: FleetHandle,
    placed: watch::Receiver<BTreeMap<String, String>>,
    states: watch::Receiver<Vec<FleetState>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Host {
    /// Starts host `name` with `config` (TOML; `[daemon] host` and `[fleet]` are added).
    fn start(name: &str, etcd: &str, ttl: &str, extra: &str, log: &Log) -> Host {
        let config = host_config(name, etcd, ttl, extra);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let (fleet, mut events) = Fleet::start(config.fleet.as_ref().unwrap(), &config, None);
        let (placed_tx, placed) = watch::channel(BTreeMap::new());
        let (states_tx, states) = watch::channel(Vec::new());
        let applier = fleet.clone();
        let shared_log = log.clone();
        let log = log.clone();
        let me = name.to_owned();
        let report = HostReport {
            config_hash: config_hash(&config),
            ..HostReport::empty()
        };
        let reporter = fleet.clone();
        runtime.spawn(async move { reporter.report(report).await });
        runtime.spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    FleetEvent::State(state) => states_tx.send_modify(|s| s.push(state)),
                    FleetEvent::Placed {
                        group,
                        peer,
                        stop_by,
                    } => {
                        let was_here = placed_tx.borrow().get(&group) == Some(&me);
                        if peer == me && !was_here {
                            log.lock().unwrap().push(Serving {
                                host: me.clone(),
                                group: group.clone(),
                                from: Instant::now(),
                                until: None,
                                stop_by: None,
                            });
                        }
                        if peer != me && was_here {
                            // "Stop the services", then give the key back.
                            let now = Instant::now();
                            for entry in log.lock().unwrap().iter_mut() {
                                if entry.host == me && entry.group == group && entry.until.is_none()
                                {
                                    entry.until = Some(now);
                                    entry.stop_by = stop_by;
                                }
                            }
                            applier.release(&group).await;
                        }
                        placed_tx.send_modify(|p| {
                            p.insert(group, peer);
                        });
                    }
                }
            }
        });
        Host {
            name: name.to_owned(),
            log: shared_log,
            fleet,
            placed,
            states,
            runtime: Some(runtime),
        }
    }

    /// Waits until this host sees `group` placed on `peer`.
    async fn wait_placed(&mut self, group: &str, peer: &str) {
        let waited = tokio::time::timeout(
            PATIENCE,
            self.placed
                .wait_for(|p| p.get(group).map(String::as_str) == Some(peer)),
        )
        .await
        .is_ok();
        assert!(
            waited,
            "{}: {group} never placed on {peer:?}; placements {:?}, states {:?}",
            self.name,
            *self.placed.borrow(),
            *self.states.borrow()
        );
    }

    /// Waits until this host sees `group` placed on some host, and says which.
    async fn wait_placed_somewhere(&mut self, group: &str) -> String {
        let waited = tokio::time::timeout(
            PATIENCE,
            self.placed
                .wait_for(|p| p.get(group).is_some_and(|peer| !peer.is_empty())),
        )
        .await
        .is_ok();
        assert!(
            waited,
            "{}: {group} never placed; placements {:?}, states {:?}",
            self.name,
            *self.placed.borrow(),
            *self.states.borrow()
        );
        self.placed(group).expect("placed")
    }

    async fn wait_state(&mut self, state: FleetState) {
        let waited =
            tokio::time::timeout(PATIENCE, self.states.wait_for(|s| s.last() == Some(&state)))
                .await
                .is_ok();
        assert!(
            waited,
            "{}: never {state:?}: {:?}",
            self.name,
            *self.states.borrow()
        );
    }

    fn placed(&self, group: &str) -> Option<String> {
        self.placed.borrow().get(group).cloned()
    }

    /// kill -9: every task of this host stops where it is; nothing is released. Its
    /// services die with it (what serving ends, in the log).
    fn crash(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
            let now = Instant::now();
            for entry in self.log.lock().unwrap().iter_mut() {
                if entry.host == self.name && entry.until.is_none() {
                    entry.until = Some(now);
                }
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Host `name`'s configuration: `extra` plus its `[daemon] host` and `[fleet]`.
fn host_config(name: &str, etcd: &str, ttl: &str, extra: &str) -> corral::config::Config {
    let text = format!(
        "[daemon]\nhost = \"{name}\"\n[fleet]\netcd = [\"{etcd}\"]\nprefix = \"{PREFIX}\"\n\
         lease_ttl = \"{ttl}\"\n{extra}"
    );
    parse_str(&text, Path::new("/test.toml")).expect("valid config")
}

/// No two hosts served a group at the same instant (the appliers' own clock).
fn assert_never_served_twice(log: &Log) {
    let log = log.lock().unwrap();
    for (i, a) in log.iter().enumerate() {
        for b in log.iter().skip(i + 1) {
            if a.group != b.group || a.host == b.host {
                continue;
            }
            let a_end = a.until.unwrap_or_else(Instant::now);
            let b_end = b.until.unwrap_or_else(Instant::now);
            assert!(
                a_end <= b.from || b_end <= a.from,
                "{} and {} served {} at once: {log:#?}",
                a.host,
                b.host,
                a.group
            );
        }
        if let (Some(until), Some(stop_by)) = (a.until, a.stop_by) {
            assert!(until <= stop_by, "{a:?} stopped after its deadline");
        }
    }
}

fn groups(peers: &[&str]) -> String {
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    format!("[groups.g]\npeers = [{}]\n", list.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_stops_the_group_on_the_old_host_before_the_new_one_starts_it() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    let config = groups(&["a", "b", "c"]);
    let mut a = Host::start("a", &etcd.endpoint(), "10s", &config, &log);
    let mut b = Host::start("b", &etcd.endpoint(), "10s", &config, &log);
    let mut c = Host::start("c", &etcd.endpoint(), "10s", &config, &log);
    // The configuration places g on a (the first of its peers); a serves it once it
    // holds the owner key, and the others see it there.
    a.wait_placed("g", "a").await;
    b.wait_placed("g", "a").await;
    c.wait_state(FleetState::Connected).await;
    b.wait_state(FleetState::Connected).await;

    // MoveGroup from a third host.
    c.fleet.move_group("g", "b").await.unwrap();
    b.wait_placed("g", "b").await;
    a.wait_placed("g", "b").await;
    c.wait_placed("g", "b").await;
    // c saw the new placement; the owner key b takes comes in a later revision, so wait
    // for c's view to show it rather than asserting on the first look.
    let expected: [(&str, &[&str]); 3] = [("a", &[]), ("b", &["g"]), ("c", &[])];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let hosts = loop {
        let hosts = c.fleet.hosts().await.unwrap();
        let serving: Vec<(&str, Vec<&str>)> = hosts
            .iter()
            .map(|h| {
                let groups = h.serving.iter().map(String::as_str).collect();
                (h.host.as_str(), groups)
            })
            .collect();
        let wanted: Vec<(&str, Vec<&str>)> =
            expected.iter().map(|(h, s)| (*h, s.to_vec())).collect();
        if serving == wanted {
            break hosts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "c's view never showed b serving g: {hosts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        hosts
            .iter()
            .all(|h| h.alive && h.report.is_some() && !h.drift)
    );

    // And back: the same protocol the other way round.
    a.fleet.move_group("g", "a").await.unwrap();
    a.wait_placed("g", "a").await;
    b.wait_placed("g", "a").await;

    assert_eq!(
        etcd.owners_never_overlapped(PREFIX, "g").await,
        ["a", "b", "a"]
    );
    assert_never_served_twice(&log);
    let entries: Vec<String> = log.lock().unwrap().iter().map(|s| s.host.clone()).collect();
    assert_eq!(entries, ["a", "b", "a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_moves_are_refused_and_bad_values_in_etcd_are_ignored() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    let config = groups(&["a", "b", "d"]);
    let mut a = Host::start("a", &etcd.endpoint(), "10s", &config, &log);
    let mut b = Host::start("b", &etcd.endpoint(), "10s", &config, &log);
    a.wait_placed("g", "a").await;
    b.wait_state(FleetState::Connected).await;

    // Refused by MoveGroup, with what is wrong.
    let refused = a.fleet.move_group("nosuch", "b").await.unwrap_err();
    assert_eq!(refused, FleetError::UnknownGroup("nosuch".into()));
    let refused = a.fleet.move_group("g", "z").await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("not one of the group's peers (a, b, d)"),
        "{refused}"
    );
    // d is a peer, but no such host is alive.
    let refused = a.fleet.move_group("g", "d").await.unwrap_err();
    assert!(
        refused.to_string().contains("no such host is alive"),
        "{refused}"
    );

    // Written straight into etcd: reported and ignored.
    let mut client = etcd.client().await;
    client
        .put(format!("{PREFIX}/groups/g/peer"), "z", None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}/groups/other/peer"), "b", None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}/hosts/garbage"), "{not json", None)
        .await
        .unwrap();
    // A valid write after them: once b sees it, it has seen the bad ones too.
    client
        .put(format!("{PREFIX}/groups/g/peer"), "b", None)
        .await
        .unwrap();
    b.wait_placed("g", "b").await;
    a.wait_placed("g", "b").await;
    assert_eq!(a.placed("other"), None);

    let hosts = a.fleet.hosts().await.unwrap();
    let garbage = hosts.iter().find(|h| h.host == "garbage").unwrap();
    assert!(garbage.alive && garbage.report.is_none());
    assert!(
        garbage
            .problem
            .as_deref()
            .unwrap()
            .starts_with("unreadable report: ")
    );
    let d = hosts.iter().find(|h| h.host == "d").unwrap();
    assert!(!d.alive, "a peer without a report is listed as not alive");
    assert_eq!(etcd.owners_never_overlapped(PREFIX, "g").await, ["a", "b"]);
    assert_never_served_twice(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_taking_one_group_at_once_one_wins_and_the_other_waits() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    // Drift on purpose: each configuration places g on its own host, so both try to take
    // its owner key at the same moment.
    let mut a = Host::start(
        "a",
        &etcd.endpoint(),
        "10s",
        "[groups.g]\npeer = \"a\"\n",
        &log,
    );
    let mut b = Host::start(
        "b",
        &etcd.endpoint(),
        "10s",
        "[groups.g]\npeer = \"b\"\n",
        &log,
    );
    a.wait_state(FleetState::Connected).await;
    b.wait_state(FleetState::Connected).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let winner = loop {
        match (a.placed("g").as_deref(), b.placed("g").as_deref()) {
            (Some("a"), _) => break "a",
            (_, Some("b")) => break "b",
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "nobody took g");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (mut winner, mut loser) = if winner == "a" { (a, b) } else { (b, a) };
    // The loser does not serve while the winner holds the key, however long it waits.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        loser.placed("g").as_deref(),
        Some(""),
        "the loser must wait"
    );
    // Both reports written (with their configuration hashes): both differ from "the
    // others", on a tie.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let hosts = loser.fleet.hosts().await.unwrap();
        let hashed = hosts
            .iter()
            .filter(|h| h.report.as_ref().is_some_and(|r| !r.config_hash.is_empty()))
            .count();
        if hashed == 2 {
            assert!(
                hosts.iter().all(|h| h.drift),
                "different configurations: {hosts:#?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reports missing: {hosts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The winner leaves (stops, releases, gives its lease back): the loser takes over.
    let released = winner.name.clone();
    winner.fleet.shutdown().await;
    winner.crash();
    let loser_name = loser.name.clone();
    loser.wait_placed("g", &loser_name).await;
    let owners = etcd.owners_never_overlapped(PREFIX, "g").await;
    assert_eq!(owners, [released, loser_name]);
    assert_never_served_twice(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_host_fails_over_to_the_next_live_peer_exactly_once() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    let config = groups(&["a", "b", "c"]);
    let mut a = Host::start("a", &etcd.endpoint(), "3s", &config, &log);
    let mut b = Host::start("b", &etcd.endpoint(), "3s", &config, &log);
    let mut c = Host::start("c", &etcd.endpoint(), "3s", &config, &log);
    a.wait_placed("g", "a").await;
    b.wait_state(FleetState::Connected).await;
    c.wait_state(FleetState::Connected).await;

    a.crash();
    // When a's lease expires, b and c both try to move g: b (next after a) wins once.
    b.wait_placed("g", "b").await;
    c.wait_placed("g", "b").await;
    let peer_writes: Vec<Option<String>> = etcd
        .history(&format!("{PREFIX}/groups/g/peer"))
        .await
        .into_iter()
        .map(|change| change.value)
        .collect();
    assert_eq!(peer_writes, [Some("b".to_string())], "exactly one failover");
    assert_eq!(etcd.owners_never_overlapped(PREFIX, "g").await, ["a", "b"]);
    assert_never_served_twice(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_etcd_stops_every_group_before_the_lease_can_expire() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    let config = "[groups.g1]\npeers = [\"a\", \"b\"]\n[groups.g2]\npeers = [\"b\", \"a\"]\n";
    let mut a = Host::start("a", &etcd.endpoint(), "3s", config, &log);
    let mut b = Host::start("b", &etcd.endpoint(), "3s", config, &log);
    a.wait_placed("g1", "a").await;
    b.wait_placed("g2", "b").await;

    etcd.pause();
    let paused = Instant::now();
    a.wait_placed("g1", "").await;
    b.wait_placed("g2", "").await;
    a.wait_state(FleetState::Lost).await;
    b.wait_state(FleetState::Lost).await;
    // Both stopped before their deadlines (checked in the log), which are before the
    // lease could expire: at most a TTL after the pause.
    for entry in log.lock().unwrap().iter() {
        let stop_by = entry.stop_by.expect("stopped for lost contact");
        assert!(stop_by <= paused + Duration::from_secs(3), "{entry:?}");
    }
    // Longer than the TTL: etcd expires both leases when it runs again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    etcd.resume();
    // Whichever host is back first sees the other's lease expired and fails its group
    // over to itself (a placement written to etcd, which then stays): each group ends on
    // one host that both agree on, taken only through its owner key.
    a.wait_state(FleetState::Connected).await;
    b.wait_state(FleetState::Connected).await;
    for (group, first) in [("g1", "a"), ("g2", "b")] {
        let peer = a.wait_placed_somewhere(group).await;
        b.wait_placed(group, &peer).await;
        let owners = etcd.owners_never_overlapped(PREFIX, group).await;
        assert_eq!(
            owners.first().map(String::as_str),
            Some(first),
            "{owners:?}"
        );
        assert!(
            owners.len() >= 2,
            "{group}: taken again after the leases expired: {owners:?}"
        );
    }
    assert_never_served_twice(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_partition_keeps_the_lease_and_the_group_comes_back() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    let mut a = Host::start("a", &etcd.endpoint(), "6s", &groups(&["a", "b"]), &log);
    a.wait_placed("g", "a").await;
    etcd.pause();
    a.wait_placed("g", "").await;
    // Resumed before the lease could expire: the key was ours throughout, and the group
    // is served again once the applier released it (so no stop is ever skipped).
    etcd.resume();
    a.wait_placed("g", "a").await;
    a.wait_state(FleetState::Connected).await;
    let owners = etcd.owners_never_overlapped(PREFIX, "g").await;
    assert!(
        owners.iter().all(|o| o == "a") && !owners.is_empty(),
        "{owners:?}"
    );
    assert_never_served_twice(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_takes_its_group_back_only_through_the_owner_key() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    let config = groups(&["a", "b"]);
    let mut a = Host::start("a", &etcd.endpoint(), "3s", &config, &log);
    let mut b = Host::start("b", &etcd.endpoint(), "3s", &config, &log);
    a.wait_placed("g", "a").await;
    b.wait_state(FleetState::Connected).await;
    a.crash();
    // Back at once, before the old lease expired: its report key moves to the new lease,
    // so nobody sees a die and nothing fails over; the old owner key blocks until the
    // old lease expires.
    let mut again = Host::start("a", &etcd.endpoint(), "3s", &config, &log);
    again.wait_state(FleetState::Connected).await;
    again.wait_placed("g", "a").await;
    let history = etcd.history(&format!("{PREFIX}/groups/g/owner")).await;
    let leases: Vec<i64> = history
        .iter()
        .filter(|c| c.value.is_some())
        .map(|c| c.lease)
        .collect();
    assert_eq!(leases.len(), 2, "{history:#?}");
    assert_ne!(
        leases[0], leases[1],
        "retaken under the new lease: {history:#?}"
    );
    assert_eq!(etcd.owners_never_overlapped(PREFIX, "g").await, ["a", "a"]);
    assert!(
        etcd.history(&format!("{PREFIX}/groups/g/peer"))
            .await
            .is_empty(),
        "no failover"
    );
    assert_never_served_twice(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_at_start_up_then_an_etcd_restart() {
    let Some(mut etcd) = Etcd::not_started() else {
        return;
    };
    let log = Log::default();
    let mut a = Host::start("a", &etcd.endpoint(), "3s", &groups(&["a"]), &log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.fleet.state(), FleetState::Connecting);
    assert_eq!(
        a.placed("g").as_deref(),
        Some(""),
        "not served without the key"
    );
    assert!(matches!(
        a.fleet.hosts().await,
        Err(FleetError::NotConnected("connecting"))
    ));
    etcd.spawn();
    etcd.wait_ready().await;
    a.wait_placed("g", "a").await;
    a.wait_state(FleetState::Connected).await;
    a.fleet
        .report(HostReport {
            config_generation: 7,
            ..HostReport::empty()
        })
        .await;

    // kill -9 and start again on the same data and ports: the session recovers.
    etcd.kill();
    etcd.spawn();
    etcd.wait_ready().await;
    a.wait_state(FleetState::Connected).await;
    a.wait_placed("g", "a").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(hosts) = a.fleet.hosts().await
            && hosts
                .iter()
                .any(|h| h.report.as_ref().is_some_and(|r| r.config_generation == 7))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the report never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_never_served_twice(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_removed_by_a_reload_gives_its_key_back_once_released() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    let both = "[groups.g]\npeers = [\"a\"]\n[groups.h]\npeers = [\"a\"]\n";
    let mut a = Host::start("a", &etcd.endpoint(), "10s", both, &log);
    a.wait_placed("g", "a").await;
    a.wait_placed("h", "a").await;
    // The applier's order: update_config, apply the reload (stopping g), release.
    let fewer = host_config(
        "a",
        &etcd.endpoint(),
        "10s",
        "[groups.h]\npeers = [\"a\"]\n",
    );
    a.fleet.update_config(&fewer).await;
    a.fleet.release("g").await;
    let mut client = etcd.client().await;
    let key = format!("{PREFIX}/groups/g/owner");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client.get(key.as_str(), None).await.unwrap().count() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // h is untouched.
    assert_eq!(
        client
            .get(format!("{PREFIX}/groups/h/owner"), None)
            .await
            .unwrap()
            .count(),
        1
    );
    assert_eq!(etcd.owners_never_overlapped(PREFIX, "g").await, ["a"]);
}

/// The fleet's figures (README "Performance"), at module level: `MoveGroup` until the new
/// host is told to serve, a crash until failover, and what etcd receives at rest. Run
/// with `cargo test --release --test fleet -- --ignored --nocapture fleet_figures`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it by name"]
async fn fleet_figures() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let log = Log::default();
    let config = groups(&["a", "b", "c"]);
    let ttl = 3;
    let mut a = Host::start("a", &etcd.endpoint(), &format!("{ttl}s"), &config, &log);
    let mut b = Host::start("b", &etcd.endpoint(), &format!("{ttl}s"), &config, &log);
    let mut c = Host::start("c", &etcd.endpoint(), &format!("{ttl}s"), &config, &log);
    a.wait_placed("g", "a").await;
    b.wait_state(FleetState::Connected).await;
    c.wait_state(FleetState::Connected).await;

    let mut moves = Vec::new();
    for round in 0..10 {
        let (from, to) = if round % 2 == 0 {
            (&a, &mut b)
        } else {
            (&b, &mut a)
        };
        let target = to.name.clone();
        let started = Instant::now();
        from.fleet.move_group("g", &target).await.unwrap();
        to.wait_placed("g", &target).await;
        moves.push(started.elapsed());
    }
    moves.sort();
    println!(
        "MoveGroup -> placed on the new host (fleet only, no services): median {:?}, max {:?}",
        moves[moves.len() / 2],
        moves[moves.len() - 1]
    );

    let window = Duration::from_secs(30);
    let before = etcd.requests().await;
    tokio::time::sleep(window).await;
    let after = etcd.requests().await;
    let mut at_rest: Vec<String> = Vec::new();
    for (method, count) in &after {
        let delta = count - before.get(method).copied().unwrap_or(0.0);
        if delta > 0.0 {
            at_rest.push(format!(
                "{method}: {:.2}/s per host",
                delta / window.as_secs_f64() / 3.0
            ));
        }
    }
    println!(
        "etcd requests at rest over {window:?} with lease_ttl {ttl}s: {}",
        at_rest.join(", ")
    );

    a.wait_placed("g", "a").await;
    a.crash();
    let crashed = Instant::now();
    b.wait_placed("g", "b").await;
    println!(
        "crash -> failover placed on the next peer: {:?} (lease TTL {ttl}s)",
        crashed.elapsed()
    );
    assert_never_served_twice(&log);
}
