//! Applying a plan: the one code path for start-up (`Up`, from the empty configuration),
//! reloads, and shutdown (`Down`, to the empty configuration).

use tokio::sync::watch;

use super::diff::diff;
use super::listener::{Listener, Step};
use super::plan::Transition;
use crate::config::Config;
use crate::manager_status::{DaemonState, ManagerStatus};
use crate::supervisor::{Event, EventSender, Handle};

/// Owns the current configuration and applies new ones, one at a time.
pub struct Applier {
    current: Config,
    generation: u64,
    /// In registration order.
    listeners: Vec<Box<dyn Listener>>,
    supervisor: Handle,
    events: EventSender,
    manager: watch::Sender<ManagerStatus>,
}

impl Applier {
    /// An applier whose current configuration is the empty one for `host`.
    pub fn new(
        host: &str,
        supervisor: Handle,
        events: EventSender,
        manager: watch::Sender<ManagerStatus>,
    ) -> Applier {
        Applier {
            current: Config::empty(host),
            generation: 0,
            listeners: Vec::new(),
            supervisor,
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

    /// Applies `new` in DESIGN.md's order and returns the transitions announced, in order.
    /// Client commands that change state are held back meanwhile, so they see the old or
    /// the new configuration, never half of each.
    pub async fn apply(&mut self, new: Config) -> Vec<Transition> {
        let plan = diff(&self.current, &new);
        let generation = self.generation + 1;
        let mut log = Vec::new();
        self.supervisor.begin_reload().await;
        self.set_manager(|m| {
            if m.state == DaemonState::Running {
                m.state = DaemonState::Reloading;
            }
        });

        // 1. ServiceToBeUnserved
        self.step(Step::ToBeUnserved(&plan.to_be_unserved), &new)
            .await;
        self.announce(
            &mut log,
            plan.to_be_unserved
                .iter()
                .cloned()
                .map(Transition::ServiceToBeUnserved),
        );
        // 2. ReloadStarted
        self.step(Step::ReloadStarted(generation), &new).await;
        self.announce(&mut log, [Transition::ReloadStarted(generation)]);
        // 3. GroupCreated, ServiceCreated (objects exported before the signals)
        self.step(Step::GroupsCreated(&plan.groups_created), &new)
            .await;
        self.announce(
            &mut log,
            plan.groups_created
                .iter()
                .map(|(group, g)| Transition::GroupCreated {
                    group: group.clone(),
                    peer: g.peer.clone(),
                }),
        );
        self.step(Step::ServicesCreated(&plan.services_created), &new)
            .await;
        self.announce(
            &mut log,
            plan.services_created
                .iter()
                .map(|(name, s)| Transition::ServiceCreated {
                    name: name.clone(),
                    group: s.group.clone().unwrap_or_default(),
                }),
        );
        // 4. ServiceUnserved (stopped, reverse dependency order)
        self.step(Step::Unserved(&plan.unserved), &new).await;
        self.announce(
            &mut log,
            plan.unserved
                .iter()
                .cloned()
                .map(Transition::ServiceUnserved),
        );
        // 5. GroupMoved, ServiceMoved, ServiceChanged
        self.step(Step::GroupsMoved(&plan.groups_moved), &new).await;
        self.announce(
            &mut log,
            plan.groups_moved
                .iter()
                .map(|(group, g)| Transition::GroupMoved {
                    group: group.clone(),
                    peer: g.peer.clone(),
                }),
        );
        self.step(Step::ServicesMoved(&plan.services_moved), &new)
            .await;
        self.announce(
            &mut log,
            plan.services_moved
                .iter()
                .map(|(name, group)| Transition::ServiceMoved {
                    name: name.clone(),
                    group: group.clone().unwrap_or_default(),
                }),
        );
        self.step(Step::ServicesChanged(&plan.services_changed), &new)
            .await;
        self.announce(
            &mut log,
            plan.services_changed
                .iter()
                .map(|(name, _)| Transition::ServiceChanged(name.clone())),
        );
        // 6. ServiceServed (started in dependency order; changed ones restarted)
        let served = Step::Served {
            served: &plan.served,
            restarted: &plan.restarted,
        };
        self.step(served, &new).await;
        self.announce(
            &mut log,
            plan.served.iter().cloned().map(Transition::ServiceServed),
        );
        // 7. ServiceDestroyed, GroupDestroyed (objects removed after the signals)
        self.announce(
            &mut log,
            plan.services_destroyed
                .iter()
                .cloned()
                .map(Transition::ServiceDestroyed),
        );
        self.step(Step::ServicesDestroyed(&plan.services_destroyed), &new)
            .await;
        self.announce(
            &mut log,
            plan.groups_destroyed
                .iter()
                .cloned()
                .map(Transition::GroupDestroyed),
        );
        self.step(Step::GroupsDestroyed(&plan.groups_destroyed), &new)
            .await;

        let host = new.daemon.host.clone();
        self.current = new;
        self.generation = generation;
        self.set_manager(|m| {
            m.host = host;
            m.generation = generation;
            if m.state == DaemonState::Reloading {
                m.state = DaemonState::Running;
            }
        });
        // 8. ReloadFinished
        self.step(Step::ReloadFinished(generation), &self.current)
            .await;
        self.announce(
            &mut log,
            [Transition::ReloadFinished {
                generation,
                ok: true,
                error: String::new(),
            }],
        );
        self.supervisor.end_reload().await;
        // Reply only once every signal of this reload is on the bus.
        self.events.flush().await;
        log
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

    async fn step(&self, step: Step<'_>, new: &Config) {
        if self.listeners.is_empty() {
            return;
        }
        if step.runs_in_reverse() {
            for listener in self.listeners.iter().rev() {
                listener.on_step(&step, new).await;
            }
        } else {
            for listener in &self.listeners {
                listener.on_step(&step, new).await;
            }
        }
    }

    fn announce(
        &self,
        log: &mut Vec<Transition>,
        transitions: impl IntoIterator<Item = Transition>,
    ) {
        for transition in transitions {
            self.events.send(Event::Transition(transition.clone()));
            log.push(transition);
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
