//! Applying a plan: the one code path for start-up (`Up`, from the empty configuration),
//! reloads, and shutdown (`Down`, to the empty configuration). The applier is a loop over
//! the plan's steps; everything a step does is in the plan or in a listener.

use tokio::sync::watch;

use super::diff::diff;
use super::listeners::{Listener, Problems};
use super::plan::{Announce, Step};
use crate::config::Config;
use crate::events::{DaemonState, Event, EventSender, ManagerStatus, Transition};

/// What applying a configuration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Every transition announced, in order, `ReloadFinished` last.
    pub transitions: Vec<Transition>,
    /// What went wrong while applying (a service that failed to start); empty when the
    /// configuration was applied cleanly. `ReloadFinished` says `ok` exactly when empty.
    pub problems: Problems,
}

/// Owns the current configuration and applies new ones, one at a time.
pub struct Applier {
    current: Config,
    generation: u64,
    /// In registration order.
    listeners: Vec<Box<dyn Listener>>,
    events: EventSender,
    manager: watch::Sender<ManagerStatus>,
}

impl Applier {
    /// An applier whose current configuration is the empty one for `host`.
    pub fn new(host: &str, events: EventSender, manager: watch::Sender<ManagerStatus>) -> Applier {
        Applier {
            current: Config::empty(host),
            generation: 0,
            listeners: Vec::new(),
            events,
            manager,
        }
    }

    /// Adds a listener after those already registered.
    pub fn register(&mut self, listener: Box<dyn Listener>) {
        self.listeners.push(listener);
    }

    pub fn current(&self) -> &Config {
        &self.current
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Continues from `generation` (a live re-exec: the next applied is `generation + 1`).
    pub fn continue_from(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// Applies `new` in DESIGN.md's order. Client commands that change state are held back
    /// meanwhile, so they see the old or the new configuration, never half of each.
    pub async fn apply(&mut self, mut new: Config) -> Applied {
        new.share_unchanged(&self.current);
        let generation = self.generation + 1;
        let plan = diff(&self.current, &new, generation);
        let mut transitions = Vec::new();
        let mut problems = Problems::new();
        for listener in &self.listeners {
            listener.reloading(true).await;
        }
        self.set_manager(|m| {
            if m.state == DaemonState::Running {
                m.state = DaemonState::Reloading;
            }
        });
        for planned in &plan.steps {
            if planned.announce == Announce::BeforeActing {
                self.announce(&mut transitions, &planned.transitions);
            }
            problems.extend(self.act(&planned.step, &new).await);
            if planned.announce == Announce::AfterActing {
                self.announce(&mut transitions, &planned.transitions);
            }
        }
        let host = new.daemon.host.clone();
        let groups_here = new
            .groups
            .iter()
            .filter(|(_, group)| group.peer == host)
            .map(|(name, _)| name.clone())
            .collect();
        self.current = new;
        self.generation = generation;
        self.set_manager(|m| {
            m.host = host;
            m.generation = generation;
            m.groups_here = groups_here;
            if m.state == DaemonState::Reloading {
                m.state = DaemonState::Running;
            }
        });
        let finished = Transition::ReloadFinished {
            generation,
            ok: problems.is_empty(),
            error: problems.join("\n"),
        };
        self.announce(&mut transitions, &[finished]);
        for listener in &self.listeners {
            listener.reloading(false).await;
        }
        // Reply only once every signal of this reload is on the bus.
        self.events.flush().await;
        Applied {
            transitions,
            problems,
        }
    }

    /// Announces a configuration that was refused: `ReloadFinished(generation, false,
    /// error)` with the unchanged generation.
    pub async fn reject(&self, error: &str) -> Transition {
        let finished = Transition::ReloadFinished {
            generation: self.generation,
            ok: false,
            error: error.to_owned(),
        };
        self.events.send(Event::Transition(finished.clone()));
        self.events.flush().await;
        finished
    }

    async fn act(&self, step: &Step, new: &Config) -> Problems {
        let mut problems = Problems::new();
        if step.runs_in_reverse() {
            for listener in self.listeners.iter().rev() {
                problems.extend(listener.on_step(step, new).await);
            }
        } else {
            for listener in &self.listeners {
                problems.extend(listener.on_step(step, new).await);
            }
        }
        problems
    }

    fn announce(&self, log: &mut Vec<Transition>, transitions: &[Transition]) {
        for transition in transitions {
            self.events.send(Event::Transition(transition.clone()));
            log.push(transition.clone());
        }
    }

    fn set_manager(&self, change: impl FnOnce(&mut ManagerStatus)) {
        let mut changed = false;
        self.manager.send_if_modified(|m| {
            let before = m.clone();
            change(m);
            changed = *m != before;
            changed
        });
        if changed {
            self.events.send(Event::Manager);
        }
    }
}

#[cfg(test)]
mod tests;
