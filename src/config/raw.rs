//! The configuration as TOML spells it: serde structs that mirror the file, before any
//! semantic check.
//!
//! Values whose check needs a position are `Spanned`, and strings that become durations,
//! signals, enums or paths stay strings here: `validate` turns them into model types so that
//! every bad value is reported, instead of serde stopping at the first.
//!
//! A file is not deserialized in one piece. It is parsed into a TOML tree first, then
//! `[daemon]` and each `[groups.NAME]` and `[services.NAME]` table is deserialized on its
//! own. That way a typo in one service does not hide the errors of the others, and every
//! serde error can say which service (and which key) it is about.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::{ConfigError, SourceText};

/// A string with its position.
pub(crate) type Text = Spanned<String>;
/// An argv (`exec = ["/bin/x", "-v"]`): the list's position, and each word's.
pub(crate) type Argv = Spanned<Vec<Text>>;

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
    /// Required; an `Option` so its absence is reported by `validate` with the other errors.
    pub peer: Option<Text>,
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
    pub methods: Option<BTreeMap<Text, Spanned<RawMethod>>>,
    pub workers: Option<RawWorkers>,
    pub recipes: Option<BTreeMap<Text, Spanned<RawRecipe>>>,
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
            groups: Vec::new(),
            services: Vec::new(),
            complete: false,
        }
    }
}

/// The top-level keys, for the "unknown key" message.
const TOP_LEVEL_KEYS: &str = "daemon, groups, services";

/// Parses one file, appending every problem to `errors`.
pub(crate) fn parse_document(source: SourceText, errors: &mut Vec<ConfigError>) -> RawDocument {
    let mut daemon = None;
    let mut groups = Vec::new();
    let mut services = Vec::new();
    let complete = match DeTable::parse(&source.text) {
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = format!(
                "invalid TOML: {} (nothing in this file was loaded)",
                one_line(error.message())
            );
            errors.push(source.error(span, message));
            false
        }
        Ok(root) => {
            for (key, value) in root.into_inner() {
                match key.get_ref().as_ref() {
                    "daemon" => {
                        daemon = deserialize_table(&source, value, "[daemon]", errors);
                    }
                    "groups" => groups = entries(&source, value, "group", "groups", errors),
                    "services" => {
                        services = entries(&source, value, "service", "services", errors);
                    }
                    other => errors.push(source.error(
                        key.span(),
                        format!(
                            "unknown top-level key {other:?} (expected one of: {TOP_LEVEL_KEYS})"
                        ),
                    )),
                }
            }
            true
        }
    };
    RawDocument {
        source,
        daemon,
        groups,
        services,
        complete,
    }
}

/// The entries of `[groups]` or `[services]` (`section`), each deserialized on its own.
fn entries<T: DeserializeOwned>(
    source: &SourceText,
    section: Spanned<DeValue<'_>>,
    kind: &str,
    section_name: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Entry<T>> {
    let span = section.span();
    let DeValue::Table(table) = section.into_inner() else {
        errors.push(source.error(
            span,
            format!("\"{section_name}\" must be a table of [{section_name}.NAME] sections"),
        ));
        return Vec::new();
    };
    table
        .into_iter()
        .map(|(name, value)| {
            let name = Spanned::new(name.span(), name.into_inner().into_owned());
            let context = format!("{kind} {:?}", name.get_ref());
            let body = if value.get_ref().is_table() {
                deserialize_table(source, value, &context, errors)
            } else {
                errors.push(source.error(
                    value.span(),
                    format!(
                        "{context} must be a table: write it as [{section_name}.{}]",
                        name.get_ref()
                    ),
                ));
                None
            };
            Entry { name, body }
        })
        .collect()
}

/// Deserializes one table; on failure reports the error prefixed with `context`.
fn deserialize_table<T: DeserializeOwned>(
    source: &SourceText,
    value: Spanned<DeValue<'_>>,
    context: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let table_span = value.span();
    // Kept to find the key an error is about: serde's error records the key path, but
    // `toml::de::Error` does not expose it.
    let tree = value.clone();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            let span = error.span().unwrap_or(table_span);
            let path = key_path(&tree, &span).unwrap_or_default();
            let message = describe_serde_error(error.message(), context, &path);
            errors.push(source.error(span, message));
            None
        }
    }
}

/// Rewords a serde error for a user, naming the table (`context`) and the key `path` that
/// leads to the offending key or value.
fn describe_serde_error(message: &str, context: &str, path: &[String]) -> String {
    let message = one_line(message);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // serde: "unknown field `exex`, expected one of `group`, `description`, ..." or
        // "..., expected `exec`" or "..., there are no fields".
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let parent = &path[..path.len().saturating_sub(1)];
        let place = if parent.is_empty() {
            context.to_owned()
        } else {
            format!("{context}, in {:?}", parent.join("."))
        };
        return if expected.is_empty() {
            format!("{place}: unknown key {key:?}")
        } else {
            format!(
                "{place}: unknown key {key:?} (expected one of: {})",
                expected.join(", ")
            )
        };
    }
    if path.is_empty() {
        format!("{context}: {message}")
    } else {
        format!("{context}: key {:?}: {message}", path.join("."))
    }
}

/// The keys leading from `value` to the key or value spanning exactly `span`: empty when
/// `value` itself is meant.
fn key_path(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<Vec<String>> {
    if value.span() == *span {
        return Some(Vec::new());
    }
    match value.get_ref() {
        DeValue::Table(table) => table.iter().find_map(|(key, child)| {
            let name = key.get_ref().to_string();
            if key.span() == *span {
                return Some(vec![name]);
            }
            let mut path = key_path(child, span)?;
            path.insert(0, name);
            Some(path)
        }),
        DeValue::Array(items) => items.iter().find_map(|item| key_path(item, span)),
        _ => None,
    }
}

/// Parser messages may span lines; an error line in a log must not.
fn one_line(message: &str) -> String {
    message
        .split('\n')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}
