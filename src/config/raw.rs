//! The configuration as TOML spells it: serde structs that mirror one file, before any
//! semantic check (`document` fills them in, `validate` checks them).
//!
//! Values whose check needs a position are `Spanned`, and strings that become durations,
//! signals, enums or paths stay strings here: `validate` turns them into model types so that
//! every bad value is reported, instead of serde stopping at the first. For the same reason
//! the required keys (`exec`, `peer`) are `Option`s: their absence is reported together
//! with the table's other problems.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::SourceText;

/// A string with its position.
pub(crate) type Text = Spanned<String>;
/// An argv (`exec = ["/bin/x", "-v"]`): the list's position, and each word's.
pub(crate) type Argv = Spanned<Vec<Text>>;
/// A value that may be an integer or a string (`memory_max = "512M"` or `= 1048576`).
pub(crate) type Scalar = Spanned<toml::Value>;

/// `[daemon]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub host: Option<Text>,
    pub lease_recall_timeout: Option<Text>,
    pub upcall_expiry: Option<Text>,
    pub max_watches_per_client: Option<Spanned<i64>>,
    pub max_leases_per_client: Option<Spanned<i64>>,
}

/// `[groups.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    /// Required unless `peers` is given; an `Option` so its absence is reported by
    /// `validate` with the other errors.
    pub peer: Option<Text>,
    pub peers: Option<Spanned<Vec<Text>>>,
}

/// `[fleet]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    /// Required; an `Option` so its absence is reported with the table's other errors.
    pub etcd: Option<Spanned<Vec<Text>>>,
    pub prefix: Option<Text>,
    pub lease_ttl: Option<Text>,
    pub failover: Option<bool>,
}

/// The `[fleet]` table of one file.
#[derive(Debug)]
pub(crate) struct FleetTable {
    /// Where the table is, for "missing key" and "set in two files" errors.
    pub span: std::ops::Range<usize>,
    /// `None` when the table did not deserialize (already reported).
    pub body: Option<RawFleet>,
}

/// `[services.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub group: Option<Text>,
    pub description: Option<Text>,
    /// Required; an `Option` so its absence is reported with the service's other errors.
    pub exec: Option<Argv>,
    #[serde(rename = "type")]
    pub service_type: Option<Text>,
    pub autostart: Option<bool>,
    pub pidfile: Option<Text>,
    pub after: Option<Vec<Text>>,
    pub environment: Option<BTreeMap<Text, Text>>,
    pub user: Option<Text>,
    pub working_directory: Option<Text>,
    pub restart: Option<Text>,
    pub restart_delay: Option<Text>,
    pub restart_delay_max: Option<Text>,
    pub start_limit_burst: Option<Spanned<i64>>,
    pub start_limit_interval: Option<Text>,
    pub start_timeout: Option<Text>,
    pub stop_signal: Option<Text>,
    pub stop_timeout: Option<Text>,
    pub control_socket: Option<Text>,
    pub frame_timeout: Option<Text>,
    pub upcall: Option<bool>,
    pub memory_max: Option<Scalar>,
    pub tasks_max: Option<Scalar>,
    pub cpu_weight: Option<Spanned<i64>>,
    pub limit_nofile: Option<Scalar>,
    pub limit_core: Option<Scalar>,
    pub limit_nproc: Option<Scalar>,
    pub limit_memlock: Option<Scalar>,
    /// A string (`"0022"`); a `Scalar` so that an integer gets a message saying so.
    pub umask: Option<Scalar>,
    pub no_new_privileges: Option<bool>,
    pub methods: Option<BTreeMap<Text, Spanned<RawMethod>>>,
    pub workers: Option<RawWorkers>,
    pub recipes: Option<BTreeMap<Text, Spanned<RawRecipe>>>,
    pub watchdog: Option<Text>,
    pub on_failure: Option<Argv>,
    pub health: Option<Spanned<RawHealth>>,
}

/// `[services.X.health]`: exactly one of `exec` and `method`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub exec: Option<Argv>,
    pub method: Option<Text>,
    pub interval: Option<Text>,
    pub timeout: Option<Text>,
    pub failures: Option<Spanned<i64>>,
    pub action: Option<Text>,
}

/// `[services.X.methods.NAME]`: exactly one of the two drivers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMethod {
    pub exec: Option<Argv>,
    pub control: Option<Text>,
}

/// `[services.X.workers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkers {
    pub max_active: Option<Spanned<i64>>,
    pub max_queued: Option<Spanned<i64>>,
}

/// `[services.X.recipes.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecipe {
    pub steps: Option<Spanned<Vec<Argv>>>,
    pub schedule: Option<Text>,
}

/// A named table: a group or a service.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    /// The name as written in the header, positioned for "defined twice" errors.
    pub name: Text,
    /// `None` when the table did not deserialize (that error is already reported). The name
    /// still counts as defined, so references to it cause no follow-on errors.
    pub body: Option<T>,
}

/// One file, deserialized as far as it could be.
#[derive(Debug)]
pub(crate) struct RawDocument {
    pub source: SourceText,
    /// `[daemon]`, when the file has one that deserialized.
    pub daemon: Option<RawDaemon>,
    /// `[fleet]`, when the file has one.
    pub fleet: Option<FleetTable>,
    pub groups: Vec<Entry<RawGroup>>,
    pub services: Vec<Entry<RawService>>,
    /// False when the file is not valid TOML: nothing in it is known, so references to names
    /// that might be defined in it cannot be checked.
    pub complete: bool,
}

impl RawDocument {
    /// A file that could not be read (already reported): it defines nothing, and what it
    /// would have defined is unknown.
    pub fn unread(path: &Path) -> RawDocument {
        RawDocument {
            source: SourceText::new(path, String::new()),
            daemon: None,
            fleet: None,
            groups: Vec::new(),
            services: Vec::new(),
            complete: false,
        }
    }
}
