//! Recipes: jobs run their steps in order, worker limits queue and refuse, outcomes are
//! signalled, and schedules run recipes periodically.

mod support;

use std::time::Duration;

use support::*;

fn config(dir: &std::path::Path) -> String {
    let log = dir.join("steps.log").display().to_string();
    format!(
        r#"
[services.box]
exec = ["sleep", "9201"]

[services.box.workers]
max_active = 1
max_queued = 1

[services.box.recipes.backup]
steps = [["sh", "-c", "echo one >> {log}"], ["sh", "-c", "sleep 0.3; echo two >> {log}"]]

[services.box.recipes.broken]
steps = [["sh", "-c", "exit 3"], ["sh", "-c", "echo never >> {log}"]]

[services.box.recipes.missing]
steps = [["/nonexistent/tool"]]

[services.ticker]
exec = ["sleep", "9202"]

[services.ticker.recipes.tick]
steps = [["true"]]
schedule = "every 200ms"
"#
    )
}

#[tokio::test]
async fn jobs_run_in_order_within_worker_limits_and_signal_their_end() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let _corrald = Corrald::start(&bus, &config(dir.path())).await;
    let conn = bus.connect().await;
    let b = service(&conn, "box").await;
    assert_eq!(b.recipes().await.unwrap(), ["backup", "broken", "missing"]);
    let mut recorder = SignalRecorder::new(&conn).await;

    let first = b.run_recipe("backup").await.unwrap();
    let second = b.run_recipe("backup").await.unwrap();
    assert!(second > first);
    let err = b.run_recipe("backup").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.QueueFull");
    assert!(err.to_string().contains("workers.max_queued = 1"), "{err}");
    wait_until(&mut recorder, || async {
        b.active_jobs().await.unwrap() == 1 && b.queued_jobs().await.unwrap() == 1
    })
    .await;

    let done = recorder
        .until("JobFinished", &format!("[{second},\"backup\""))
        .await;
    let finished: Vec<_> = done
        .iter()
        .filter(|s| s.member == "JobFinished" && s.path.ends_with("/service/box"))
        .collect();
    assert_eq!(
        finished[0].args,
        serde_json::json!([first, "backup", 0])
            .as_array()
            .unwrap()
            .clone()
    );
    assert_eq!(finished[1].args[0], second);
    let log = std::fs::read_to_string(dir.path().join("steps.log")).unwrap();
    assert_eq!(
        log, "one\ntwo\none\ntwo\n",
        "steps in order, one job at a time"
    );
    wait_until(&mut recorder, || async {
        b.active_jobs().await.unwrap() == 0
    })
    .await;

    let broken = b.run_recipe("broken").await.unwrap();
    let signals = recorder
        .until("JobFinished", &format!("[{broken},\"broken\""))
        .await;
    assert_eq!(
        signals.last().unwrap().args[2],
        3,
        "the failing step's status"
    );
    let missing = b.run_recipe("missing").await.unwrap();
    let signals = recorder
        .until("JobFailed", &format!("[{missing},\"missing\""))
        .await;
    assert!(signals.last().unwrap().body.contains("/nonexistent/tool"));
    assert!(
        !std::fs::read_to_string(dir.path().join("steps.log"))
            .unwrap()
            .contains("never")
    );

    let err = b.run_recipe("nope").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NoSuchMethod");
}

#[tokio::test]
async fn scheduled_recipes_run_periodically() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let _corrald = Corrald::start(&bus, &config(dir.path())).await;
    let conn = bus.connect().await;
    let mut recorder = SignalRecorder::new(&conn).await;
    let started = std::time::Instant::now();
    recorder.until("JobFinished", "tick").await;
    recorder.until("JobFinished", "tick").await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
}

/// Regression: a scheduled recipe ran on every host, even where its service's group is
/// served by another peer. It runs only where the service is served, and starts running
/// once the group moves here by a reload.
#[tokio::test]
async fn a_scheduled_recipe_runs_only_where_its_group_is_served() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ticks.log");
    let config = |peer: &str| {
        format!(
            r#"
[daemon]
host = "a"
[groups.g]
peer = "{peer}"
[services.ticker]
group = "g"
exec = ["sleep", "9203"]
[services.ticker.recipes.tick]
steps = [["sh", "-c", "echo tick >> {log}"]]
schedule = "every 100ms"
"#,
            log = log.display()
        )
    };
    let corrald = Corrald::start(&bus, &config("b")).await;
    let conn = bus.connect().await;
    let ticker = service(&conn, "ticker").await;
    assert!(!ticker.served().await.unwrap());
    // Eight periods without a run: it would have ticked by now on this host.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!log.exists(), "a recipe of a group served by b ran on a");
    let err = ticker.run_recipe("tick").await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.NotServedHere");

    corrald.write_config(&config("a"));
    manager(&conn).await.reload().await.unwrap();
    assert!(ticker.served().await.unwrap());
    eventually("the schedule runs once the group is served here", || {
        log.exists()
    })
    .await;
}
