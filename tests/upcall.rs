//! Upcalls over D-Bus with several real client connections and a real service sending
//! `upcall.invalidate` / `upcall.conflict` on its control channel: unicast delivery,
//! lease recall and revoke, disconnect clean-up, expiry and caps.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::*;
use zbus::message::Type as MessageType;
use zbus::{Connection, MatchRule, MessageStream};

fn config(dir: &std::path::Path) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/control_service.py");
    format!(
        r#"
[daemon]
lease_recall_timeout = "300ms"
upcall_expiry = "400ms"
max_watches_per_client = 3
max_leases_per_client = 2

[services.fs]
exec = ["python3", "{script}", "{socket}"]
control_socket = "{socket}"
upcall = true

[services.fs.methods.invalidate]
control = "invalidate"
[services.fs.methods.conflict]
control = "conflict"

[services.plain]
exec = ["sleep", "9101"]
"#,
        script = script.display(),
        socket = dir.join("fs.sock").display()
    )
}

/// A D-Bus client of the Upcall interface, with the signals it receives.
struct Client {
    connection: Connection,
    signals: MessageStream,
}

impl Client {
    async fn new(bus: &TestBus) -> Client {
        let connection = bus.connect().await;
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.corral.Corral1.Upcall")
            .build()
            .unwrap();
        let signals = MessageStream::for_match_rule(rule, &connection, None)
            .await
            .unwrap();
        Client {
            connection,
            signals,
        }
    }

    async fn call<B>(&self, method: &str, body: &B) -> zbus::Result<zbus::Message>
    where
        B: serde::Serialize + zbus::wire::DynamicType,
    {
        self.connection
            .call_method(
                Some("org.corral.Corral1"),
                "/org/corral/Corral1",
                Some("org.corral.Corral1.Upcall"),
                method,
                body,
            )
            .await
    }

    async fn watch(&self, resource: &str) -> zbus::Result<()> {
        self.call("Watch", &("fs", resource)).await.map(drop)
    }

    async fn acquire(&self, resource: &str, kind: &str) -> zbus::Result<u64> {
        self.call("AcquireLease", &("fs", resource, kind))
            .await?
            .body()
            .deserialize()
    }

    async fn release(&self, lease: u64) -> zbus::Result<()> {
        self.call("ReleaseLease", &(lease,)).await.map(drop)
    }

    /// The next upcall signal: member and its arguments as JSON.
    async fn next(&mut self) -> (String, serde_json::Value) {
        let message = tokio::time::timeout(PATIENCE, self.signals.next())
            .await
            .expect("an upcall signal within the patience")
            .unwrap()
            .unwrap();
        let body = message.body();
        let args: zbus::wire::Structure<'_> = body.deserialize().unwrap();
        let args: Vec<_> = args
            .fields()
            .iter()
            .map(corral::ctl::monitor::to_json)
            .collect();
        (
            message.header().member().unwrap().to_string(),
            serde_json::Value::Array(args),
        )
    }
}

/// Makes the service send `upcall.invalidate` for `resource`.
async fn invalidate(conn: &Connection, resource: &str, attrs: &[&str]) {
    let mut args = vec![resource.to_string()];
    args.extend(attrs.iter().map(|a| a.to_string()));
    service(conn, "fs")
        .await
        .call("invalidate", &args)
        .await
        .unwrap();
}

async fn started(bus: &TestBus, dir: &std::path::Path) -> (Corrald, Connection) {
    let corrald = Corrald::start(bus, &config(dir)).await;
    let conn = bus.connect().await;
    let fs = service(&conn, "fs").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    wait_until(&mut recorder, || async { fs.online().await.unwrap() }).await;
    (corrald, conn)
}

