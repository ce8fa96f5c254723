//! Checks `[fleet]` and where each group may run (`[groups.NAME] peer` and `peers`).
//!
//! `[fleet]` is parsed by every build, so that a corrald built without the `fleet` cargo
//! feature can say why it refuses the table instead of calling it an unknown key.

use std::time::Duration;

use super::checks::Checker;
use super::duration::format_duration;
use super::error::ConfigError;
use super::merge::{DaemonKeys, FleetDefined};
use super::model::FleetSettings;
use super::raw::{RawGroup, Text};
use crate::names;

/// The shortest `lease_ttl`: keep-alives go out every third of it, and a host that loses
/// contact gets a third of it to stop its services; below a second each is too tight for
/// a loaded machine.
const MIN_LEASE_TTL: Duration = Duration::from_secs(3);
/// etcd's own upper bound on a lease TTL (`MaxLeaseTTL`).
const MAX_LEASE_TTL: Duration = Duration::from_secs(9_000_000_000);

/// `[fleet]`, when some file has it. `host` is the resolved `daemon.host`: with a fleet it
/// becomes an etcd key segment (`hosts/<host>`), so it must be a plain name.
pub(crate) fn fleet_settings(
    defined: Option<&FleetDefined>,
    daemon: &DaemonKeys,
    host: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<FleetSettings> {
    let defined = defined?;
    let mut check = Checker::new(defined.source, "[fleet]", errors);
    if !cfg!(feature = "fleet") {
        check.error(
            defined.table.span.clone(),
            "this corrald was built without fleet support (the \"fleet\" cargo feature): \
             remove [fleet], or install a corral package built with it",
        );
        return None;
    }
    let raw = defined.table.body.as_ref()?;
    let etcd = match &raw.etcd {
        None => {
            check.error(
                defined.table.span.clone(),
                "missing required key \"etcd\": list the etcd endpoints, \
                 e.g. etcd = [\"http://127.0.0.1:2379\"]",
            );
            Vec::new()
        }
        Some(list) if list.get_ref().is_empty() => {
            check.error(
                list.span(),
                "key \"etcd\" is empty: list at least one endpoint, e.g. \"http://127.0.0.1:2379\"",
            );
            Vec::new()
        }
        Some(list) => list
            .get_ref()
            .iter()
            .filter_map(|url| match endpoint_problem(url.get_ref()) {
                None => Some(url.get_ref().trim_end_matches('/').to_owned()),
                Some(problem) => {
                    check.error(
                        url.span(),
                        format!("key \"etcd\": {:?} {problem}", url.get_ref()),
                    );
                    None
                }
            })
            .collect(),
    };
    let prefix = match &raw.prefix {
        None => FleetSettings::DEFAULT_PREFIX.to_owned(),
        Some(prefix) => check_prefix(&mut check, prefix),
    };
    let lease_ttl = check.duration(
        raw.lease_ttl.as_ref(),
        "lease_ttl",
        FleetSettings::DEFAULT_LEASE_TTL,
    );
    if let Some(value) = &raw.lease_ttl {
        let whole = lease_ttl.subsec_nanos() == 0;
        if !whole || !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&lease_ttl) {
            check.error(
                value.span(),
                format!(
                    "key \"lease_ttl\" is {:?}, but must be a whole number of seconds from {} \
                     (etcd leases count in seconds; a third of it is the keep-alive period)",
                    value.get_ref(),
                    format_duration(MIN_LEASE_TTL)
                ),
            );
        }
    }
    if !names::is_valid_name(host) {
        let message = format!(
            "with [fleet], this host's name {host:?} becomes an etcd key (hosts/<host>), so it \
             must be 1 to {} of the characters A-Z a-z 0-9 _ . @ -",
            names::MAX_NAME_LEN
        );
        match &daemon.host {
            Some(setting) => Checker::new(setting.source, "[daemon]", errors)
                .error(setting.value.span(), format!("key \"host\": {message}")),
            None => Checker::new(defined.source, "[fleet]", errors).error(
                defined.table.span.clone(),
                format!("{message}: set [daemon] host to such a name"),
            ),
        }
    }
    Some(FleetSettings {
        etcd,
        prefix,
        lease_ttl,
        failover: raw.failover.unwrap_or(true),
    })
}

/// What is wrong with an etcd endpoint, if anything: corral speaks plain HTTP to
/// `http://HOST:PORT`.
fn endpoint_problem(url: &str) -> Option<&'static str> {
    if url.starts_with("https://") {
        return Some(
            "uses TLS, which corral does not support yet: reach etcd over loopback or a \
             trusted network with http://HOST:PORT",
        );
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Some("is not an endpoint: write it as http://HOST:PORT");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let well_formed = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        && !authority.contains(['/', '?', '#', '@', ' ', '\0']);
    (!well_formed).then_some("is not an endpoint: write it as http://HOST:PORT")
}

