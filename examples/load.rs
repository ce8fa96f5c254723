//! The benchmarks' load generator (`bench/run` drives it; see README "Performance").
//!
//! One subcommand per measurement; each prints one JSON object on stdout. Processes it
//! does not start itself (dbus-daemon, corrald, supervisord) are started, timed and
//! cleaned up by `bench/run`; this program only talks to them over the bus, so the
//! client side of every comparison is the same zbus code.
//!
//! - `floor N`: spawn N `/bin/sleep infinity` one after another, waiting for each exec
//!   (std's spawn returns once exec succeeded), then kill them: the cold-start floor.
//! - `latency BUS CALLS`: sequential round trips, interleaved in blocks: the bus's own
//!   `GetId`, `Get(ActiveState)` on services, `ListServices`.
//! - `throughput BUS CLIENTS SECS TARGET`: CLIENTS connections calling sequentially for
//!   SECS; TARGET is `corral` (Get ActiveState) or `bus` (GetId).
//! - `reload BUS`: one `Reload()` timed, with the PIDs before and after.
//! - `child LOG`: a restarting service for the restart-reaction scenario: appends
//!   `start <ns>` at once, `exit <ns>` 20 ms later, and exits 1.
//! - `restart-gaps LOG`: reads that log and prints the exit → next start gaps.
//! - `restart-floor LOG RUNS`: the floor under those gaps: runs `child LOG` RUNS times,
//!   each the moment the last exits, with no supervisor between.
//! - `fanout BUS CLIENTS SECS TARGET`: unicast signals to CLIENTS receivers; TARGET `bus`
//!   is a trivial emitter (the raw rate); `corral` is upcall invalidations: every client
//!   `Watch`es one resource of the service `emitter`, which `Call("burst")` makes send
//!   invalidation frames over its control socket, each fanned out to all clients.
//! - `emitter SOCK`: that service: answers corrald's control connection on SOCK; the
//!   request `burst N RESOURCE` sends N `upcall.invalidate` frames, then the reply.
//! - `check-times BUS SECS INTERVAL_MS`: for SECS, follows every service's
//!   `LastHealthCheck` (µs since the epoch, set by corrald when a check ends) through
//!   `PropertiesChanged`; prints how far each service's gap between consecutive checks is
//!   from INTERVAL_MS (ms), over all services, and how many checks it saw.
//! - `spawn-floor N SECS`: the floor of running N `/bin/true` per second from one process
//!   (spawned and awaited one after another, paced to N per second) for SECS: that
//!   process's own CPU time and its children's.
//! - `wait-active BUS N`: waits until N services are listed active (bounded).
//! - `reexec BUS`: one `Reexecute()` timed from the call until the bus name has a new
//!   owner and until `State` is `running`, with every service's PID and `NRestarts`
//!   before and after.
//! - `pids BUS`: every service's `MainPID`, as a JSON object.
//! - `recover-wait BUS PIDS T0_NS`: after corrald was killed and started again at
//!   `T0_NS` (CLOCK_MONOTONIC, taken by the caller), waits until every service of the file
//!   `PIDS` (what `pids` printed) is listed active with the same PID, and prints how long
//!   after `T0_NS` that was (bounded).
//! - `start-stop BUS SERVICE N`: N `Stop()`, `Start()` pairs on SERVICE, each call timed.
//! - `scale-calls BUS CALLS`: at many services: `Get(ActiveState)` against corrald's own
//!   `org.freedesktop.DBus.Peer.Ping` (the same two hops, no lookup), interleaved;
//!   `ListServices` and `GetManagedObjects` (what a GNOME client does on connect), a few
//!   samples each. `scale-calls-trivial BUS CALLS`: the same against the trivial server
//!   (which has no ObjectManager): the floor for `Get` against `Ping`.
//! - `storm BUS K`: SIGKILLs the main processes of the first K services listed at once,
//!   and waits until all K run again under new PIDs; meanwhile another connection calls
//!   `Get(ActiveState)` on other services in a loop. Prints the time until all were back
//!   and that call's percentiles.
//! - `trivial-server BUS N`: the floor for a call through the bus to another zbus peer:
//!   owns `org.corral.Corral1` with N service objects whose `ActiveState` is a constant
//!   and a `ListServices` that returns a prebuilt list; prints `ready`, serves until killed.

