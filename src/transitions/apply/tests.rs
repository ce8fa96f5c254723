//! The applier is a loop over the plan: for random old/new configurations, what it
//! announces is exactly the plan's transitions then `ReloadFinished`, each step's
//! announcement comes before or after its listeners as the plan says, and `ok` in
//! `ReloadFinished` says whether a listener found a problem.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tokio::sync::watch;

use super::*;
use crate::events::{self, EventReceiver};
use crate::transitions::diff::tests::arb_config;
use crate::transitions::listeners::StepFuture;
use crate::transitions::plan::Announce;

/// What happened, in order: a signal reached the publisher, or a listener acted.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Signal(Transition),
    Acted(Step),
    Reloading(bool),
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A listener that records each step it is called for, after making sure every signal
/// sent before it was recorded (so the log shows the true interleaving).
struct Recorder {
    log: Log,
    events: EventSender,
    problem: Option<String>,
}

impl Listener for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn on_step<'a>(&'a self, step: &'a Step, _new: &'a Config) -> StepFuture<'a> {
        Box::pin(async move {
            self.events.flush().await;
            self.log.lock().unwrap().push(Seen::Acted(step.clone()));
            match (&self.problem, step) {
                (Some(problem), Step::Served(_)) => vec![problem.clone()],
                _ => Problems::new(),
            }
        })
    }

    fn reloading(
        &self,
        reloading: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.events.flush().await;
            self.log.lock().unwrap().push(Seen::Reloading(reloading));
        })
    }
}

/// The publisher's stand-in: records transitions, answers barriers.
fn publisher(mut events: EventReceiver, log: Log) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Transition(t) => log.lock().unwrap().push(Seen::Signal(t)),
                Event::Barrier(done) => drop(done.send(())),
                _ => {}
            }
        }
    });
}

fn applier(log: &Log, problem: Option<&str>) -> Applier {
    let (events, rx) = events::channel();
    publisher(rx, log.clone());
    let manager = watch::channel(ManagerStatus {
        state: DaemonState::Running,
        ..ManagerStatus::starting("a")
    })
    .0;
    let mut applier = Applier::new("a", events.clone(), manager);
    applier.register(Box::new(Recorder {
        log: log.clone(),
        events,
        problem: problem.map(str::to_owned),
    }));
    applier
}

/// What the log must be for `plan` applied with `ok`/`error`.
fn expected(plan: &crate::transitions::Plan, ok: bool, error: &str) -> Vec<Seen> {
    let mut seen = vec![Seen::Reloading(true)];
    for planned in &plan.steps {
        let signals = planned.transitions.iter().cloned().map(Seen::Signal);
        match planned.announce {
            Announce::BeforeActing => {
                seen.extend(signals);
                seen.push(Seen::Acted(planned.step.clone()));
            }
            Announce::AfterActing => {
                seen.push(Seen::Acted(planned.step.clone()));
                seen.extend(signals);
            }
        }
    }
    seen.push(Seen::Signal(Transition::ReloadFinished {
        generation: plan.generation,
        ok,
        error: error.to_owned(),
    }));
    seen.push(Seen::Reloading(false));
    seen
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_applier_announces_exactly_the_plan_in_its_order(a in arb_config(), b in arb_config()) {
        run(async {
            let log: Log = Arc::default();
            let mut applier = applier(&log, None);
            let a_applied = applier.apply(a.clone()).await;
            prop_assert!(a_applied.problems.is_empty());
            log.lock().unwrap().clear();
            let plan = crate::transitions::diff(&a, &b, 2);
            let applied = applier.apply(b.clone()).await;
            let want = expected(&plan, true, "");
            prop_assert_eq!(&*log.lock().unwrap(), &want);
            let signals: Vec<Seen> = applied.transitions.into_iter().map(Seen::Signal).collect();
            let logged: Vec<Seen> = want.into_iter().filter(|s| matches!(s, Seen::Signal(_))).collect();
            prop_assert_eq!(signals, logged, "Reload()'s reply lists what was signalled");
            prop_assert_eq!(applier.current(), &b);
            prop_assert_eq!(applier.generation(), 2);
            Ok(())
        })?;
    }
}

#[test]
fn a_problem_in_a_step_makes_reload_finished_say_not_ok() {
    run(async {
        let log: Log = Arc::default();
        let mut applier = applier(&log, Some("web: exited with status 1 before it was ready"));
        let mut config = Config::empty("a");
        config.services.insert(
            "web".into(),
            crate::config::Service {
                exec: vec!["web".into()],
                ..Default::default()
            }
            .into(),
        );
        let applied = applier.apply(config).await;
        assert_eq!(
            applied.problems,
            ["web: exited with status 1 before it was ready"]
        );
        assert_eq!(
            applied.transitions.last(),
            Some(&Transition::ReloadFinished {
                generation: 1,
                ok: false,
                error: "web: exited with status 1 before it was ready".into()
            })
        );
        assert_eq!(applier.generation(), 1, "applied all the same");
    });
}

/// Each reload reads the files afresh, so every definition arrives as a new allocation; an
/// unchanged one must not stay a second copy beside the one the supervisor's unit and the
/// jobs' pool hold (at 10,000 services, 10,000 copies of ~650 bytes per reload).
#[test]
fn a_reload_keeps_one_copy_of_each_unchanged_definition() {
    run(async {
        let log: Log = Arc::default();
        let mut applier = applier(&log, None);
        let config = |db: &str| {
            let mut config = Config::empty("a");
            for (name, exec) in [("web", "web"), ("db", db)] {
                let service = crate::config::Service {
                    exec: vec![exec.into()],
                    ..Default::default()
                };
                config.services.insert(name.into(), service.into());
            }
            config
        };
        let first = config("db");
        applier.apply(first.clone()).await;
        let second = config("db2");
        applier.apply(second.clone()).await;
        let current = &applier.current().services;
        assert!(Arc::ptr_eq(&current["web"], &first.services["web"]));
        assert!(!Arc::ptr_eq(&current["web"], &second.services["web"]));
        assert!(Arc::ptr_eq(&current["db"], &second.services["db"]));
        assert_eq!(applier.current(), &second);
    });
}
