//! Unit and property tests of the diff: exact plans for hand-made cases, and for random
//! configurations the laws `apply_to(a, diff(a, b)) == b` and `diff(a, a)` is empty.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::config::{Group, RestartPolicy};

/// The plan's steps as named lists (empty when the plan leaves a step out), so tests read
/// like the order in DESIGN.md.
#[derive(Debug, Default)]
struct View {
    to_be_unserved: Vec<String>,
    groups_created: Vec<(String, Group)>,
    services_created: Vec<(String, Arc<Service>)>,
    unserved: Vec<String>,
    groups_moved: Vec<(String, Group)>,
    groups_changed: Vec<(String, Group)>,
    services_moved: Vec<(String, Option<String>)>,
    services_changed: Vec<(String, Arc<Service>)>,
    served: Vec<String>,
    restarted: Vec<String>,
    starts: Vec<String>,
    services_destroyed: Vec<String>,
    groups_destroyed: Vec<String>,
}

fn view(plan: &Plan) -> View {
    let mut v = View::default();
    for planned in &plan.steps {
        match planned.step.clone() {
            Step::ToBeUnserved(x) => v.to_be_unserved = x,
            Step::ReloadStarted(g) => assert_eq!(g, plan.generation),
            Step::GroupsCreated(x) => v.groups_created = x,
            Step::ServicesCreated(x) => v.services_created = x,
            Step::Unserved(x) => v.unserved = x,
            Step::GroupsMoved(x) => v.groups_moved = x,
            Step::GroupsChanged(x) => v.groups_changed = x,
            Step::ServicesMoved(x) => v.services_moved = x,
            Step::ServicesChanged(x) => v.services_changed = x,
            Step::Served(x) => {
                v.served = x.served;
                v.restarted = x.restarted.into_iter().collect();
                v.starts = x.starts;
            }
            Step::ServicesDestroyed(x) => v.services_destroyed = x,
            Step::GroupsDestroyed(x) => v.groups_destroyed = x,
        }
    }
    v
}

/// `diff` as the tests use it: generation 1.
fn diffed(old: &Config, new: &Config) -> (Plan, View) {
    let plan = super::diff(old, new, 1);
    let view = view(&plan);
    (plan, view)
}

fn transitions(plan: &Plan) -> Vec<Transition> {
    plan.transitions().cloned().collect()
}

fn service(exec: &str, group: Option<&str>, after: &[&str]) -> Service {
    Service {
        exec: vec![exec.to_owned()],
        group: group.map(str::to_owned),
        after: after.iter().map(|s| s.to_string()).collect(),
        ..Service::default()
    }
}