use std::io::Write;
use std::time::{Duration, Instant};

use corral::client::{ManagerProxy, ServiceRow, service};
use futures_util::StreamExt;
use serde_json::json;
use zbus::Connection;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> String {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| panic!("missing argument {i}; see the module doc"))
    };
    // `child` must start fast and does no async work.
    match arg(0).as_str() {
        "child" => return child(&arg(1)),
        "restart-floor" => return restart_floor(&arg(1), arg(2).parse()?),
        "emitter" => return emitter(&arg(1)),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = runtime.block_on(async {
        match arg(0).as_str() {
            "floor" => floor(arg(1).parse()?),
            "latency" => latency(&arg(1), arg(2).parse()?).await,
            "throughput" => throughput(&arg(1), arg(2).parse()?, arg(3).parse()?, &arg(4)).await,
            "reload" => reload(&arg(1)).await,
            "restart-gaps" => restart_gaps(&arg(1)),
            "check-times" => check_times(&arg(1), arg(2).parse()?, arg(3).parse()?).await,
            "spawn-floor" => spawn_floor(arg(1).parse()?, arg(2).parse()?),
            "fanout" => fanout(&arg(1), arg(2).parse()?, arg(3).parse()?, &arg(4)).await,
            "wait-active" => wait_active(&arg(1), arg(2).parse()?).await,
            "reexec" => reexec(&arg(1)).await,
            "pids" => Ok(json!(pids(&arg(1)).await?)),
            "recover-wait" => recover_wait(&arg(1), &arg(2), arg(3).parse()?).await,
            "start-stop" => start_stop(&arg(1), &arg(2), arg(3).parse()?).await,
            "scale-calls" => scale_calls(&arg(1), arg(2).parse()?, false).await,
            "scale-calls-trivial" => scale_calls(&arg(1), arg(2).parse()?, true).await,
            "storm" => storm(&arg(1), arg(2).parse()?).await,
            "trivial-server" => trivial_server(&arg(1), arg(2).parse()?).await,
            other => Err(format!("unknown subcommand {other}").into()),
        }
    })?;
    println!("{out}");
    Ok(())
}

async fn connect(address: &str) -> Result<Connection> {
    Ok(zbus::connection::Builder::address(address).build().await?)
}

async fn manager(connection: &Connection) -> Result<ManagerProxy<'static>> {
    Ok(ManagerProxy::builder(connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentiles(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    json!({"n": samples.len(), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)})
}

/// The cold-start floor: what spawning N processes costs this machine, with nothing else.
fn floor(n: usize) -> Result<serde_json::Value> {
    use std::os::unix::process::CommandExt;
    let start = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        let child = std::process::Command::new("/bin/sleep")
            .arg("infinity")
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .spawn()?;
        children.push(child);
    }
    let elapsed = start.elapsed();
    for child in &mut children {
        let _ = child.kill();
    }
    for child in &mut children {
        let _ = child.wait();
    }
    Ok(json!({"n": n, "ms": ms(elapsed)}))
}

