//! Checks the names services use to point at other definitions, over all files at once:
//! `group` must name a group, `after` must name services, and `after` must not loop.
//!
//! These run after merging, so `corral.d/b.toml` may refer to a service of `corral.toml`.

use std::collections::BTreeMap;

use super::checks::Checker;
use super::error::{ConfigError, SourceText};
use super::merge::Merged;
use super::raw::Text;

/// Reports unknown `group` and `after` names and every `after` cycle.
pub(crate) fn check_references(merged: &Merged, errors: &mut Vec<ConfigError>) {
    for (name, defined) in &merged.services {
        let Some(raw) = defined.body else {
            continue;
        };
        // Without every file, an unknown name may be defined in the broken one.
        if !merged.complete {
            continue;
        }
        let mut check = Checker::new(defined.source, format!("service {name:?}"), errors);
        if let Some(group) = &raw.group
            && !merged.groups.contains_key(group.get_ref().as_str())
        {
            check.error(
                group.span(),
                format!(
                    "\"group\" names {:?}, which is not a group defined in any file: add a \
                     [groups.{}] section with its peer, or remove \"group\"",
                    group.get_ref(),
                    group.get_ref()
                ),
            );
        }
        for target in raw.after.iter().flatten() {
            if !merged.services.contains_key(target.get_ref().as_str()) {
                check.error(
                    target.span(),
                    format!(
                        "\"after\" names {:?}, which is not a service defined in any file",
                        target.get_ref()
                    ),
                );
            }
        }
    }
    check_cycles(merged, errors);
}

/// An `after` entry that points at a defined service.
struct Edge<'a> {
    target: usize,
    entry: &'a Text,
}

/// Where a service is on the depth-first walk.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Unvisited,
    /// On the current path: reaching it again closes a cycle.
    OnPath,
    Finished,
}

/// Reports each `after` cycle once, as the path `a -> b -> a`, at the `after` entry that
/// closes it. The walk is iterative so that a long `after` chain cannot overflow the stack
/// of the (small-stacked) runtime thread that runs a reload.
fn check_cycles(merged: &Merged, errors: &mut Vec<ConfigError>) {
    let names: Vec<&str> = merged.services.keys().copied().collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let sources: Vec<&SourceText> = merged.services.values().map(|d| d.source).collect();
    let edges: Vec<Vec<Edge>> = merged
        .services
        .values()
        .map(|defined| {
            let after = defined.body.and_then(|raw| raw.after.as_ref());
            after
                .into_iter()
                .flatten()
                .filter_map(|entry| {
                    let target = *index.get(entry.get_ref().as_str())?;
                    Some(Edge { target, entry })
                })
                .collect()
        })
        .collect();

    let mut marks = vec![Mark::Unvisited; names.len()];
    for root in 0..names.len() {
        if marks[root] != Mark::Unvisited {
            continue;
        }
        marks[root] = Mark::OnPath;
        // Each step: a service and how many of its edges were followed already.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some((node, followed)) = path.last_mut() {
            let node = *node;
            let Some(edge) = edges[node].get(*followed) else {
                marks[node] = Mark::Finished;
                path.pop();
                continue;
            };
            *followed += 1;
            match marks[edge.target] {
                Mark::Unvisited => {
                    marks[edge.target] = Mark::OnPath;
                    path.push((edge.target, 0));
                }
                Mark::OnPath => {
                    let start = path.iter().position(|(n, _)| *n == edge.target);
                    let cycle: Vec<&str> = path[start.unwrap_or(0)..]
                        .iter()
                        .map(|(n, _)| names[*n])
                        .chain([names[edge.target]])
                        .collect();
                    errors.push(sources[node].error(
                        edge.entry.span(),
                        format!(
                            "dependency cycle: {} (each is \"after\" the next, so none can start \
                             first: remove one of these \"after\" entries)",
                            cycle.join(" -> ")
                        ),
                    ));
                }
                Mark::Finished => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{FILE, errors, only_error, parse};

    fn service(name: &str, after: &[&str]) -> String {
        format!("[services.{name}]\nexec = [\"/bin/{name}\"]\nafter = {after:?}\n")
    }

    #[test]
    fn after_must_name_services() {
        let text = service("a", &["b", "nosuch"]) + &service("b", &[]);
        assert_eq!(
            only_error(&text),
            format!(
                "{FILE}:3:15: service \"a\": \"after\" names \"nosuch\", which is not a service \
                 defined in any file"
            )
        );
        let config = parse(&(service("a", &["b"]) + &service("b", &[]))).unwrap();
        assert_eq!(config.services["a"].after, ["b"]);
    }

    #[test]
    fn group_must_name_a_group() {
        let text = "[services.a]\nexec = [\"/bin/a\"]\ngroup = \"storage\"\n";
        let shown = only_error(text);
        assert!(shown.starts_with(&format!(
            "{FILE}:3:9: service \"a\": \"group\" names \"storage\", which is not a group defined in any file"
        )), "{shown}");
        let config = parse(&format!("{text}[groups.storage]\npeer = \"n\"\n")).unwrap();
        assert_eq!(config.services["a"].group.as_deref(), Some("storage"));
    }

    #[test]
    fn two_services_after_each_other_are_a_cycle() {
        let text = service("a", &["b"]) + &service("b", &["a"]);
        let shown = only_error(&text);
        // Reported at the entry that closes the loop: b's `after = ["a"]`.
        assert!(
            shown.starts_with(&format!("{FILE}:6:10: dependency cycle: a -> b -> a (")),
            "{shown}"
        );
    }

    #[test]
    fn a_service_after_itself_is_a_cycle() {
        let shown = only_error(&service("a", &["a"]));
        assert!(
            shown.starts_with(&format!("{FILE}:3:10: dependency cycle: a -> a (")),
            "{shown}"
        );
    }

    #[test]
    fn longer_cycles_are_reported_with_their_whole_path() {
        let text = service("a", &["b"])
            + &service("b", &["c"])
            + &service("c", &["d"])
            + &service("d", &["b"]);
        let shown = only_error(&text);
        assert!(
            shown.contains(": dependency cycle: b -> c -> d -> b ("),
            "{shown}"
        );
        assert!(shown.starts_with(&format!("{FILE}:12:10:")), "{shown}");
    }

    #[test]
    fn separate_cycles_are_each_reported() {
        let text = service("a", &["b"])
            + &service("b", &["a"])
            + &service("x", &["y"])
            + &service("y", &["x"]);
        let messages: Vec<String> = errors(&text).into_iter().map(|e| e.message).collect();
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(messages[0].starts_with("dependency cycle: a -> b -> a"));
        assert!(messages[1].starts_with("dependency cycle: x -> y -> x"));
    }

    #[test]
    fn shared_dependencies_are_not_cycles() {
        // A diamond: d is reached twice, but nothing loops.
        let text = service("a", &["b", "c"])
            + &service("b", &["d"])
            + &service("c", &["d"])
            + &service("d", &[]);
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn regression_long_after_chain_does_not_overflow_the_stack() {
        // The walk is iterative; a recursive one would need a frame per service.
        let mut text = String::new();
        for i in 0..20_000 {
            text += &service(&format!("s{i}"), &[&format!("s{}", i + 1)]);
        }
        text += &service("s20000", &["s0"]);
        let shown = only_error(&text);
        assert!(
            shown.contains(": dependency cycle: s0 -> s1 -> "),
            "{}",
            &shown[..200]
        );
        assert!(shown.contains(" -> s20000 -> s0 ("));
    }
}
