//! Several real corrald processes sharing one real etcd, each on its own private bus: the
//! fleet as an operator runs it. The grouped service of every host is a shell loop that
//! writes its own log — `start`, a heartbeat every 50 ms, `stop` — into one file per group
//! shared by all hosts, so "never served twice" can be checked on one clock from the
//! services' own point of view, next to etcd's owner-key history. Each line names the
//! service's parent, the corrald that started it: the configurations stay identical on
//! every host (no drift), and the test still knows which host ran what.

use std::path::Path;
use std::time::Duration;

use corral::client::ManagerProxy;
use zbus::Connection;

use super::etcd::Etcd;
use super::{Corrald, SignalRecorder, TestBus, manager, service, wait_until};

/// Where every fleet test keeps its keys.
pub const PREFIX: &str = "/corral";
/// Small, so that expiry and failover happen within a test's patience.
pub const TTL: Duration = Duration::from_secs(3);

/// The grouped service `worker-<group>`, logging to `<dir>/<group>.log`: `start`, a
/// heartbeat every 50 ms, and `stop` on SIGTERM, each as `KIND CORRALD_PID NANOS PID`.
pub fn worker(group: &str, dir: &Path) -> String {
    logging_service(&format!("worker-{group}"), group, dir, false)
}

/// Like [`worker`], but `stubborn-<group>` ignores SIGTERM and has a long `stop_timeout`:
/// only a deadline of corrald's own ends it (logging to `<dir>/stubborn-<group>.log`).
pub fn stubborn(group: &str, dir: &Path) -> String {
    logging_service(&format!("stubborn-{group}"), group, dir, true)
}

fn logging_service(name: &str, group: &str, dir: &Path, stubborn: bool) -> String {
    let log = dir.join(format!("{}.log", name.trim_start_matches("worker-")));
    let on_term = if stubborn {
        String::new()
    } else {
        format!(
            "echo \"stop $PPID $(date +%s%N) $$\" >> {log}; exit 0",
            log = log.display()
        )
    };
    let script = format!(
        "trap '{on_term}' TERM; \
         echo \"start $PPID $(date +%s%N) $$\" >> {log}; \
         while :; do echo \"beat $PPID $(date +%s%N) $$\" >> {log}; sleep 0.05; done",
        log = log.display()
    );
    let stop_timeout = if stubborn { "60s" } else { "20s" };
    format!(
        "[services.{name}]\ngroup = \"{group}\"\nexec = [\"/bin/sh\", \"-c\", {script:?}]\n\
         stop_timeout = \"{stop_timeout}\"\n"
    )
}

/// One corrald of the fleet, on its own bus.
pub struct Host {
    pub name: String,
    pub bus: TestBus,
    pub corrald: Option<Corrald>,
    /// The corralds of this host that were killed (their logs, the fence's included).
    pub crashed: Vec<Corrald>,
    /// The PID of every corrald this host ran, first to last.
    pub pids: Vec<u32>,
    pub conn: Connection,
    /// Its configuration text (what a restart starts again with).
    pub config: String,
}

impl Host {
    /// Starts host `name` with `body` (groups and services) below its `[daemon]` and
    /// `[fleet]` tables, and waits for READY=1.
    pub async fn start(name: &str, etcd: &Etcd, body: &str) -> Host {
        let config = format!(
            "[daemon]\nhost = \"{name}\"\n[fleet]\netcd = [\"{}\"]\nprefix = \"{PREFIX}\"\n\
             lease_ttl = \"{}s\"\n{body}",
            etcd.endpoint(),
            TTL.as_secs()
        );
        let bus = TestBus::start();
        let corrald = Corrald::start(&bus, &config).await;
        let conn = bus.connect().await;
        Host {
            name: name.to_owned(),
            bus,
            pids: vec![corrald.pid()],
            corrald: Some(corrald),
            crashed: Vec::new(),
            conn,
            config,
        }
    }

    /// Starts this host's corrald again, with the same name and configuration.
    pub async fn restart(&mut self) {
        assert!(self.corrald.is_none(), "{} still runs", self.name);
        let corrald = Corrald::start(&self.bus, &self.config).await;
        self.pids.push(corrald.pid());
        self.corrald = Some(corrald);
        self.conn = self.bus.connect().await;
    }

