//! The pure diff of two configurations into a [`Plan`], and its inverse check
//! [`apply_to`]. No I/O: everything here is a function of its arguments.

use std::collections::BTreeSet;

use super::order::{dependency_order, stop_order};
use super::plan::{Announce, Plan, PlannedStep, Served, Step};
use crate::config::{Config, Service};
use crate::events::Transition;

/// Computes what turns `old` into `new`, announced as reload `generation`. A service is
/// served here when it has no group or its group's peer is the host (each configuration
/// judged by its own `[daemon] host`).
pub fn diff(old: &Config, new: &Config, generation: u64) -> Plan {
    let served_old = served_set(old);
    let served_new = served_set(new);
    let leaving: Vec<String> = served_old.difference(&served_new).cloned().collect();
    let arriving: Vec<String> = served_new.difference(&served_old).cloned().collect();
    let leaving = stop_order(old, &leaving);

    let mut moved = Vec::new();
    let mut changed = Vec::new();
    let mut restarted = BTreeSet::new();
    for (name, new_def) in &new.services {
        let Some(old_def) = old.services.get(name) else {
            continue;
        };
        if old_def.group != new_def.group {
            moved.push((name.clone(), new_def.group.clone()));
        }
        if !same_apart_from_group(old_def, new_def) {
            changed.push((name.clone(), new_def.clone()));
            if served_old.contains(name)
                && served_new.contains(name)
                && old_def.process_differs(new_def)
            {
                restarted.insert(name.clone());
            }
        }
    }
    let served = dependency_order(new, &arriving);
    let candidates: Vec<String> = served.iter().chain(&restarted).cloned().collect();
    let starts = dependency_order(new, &candidates);

    let groups_created: Vec<_> = new
        .groups
        .iter()
        .filter(|(name, _)| !old.groups.contains_key(*name))
        .map(|(name, g)| (name.clone(), g.clone()))
        .collect();
    let services_created: Vec<_> = new
        .services
        .iter()
        .filter(|(name, _)| !old.services.contains_key(*name))
        .map(|(name, s)| (name.clone(), s.clone()))
        .collect();
    let groups_moved: Vec<_> = new
        .groups
        .iter()
        .filter(|(name, g)| old.groups.get(*name).is_some_and(|o| o.peer != g.peer))
        .map(|(name, g)| (name.clone(), g.clone()))
        .collect();
    let groups_changed: Vec<_> = new
        .groups
        .iter()
        .filter(|(name, g)| {
            old.groups
                .get(*name)
                .is_some_and(|o| o.peer == g.peer && o.peers != g.peers)
        })
        .map(|(name, g)| (name.clone(), g.clone()))
        .collect();
    let services_destroyed: Vec<String> = old
        .services
        .keys()
        .filter(|name| !new.services.contains_key(*name))
        .cloned()
        .collect();
    let groups_destroyed: Vec<String> = old
        .groups
        .keys()
        .filter(|name| !new.groups.contains_key(*name))
        .cloned()
        .collect();

    use Announce::{AfterActing as After, BeforeActing as Before};
    let group_of = |group: &Option<String>| group.clone().unwrap_or_default();
    let mut plan = PlanBuilder::default();
    plan.add(
        leaving.iter().cloned().map(Transition::ServiceToBeUnserved),
        Step::ToBeUnserved(leaving.clone()),
        After,
    );
    plan.always(
        Step::ReloadStarted(generation),
        Transition::ReloadStarted(generation),
    );
    plan.add(
        groups_created
            .iter()
            .map(|(group, g)| Transition::GroupCreated {
                group: group.clone(),
                peer: g.peer.clone(),
            }),
        Step::GroupsCreated(groups_created.clone()),
        After,
    );
    plan.add(
        services_created
            .iter()
            .map(|(name, s)| Transition::ServiceCreated {
                name: name.clone(),
                group: group_of(&s.group),
            }),
        Step::ServicesCreated(services_created.clone()),
        After,
    );
    let unserved: Vec<Transition> = leaving
        .iter()
        .cloned()
        .map(Transition::ServiceUnserved)
        .collect();
    plan.add(unserved, Step::Unserved(leaving), After);
    plan.add(
        groups_moved
            .iter()
            .map(|(group, g)| Transition::GroupMoved {
                group: group.clone(),
                peer: g.peer.clone(),
            }),
        Step::GroupsMoved(groups_moved.clone()),
        After,
    );
    plan.add([], Step::GroupsChanged(groups_changed), After);
    plan.add(
        moved.iter().map(|(name, group)| Transition::ServiceMoved {
            name: name.clone(),
            group: group_of(group),
        }),
        Step::ServicesMoved(moved.clone()),
        After,
    );
    plan.add(
        changed
            .iter()
            .map(|(name, _)| Transition::ServiceChanged(name.clone())),
        Step::ServicesChanged(changed.clone()),
        After,
    );
    plan.add(
        served.iter().cloned().map(Transition::ServiceServed),
        Step::Served(Served {
            served: served.clone(),
            restarted,
            starts,
        }),
        After,
    );
    plan.add(
        services_destroyed
            .iter()
            .cloned()
            .map(Transition::ServiceDestroyed),
        Step::ServicesDestroyed(services_destroyed.clone()),
        Before,
    );
    plan.add(
        groups_destroyed
            .iter()
            .cloned()
            .map(Transition::GroupDestroyed),
        Step::GroupsDestroyed(groups_destroyed.clone()),
        Before,
    );
    Plan {
        daemon: new.daemon.clone(),
        generation,
        steps: plan.steps,
    }
}