/// Sequential round trips from one connection, in alternating blocks of 10 so drifts in
/// machine load hit all three kinds alike.
async fn latency(address: &str, calls: usize) -> Result<serde_json::Value> {
    let connection = connect(address).await?;
    let manager = manager(&connection).await?;
    let list = manager.list_services().await?;
    let names: Vec<String> = list.iter().map(|s| s.name.clone()).collect();
    let mut proxies = Vec::new();
    for name in names.iter().take(64) {
        proxies.push(service(&connection, name).await?);
    }
    let (mut getid, mut get, mut listing) = (Vec::new(), Vec::new(), Vec::new());
    let mut i = 0;
    while getid.len() < calls {
        for _ in 0..10 {
            let t = Instant::now();
            bus_round_trip(&connection).await?;
            getid.push(ms(t.elapsed()) * 1e3);
        }
        if !proxies.is_empty() {
            for _ in 0..10 {
                let proxy = &proxies[i % proxies.len()];
                i += 1;
                let t = Instant::now();
                let state = proxy.active_state().await?;
                get.push(ms(t.elapsed()) * 1e3);
                std::hint::black_box(state);
            }
        }
        // ListServices is ~100× larger; fewer samples.
        if getid.len() % 50 == 0 {
            let t = Instant::now();
            let list = manager.list_services().await?;
            listing.push(ms(t.elapsed()));
            std::hint::black_box(list);
        }
    }
    Ok(json!({
        "services": names.len(),
        "getid_us": percentiles(getid),
        "get_active_state_us": if get.is_empty() { json!(null) } else { percentiles(get) },
        "list_services_ms": if listing.is_empty() { json!(null) } else { percentiles(listing) },
    }))
}

/// CLIENTS connections each calling in a loop for SECS; calls per second over all.
async fn throughput(
    address: &str,
    clients: usize,
    secs: f64,
    target: &str,
) -> Result<serde_json::Value> {
    let mut tasks = Vec::new();
    let names: Vec<String> = if target == "corral" {
        let connection = connect(address).await?;
        manager(&connection)
            .await?
            .list_services()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect()
    } else {
        Vec::new()
    };
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients));
    for c in 0..clients {
        let address = address.to_owned();
        let target = target.to_owned();
        let names = names.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let connection = connect(&address).await?;
            let proxy = match names.get(c % names.len().max(1)) {
                Some(name) => Some(service(&connection, name).await?),
                None => None,
            };
            barrier.wait().await;
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(secs);
            let mut count = 0u64;
            while Instant::now() < deadline {
                if target == "corral" {
                    proxy.as_ref().expect("services").active_state().await?;
                } else {
                    bus_round_trip(&connection).await?;
                }
                count += 1;
            }
            Result::Ok((count, start.elapsed()))
        }));
    }
    let (mut total, mut longest) = (0u64, Duration::ZERO);
    for task in tasks {
        let (count, elapsed) = task.await??;
        total += count;
        longest = longest.max(elapsed);
    }
    Ok(json!({"target": target, "clients": clients, "calls": total,
              "per_s": total as f64 / longest.as_secs_f64()}))
}

/// One `Reload()`, timed, with each service's main PID before and after. Each call is
/// bounded, and a call that gets no reply says which one it was.
async fn reload(address: &str) -> Result<serde_json::Value> {
    const BOUND: Duration = Duration::from_secs(60);
    async fn bounded<T>(
        what: &str,
        call: impl std::future::Future<Output = corral::client::BusResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(BOUND, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(format!("{what}: no reply within {BOUND:?}").into()),
        }
    }
    let connection = connect(address).await?;
    let manager = manager(&connection).await?;
    let before: std::collections::HashMap<String, u32> =
        bounded("ListServices before Reload", manager.list_services())
            .await?
            .into_iter()
            .map(|s| (s.name, s.main_pid))
            .collect();
    let t = Instant::now();
    let transitions = bounded("Reload", manager.reload()).await?;
    let elapsed = t.elapsed();
    let after = bounded("ListServices after Reload", manager.list_services()).await?;
    let kept = after
        .iter()
        .filter(|s| s.main_pid != 0 && before.get(&s.name) == Some(&s.main_pid))
        .count();
    let active = after.iter().filter(|s| s.active_state == "active").count();
    Ok(
        json!({"ms": ms(elapsed), "transitions": transitions.len(), "services": after.len(),
              "pids_kept": kept, "active": active}),
    )
}

fn monotonic_ns() -> u128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

/// A service that exits 20 ms after it starts, logging both moments (CLOCK_MONOTONIC is
/// system-wide, so gaps between processes are meaningful).
fn child(log: &str) -> Result<()> {
    let started = monotonic_ns();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)?;
    file.write_all(format!("start {started}\n").as_bytes())?;
    std::thread::sleep(Duration::from_millis(20));
    file.write_all(format!("exit {}\n", monotonic_ns()).as_bytes())?;
    std::process::exit(1);
}

