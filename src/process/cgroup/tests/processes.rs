//! The processes of a service's cgroup: they stay in it however they fork, `kill` and
//! `signal` reach all of them, `wait_empty` resolves when the last one is gone, and the
//! freezer stops and resumes them without SIGSTOP.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn a_double_forked_setsid_grandchild_stays_in_the_cgroup_until_kill() {
    let Some(scratch) = Scratch::new("double fork") else {
        return;
    };
    let prepared = scratch
        .cgroups
        .prepare("escaper", &CgroupLimits::default())
        .unwrap();
    let cgroup = prepared.cgroup.expect("cgroup mode");
    assert!(prepared.unapplied.is_empty(), "no limits were configured");
    assert!(cgroup.path().ends_with("/services/escaper.service"));
    // The classic daemonization a process-group kill misses: a new session, and a double
    // fork whose middle process exits so the grandchild is reparented.
    let ready = Ready::new();
    let script = format!(
        "setsid sh -c 'sleep 1000 & echo $! > {grandchild}; exit 0' & wait; \
         echo ready > {fifo}; exec sleep 1000",
        grandchild = ready.file("grandchild").display(),
        fifo = ready.fifo()
    );
    let mut child = spawn_into(&service(&["sh", "-c", &script]), &cgroup);
    let main = child.id().unwrap();
    ready.wait().await;
    let grandchild: u32 = std::fs::read_to_string(ready.file("grandchild"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let session = |pid: u32| nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32)));
    assert_ne!(session(grandchild), session(main), "it left the session");
    assert_eq!(cgroup_of(grandchild), cgroup.path(), "but not the cgroup");
    assert_eq!(cgroup_of(main), cgroup.path());
    let pids = cgroup.pids().unwrap();
    assert!(
        pids.contains(&main) && pids.contains(&grandchild),
        "{pids:?}"
    );
    assert!(cgroup.is_populated().unwrap());

    cgroup.kill().unwrap();
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .expect("the cgroup empties after kill")
        .unwrap();
    assert!(cgroup.pids().unwrap().is_empty());
    assert!(!cgroup.is_populated().unwrap());
    // Gone, or at most a zombie until init reaps it.
    let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
        .map(|_| state_of(grandchild))
        .unwrap_or('X');
    assert!(matches!(state, 'X' | 'Z'), "{grandchild} is {state}");
    let status = child.wait().await.unwrap();
    assert_eq!(crate::process::exit_code(status), 128 + 9);
    cgroup.remove().unwrap();
    assert!(!cgroup.dir().exists());
}

#[tokio::test]
async fn wait_empty_resolves_when_the_last_process_exits_on_its_own() {
    let Some(scratch) = Scratch::new("wait_empty") else {
        return;
    };
    let cgroup = scratch.cgroups.service("short").unwrap();
    cgroup.create().unwrap();
    // The main process exits at once; its background child outlives it a little.
    let svc = service(&["sh", "-c", "sleep 0.3 & exit 0"]);
    let mut child = spawn_into(&svc, &cgroup);
    assert!(child.wait().await.unwrap().success());
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .expect("wait_empty resolves once the background sleep exits")
        .unwrap();
    assert!(cgroup.pids().unwrap().is_empty());
    // A second run in the same cgroup (a restart) works the same way.
    let mut child = spawn_into(&service(&["true"]), &cgroup);
    assert!(child.wait().await.unwrap().success());
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn freeze_stops_every_process_and_thaw_resumes_them() {
    let Some(scratch) = Scratch::new("freeze") else {
        return;
    };
    let cgroup = scratch.cgroups.service("frozen").unwrap();
    cgroup.create().unwrap();
    // A writer that appends a line every 10 ms, and an idle child of it.
    let ready = Ready::new();
    let ticks = ready.file("ticks");
    // Made here, so that it can be watched before the writer's first line.
    std::fs::write(&ticks, "").unwrap();
    let script = format!(
        "sleep 1000 & echo ready > {}; while :; do echo x >> {}; sleep 0.01; done",
        ready.fifo(),
        ticks.display()
    );
    let mut child = spawn_into(&service(&["sh", "-c", &script]), &cgroup);
    ready.wait().await;
    wait_growth(&ticks, 0).await;

    tokio::time::timeout(PATIENCE, cgroup.freeze())
        .await
        .expect("freeze settles")
        .unwrap();
    assert!(cgroup.is_frozen().unwrap());
    let pids = cgroup.pids().unwrap();
    assert!(pids.len() >= 2, "{pids:?}");
    // The freezer is not SIGSTOP: no process shows as stopped ('T') to itself or its
    // parent, and the writer writes nothing while frozen.
    for &pid in &pids {
        assert_ne!(state_of(pid), 'T', "{pid} must not look SIGSTOPped");
    }
    let frozen_len = std::fs::metadata(&ticks).unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        std::fs::metadata(&ticks).unwrap().len(),
        frozen_len,
        "a frozen writer writes nothing"
    );
    assert!(cgroup.is_frozen().unwrap());

    tokio::time::timeout(PATIENCE, cgroup.thaw())
        .await
        .expect("thaw settles")
        .unwrap();
    assert!(!cgroup.is_frozen().unwrap());
    wait_growth(&ticks, frozen_len).await;
    cgroup.kill().unwrap();
    let _ = child.wait().await;
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_frozen_cgroup_can_still_be_killed() {
    let Some(scratch) = Scratch::new("kill frozen") else {
        return;
    };
    let cgroup = scratch.cgroups.service("paused").unwrap();
    cgroup.create().unwrap();
    let mut child = spawn_into(&service(&["sleep", "1000"]), &cgroup);
    assert_eq!(
        cgroup.pids().unwrap(),
        [child.id().unwrap()],
        "in it from exec on"
    );
    tokio::time::timeout(PATIENCE, cgroup.freeze())
        .await
        .unwrap()
        .unwrap();
    cgroup.kill().unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("SIGKILL reaches a frozen process")
        .unwrap();
    assert_eq!(crate::process::exit_code(status), 128 + 9);
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn signal_reaches_every_process_including_one_in_another_session() {
    let Some(scratch) = Scratch::new("signal") else {
        return;
    };
    let cgroup = scratch.cgroups.service("term").unwrap();
    cgroup.create().unwrap();
    // Both processes note SIGTERM in a file of their own and exit. The main shell sets its
    // trap before it forks; the escaped one says it is ready once its own trap is set.
    let ready = Ready::new();
    let trap = |file: &str| {
        format!(
            "trap 'echo term > {}; exit 0' TERM",
            ready.file(file).display()
        )
    };
    let script = format!(
        "{}; setsid sh -c \"{}; echo ready > {}; while :; do sleep 0.05; done\" & \
         while :; do sleep 0.05; done",
        trap("main"),
        trap("escaped"),
        ready.fifo(),
    );
    let mut child = spawn_into(&service(&["sh", "-c", &script]), &cgroup);
    ready.wait().await;
    assert!(cgroup.signal(nix::sys::signal::Signal::SIGTERM).unwrap() >= 2);
    tokio::time::timeout(PATIENCE, cgroup.wait_empty())
        .await
        .expect("both handled SIGTERM and exited")
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    for file in ["main", "escaped"] {
        assert_eq!(
            std::fs::read_to_string(ready.file(file)).unwrap().trim(),
            "term",
            "{file}"
        );
    }
}