fn config(host: &str, groups: &[(&str, &str)], services: Vec<(&str, Service)>) -> Config {
    let mut c = Config::empty(host);
    for (name, peer) in groups {
        c.groups.insert(
            name.to_string(),
            Group {
                peer: peer.to_string(),
                peers: Vec::new(),
            },
        );
    }
    for (name, s) in services {
        c.services.insert(name.to_string(), s.into());
    }
    c
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn up_creates_and_serves_everything_in_dependency_order() {
    let empty = Config::empty("a");
    let new = config(
        "a",
        &[("g", "a"), ("remote", "b")],
        vec![
            ("web", service("web", Some("g"), &["db"])),
            ("db", service("db", None, &[])),
            ("far", service("far", Some("remote"), &[])),
        ],
    );
    let (full, plan) = diffed(&empty, &new);
    assert!(plan.to_be_unserved.is_empty());
    assert_eq!(
        plan.served,
        strings(&["db", "web"]),
        "far is served by peer b"
    );
    assert_eq!(plan.services_created.len(), 3);
    let kinds: Vec<String> = transitions(&full)
        .iter()
        .map(|t| format!("{} {}", t.kind(), t.subject()))
        .collect();
    assert_eq!(
        kinds,
        strings(&[
            "ReloadStarted 1",
            "GroupCreated g",
            "GroupCreated remote",
            "ServiceCreated db",
            "ServiceCreated far",
            "ServiceCreated web",
            "ServiceServed db",
            "ServiceServed web",
        ])
    );
}

#[test]
fn down_unserves_in_reverse_dependency_order_and_destroys() {
    let old = config(
        "a",
        &[("g", "a")],
        vec![
            ("web", service("web", Some("g"), &["db"])),
            ("db", service("db", None, &[])),
        ],
    );
    let (_, plan) = diffed(&old, &Config::empty("a"));
    assert_eq!(plan.to_be_unserved, strings(&["web", "db"]));
    assert_eq!(plan.unserved, strings(&["web", "db"]));
    assert_eq!(plan.services_destroyed, strings(&["db", "web"]));
    assert_eq!(plan.groups_destroyed, strings(&["g"]));
    assert!(plan.served.is_empty());
}

#[test]
fn moving_a_group_away_unserves_its_services() {
    let old = config(
        "a",
        &[("g", "a")],
        vec![("s", service("s", Some("g"), &[]))],
    );
    let new = config(
        "a",
        &[("g", "b")],
        vec![("s", service("s", Some("g"), &[]))],
    );
    let (_, plan) = diffed(&old, &new);
    assert_eq!(
        plan.groups_moved,
        vec![(
            "g".to_string(),
            Group {
                peer: "b".into(),
                peers: Vec::new()
            }
        )]
    );
    assert_eq!(plan.unserved, strings(&["s"]));
    assert!(plan.services_changed.is_empty());
    // And back again.
    let (_, back) = diffed(&new, &old);
    assert_eq!(back.served, strings(&["s"]));
    assert!(back.unserved.is_empty());
}

#[test]
fn process_changes_restart_other_changes_do_not() {
    let old = config(
        "a",
        &[],
        vec![
            ("s", service("s", None, &[])),
            ("t", service("t", None, &[])),
        ],
    );
    let mut new = old.clone();
    Arc::make_mut(new.services.get_mut("s").unwrap()).exec = strings(&["s2"]);
    Arc::make_mut(new.services.get_mut("t").unwrap()).description = "new words".into();
    Arc::make_mut(new.services.get_mut("t").unwrap()).restart = RestartPolicy::Always;
    let (_, plan) = diffed(&old, &new);
    assert_eq!(
        plan.services_changed
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["s", "t"]
    );
    assert_eq!(plan.restarted, strings(&["s"]));
    assert!(plan.served.is_empty() && plan.unserved.is_empty());
}

#[test]
fn a_service_changing_group_is_moved_not_changed() {
    let old = config(
        "a",
        &[("g", "a"), ("h", "a")],
        vec![("s", service("s", Some("g"), &[]))],
    );
    let new = config(
        "a",
        &[("g", "a"), ("h", "a")],
        vec![("s", service("s", Some("h"), &[]))],
    );
    let (full, plan) = diffed(&old, &new);
    assert_eq!(
        plan.services_moved,
        vec![("s".to_string(), Some("h".to_string()))]
    );
    assert!(plan.services_changed.is_empty());
    assert!(
        plan.served.is_empty() && plan.unserved.is_empty(),
        "served on both sides"
    );
    assert_eq!(
        transitions(&full),
        vec![
            Transition::ReloadStarted(1),
            Transition::ServiceMoved {
                name: "s".into(),
                group: "h".into()
            }
        ]
    );
}

#[test]
fn changing_host_moves_what_is_served() {
    let old = config(
        "a",
        &[("g", "a")],
        vec![("s", service("s", Some("g"), &[]))],
    );
    let mut new = old.clone();
    new.daemon.host = "b".into();
    let (full, plan) = diffed(&old, &new);
    assert_eq!(plan.unserved, strings(&["s"]));
    assert_eq!(full.daemon.host, "b");
}

// ---- property tests ------------------------------------------------------------------

const HOSTS: [&str; 2] = ["a", "b"];
const GROUPS: [&str; 3] = ["g1", "g2", "g3"];
const SERVICES: [&str; 6] = ["s1", "s2", "s3", "s4", "s5", "s6"];

fn arb_service(index: usize) -> impl Strategy<Value = Service> {
    (
        prop::sample::select(vec!["sleep", "true", "daemon"]),
        prop::option::of(prop::sample::select(GROUPS.to_vec())),
        // `after` only names services with a smaller index, so there is never a cycle.
        prop::collection::vec(0..index.max(1), 0..3),
        prop::sample::select(vec!["", "x", "y"]),
        prop::sample::select(vec![
            RestartPolicy::No,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ]),
        prop::option::of(prop::sample::select(vec!["1", "2"])),
    )
        .prop_map(
            move |(exec, group, after, description, restart, env)| Service {
                exec: vec![exec.to_owned()],
                group: group.map(str::to_owned),
                after: if index == 0 {
                    vec![]
                } else {
                    let mut a: Vec<String> =
                        after.into_iter().map(|i| SERVICES[i].to_owned()).collect();
                    a.sort();
                    a.dedup();
                    a
                },
                description: description.to_owned(),
                restart,
                environment: env
                    .map(|v| BTreeMap::from([("V".to_owned(), v.to_owned())]))
                    .unwrap_or_default(),
                ..Service::default()
            },
        )
}

pub(crate) fn arb_config() -> impl Strategy<Value = Config> {
    // Each group: maybe absent; its peer; whether it lists `peers` (all hosts, in an order
    // the peer picks), so a reload can change `peers` alone.
    let group = prop::option::of((prop::sample::select(HOSTS.to_vec()), any::<bool>()));
    let groups = prop::collection::vec(group, 3);
    let services: Vec<_> = (0..SERVICES.len())
        .map(|i| prop::option::of(arb_service(i)))
        .collect();
    (prop::sample::select(HOSTS.to_vec()), groups, services).prop_map(|(host, groups, services)| {
        let mut c = Config::empty(host);
        for (name, group) in GROUPS.iter().zip(groups) {
            if let Some((peer, listed)) = group {
                let mut peers: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
                peers.rotate_left(HOSTS.iter().position(|h| *h == peer).unwrap_or(0));
                c.groups.insert(
                    name.to_string(),
                    Group {
                        peer: peer.to_owned(),
                        peers: if listed { peers } else { Vec::new() },
                    },
                );
            }
        }
        for (name, service) in SERVICES.iter().zip(services) {
            if let Some(service) = service {
                c.services.insert(name.to_string(), service.into());
            }
        }
        c
    })
}

fn position(list: &[String], name: &str) -> Option<usize> {
    list.iter().position(|n| n == name)
}

/// A reload that changes only where a group may move is in the plan (so applying the
/// plan gives the new configuration), and announces nothing: no service moves.
#[test]
fn a_change_to_peers_alone_is_carried_but_not_announced() {
    let mut a = Config::empty("a");
    a.groups.insert(
        "g".into(),
        Group {
            peer: "a".into(),
            peers: vec!["a".into()],
        },
    );
    let mut b = a.clone();
    b.groups.get_mut("g").unwrap().peers.push("b".into());
    let (plan, view) = diffed(&a, &b);
    assert_eq!(
        view.groups_changed,
        [("g".to_string(), b.groups["g"].clone())]
    );
    assert!(view.groups_moved.is_empty());
    assert_eq!(transitions(&plan), [Transition::ReloadStarted(1)]);
    assert_eq!(apply_to(&a, &plan), b);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn applying_the_diff_gives_the_new_config(a in arb_config(), b in arb_config()) {
        prop_assert_eq!(apply_to(&a, &super::diff(&a, &b, 7)), b);
    }

    #[test]
    fn the_diff_of_a_config_with_itself_is_empty(a in arb_config()) {
        let (full, _) = diffed(&a, &a);
        prop_assert_eq!(full.steps.len(), 1, "only ReloadStarted: {:?}", full);
        prop_assert_eq!(transitions(&full), vec![Transition::ReloadStarted(1)]);
    }

    #[test]
    fn starts_follow_dependencies_and_stops_reverse_them(a in arb_config(), b in arb_config()) {
        let (_, plan) = diffed(&a, &b);
        for (i, name) in plan.served.iter().enumerate() {
            for dep in &b.services[name].after {
                if let Some(j) = position(&plan.served, dep) {
                    prop_assert!(j < i, "{} started before its dependency {}", name, dep);
                }
            }
        }
        for (i, name) in plan.unserved.iter().enumerate() {
            for dep in &a.services[name].after {
                if let Some(j) = position(&plan.unserved, dep) {
                    prop_assert!(j > i, "{} stopped after its dependency {}", dep, name);
                }
            }
        }
    }

    #[test]
    fn served_and_unserved_are_disjoint_and_match_the_configs(a in arb_config(), b in arb_config()) {
        let (_, plan) = diffed(&a, &b);
        for name in &plan.served {
            prop_assert!(b.is_served_here(&b.services[name]));
            prop_assert!(a.services.get(name).is_none_or(|s| !a.is_served_here(s)));
            prop_assert!(!plan.unserved.contains(name));
        }
        for name in &plan.unserved {
            prop_assert!(a.is_served_here(&a.services[name]));
            prop_assert!(b.services.get(name).is_none_or(|s| !b.is_served_here(s)));
        }
        prop_assert_eq!(&plan.unserved, &plan.to_be_unserved);
    }
}