/// |gap − interval| between consecutive `LastHealthCheck` values of each service, in ms.
async fn check_times(address: &str, secs: f64, interval_ms: f64) -> Result<serde_json::Value> {
    let connection = connect(address).await?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.corral.Corral1")
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .build()?;
    let mut stream = zbus::MessageStream::for_match_rule(rule, &connection, None).await?;
    let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut deviations = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, stream.next()).await {
        let message = message?;
        let path = message
            .header()
            .path()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let (_, changed, _): (
            String,
            std::collections::HashMap<String, zbus::OwnedVariant>,
            Vec<String>,
        ) = message.body().deserialize()?;
        let Some(value) = changed.get("LastHealthCheck") else {
            continue;
        };
        let usec = u64::try_from(value.clone())?;
        if let Some(previous) = last.insert(path, usec) {
            deviations.push(((usec - previous) as f64 / 1e3 - interval_ms).abs());
        }
    }
    if deviations.is_empty() {
        return Err("no repeated checks seen".into());
    }
    Ok(json!({"services": last.len(), "deviation_ms": percentiles(deviations)}))
}

/// CPU time of this process and of its reaped children, in ms.
fn cpu_ms(who: i32) -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// Runs `/bin/true` `per_s` times a second for `secs`, each awaited before the next.
fn spawn_floor(per_s: u32, secs: f64) -> Result<serde_json::Value> {
    let (self_before, children_before) = (cpu_ms(libc::RUSAGE_SELF), cpu_ms(libc::RUSAGE_CHILDREN));
    let start = Instant::now();
    let total = (per_s as f64 * secs) as u32;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / per_s as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        std::process::Command::new("/bin/true")
            .stdin(std::process::Stdio::null())
            .status()?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "runs": total, "seconds": elapsed,
        "self_cpu_ms": cpu_ms(libc::RUSAGE_SELF) - self_before,
        "children_cpu_ms": cpu_ms(libc::RUSAGE_CHILDREN) - children_before,
    }))
}

/// The floor under the restart reaction: this process runs `load child LOG` again the
/// moment the last one exits (`posix_spawn`, `waitpid`), with no supervisor between.
fn restart_floor(log: &str, runs: usize) -> Result<()> {
    let me = std::env::current_exe()?;
    for _ in 0..runs {
        std::process::Command::new(&me)
            .args(["child", log])
            .status()?;
    }
    Ok(())
}

fn restart_gaps(log: &str) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(log)?;
    let mut last_exit: Option<u128> = None;
    let mut gaps = Vec::new();
    for line in text.lines() {
        let Some((kind, ns)) = line.split_once(' ') else {
            continue;
        };
        let ns: u128 = ns.parse()?;
        match kind {
            "exit" => last_exit = Some(ns),
            "start" => {
                if let Some(exit) = last_exit.take() {
                    gaps.push((ns - exit) as f64 / 1e6);
                }
            }
            _ => {}
        }
    }
    if gaps.is_empty() {
        return Err("no restarts logged".into());
    }
    Ok(json!({"gap_ms": percentiles(gaps)}))
}

