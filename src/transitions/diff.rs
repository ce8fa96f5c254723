//! The pure diff of two configurations into a [`Plan`], and its inverse check
//! [`apply_to`]. No I/O: everything here is a function of its arguments.

use std::collections::BTreeSet;

use super::order::{dependency_order, stop_order};
use super::plan::Plan;
use crate::config::{Config, Service};

/// Computes what turns `old` into `new`. A service is served here when it has no group or
/// its group's peer is the host (each configuration judged by its own `[daemon] host`).
pub fn diff(old: &Config, new: &Config) -> Plan {
    let served_old = served_set(old);
    let served_new = served_set(new);

    let leaving: Vec<String> = served_old.difference(&served_new).cloned().collect();
    let arriving: Vec<String> = served_new.difference(&served_old).cloned().collect();

    let mut services_moved = Vec::new();
    let mut services_changed = Vec::new();
    let mut restarted = Vec::new();
    for (name, new_def) in &new.services {
        let Some(old_def) = old.services.get(name) else {
            continue;
        };
        if old_def.group != new_def.group {
            services_moved.push((name.clone(), new_def.group.clone()));
        }
        if !same_apart_from_group(old_def, new_def) {
            services_changed.push((name.clone(), new_def.clone()));
            if served_old.contains(name)
                && served_new.contains(name)
                && old_def.process_differs(new_def)
            {
                restarted.push(name.clone());
            }
        }
    }

    Plan {
        daemon: new.daemon.clone(),
        to_be_unserved: stop_order(old, &leaving),
        groups_created: new
            .groups
            .iter()
            .filter(|(name, _)| !old.groups.contains_key(*name))
            .map(|(name, g)| (name.clone(), g.clone()))
            .collect(),
        services_created: new
            .services
            .iter()
            .filter(|(name, _)| !old.services.contains_key(*name))
            .map(|(name, s)| (name.clone(), s.clone()))
            .collect(),
        unserved: stop_order(old, &leaving),
        groups_moved: new
            .groups
            .iter()
            .filter(|(name, g)| old.groups.get(*name).is_some_and(|o| o.peer != g.peer))
            .map(|(name, g)| (name.clone(), g.clone()))
            .collect(),
        services_moved,
        services_changed,
        served: dependency_order(new, &arriving),
        restarted: dependency_order(new, &restarted),
        services_destroyed: old
            .services
            .keys()
            .filter(|name| !new.services.contains_key(*name))
            .cloned()
            .collect(),
        groups_destroyed: old
            .groups
            .keys()
            .filter(|name| !new.groups.contains_key(*name))
            .cloned()
            .collect(),
    }
}

/// Applies `plan` to `old` as pure data: `apply_to(a, &diff(a, b)) == b` for all `a`, `b`.
/// The supervisor does the same step by step with processes; this is its specification.
pub fn apply_to(old: &Config, plan: &Plan) -> Config {
    let mut config = old.clone();
    config.daemon = plan.daemon.clone();
    for (name, group) in plan.groups_created.iter().chain(&plan.groups_moved) {
        config.groups.insert(name.clone(), group.clone());
    }
    for (name, service) in plan.services_created.iter().chain(&plan.services_changed) {
        config.services.insert(name.clone(), service.clone());
    }
    for (name, group) in &plan.services_moved {
        if let Some(service) = config.services.get_mut(name) {
            service.group = group.clone();
        }
    }
    for name in &plan.services_destroyed {
        config.services.remove(name);
    }
    for name in &plan.groups_destroyed {
        config.groups.remove(name);
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
    if a.group == b.group {
        return a == b;
    }
    // Rare (a moved service): compare a copy with the group aligned.
    let mut b = b.clone();
    b.group = a.group.clone();
    *a == b
}

#[cfg(test)]
mod tests;
