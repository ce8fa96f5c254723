//! The job history and job control: every recipe job is listed with its outcome, the list
//! and the ids outlive restarts (and a kill -9) of corrald, and a queued or running job can
//! be cancelled — a running one with every process its step started.

mod support;

use support::*;

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
[services.box]
exec = ["sleep", "9701"]
stop_timeout = "2s"
[services.box.workers]
max_active = 1
max_queued = 4
[services.box.recipes.ok]
steps = [["true"]]
[services.box.recipes.bad]
steps = [["sh", "-c", "exit 7"]]
[services.box.recipes.long]
steps = [["sh", "-c", "sleep 9702 & sleep 9703; echo done >> {log}"]]
"#,
        log = dir.join("long.log").display()
    )
}

fn row_of(rows: &[corral::client::JobRow], id: u64) -> corral::client::JobRow {
    rows.iter()
        .find(|j| j.id == id)
        .unwrap_or_else(|| panic!("job {id} in {rows:?}"))
        .clone()
}

#[tokio::test]
async fn the_job_history_and_ids_outlive_restarts_of_corrald() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    let mut corrald = Corrald::start(&bus, &config(dir.path())).await;
    let conn = bus.connect().await;
    let b = service(&conn, "box").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    let ok = b.run_recipe("ok").await.unwrap();
    recorder.until("JobFinished", &format!("[{ok},")).await;
    let bad = b.run_recipe("bad").await.unwrap();
    recorder.until("JobFinished", &format!("[{bad},")).await;
    let long = b.run_recipe("long").await.unwrap();
    eventually("the long job runs", || {
        pids_with_cmdline("sleep 9703").len() == 1
    })
    .await;

    // A kill -9 leaves the long job without an outcome: the next corrald records one.
    corrald.kill9().await;
    for pid in pids_with_cmdline("sleep 9702")
        .into_iter()
        .chain(pids_with_cmdline("sleep 9703"))
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for round in 0..2 {
        corrald.start_again().await;
        let rows = manager(&conn).await.list_jobs("box").await.unwrap();
        let (o, f, l) = (row_of(&rows, ok), row_of(&rows, bad), row_of(&rows, long));
        assert_eq!(
            (o.state.as_str(), o.exit_status),
            ("finished", 0),
            "{round}"
        );
        assert_eq!((f.state.as_str(), f.exit_status), ("finished", 7));
        assert_eq!(l.state, "failed", "interrupted by corrald's death: {l:?}");
        assert!(o.queued > 0 && o.finished >= o.queued);
        assert_eq!(rows, manager(&conn).await.list_jobs("").await.unwrap());
        let b = service(&conn, "box").await;
        // Listening before the job is queued: it may finish before RunRecipe's reply
        // arrives (the flake this fixed).
        let mut recorder = SignalRecorder::new(&conn).await;
        let next = b.run_recipe("ok").await.unwrap();
        assert!(next > long, "ids never repeat: {next} after {long}");
        recorder.until("JobFinished", &format!("[{next},")).await;
        assert_eq!(corrald.terminate().await, Some(0));
    }
}

#[tokio::test]
async fn cancel_drops_a_queued_job_and_stops_a_running_one_with_its_group() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().unwrap();
    // Its own commands, as the tests run side by side.
    let _corrald = Corrald::start(&bus, &config(dir.path()).replace("970", "971")).await;
    let conn = bus.connect().await;
    let m = manager(&conn).await;
    let b = service(&conn, "box").await;
    let mut recorder = SignalRecorder::new(&conn).await;
    let running = b.run_recipe("long").await.unwrap();
    let queued = b.run_recipe("ok").await.unwrap();
    eventually("the long job runs", || {
        pids_with_cmdline("sleep 9713").len() == 1
    })
    .await;
    let background = pids_with_cmdline("sleep 9712");
    assert_eq!(background.len(), 1);

    m.cancel_job(queued).await.unwrap();
    let signals = recorder.until("JobFailed", &format!("[{queued},")).await;
    assert!(signals.last().unwrap().body.contains("cancelled"));
    assert_eq!(
        row_of(&m.list_jobs("box").await.unwrap(), queued).state,
        "cancelled"
    );

    m.cancel_job(running).await.unwrap();
    let signals = recorder.until("JobFailed", &format!("[{running},")).await;
    assert!(signals.last().unwrap().body.contains("cancelled"));
    // The step's shell was reaped before the job ended; its children got the same
    // signals, by the process group, and die a moment later.
    eventually("the step's command is stopped", || {
        pids_with_cmdline("sleep 9713").is_empty()
    })
    .await;
    eventually("what the step forked is stopped too", || {
        !alive(background[0])
    })
    .await;
    assert!(
        !dir.path().join("long.log").exists(),
        "the rest of the step never ran"
    );
    let row = row_of(&m.list_jobs("box").await.unwrap(), running);
    assert_eq!(row.state, "cancelled");
    assert!(row.finished > 0);
    wait_until(&mut recorder, || async {
        b.active_jobs().await.unwrap() == 0
    })
    .await;

    // Cancelling again, or a job that never was, says so.
    let err = m.cancel_job(running).await.unwrap_err();
    assert_eq!(error_name(&err), "org.corral.Corral1.Error.InvalidArgs");
    let err = m.cancel_job(987_654).await.unwrap_err();
    assert!(err.to_string().contains("987654"), "{err}");
    // The pool works on: a new job runs and finishes.
    let next = b.run_recipe("ok").await.unwrap();
    recorder
        .until("JobFinished", &format!("[{next},\"ok\",0"))
        .await;
}