/// Unicast signals to `clients` receivers for about `secs`; received signals per second,
/// from the first send to the last receipt (so what was queued counts only once it
/// arrived).
async fn fanout(
    address: &str,
    clients: usize,
    secs: f64,
    target: &str,
) -> Result<serde_json::Value> {
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut receivers = Vec::new();
    let mut names = Vec::new();
    for _ in 0..clients {
        let connection = connect(address).await?;
        names.push(connection.unique_name().expect("unique name").to_string());
        // The stream exists before any Watch, so no signal can slip past it.
        let mut stream = zbus::MessageStream::from(&connection);
        if target == "corral" {
            connection
                .call_method(
                    Some("org.corral.Corral1"),
                    "/org/corral/Corral1",
                    Some(corral::names::UPCALL_INTERFACE),
                    "Watch",
                    &(FANOUT_SERVICE, FANOUT_RESOURCE),
                )
                .await?;
        }
        let received = received.clone();
        receivers.push(tokio::spawn(async move {
            let _keep = connection;
            while let Some(Ok(message)) = stream.next().await {
                if message.header().member().is_some_and(|m| m == "Invalidate") {
                    received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    let start = Instant::now();
    let sent = match target {
        "bus" => emit_raw(address, &names, secs).await?,
        "corral" => burst(address, secs).await? * clients as u64,
        other => return Err(format!("fanout target {other}: bus or corral").into()),
    };
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while received.load(std::sync::atomic::Ordering::Relaxed) < sent
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    let got = received.load(std::sync::atomic::Ordering::Relaxed);
    for r in receivers {
        r.abort();
    }
    Ok(
        json!({"target": target, "clients": clients, "sent": sent, "received": got,
              "ms": ms(elapsed), "per_s": got as f64 / elapsed.as_secs_f64()}),
    )
}

const FANOUT_SERVICE: &str = "emitter";
const FANOUT_RESOURCE: &str = "/bench/resource";

/// The raw rate: one connection sending unicast signals round-robin to `names` for
/// `secs`, 64 in flight. Returns how many it sent.
async fn emit_raw(address: &str, names: &[String], secs: f64) -> Result<u64> {
    let emitter = connect(address).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    let attrs = vec!["mtime".to_owned()];
    while Instant::now() < deadline {
        // 64 in flight: the emitter's own round of awaits should not be the limit.
        let batch = (0..64).map(|k| {
            let dest = names[(sent as usize + k) % names.len()].clone();
            let emitter = &emitter;
            let attrs = &attrs;
            async move {
                emitter
                    .emit_signal(
                        Some(dest.as_str()),
                        "/org/corral/Bench",
                        "org.corral.Bench",
                        "Invalidate",
                        &(FANOUT_SERVICE, FANOUT_RESOURCE, attrs),
                    )
                    .await
            }
        });
        for r in futures_util::future::join_all(batch).await {
            r?;
        }
        sent += 64;
    }
    Ok(sent)
}

/// Makes the `emitter` service send invalidation frames through corrald: about `secs`
/// worth at the bus's raw rate for 100 clients (~500 frames/s), so a slower corral
/// simply takes longer. Waits (bounded) for corrald's control connection first. Returns
/// how many frames were sent.
async fn burst(address: &str, secs: f64) -> Result<u64> {
    let connection = connect(address).await?;
    let emitter = service(&connection, FANOUT_SERVICE).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !emitter.online().await.unwrap_or(false) {
        if Instant::now() > deadline {
            return Err("the emitter service is not Online after 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frames = (secs * 500.0).ceil() as u64;
    let reply = manager(&connection)
        .await?
        .call(
            FANOUT_SERVICE,
            "burst",
            &[frames.to_string(), FANOUT_RESOURCE.to_owned()],
        )
        .await?;
    if reply != format!("sent {frames}") {
        return Err(format!("burst: unexpected reply {reply:?}").into());
    }
    Ok(frames)
}

/// The fan-out scenario's service: listens on `sock` for corrald's control connection
/// and answers `burst N RESOURCE` by writing N invalidation frames, then the reply.
/// Plain blocking I/O: a full socket buffer holds the writer back, as it would any
/// service that invalidates faster than corrald relays.
fn emitter(sock: &str) -> Result<()> {
    use std::io::{BufRead, BufReader, BufWriter};
    let _ = std::fs::remove_file(sock);
    let listener = std::os::unix::net::UnixListener::bind(sock)?;
    // corrald reconnects after a lost connection; serve each in turn.
    for stream in listener.incoming() {
        let stream = stream?;
        let mut out = BufWriter::new(stream.try_clone()?);
        for line in BufReader::new(stream).lines() {
            let request: serde_json::Value = serde_json::from_str(&line?)?;
            let params = request["params"].as_array().cloned().unwrap_or_default();
            let result = match (request["method"].as_str(), params.as_slice()) {
                (Some("burst"), [n, resource]) => {
                    let n: u64 = n.as_str().unwrap_or("").parse()?;
                    let frame = json!({"jsonrpc": "2.0", "method": "upcall.invalidate",
                                       "params": {"resource": resource, "attrs": ["mtime"]}});
                    let frame = format!("{frame}\n");
                    for _ in 0..n {
                        out.write_all(frame.as_bytes())?;
                    }
                    json!({"result": format!("sent {n}")})
                }
                _ => json!({"error": {"code": -32601, "message": "burst N RESOURCE only"}}),
            };
            let mut reply = json!({"jsonrpc": "2.0", "id": request["id"]});
            reply
                .as_object_mut()
                .expect("object")
                .extend(result.as_object().expect("object").clone());
            writeln!(out, "{reply}")?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Waits (bounded by 60 s) until `n` services are listed and all active.
async fn wait_active(address: &str, n: usize) -> Result<serde_json::Value> {
    let connection = connect(address).await?;
    let manager = manager(&connection).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Before corrald owns its name the call fails; that is "not yet", too.
        let list = manager.list_services().await.unwrap_or_default();
        let active = list.iter().filter(|s| s.active_state == "active").count();
        if active >= n || Instant::now() > deadline {
            return Ok(json!({"listed": list.len(), "active": active}));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each service's `MainPID` (0 when it runs no process).
async fn pids(address: &str) -> Result<std::collections::BTreeMap<String, u32>> {
    let connection = connect(address).await?;
    let manager = manager(&connection).await?;
    Ok(manager
        .list_services()
        .await?
        .into_iter()
        .map(|s| (s.name, s.main_pid))
        .collect())
}

/// Each service's (`MainPID`, `NRestarts`).
async fn runs(connection: &Connection) -> Result<std::collections::BTreeMap<String, (u32, u32)>> {
    let mut out = std::collections::BTreeMap::new();
    for row in manager(connection).await?.list_services().await? {
        let restarts = service(connection, &row.name).await?.n_restarts().await?;
        out.insert(row.name, (row.main_pid, restarts));
    }
    Ok(out)
}

async fn reexec(address: &str) -> Result<serde_json::Value> {
    const BOUND: Duration = Duration::from_secs(60);
    let connection = connect(address).await?;
    let before = runs(&connection).await?;
    let dbus = zbus::fdo::DBusProxy::new(&connection).await?;
    let name: zbus::names::BusName = corral::names::BUS_NAME.try_into()?;
    let old_owner = dbus.get_name_owner(name.clone()).await?.to_string();
    let mut owners = dbus.receive_name_owner_changed().await?;
    let manager = manager(&connection).await?;
    let t = Instant::now();
    // The reply may be cut short by the exec (the bus then says NoReply).
    match manager.reexecute().await {
        Ok(()) => {}
        Err(corral::client::BusError::ZBus(zbus::Error::MethodError(name, ..)))
            if name.as_str() == "org.freedesktop.DBus.Error.NoReply" => {}
        Err(err) => return Err(err.into()),
    }
    let replied = t.elapsed();
    let owned = tokio::time::timeout(BOUND, async {
        while let Some(change) = owners.next().await {
            let Ok(args) = change.args() else { continue };
            if args.name() == &name
                && args
                    .new_owner()
                    .as_ref()
                    .is_some_and(|owner| owner.to_string() != old_owner)
            {
                return Some(t.elapsed());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or("the name got no new owner")?;
    // Owning the name comes before start-up finishes; State says when it has (1 ms steps).
    let deadline = Instant::now() + BOUND;
    let running = loop {
        if manager.state().await.is_ok_and(|s| s == "running") {
            break t.elapsed();
        }
        if Instant::now() > deadline {
            return Err("State did not become running".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let after = runs(&connection).await?;
    let kept = after
        .iter()
        .filter(|(name, run)| run.0 != 0 && before.get(*name) == Some(run))
        .count();
    let restarted = after
        .iter()
        .filter(|(name, run)| {
            before
                .get(*name)
                .is_some_and(|b| b.0 != run.0 || b.1 != run.1)
        })
        .count();
    Ok(
        json!({"reply_ms": ms(replied), "name_ms": ms(owned), "running_ms": ms(running),
              "services": after.len(), "pids_and_restarts_kept": kept, "restarted": restarted}),
    )
}

async fn recover_wait(address: &str, pids_file: &str, t0_ns: u128) -> Result<serde_json::Value> {
    let want: std::collections::BTreeMap<String, u32> =
        serde_json::from_str(&std::fs::read_to_string(pids_file)?)?;
    let connection = connect(address).await?;
    let manager = manager(&connection).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Before the new corrald owns its name the call fails: "not yet".
        let list = manager.list_services().await.unwrap_or_default();
        let same = list
            .iter()
            .filter(|s| s.active_state == "active" && want.get(&s.name) == Some(&s.main_pid))
            .count();
        if same == want.len() || Instant::now() > deadline {
            let other_pid = list
                .iter()
                .filter(|s| want.get(&s.name).is_some_and(|pid| *pid != s.main_pid))
                .count();
            return Ok(json!({"ms": (monotonic_ns() - t0_ns) as f64 / 1e6,
                             "services": want.len(), "same_pid_active": same,
                             "other_pid": other_pid}));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn start_stop(address: &str, name: &str, n: usize) -> Result<serde_json::Value> {
    let connection = connect(address).await?;
    let service = service(&connection, name).await?;
    let (mut stops, mut starts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        service.stop().await?;
        stops.push(ms(t.elapsed()));
        let t = Instant::now();
        service.start().await?;
        starts.push(ms(t.elapsed()));
    }
    Ok(json!({"stop_ms": percentiles(stops), "start_ms": percentiles(starts)}))
}

struct TrivialService;

#[zbus::interface(name = "org.corral.Corral1.Service")]
impl TrivialService {
    #[zbus(property)]
    fn active_state(&self) -> String {
        "active".into()
    }
}

struct TrivialManager {
    rows: Vec<ServiceRow>,
}

#[zbus::interface(name = "org.corral.Corral1.Manager")]
impl TrivialManager {
    fn list_services(&self) -> Vec<ServiceRow> {
        self.rows.clone()
    }
}

/// A zbus peer that does nothing but answer: what any zbus service costs per call.
async fn trivial_server(address: &str, n: usize) -> Result<serde_json::Value> {
    let rows: Vec<ServiceRow> = (0..n)
        .map(|i| {
            let name = format!("s{i}");
            let path = corral::names::service_path(&name)
                .try_into()
                .expect("valid path");
            ServiceRow {
                name,
                group: String::new(),
                active_state: "active".into(),
                sub_state: "running".into(),
                main_pid: 1,
                path,
            }
        })
        .collect();
    let mut builder = zbus::connection::Builder::address(address)
        .serve_at("/org/corral/Corral1", TrivialManager { rows });
    for i in 0..n {
        builder = builder.serve_at(
            corral::names::service_path(&format!("s{i}")),
            TrivialService,
        );
    }
    let _connection = builder.name("org.corral.Corral1").build().await?;
    println!("ready");
    std::future::pending::<()>().await;
    unreachable!()
}

/// One `org.freedesktop.DBus.GetId` call: answered by the bus itself, so it is the floor
/// any call through the bus is compared with.
/// `CALLS` Get(ActiveState) and Peer.Ping round trips to corrald, interleaved in blocks of
/// 10; 5 ListServices and 5 GetManagedObjects.
async fn scale_calls(address: &str, calls: usize, trivial: bool) -> Result<serde_json::Value> {
    let connection = connect(address).await?;
    let manager = manager(&connection).await?;
    let names: Vec<String> = manager
        .list_services()
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut proxies = Vec::new();
    // Spread over the whole list, so a lookup cost that grows with N would show.
    for name in names.iter().step_by((names.len() / 64).max(1)) {
        proxies.push(service(&connection, name).await?);
    }
    let ping = || {
        connection.call_method(
            Some("org.corral.Corral1"),
            "/org/corral/Corral1",
            Some("org.freedesktop.DBus.Peer"),
            "Ping",
            &(),
        )
    };
    let (mut get, mut pings) = (Vec::new(), Vec::new());
    let mut i = 0;
    while get.len() < calls {
        for _ in 0..10 {
            let t = Instant::now();
            ping().await?;
            pings.push(ms(t.elapsed()) * 1e3);
        }
        for _ in 0..10 {
            let proxy = &proxies[i % proxies.len()];
            i += 1;
            let t = Instant::now();
            std::hint::black_box(proxy.active_state().await?);
            get.push(ms(t.elapsed()) * 1e3);
        }
    }
    let (mut listing, mut objects) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(manager.list_services().await?);
        listing.push(ms(t.elapsed()));
        let t = Instant::now();
        let reply = connection
            .call_method(
                Some("org.corral.Corral1"),
                "/org/corral/Corral1",
                Some("org.freedesktop.DBus.ObjectManager"),
                "GetManagedObjects",
                &(),
            )
            .await;
        // The trivial server has no ObjectManager: it gives the floor for the calls above.
        if trivial && reply.is_err() {
            continue;
        }
        std::hint::black_box(reply?);
        objects.push(ms(t.elapsed()));
    }
    Ok(json!({
        "services": names.len(),
        "get_active_state_us": percentiles(get),
        "ping_us": percentiles(pings),
        "list_services_ms": percentiles(listing),
        "get_managed_objects_ms": if objects.is_empty() { serde_json::Value::Null } else { percentiles(objects) },
    }))
}

/// Kills the main processes of the first `k` services at once; see the module doc.
async fn storm(address: &str, k: usize) -> Result<serde_json::Value> {
    let connection = connect(address).await?;
    let manager = manager(&connection).await?;
    let list = manager.list_services().await?;
    let victims: Vec<(String, u32)> = list
        .iter()
        .take(k)
        .map(|s| (s.name.clone(), s.main_pid))
        .collect();
    let others: Vec<String> = list
        .iter()
        .skip(k)
        .take(64)
        .map(|s| s.name.clone())
        .collect();
    let caller = connect(address).await?;
    let mut proxies = Vec::new();
    for name in &others {
        proxies.push(service(&caller, name).await?);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let _ = std::hint::black_box(proxies[i % proxies.len()].active_state().await);
                samples.push(ms(t.elapsed()) * 1e3);
                i += 1;
            }
            samples
        })
    };
    // Let the caller run before the storm, so its samples cover all of it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut changes = manager.receive_service_state_changed().await?;
    let start = Instant::now();
    for (_, pid) in &victims {
        // SAFETY: kill with a PID and a signal number.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    // Back = seen leaving `active` after the kill, then `active` again: counted from
    // ServiceStateChanged, so the waiting adds no calls to corrald's load.
    let mut down: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut back: std::collections::HashSet<String> = std::collections::HashSet::new();
    let wanted: std::collections::HashSet<&str> = victims.iter().map(|(n, _)| n.as_str()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let back_ms = loop {
        if back.len() == victims.len() {
            break Some(ms(start.elapsed()));
        }
        let Ok(Some(signal)) = tokio::time::timeout_at(deadline, changes.next()).await else {
            break None;
        };
        let args = signal.args()?;
        if !wanted.contains(args.name.as_str()) {
            continue;
        }
        if args.active_state != "active" {
            down.insert(args.name.to_string());
        } else if down.contains(args.name.as_str()) {
            back.insert(args.name.to_string());
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = calls.await?;
    Ok(json!({
        "killed": victims.len(),
        "back": back.len(),
        "all_back_ms": back_ms,
        "get_during_us": percentiles(samples),
    }))
}

async fn bus_round_trip(connection: &zbus::Connection) -> zbus::Result<()> {
    connection
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetId",
            &(),
        )
        .await
        .map(drop)
}