#[derive(Default)]
struct PlanBuilder {
    steps: Vec<PlannedStep>,
}

impl PlanBuilder {
    /// Adds `step` unless it has nothing to do.
    fn add(
        &mut self,
        transitions: impl IntoIterator<Item = Transition>,
        step: Step,
        announce: Announce,
    ) {
        if !step.is_noop() {
            self.steps.push(PlannedStep {
                step,
                transitions: transitions.into_iter().collect(),
                announce,
            });
        }
    }

    fn always(&mut self, step: Step, transition: Transition) {
        self.steps.push(PlannedStep {
            step,
            transitions: vec![transition],
            announce: Announce::AfterActing,
        });
    }
}

impl Step {
    /// Whether carrying out the step would change nothing.
    fn is_noop(&self) -> bool {
        match self {
            Step::ToBeUnserved(names)
            | Step::Unserved(names)
            | Step::ServicesDestroyed(names)
            | Step::GroupsDestroyed(names) => names.is_empty(),
            Step::GroupsCreated(groups)
            | Step::GroupsMoved(groups)
            | Step::GroupsChanged(groups) => groups.is_empty(),
            Step::ServicesCreated(services) | Step::ServicesChanged(services) => {
                services.is_empty()
            }
            Step::ServicesMoved(moved) => moved.is_empty(),
            Step::Served(served) => served.served.is_empty() && served.starts.is_empty(),
            Step::ReloadStarted(_) => false,
        }
    }
}

/// Applies `plan` to `old` as pure data: `apply_to(a, &diff(a, b, g)) == b` for all `a`,
/// `b`. The listeners do the same step by step with processes; this is their specification.
pub fn apply_to(old: &Config, plan: &Plan) -> Config {
    let mut config = old.clone();
    config.daemon = plan.daemon.clone();
    for planned in &plan.steps {
        match &planned.step {
            Step::GroupsCreated(groups)
            | Step::GroupsMoved(groups)
            | Step::GroupsChanged(groups) => {
                for (name, group) in groups {
                    config.groups.insert(name.clone(), group.clone());
                }
            }
            Step::ServicesCreated(services) | Step::ServicesChanged(services) => {
                for (name, service) in services {
                    config.services.insert(name.clone(), service.clone());
                }
            }
            Step::ServicesMoved(moved) => {
                for (name, group) in moved {
                    if let Some(service) = config.services.get_mut(name) {
                        std::sync::Arc::make_mut(service).group = group.clone();
                    }
                }
            }
            Step::ServicesDestroyed(names) => {
                for name in names {
                    config.services.remove(name);
                }
            }
            Step::GroupsDestroyed(names) => {
                for name in names {
                    config.groups.remove(name);
                }
            }
            Step::ToBeUnserved(_)
            | Step::ReloadStarted(_)
            | Step::Unserved(_)
            | Step::Served(_) => {}
        }
    }
    config
}

fn served_set(config: &Config) -> BTreeSet<String> {
    config
        .services
        .iter()
        .filter(|(_, s)| config.is_served_here(s))
        .map(|(name, _)| name.clone())
        .collect()
}

fn same_apart_from_group(a: &Service, b: &Service) -> bool {
    // One allocation: `Config::share_unchanged` found them equal already (the applier
    // shares every unchanged definition before it diffs), so a reload compares each
    // service once, not twice.
    if std::ptr::eq(a, b) {
        return true;
    }
    if a.group == b.group {
        return a == b;
    }
    // Rare (a moved service): compare a copy with the group aligned.
    let mut b = b.clone();
    b.group = a.group.clone();
    *a == b
}

#[cfg(test)]
pub(crate) mod tests;