/// `prefix`: an absolute key path without a trailing `/`.
fn check_prefix(check: &mut Checker, prefix: &Text) -> String {
    let text = prefix.get_ref();
    let valid = text.starts_with('/')
        && !text.ends_with('/')
        && !text.contains('\0')
        && !text.contains("//");
    if !valid {
        check.error(
            prefix.span(),
            format!(
                "key \"prefix\" is {text:?}, but must start with \"/\" and not end with one \
                 (e.g. \"/corral\"): corral's keys are <prefix>/hosts/... and <prefix>/groups/..."
            ),
        );
        return FleetSettings::DEFAULT_PREFIX.to_owned();
    }
    text.clone()
}

/// A group's `peer` and `peers`. `peer` is required unless `peers` is given, when it
/// defaults to the first of them; when both are given, `peer` must be one of `peers`.
pub(crate) fn group_placement(
    check: &mut Checker,
    name: &Text,
    raw: &RawGroup,
) -> (String, Vec<String>) {
    let mut peers: Vec<String> = Vec::new();
    if let Some(list) = &raw.peers {
        if list.get_ref().is_empty() {
            check.error(
                list.span(),
                "key \"peers\" is empty: list the hosts this group may run on, in failover \
                 order, or remove it",
            );
        }
        for entry in list.get_ref() {
            let host = entry.get_ref();
            if !names::is_valid_name(host) {
                check.error(
                    entry.span(),
                    format!(
                        "key \"peers\": {host:?} is not a valid host name: use 1 to {} of the \
                         characters A-Z a-z 0-9 _ . @ -",
                        names::MAX_NAME_LEN
                    ),
                );
            } else if peers.contains(host) {
                check.error(
                    entry.span(),
                    format!("key \"peers\" lists {host:?} twice: list each host once"),
                );
            } else {
                peers.push(host.clone());
            }
        }
    }
    let peer = match &raw.peer {
        None if raw.peers.is_some() => peers.first().cloned().unwrap_or_default(),
        None => {
            check.error(
                name.span(),
                "missing required key \"peer\": name the peer that serves this group's \
                 services, e.g. peer = \"node-a\"",
            );
            String::new()
        }
        Some(peer) if peer.get_ref().is_empty() => {
            check.error(
                peer.span(),
                "key \"peer\" is empty: name the peer that serves this group",
            );
            String::new()
        }
        Some(peer) => {
            let text = check.text(peer, "peer").unwrap_or_default();
            if raw.peers.is_some() && !text.is_empty() && !peers.contains(&text) {
                check.error(
                    peer.span(),
                    format!(
                        "key \"peer\" is {text:?}, which is not in \"peers\" ({}): add it there, \
                         or pick one of them",
                        peers.join(", ")
                    ),
                );
            }
            text
        }
    };
    (peer, peers)
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "fleet")]
    use std::time::Duration;

    use super::super::test_support::{FILE, errors, only_error, parse};

    #[test]
    #[cfg(feature = "fleet")]
    fn design_example_fleet_is_read() {
        let config = parse(
            "[daemon]\nhost = \"node-a\"\n[fleet]\netcd = [\"http://127.0.0.1:2379\"]\n\
             prefix = \"/corral\"\nlease_ttl = \"10s\"\nfailover = true\n\
             [groups.storage]\npeer = \"node-a\"\npeers = [\"node-a\", \"node-b\"]\n",
        )
        .unwrap();
        let fleet = config.fleet.unwrap();
        assert_eq!(fleet.etcd, ["http://127.0.0.1:2379"]);
        assert_eq!(fleet.prefix, "/corral");
        assert_eq!(fleet.lease_ttl, Duration::from_secs(10));
        assert!(fleet.failover);
        assert_eq!(config.groups["storage"].peer, "node-a");
        assert_eq!(config.groups["storage"].peers, ["node-a", "node-b"]);
    }

    #[test]
    #[cfg(feature = "fleet")]
    fn fleet_defaults_and_absence() {
        let config = parse("[daemon]\nhost = \"a\"\n").unwrap();
        assert_eq!(config.fleet, None);
        let config =
            parse("[daemon]\nhost = \"a\"\n[fleet]\netcd = [\"http://[::1]:2379/\"]\n").unwrap();
        let fleet = config.fleet.unwrap();
        assert_eq!(fleet.etcd, ["http://[::1]:2379"]);
        assert_eq!(fleet.prefix, "/corral");
        assert_eq!(fleet.lease_ttl, Duration::from_secs(10));
        assert!(fleet.failover);
    }

    #[test]
    #[cfg(feature = "fleet")]
    fn fleet_values_are_checked() {
        let found = errors(
            "[daemon]\nhost = \"a\"\n[fleet]\netcd = [\"127.0.0.1:2379\", \"https://e:2379\", \
             \"http://e\"]\nprefix = \"corral/\"\nlease_ttl = \"1500ms\"\nfailover = \"yes\"\n",
        );
        // `failover = "yes"` fails deserializing the table: reported alone, at its value.
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0]
                .to_string()
                .starts_with(&format!("{FILE}:7:12: [fleet]: key \"failover\"")),
            "{}",
            found[0]
        );
        let errors = errors(
            "[daemon]\nhost = \"a\"\n[fleet]\netcd = [\"127.0.0.1:2379\", \"https://e:2379\", \
             \"http://e\"]\nprefix = \"corral/\"\nlease_ttl = \"1500ms\"\n",
        );
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert!(shown[0].starts_with(&format!(
            "{FILE}:4:9: [fleet]: key \"etcd\": \"127.0.0.1:2379\" is not an endpoint: write it as http://HOST:PORT"
        )), "{shown:#?}");
        assert!(
            shown[1].contains("\"https://e:2379\" uses TLS"),
            "{shown:#?}"
        );
        assert!(
            shown[2].contains("\"http://e\" is not an endpoint"),
            "{shown:#?}"
        );
        assert!(
            shown[3].starts_with(&format!(
                "{FILE}:5:10: [fleet]: key \"prefix\" is \"corral/\", but must start with \"/\""
            )),
            "{shown:#?}"
        );
        assert!(shown[4].starts_with(&format!(
            "{FILE}:6:13: [fleet]: key \"lease_ttl\" is \"1500ms\", but must be a whole number of seconds from 3s"
        )), "{shown:#?}");
    }

    #[test]
    #[cfg(feature = "fleet")]
    fn fleet_needs_etcd_and_a_usable_host_name() {
        let shown = only_error("[daemon]\nhost = \"a\"\n[fleet]\nprefix = \"/x\"\n");
        assert!(
            shown.starts_with(&format!(
                "{FILE}:3:2: [fleet]: missing required key \"etcd\""
            )),
            "{shown}"
        );
        let shown = only_error("[daemon]\nhost = \"a\"\n[fleet]\netcd = []\n");
        assert!(
            shown.contains(":4:8: [fleet]: key \"etcd\" is empty"),
            "{shown}"
        );
        let shown = only_error("[daemon]\nhost = \"a/b\"\n[fleet]\netcd = [\"http://e:1\"]\n");
        assert!(
            shown.starts_with(&format!(
                "{FILE}:2:8: [daemon]: key \"host\": with [fleet], this host's name \"a/b\" becomes an etcd key"
            )),
            "{shown}"
        );
        // Without [fleet] the same host name is fine.
        assert!(parse("[daemon]\nhost = \"a/b\"\n").is_ok());
        let shown = only_error("[fleet]\netcd = [\"http://e:1\"]\nlease = \"5s\"\n");
        assert!(
            shown.contains(":3:1: [fleet]: unknown key \"lease\" (expected one of: etcd, prefix, lease_ttl, failover)"),
            "{shown}"
        );
    }

    #[test]
    #[cfg(not(feature = "fleet"))]
    fn a_build_without_the_feature_refuses_fleet() {
        let shown = only_error("[daemon]\nhost = \"a\"\n[fleet]\netcd = [\"http://e:1\"]\n");
        assert!(
            shown.starts_with(&format!(
                "{FILE}:3:2: [fleet]: this corrald was built without fleet support"
            )),
            "{shown}"
        );
    }

    #[test]
    fn peers_give_the_placement_and_its_candidates() {
        // `peer` defaults to the first of `peers`.
        let config = parse("[groups.g]\npeers = [\"b\", \"c\"]\n").unwrap();
        assert_eq!(config.groups["g"].peer, "b");
        assert_eq!(config.groups["g"].peers, ["b", "c"]);
        // Without `peers`, the list is empty and `peer` stays required.
        let config = parse("[groups.g]\npeer = \"b\"\n").unwrap();
        assert!(config.groups["g"].peers.is_empty());
        let shown = only_error("[groups.g]\npeer = \"a\"\npeers = [\"b\", \"c\"]\n");
        assert_eq!(
            shown,
            format!(
                "{FILE}:2:8: group \"g\": key \"peer\" is \"a\", which is not in \"peers\" (b, c): \
                 add it there, or pick one of them"
            )
        );
        let errors =
            errors("[groups.g]\npeers = [\"b\", \"b\", \"x y\"]\n[groups.h]\npeers = []\n");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert!(shown[0].contains(":2:15: group \"g\": key \"peers\" lists \"b\" twice"));
        assert!(
            shown[1]
                .contains(":2:20: group \"g\": key \"peers\": \"x y\" is not a valid host name")
        );
        assert!(shown[2].contains(":4:9: group \"h\": key \"peers\" is empty"));
    }

    #[test]
    #[cfg(feature = "fleet")]
    fn fleet_in_two_files_names_both() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("corral.toml");
        std::fs::write(
            &main,
            "[daemon]\nhost = \"a\"\n[fleet]\netcd = [\"http://e:1\"]\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("corral.d")).unwrap();
        let drop_in = dir.path().join("corral.d/fleet.toml");
        std::fs::write(&drop_in, "[fleet]\netcd = [\"http://f:1\"]\n").unwrap();
        let shown = super::super::load(&super::super::ConfigSource::Path(main.clone()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            shown,
            format!(
                "{}:1:2: [fleet] is set in both {}:3 and {}:1: keep it in one file",
                drop_in.display(),
                main.display(),
                drop_in.display()
            )
        );
    }
}
