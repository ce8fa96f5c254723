//! `transitions`: the reload diff of two arbitrary configurations made from the input
//! (see `generate`).
//!
//! What must hold, for any old and new configuration: applying the plan to the old one
//! gives the new one; the diff of a configuration with itself is empty; starts come after
//! the services they are `after` and stops before them; what is served and unserved is
//! exactly what changed sides; only services served on both sides whose process differs
//! are restarted; and the transitions announced are the plan's, one per entry.

use std::collections::BTreeSet;

use corral::config::Config;
use corral::transitions::{Plan, Step, apply_to, diff};

use super::generate::Choices;

pub fn check(data: &[u8]) {
    let mut choices = Choices::new(data);
    let old = choices.config();
    let new = choices.config();

    let plan = diff(&old, &new, 2);
    assert_eq!(
        apply_to(&old, &plan),
        new,
        "apply_to(old, diff(old, new)) != new\n{plan:#?}"
    );
    for config in [&old, &new] {
        // Nothing to do but start the reload: one step, one transition.
        let same = diff(config, config, 2);
        assert!(
            matches!(&same.steps[..], [only] if matches!(only.step, Step::ReloadStarted(2))),
            "diff(a, a) is not empty: {same:#?}"
        );
        assert_eq!(same.transitions().count(), 1);
    }
    let lists = Lists::of(&plan);
    check_orders(&old, &new, &lists);
    check_sides(&old, &new, &lists);
}

/// The service lists of a plan's steps.
#[derive(Default)]
struct Lists {
    to_be_unserved: Vec<String>,
    unserved: Vec<String>,
    served: Vec<String>,
    restarted: BTreeSet<String>,
    starts: Vec<String>,
}

impl Lists {
    fn of(plan: &Plan) -> Lists {
        let mut lists = Lists::default();
        for planned in &plan.steps {
            match &planned.step {
                Step::ToBeUnserved(names) => lists.to_be_unserved = names.clone(),
                Step::Unserved(names) => lists.unserved = names.clone(),
                Step::Served(served) => {
                    lists.served = served.served.clone();
                    lists.restarted = served.restarted.clone();
                    lists.starts = served.starts.clone();
                }
                _ => {}
            }
        }
        lists
    }
}

/// Starts (`served`, and `starts`: served and restarted) follow the new `after`; stops
/// (`unserved`) reverse the old.
fn check_orders(old: &Config, new: &Config, plan: &Lists) {
    for list in [&plan.served, &plan.starts] {
        assert_unique(list);
        for (i, name) in list.iter().enumerate() {
            for dep in &new.services[name].after {
                if let Some(j) = list.iter().position(|n| n == dep) {
                    assert!(j < i, "{name} starts before its dependency {dep}: {list:?}");
                }
            }
        }
    }
    assert_unique(&plan.unserved);
    for (i, name) in plan.unserved.iter().enumerate() {
        for dep in &old.services[name].after {
            if let Some(j) = plan.unserved.iter().position(|n| n == dep) {
                assert!(j > i, "{dep} stops before {name}, which is after it");
            }
        }
    }
}

/// The served and unserved lists against the two configurations.
fn check_sides(old: &Config, new: &Config, plan: &Lists) {
    let served = |config: &Config| -> BTreeSet<String> {
        let here = config
            .services
            .iter()
            .filter(|(_, s)| config.is_served_here(s));
        here.map(|(name, _)| name.clone()).collect()
    };
    let (before, after) = (served(old), served(new));
    let set = |list: &[String]| list.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(set(&plan.served), &after - &before, "served");
    assert_eq!(set(&plan.unserved), &before - &after, "unserved");
    assert_eq!(plan.to_be_unserved, plan.unserved);
    let restarted: BTreeSet<String> = (&before & &after)
        .into_iter()
        .filter(|name| old.services[name].process_differs(&new.services[name]))
        .collect();
    assert_eq!(plan.restarted, restarted, "restarted");
}

fn assert_unique(list: &[String]) {
    assert_eq!(set_len(list), list.len(), "{list:?} names a service twice");
}

fn set_len(list: &[String]) -> usize {
    list.iter().collect::<BTreeSet<_>>().len()
}