    /// kill -9 of corrald; returns once it is gone.
    pub async fn crash(&mut self) {
        let mut corrald = self.corrald.take().expect("running");
        corrald.signal(nix::sys::signal::Signal::SIGKILL);
        corrald.wait_exit().await;
        self.crashed.push(corrald);
    }

    /// What the corrald that was killed last wrote (the fence writes there too).
    pub fn crashed_log(&self) -> String {
        self.crashed.last().map(Corrald::log).unwrap_or_default()
    }

    pub async fn manager(&self) -> ManagerProxy<'static> {
        manager(&self.conn).await
    }

    /// Waits until service `name`'s `ActiveState` is `state` on this host.
    pub async fn wait_service(&self, name: &str, state: &str) {
        let mut recorder = SignalRecorder::new(&self.conn).await;
        let conn = &self.conn;
        wait_until(&mut recorder, || async move {
            service(conn, name)
                .await
                .active_state()
                .await
                .ok()
                .as_deref()
                == Some(state)
        })
        .await;
    }

    /// Waits until this host's `Fleet` property is `state`.
    pub async fn wait_fleet(&self, state: &str) {
        let mut recorder = SignalRecorder::new(&self.conn).await;
        let m = self.manager().await;
        let m = &m;
        wait_until(&mut recorder, || async move {
            m.fleet().await.ok().as_deref() == Some(state)
        })
        .await;
    }

    /// The `MainPID` of service `name` here.
    pub async fn main_pid(&self, name: &str) -> u32 {
        service(&self.conn, name).await.main_pid().await.unwrap()
    }
}

/// One run of a worker, from its own log lines.
#[derive(Debug, Clone)]
pub struct Life {
    pub host: String,
    pub pid: u32,
    /// Nanoseconds since the epoch.
    pub start: u128,
    /// Its `stop` line, else its last heartbeat (it was killed).
    pub end: u128,
    pub stopped: bool,
}

/// Every run of the service that logs to `<dir>/<log>.log` (`g` for `worker-g`,
/// `stubborn-g`), in start order, each named after the host of the corrald that started it.
pub fn lives(dir: &Path, log: &str, hosts: &[&Host]) -> Vec<Life> {
    let text = std::fs::read_to_string(dir.join(format!("{log}.log"))).unwrap_or_default();
    let host_of = |parent: &str| {
        let parent: u32 = parent.parse().unwrap_or(0);
        hosts
            .iter()
            .find(|h| h.pids.contains(&parent))
            .map_or_else(|| format!("corrald {parent}?"), |h| h.name.clone())
    };
    let mut lives: Vec<Life> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [kind, parent, nanos, pid] = fields[..] else {
            continue;
        };
        let host = host_of(parent);
        let (Ok(nanos), Ok(pid)) = (nanos.parse::<u128>(), pid.parse::<u32>()) else {
            continue;
        };
        match lives.iter_mut().find(|l| l.pid == pid && l.host == host) {
            Some(life) => {
                life.end = life.end.max(nanos);
                life.stopped |= kind == "stop";
            }
            None => lives.push(Life {
                host,
                pid,
                start: nanos,
                end: nanos,
                stopped: kind == "stop",
            }),
        }
    }
    lives.sort_by_key(|l| l.start);
    lives
}

/// No two workers of `group` ran at the same time, by their own logs. Returns the hosts in
/// the order they ran it.
pub fn never_served_twice(dir: &Path, group: &str, hosts: &[&Host]) -> Vec<String> {
    let lives = lives(dir, group, hosts);
    for pair in lives.windows(2) {
        assert!(
            pair[0].end < pair[1].start,
            "{} ran {group} until {} but {} started it at {}: {lives:#?}",
            pair[0].host,
            pair[0].end,
            pair[1].host,
            pair[1].start
        );
    }
    lives.into_iter().map(|l| l.host).collect()
}

/// Now, as the workers' `date +%s%N` counts.
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
