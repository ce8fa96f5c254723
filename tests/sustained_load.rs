//! Sustained load: many clients subscribed to every signal while many services crash and
//! restart continuously (`restart = "always"`, `restart_delay = "0s"`). At the end every
//! service is stopped and a reload marks the end of the stream; then every client must
//! have received the same signals, in the same order, and each service's count of
//! `ServiceStateChanged(…, "active", …)` must be its starts (`NRestarts` + 1): none lost,
//! none out of order. corrald's RSS after warm-up and at the end, and `ListServices` p99
//! under load, are printed (`--nocapture`), not asserted.
//!
//! Size from the environment: `CORRAL_LOAD_CLIENTS` (20), `CORRAL_LOAD_SERVICES` (100),
//! `CORRAL_LOAD_SECONDS` (60: the minute CI runs), and each run's life
//! `CORRAL_LOAD_LIFETIME_MS` (500). The long forms: 100 clients, 1000 services, 600
//! seconds; one hour (3600 seconds).
//!
//! Each client keeps a digest of what it received (a running hash over every signal in
//! order, counts, activations per service), not the signals: an hour of churn is millions
//! of signals per client.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::*;
use zbus::message::Type as MessageType;
use zbus::{MatchRule, MessageStream};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// What one client received, in a form that stays small over an hour.
#[derive(Debug, PartialEq, Eq, Default)]
struct Received {
    /// Every signal (member, path, first args) folded in order into one hash.
    order: u64,
    signals: u64,
    state_changes: u64,
    properties: u64,
    /// `ServiceStateChanged(name, "active", …)` per service.
    activations: BTreeMap<String, u32>,
}

impl Received {
    fn add(&mut self, member: &str, path: &str, args: &str) {
        use std::hash::{DefaultHasher, Hash, Hasher};
        // DefaultHasher::new() has fixed keys: every client folds to the same value.
        let mut hasher = DefaultHasher::new();
        (self.order, member, path, args).hash(&mut hasher);
        self.order = hasher.finish();
        self.signals += 1;
        match member {
            "ServiceStateChanged" => {
                self.state_changes += 1;
                let mut words = args.split(' ');
                let (name, active) = (words.next().unwrap(), words.next().unwrap());
                if active == "active" {
                    *self.activations.entry(name.to_owned()).or_default() += 1;
                }
            }
            "PropertiesChanged" => self.properties += 1,
            _ => {}
        }
    }
}

/// A client on its own connection recording every signal corrald sends until it sees
/// `ReloadFinished` for generation `end` (sent through the returned channel).
async fn subscriber(bus: &TestBus) -> tokio::task::JoinHandle<Received> {
    let conn = bus.connect().await;
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender("org.corral.Corral1")
        .build()
        .unwrap();
    let mut stream =
        MessageStream::for_match_rule(rule, &conn, std::num::NonZeroUsize::new(1 << 20))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _conn = conn;
        let mut received = Received::default();
        while let Some(Ok(message)) = stream.next().await {
            let header = message.header();
            let member = header.member().map(|m| m.to_string()).unwrap_or_default();
            let path = header.path().map(|p| p.to_string()).unwrap_or_default();
            let args = match member.as_str() {
                "ServiceStateChanged" => {
                    let (name, active, sub): (String, String, String) =
                        message.body().deserialize().unwrap();
                    format!("{name} {active} {sub}")
                }
                "ReloadFinished" => "end".to_owned(),
                _ => String::new(),
            };
            let end = args == "end";
            received.add(&member, &path, &args);
            if end {
                break;
            }
        }
        received
    })
}

#[tokio::test]
async fn every_client_sees_every_state_change_of_crashing_services_in_order() {
    let clients = env("CORRAL_LOAD_CLIENTS", 20);
    let services = env("CORRAL_LOAD_SERVICES", 100);
    let seconds = env("CORRAL_LOAD_SECONDS", 60);
    let lifetime = env("CORRAL_LOAD_LIFETIME_MS", 500) as f64 / 1000.0;
    let bus = TestBus::start();
    let config: String = (0..services)
        .map(|i| {
            format!(
                "[services.c{i}]\nautostart = false\nexec = [\"sleep\", \"{lifetime}\"]\nrestart = \"always\"\nrestart_delay = \"0s\"\nstart_limit_burst = 1000000\n"
            )
        })
        .collect();
    let corrald = Corrald::start(&bus, &config).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let mut subscribers = Vec::new();
    for _ in 0..clients {
        subscribers.push(subscriber(&bus).await);
    }
    // Started once every client listens, so each client sees every start.
    for i in 0..services {
        m.start_service(&format!("c{i}")).await.unwrap();
    }

    let started = Instant::now();
    let warm_up = Duration::from_secs(seconds / 3);
    let mut warm = None;
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        let rows = m.list_services().await.unwrap();
        latencies.push(t.elapsed());
        assert_eq!(rows.len() as u64, services);
        if warm.is_none() && started.elapsed() > warm_up {
            warm = Some(rss_kib(corrald.pid()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end_rss = rss_kib(corrald.pid());

    // Stop the churn, then a reload (nothing changed) marks the end of the stream.
    for i in 0..services {
        m.stop_service(&format!("c{i}")).await.unwrap();
    }
    m.reload().await.unwrap();
    let mut all = Vec::new();
    for subscriber in subscribers {
        all.push(
            tokio::time::timeout(Duration::from_secs(120), subscriber)
                .await
                .expect("every client got to the end")
                .unwrap(),
        );
    }
    let first = &all[0];
    for (n, other) in all.iter().enumerate().skip(1) {
        assert_eq!(
            other.signals, first.signals,
            "client {n} got as many signals as client 0"
        );
        assert_eq!(
            other, first,
            "client {n} got the same signals in the same order"
        );
    }
    let (activations, state_changes) = (&first.activations, first.state_changes);
    let mut starts = 0;
    for i in 0..services {
        let name = format!("c{i}");
        let svc = service(&conn, &name).await;
        let expected = svc.n_restarts().await.unwrap() + 1;
        starts += expected;
        assert_eq!(
            activations.get(&name).copied().unwrap_or(0),
            expected,
            "{name}: one ServiceStateChanged to active per start"
        );
    }
    let properties = first.properties;
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    let warm = warm.unwrap_or(end_rss);
    println!(
        "figure: {clients} clients, {services} services living {lifetime} s, {seconds} s: {starts} starts, {state_changes} ServiceStateChanged and {properties} PropertiesChanged per client, identical in every client; ListServices p99 {p99:?} over {} calls; corrald RSS {warm} KiB after warm-up, {end_rss} KiB at the end",
        latencies.len()
    );
    assert!(
        end_rss < warm + 64 * 1024,
        "corrald grew from {warm} KiB to {end_rss} KiB"
    );
}
