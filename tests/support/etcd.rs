//! A real etcd for the fleet tests: one server per test on free loopback ports with a
//! temporary data directory, killed on drop; SIGSTOP/SIGCONT to cut it off without
//! closing its sockets (a partition as the clients see it); a restart on the same data and
//! ports; and the history of keys, read back from revision 1, to check what happened.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// Where Debian's etcd-server puts the server.
const ETCD: &str = "/usr/bin/etcd";

/// One etcd server on loopback.
pub struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

/// One change of a key, as etcd's history has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: i64,
    pub key: String,
    /// `None`: deleted.
    pub value: Option<String>,
    /// The key's version after the change (1: created by it).
    pub version: i64,
    pub lease: i64,
}

impl Etcd {
    /// Starts a server and waits until it answers; `None` (after saying why) when the
    /// etcd binary is not installed (`apt-get install etcd-server`).
    pub async fn start() -> Option<Etcd> {
        if !Path::new(ETCD).exists() {
            eprintln!(
                "SKIPPED: {ETCD} is missing: apt-get install etcd-server (scripts/install-deps)"
            );
            return None;
        }
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn();
        etcd.wait_ready().await;
        Some(etcd)
    }

    /// A server that will listen on a port nobody answers on yet: `endpoint()` is
    /// unreachable until `spawn` + `wait_ready`.
    pub fn not_started() -> Option<Etcd> {
        if !Path::new(ETCD).exists() {
            eprintln!(
                "SKIPPED: {ETCD} is missing: apt-get install etcd-server (scripts/install-deps)"
            );
            return None;
        }
        Some(Etcd {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts the server process (again) on the same data directory and ports.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(ETCD)
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=error")
            .arg("--logger=zap")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    /// Waits until the server answers a request (bounded: the test fails after 20 s).
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Ok(mut client)) = tokio::time::timeout(
                Duration::from_secs(1),
                Client::connect([self.endpoint()], None),
            )
            .await
                && let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), client.get("/", None)).await
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "etcd did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("etcd runs").id() as i32)
    }

    /// Freezes the server: its sockets stay open, nothing is answered.
    pub fn pause(&self) {
        kill(self.pid(), Signal::SIGSTOP).unwrap();
    }

    pub fn resume(&self) {
        kill(self.pid(), Signal::SIGCONT).unwrap();
    }

    /// kill -9 and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The gRPC messages etcd has received so far, by method (from its `/metrics`): what
    /// the hosts cost it.
    pub async fn requests(&self) -> std::collections::BTreeMap<String, f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.endpoint().trim_start_matches("http://").to_owned();
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let mut counts = std::collections::BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("grpc_server_msg_received_total{") else {
                continue;
            };
            let method = rest
                .split("grpc_method=\"")
                .nth(1)
                .and_then(|m| m.split('"').next())
                .unwrap_or("?");
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            *counts.entry(method.to_owned()).or_default() += value;
        }
        counts
    }

    /// A client for the test's own reads and writes.
    pub async fn client(&self) -> Client {
        Client::connect([self.endpoint()], None).await.unwrap()
    }

    /// Every change of the keys starting with `prefix`, from revision 1 on (etcd keeps
    /// history until a compaction, and the tests never compact).
    pub async fn history(&self, prefix: &str) -> Vec<Change> {
        let mut client = self.client().await;
        // A marker written now: once the watch delivered it, it delivered everything.
        let marker = format!("{prefix}\u{7f}history-end");
        let written = client.put(marker.as_str(), "", None).await.unwrap();
        let end = written.header().unwrap().revision();
        let options = WatchOptions::new().with_prefix().with_start_revision(1);
        let mut stream = client.watch(prefix, Some(options)).await.unwrap();
        let mut changes = Vec::new();
        loop {
            let response = tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .expect("history arrives")
                .unwrap()
                .expect("watch stays open");
            for event in response.events() {
                let kv = event.kv().unwrap();
                if kv.mod_revision() >= end {
                    return changes;
                }
                // Markers of earlier calls are this helper's, not the system's.
                if kv.key().ends_with("\u{7f}history-end".as_bytes()) {
                    continue;
                }
                let deleted = event.event_type() == EventType::Delete;
                changes.push(Change {
                    revision: kv.mod_revision(),
                    key: kv.key_str().unwrap().to_owned(),
                    value: (!deleted).then(|| kv.value_str().unwrap().to_owned()),
                    version: kv.version(),
                    lease: kv.lease(),
                });
            }
        }
    }

    /// The owner-key history of `group` below fleet prefix `prefix`, checked: every
    /// owner created the key while nobody held it (a create, never an overwrite), and it
    /// was deleted before the next one created it. Returns the owners in order.
    pub async fn owners_never_overlapped(&self, prefix: &str, group: &str) -> Vec<String> {
        let key = format!("{prefix}/groups/{group}/owner");
        let history = self.history(&key).await;
        let mut owners = Vec::new();
        let mut held_by: Option<String> = None;
        for change in history.iter().filter(|c| c.key == key) {
            match &change.value {
                Some(host) => {
                    assert_eq!(
                        (change.version, &held_by),
                        (1, &None),
                        "{host} took {key} while {held_by:?} held it: {history:#?}"
                    );
                    held_by = Some(host.clone());
                    owners.push(host.clone());
                }
                None => {
                    assert!(held_by.is_some(), "deleted twice: {history:#?}");
                    held_by = None;
                }
            }
        }
        owners
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server would not die from SIGKILL until continued on some kernels.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
        }
        self.kill();
    }
}

/// A port free on loopback right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
