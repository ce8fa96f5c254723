//! Dependency order of services (`after`): the order services start in. Stops use its reverse.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};

use crate::config::Config;

/// Sorts `names` so that each comes after the services it is `after` (among `names`),
/// breaking ties by name so the order is deterministic. Dependencies outside `names` are
/// ignored: they are not part of this step. The configuration is validated, so there is no
/// cycle; should one slip through, the remaining names are appended in name order rather
/// than lost.
pub fn dependency_order(config: &Config, names: &[String]) -> Vec<String> {
    let members: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut blockers: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in &members {
        let deps = config
            .services
            .get(*name)
            .map(|s| s.after.as_slice())
            .unwrap_or_default();
        let mut count = 0;
        for dep in deps.iter().filter(|d| members.contains(d.as_str())) {
            dependents.entry(dep.as_str()).or_default().push(name);
            count += 1;
        }
        blockers.insert(name, count);
    }
    // Kahn's algorithm with a min-heap, so among ready services the smallest name goes first.
    let mut ready: BinaryHeap<Reverse<&str>> = blockers
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(name, _)| Reverse(*name))
        .collect();
    let mut ordered = Vec::with_capacity(names.len());
    while let Some(Reverse(name)) = ready.pop() {
        ordered.push(name.to_owned());
        for dependent in dependents.get(name).into_iter().flatten() {
            let count = blockers.get_mut(dependent).expect("dependent is a member");
            *count -= 1;
            if *count == 0 {
                ready.push(Reverse(dependent));
            }
        }
    }
    if ordered.len() < members.len() {
        let placed: HashSet<String> = ordered.iter().cloned().collect();
        let mut rest: Vec<String> = members
            .iter()
            .filter(|n| !placed.contains(**n))
            .map(|n| n.to_string())
            .collect();
        rest.sort();
        ordered.extend(rest);
    }
    ordered
}

/// The reverse of [`dependency_order`]: dependents stop before what they depend on.
pub fn stop_order(config: &Config, names: &[String]) -> Vec<String> {
    let mut order = dependency_order(config, names);
    order.reverse();
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Service;

    fn config(deps: &[(&str, &[&str])]) -> Config {
        let mut config = Config::empty("h");
        for (name, after) in deps {
            config.services.insert(
                name.to_string(),
                Service {
                    exec: vec!["true".into()],
                    after: after.iter().map(|s| s.to_string()).collect(),
                    ..Service::default()
                }
                .into(),
            );
        }
        config
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_first_then_name_order() {
        let c = config(&[
            ("web", &["db", "cache"]),
            ("db", &[]),
            ("cache", &["db"]),
            ("a", &[]),
        ]);
        let all = names(&["web", "db", "cache", "a"]);
        assert_eq!(
            dependency_order(&c, &all),
            names(&["a", "db", "cache", "web"])
        );
        assert_eq!(stop_order(&c, &all), names(&["web", "cache", "db", "a"]));
    }

    #[test]
    fn ignores_dependencies_outside_the_step() {
        let c = config(&[("web", &["db"]), ("db", &[])]);
        assert_eq!(dependency_order(&c, &names(&["web"])), names(&["web"]));
    }

    #[test]
    fn a_cycle_loses_nothing() {
        let c = config(&[("a", &["b"]), ("b", &["a"]), ("c", &[])]);
        assert_eq!(
            dependency_order(&c, &names(&["a", "b", "c"])),
            names(&["c", "a", "b"])
        );
    }
}
