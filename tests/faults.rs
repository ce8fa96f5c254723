//! Faults injected from outside while corrald runs: its bus dies, its runtime directory
//! vanishes, it is killed in the middle of a reload, services are killed in the middle of
//! a reload, a service's binary disappears, services that ignore SIGTERM and fork or that
//! close their stdout. After each, every service has exactly one running process and the
//! state it should have, and corrald answers (or, for the bus, exits so that systemd
//! restarts it, and the new corrald re-adopts every service).

mod support;

use support::*;

#[tokio::test]
async fn when_the_bus_dies_corrald_exits_non_zero_and_its_successor_adopts_the_services() {
    let mut bus = TestBus::start();
    let config = r#"
[services.web]
exec = ["sleep", "47201"]
[services.worker]
exec = ["sh", "-c", "sleep 47202 & exec sleep 47203"]
"#;
    let mut corrald = Corrald::start(&bus, config).await;
    let pids = {
        let conn = bus.connect().await;
        let web = service(&conn, "web").await.main_pid().await.unwrap();
        let worker = service(&conn, "worker").await.main_pid().await.unwrap();
        (web, worker)
    };
    bus.restart();
    let code = corrald.wait_exit().await;
    assert!(
        matches!(code, Some(c) if c != 0),
        "exits non-zero so systemd restarts it: {code:?}"
    );
    assert!(
        corrald.log().contains("lost its connection to the bus"),
        "says why in the journal"
    );
    assert!(alive(pids.0) && alive(pids.1), "services keep running");
    corrald.start_again().await;
    let conn = bus.connect().await;
    let web = service(&conn, "web").await;
    let worker = service(&conn, "worker").await;
    assert_eq!(web.main_pid().await.unwrap(), pids.0, "re-adopted");
    assert_eq!(worker.main_pid().await.unwrap(), pids.1, "re-adopted");
    assert_eq!(web.active_state().await.unwrap(), "active");
    assert_eq!(pids_with_cmdline("sleep 47201").len(), 1);
    assert_eq!(pids_with_cmdline("sleep 47202").len(), 1);
    assert_eq!(pids_with_cmdline("sleep 47203").len(), 1);
}