#[tokio::test]
async fn invalidations_reach_only_the_clients_watching_that_resource() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let (_corrald, conn) = started(&bus, dir.path()).await;
    let mut a = Client::new(&bus).await;
    let mut b = Client::new(&bus).await;
    let mut c = Client::new(&bus).await;
    a.watch("/x").await.unwrap();
    b.watch("/y").await.unwrap();
    c.watch("/z").await.unwrap();

    invalidate(&conn, "/x", &["mtime", "size"]).await;
    invalidate(&conn, "/y", &["mode"]).await;
    invalidate(&conn, "/z", &[]).await;
    assert_eq!(
        a.next().await,
        (
            "Invalidate".into(),
            serde_json::json!(["fs", "/x", ["mtime", "size"]])
        )
    );
    assert_eq!(
        b.next().await,
        (
            "Invalidate".into(),
            serde_json::json!(["fs", "/y", ["mode"]])
        )
    );
    // c's first upcall is its own: /x and /y were unicast to a and b only.
    assert_eq!(
        c.next().await,
        ("Invalidate".into(), serde_json::json!(["fs", "/z", []]))
    );

    // Unwatch: no more for a; its next signal is from a new watch.
    a.call("Unwatch", &("fs", "/x")).await.unwrap();
    a.watch("/w").await.unwrap();
    invalidate(&conn, "/x", &[]).await;
    invalidate(&conn, "/w", &[]).await;
    assert_eq!(a.next().await.1[1], "/w");
}

#[tokio::test]
async fn a_conflicting_lease_recalls_then_revokes_the_holders() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let (_corrald, _conn) = started(&bus, dir.path()).await;
    let mut a = Client::new(&bus).await;
    let mut b = Client::new(&bus).await;
    let c = Client::new(&bus).await;
    let la = a.acquire("/f", "read").await.unwrap();
    let lb = b.acquire("/f", "read").await.unwrap();
    assert_ne!(la, lb, "read leases share");

    // c wants to write: a and b are recalled; a releases, b does not and is revoked.
    let started = Instant::now();
    let writer = tokio::spawn(async move { (c.acquire("/f", "write").await, c) });
    assert_eq!(
        a.next().await,
        ("RecallLease".into(), serde_json::json!([la, "fs", "/f"]))
    );
    assert_eq!(
        b.next().await,
        ("RecallLease".into(), serde_json::json!([lb, "fs", "/f"]))
    );
    a.release(la).await.unwrap();
    let (granted, c) = writer.await.unwrap();
    let lc = granted.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited lease_recall_timeout for b"
    );
    assert!(lc != la && lc != lb);
    // b's lease is gone: releasing it is an error.
    let err = b.release(lb).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.InvalidArgs");

    // A client that leaves loses its leases at once: no recall wait for the next writer.
    drop(c);
    let d = Client::new(&bus).await;
    let started = Instant::now();
    tokio::time::timeout(PATIENCE, async {
        loop {
            // The bus tells corrald about c leaving asynchronously; retry until granted.
            match tokio::time::timeout(Duration::from_millis(250), d.acquire("/f", "write")).await {
                Ok(result) => return result.unwrap(),
                Err(_) => continue,
            }
        }
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_millis(1000));
}

#[tokio::test]
async fn the_service_can_recall_leases_on_a_resource() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let (_corrald, conn) = started(&bus, dir.path()).await;
    let mut a = Client::new(&bus).await;
    let lease = a.acquire("/c", "write").await.unwrap();
    service(&conn, "fs")
        .await
        .call("conflict", &["/c".to_string()])
        .await
        .unwrap();
    assert_eq!(
        a.next().await,
        ("RecallLease".into(), serde_json::json!([lease, "fs", "/c"]))
    );
}

#[tokio::test]
async fn caps_expiry_and_disabled_services() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let (_corrald, conn) = started(&bus, dir.path()).await;
    let mut a = Client::new(&bus).await;
    for r in ["/1", "/2", "/3"] {
        a.watch(r).await.unwrap();
    }
    let err = a.watch("/4").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.QueueFull");
    assert!(err.to_string().contains("max_watches_per_client"), "{err}");
    a.acquire("/l1", "read").await.unwrap();
    a.acquire("/l2", "read").await.unwrap();
    let err = a.acquire("/l3", "read").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.QueueFull");
    let err = a.acquire("/l3", "exclusive").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.InvalidArgs");

    let err = a.call("Watch", &("plain", "/x")).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.InvalidArgs");
    assert!(err.to_string().contains("upcall = true"), "{err}");
    let err = a.call("Watch", &("nosuch", "/x")).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NoSuchService");

    // Unused for upcall_expiry (400 ms), the watches are dropped: room for new ones, and
    // an invalidation of an expired one reaches nobody.
    tokio::time::sleep(Duration::from_millis(700)).await;
    invalidate(&conn, "/1", &[]).await;
    a.watch("/fresh")
        .await
        .expect("expired watches no longer count toward the cap");
    invalidate(&conn, "/fresh", &[]).await;
    assert_eq!(a.next().await.1[1], "/fresh", "nothing for the expired /1");
}
