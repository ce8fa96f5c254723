//! What each kind of service costs corrald in open descriptors, counted in
//! `/proc/<corrald>/fd` before and after K services of one kind start: a regression guard
//! for the per-kind table in README "Descriptor limits" (corrald's `RLIMIT_NOFILE` bounds
//! how many services it can run). And what happens when that limit is reached anyway: the
//! services that do not fit fail, saying which limit and how to raise it, and corrald
//! keeps serving the others.

mod support;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use support::*;

/// Descriptors open in process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Slack for corrald's own transient descriptors (a file being read, a socket being
/// connected) at the moment of a count.
const SLACK: usize = 2;

/// A stand-in for journald's stdout socket: accepts streams and keeps them open, as
/// journald does while a service runs.
fn journal_sink(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut held: Vec<UnixStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
}

/// Starts corrald with no service, counts its descriptors, reloads into `k` services
/// written by `define(i)`, waits until every one is active (and `Online` when
/// `online`), and returns corrald's added descriptors once they settle at or below
/// `k * cost + SLACK`, checking that they are not below `k * cost - SLACK` either (the
/// table says what each kind holds, not only a bound). Then reloads back to nothing and
/// checks every one of them was closed.
async fn cost(
    what: &str,
    k: usize,
    cost: usize,
    extra: &[&str],
    online: bool,
    define: impl Fn(usize) -> String,
) {
    let bus = TestBus::start();
    let corrald = Corrald::spawn(&bus, "", extra);
    corrald.wait_notify("READY=1").await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    assert!(m.list_services().await.unwrap().is_empty());
    let pid = corrald.pid();
    let before = open_fds(pid);

    let config: String = (0..k).map(&define).collect();
    corrald.write_config(&config);
    m.reload().await.unwrap();
    let names: Vec<String> = m
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.name)
        .collect();
    assert_eq!(names.len(), k, "{what}: {names:?}");
    // Subscribed only now, on its own connection: a queue of unread signals must not hold
    // up the reply to Reload() (zbus stops reading a connection whose queue is full).
    let mut recorder = SignalRecorder::new(&bus.connect().await).await;
    wait_until(&mut recorder, || async {
        let rows = m.list_services().await.unwrap();
        if !rows.iter().all(|row| row.active_state == "active") {
            return false;
        }
        if !online {
            return true;
        }
        for name in &names {
            if !service(&conn, name).await.online().await.unwrap() {
                return false;
            }
        }
        true
    })
    .await;
    // Output pipes of launchers that exited close when their copying task sees the end.
    eventually(
        &format!("{what}: at most {cost} descriptors per service"),
        || open_fds(pid) <= before + k * cost + SLACK,
    )
    .await;
    let added = open_fds(pid) - before;
    assert!(
        added + SLACK >= k * cost,
        "{what}: {added} descriptors for {k} services, fewer than the {cost} per service \
         README \"Descriptor limits\" says: update the table"
    );

    corrald.write_config("");
    m.reload().await.unwrap();
    eventually(&format!("{what}: every descriptor closed"), || {
        open_fds(pid) <= before + SLACK
    })
    .await;
}

/// Service `s<i>`, running `sleep <49000 + offset + i>`.
fn sleeper_at(offset: usize, i: usize) -> String {
    format!(
        "[services.s{i}]\nexec = [\"sleep\", \"{}\"]\n",
        49000 + offset + i
    )
}

fn sleeper(i: usize) -> String {
    sleeper_at(0, i)
}

#[tokio::test]
async fn a_simple_service_costs_its_pidfd_and_one_output_pipe() {
    cost("simple, piped output", 20, 2, &[], false, sleeper).await;
}

#[tokio::test]
async fn a_simple_service_with_journal_output_costs_only_its_pidfd() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stdout");
    journal_sink(&socket);
    let socket = socket.to_str().unwrap().to_owned();
    let extra = ["--child-output", "journal", "--journal-stdout", &socket];
    cost("simple, journal output", 20, 1, &extra, false, sleeper).await;
}

#[tokio::test]
async fn a_notify_service_costs_no_more_than_a_simple_one() {
    cost("notify", 10, 2, &[], false, |i| {
        format!(
            "[services.n{i}]\ntype = \"notify\"\nexec = [\"python3\", \"-c\", \"import os,socket,time; \
             socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'READY=1', \
             os.environ['NOTIFY_SOCKET']); time.sleep(1000)\", \"{}\"]\n",
            49100 + i
        )
    })
    .await;
}

