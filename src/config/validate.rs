//! Turns the parsed files into a [`Config`], or into every error they contain.
//!
//! The steps: merge the files (`merge`), check `[daemon]` and the groups here, each service
//! on its own (`service`), then the names that point across services and files
//! (`references`). Each step reports into one list and carries on, so a single load reports
//! every problem; the `Config` is returned only when that list stayed empty.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::checks::Checker;
use super::error::{ConfigError, ConfigErrors};
use super::merge::{DaemonKeys, Defined, Setting, merge};
use super::model::{Config, DaemonSettings, Group};
use super::raw::{RawDocument, RawGroup};
use super::references::check_references;
use super::service::check_service;

/// Validates `documents` (in the order they were read). `errors` holds what parsing found;
/// `fallback_file` is named by errors about the configuration as a whole.
pub(crate) fn validate(
    documents: &[RawDocument],
    mut errors: Vec<ConfigError>,
    fallback_file: &Path,
) -> Result<Config, ConfigErrors> {
    let merged = merge(documents, &mut errors);
    let daemon = daemon_settings(&merged.daemon, fallback_file, &mut errors);
    let groups = groups(&merged.groups, &mut errors);
    let services = merged
        .services
        .iter()
        .filter_map(|(name, defined)| {
            let raw = defined.body?;
            let service = check_service(defined.name, raw, defined.source, &mut errors);
            Some((name.to_string(), service))
        })
        .collect();
    check_references(&merged, &mut errors);

    if errors.is_empty() {
        return Ok(Config {
            daemon,
            groups,
            services,
        });
    }
    // Report in the order a user reads: file by file, top to bottom.
    let file_rank = |error: &ConfigError| {
        documents
            .iter()
            .position(|document| document.source.path == error.file)
            .unwrap_or(usize::MAX)
    };
    errors.sort_by_key(|error| (file_rank(error), error.line, error.column));
    Err(ConfigErrors(errors))
}

/// `[daemon]`; each key is checked against the file that set it.
fn daemon_settings(
    keys: &DaemonKeys,
    fallback_file: &Path,
    errors: &mut Vec<ConfigError>,
) -> DaemonSettings {
    let defaults = DaemonSettings::default();
    let host = match &keys.host {
        Some(setting) => {
            let mut check = Checker::new(setting.source, "[daemon]", errors);
            let host = check.text(setting.value, "host").unwrap_or_default();
            if setting.value.get_ref().is_empty() {
                check.error(
                    setting.value.span(),
                    "key \"host\" is empty: give this peer's name, or remove it to use the hostname",
                );
            }
            host
        }
        None => hostname().unwrap_or_else(|message| {
            errors.push(ConfigError::whole_file(fallback_file, message));
            String::new()
        }),
    };
    DaemonSettings {
        host,
        lease_recall_timeout: daemon_duration(
            keys.lease_recall_timeout.as_ref(),
            "lease_recall_timeout",
            defaults.lease_recall_timeout,
            errors,
        ),
        upcall_expiry: daemon_duration(
            keys.upcall_expiry.as_ref(),
            "upcall_expiry",
            defaults.upcall_expiry,
            errors,
        ),
        max_watches_per_client: daemon_count(
            keys.max_watches_per_client.as_ref(),
            "max_watches_per_client",
            defaults.max_watches_per_client,
            errors,
        ),
        max_leases_per_client: daemon_count(
            keys.max_leases_per_client.as_ref(),
            "max_leases_per_client",
            defaults.max_leases_per_client,
            errors,
        ),
    }
}

fn daemon_duration(
    setting: Option<&Setting<String>>,
    key: &str,
    default: Duration,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    let Some(setting) = setting else {
        return default;
    };
    Checker::new(setting.source, "[daemon]", errors).duration(Some(setting.value), key, default)
}

/// A per-client cap; 0 is allowed and switches the feature off for clients.
fn daemon_count(
    setting: Option<&Setting<i64>>,
    key: &str,
    default: u32,
    errors: &mut Vec<ConfigError>,
) -> u32 {
    let Some(setting) = setting else {
        return default;
    };
    Checker::new(setting.source, "[daemon]", errors).count(Some(setting.value), key, 0, default)
}

/// The default `daemon.host`: this machine's hostname.
fn hostname() -> Result<String, String> {
    let name = nix::unistd::gethostname()
        .map_err(|error| format!("cannot read the hostname ({error}): set \"host\" in [daemon]"))?;
    name.into_string()
        .map_err(|_| "the hostname is not valid UTF-8: set \"host\" in [daemon]".to_owned())
}

/// `[groups.NAME]`: a valid name and a non-empty `peer`.
fn groups(
    defined: &BTreeMap<&str, Defined<RawGroup>>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Group> {
    let mut groups = BTreeMap::new();
    for (name, group) in defined {
        let Some(raw) = group.body else {
            continue;
        };
        let mut check = Checker::new(group.source, format!("group {name:?}"), errors);
        check.name(group.name, "group");
        let peer = match &raw.peer {
            None => {
                check.error(
                    group.name.span(),
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
            Some(peer) => check.text(peer, "peer").unwrap_or_default(),
        };
        groups.insert(name.to_string(), Group { peer });
    }
    groups
}