#[tokio::test]
async fn a_forking_daemon_that_detaches_costs_only_the_pidfd_of_its_main_process() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_owned();
    cost("forking with pidfile", 20, 1, &[], false, |i| {
        let pidfile = dir.join(format!("f{i}.pid"));
        format!(
            "[services.f{i}]\ntype = \"forking\"\npidfile = \"{pid}\"\nexec = [\"sh\", \"-c\", \
             \"setsid sleep {n} > /dev/null 2>&1 < /dev/null & echo $! > {pid}\"]\n",
            pid = pidfile.display(),
            n = 49200 + i
        )
    })
    .await;
}

#[tokio::test]
async fn a_control_channel_costs_one_more_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/control_service.py");
    cost("control_socket", 10, 3, &[], true, |i| {
        let socket = dir.join(format!("c{i}.sock"));
        format!(
            "[services.c{i}]\nexec = [\"python3\", \"{script}\", \"{socket}\"]\n\
             control_socket = \"{socket}\"\n",
            script = script.display(),
            socket = socket.display()
        )
    })
    .await;
}

#[tokio::test]
async fn a_scheduled_recipe_costs_nothing_until_it_runs() {
    cost("scheduled recipe", 20, 2, &[], false, |i| {
        format!(
            "{}[services.s{i}.recipes.nightly]\nsteps = [[\"true\"]]\nschedule = \"every 24h\"\n",
            sleeper_at(300, i)
        )
    })
    .await;
}

/// corrald runs under `prlimit --nofile=64:64` (a limit it cannot raise) with more
/// services than fit: those that do not fit fail, and their `LastError` names the limit
/// and the setting that raises it; the others run, the bus still answers, and once some
/// services stop, a failed one starts.
#[tokio::test]
async fn services_beyond_the_descriptor_limit_fail_naming_it_and_the_rest_run() {
    let bus = TestBus::start();
    let config: String = (0..40)
        .map(|i| format!("{}restart = \"no\"\n", sleeper_at(400, i)))
        .collect();
    let corrald = Corrald::start_wrapped(&bus, &config, &["prlimit", "--nofile=64:64", "--"]).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let mut recorder = SignalRecorder::new(&bus.connect().await).await;
    wait_until(&mut recorder, || async {
        let rows = m.list_services().await.unwrap();
        rows.iter()
            .all(|row| row.active_state == "active" || row.active_state == "failed")
    })
    .await;
    let rows = m.list_services().await.unwrap();
    let (active, failed): (Vec<_>, Vec<_>) =
        rows.iter().partition(|row| row.active_state == "active");
    assert!(
        !active.is_empty() && !failed.is_empty(),
        "64 descriptors fit some of 40 services, not all: {} active, {} failed",
        active.len(),
        failed.len()
    );
    for row in &failed {
        let error = service(&conn, &row.name).await.last_error().await.unwrap();
        assert!(
            error.contains("too many open files: corrald's RLIMIT_NOFILE soft limit 64 is reached")
                && error.contains("raise LimitNOFILE= in corral.service"),
            "{}: {error}",
            row.name
        );
    }
    for row in &active {
        assert!(alive(row.main_pid), "{} runs", row.name);
    }

    // Stopping three frees their descriptors: a failed service then starts.
    for row in &active[..3] {
        m.stop_service(&row.name).await.unwrap();
    }
    let again = &failed[0].name;
    m.start_service(again).await.unwrap();
    let again = service(&conn, again).await;
    assert_eq!(again.active_state().await.unwrap(), "active");
    assert!(alive(again.main_pid().await.unwrap()));
    drop(corrald);
}

/// A service's process gets stdin, stdout and stderr and nothing else of corrald's, also
/// with many services running (corrald then stages a child's descriptors in low slots
/// and the child leaves corrald's table behind: `process::stdio_slots`), and its
/// output still reaches corrald.
#[tokio::test]
async fn a_child_gets_only_its_stdio_among_many_descriptors() {
    let bus = TestBus::start();
    let mut config: String = (0..30).map(|i| sleeper_at(600, i)).collect();
    // `ls` lists its own descriptors: 0–2 and 3, the directory it reads.
    config.push_str(
        "[services.show]\nexec = [\"sh\", \"-c\", \"ls /proc/self/fd >&2; exec sleep 49700\"]\n",
    );
    let corrald = Corrald::start(&bus, &config).await;
    let listed = || -> Vec<String> {
        corrald
            .log()
            .lines()
            .filter(|l| l.starts_with("show["))
            .filter_map(|l| Some(l.split_once("]: ")?.1.to_owned()))
            .collect()
    };
    eventually("show's descriptors in corrald's log", || {
        listed().contains(&"3".to_owned())
    })
    .await;
    assert_eq!(listed(), ["0", "1", "2", "3"]);
}
