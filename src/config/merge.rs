//! Combines the files of one configuration into one set of definitions.
//!
//! Files add to each other; none overrides another. A service or group defined in two
//! files, or a `[daemon]` key set in two, is an error naming both places: with drop-in
//! directories, a silent "last file wins" is how a stale leftover file takes effect unseen.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;
use std::ops::Range;

use toml::Spanned;

use super::error::{ConfigError, SourceText};
use super::raw::{Entry, RawDocument, RawGroup, RawService, Text};

/// A group or service, with the file that defines it.
#[derive(Debug)]
pub(crate) struct Defined<'a, T> {
    pub source: &'a SourceText,
    pub name: &'a Text,
    /// `None` when its table did not deserialize (already reported).
    pub body: Option<&'a T>,
}

/// One `[daemon]` key, with the file that sets it.
#[derive(Debug)]
pub(crate) struct Setting<'a, T> {
    pub source: &'a SourceText,
    pub value: &'a Spanned<T>,
}

/// The `[daemon]` keys of all files.
#[derive(Debug, Default)]
pub(crate) struct DaemonKeys<'a> {
    pub host: Option<Setting<'a, String>>,
    pub lease_recall_timeout: Option<Setting<'a, String>>,
    pub upcall_expiry: Option<Setting<'a, String>>,
    pub max_watches_per_client: Option<Setting<'a, i64>>,
    pub max_leases_per_client: Option<Setting<'a, i64>>,
}

/// Every definition of every file, each name once.
#[derive(Debug)]
pub(crate) struct Merged<'a> {
    pub daemon: DaemonKeys<'a>,
    pub groups: BTreeMap<&'a str, Defined<'a, RawGroup>>,
    pub services: BTreeMap<&'a str, Defined<'a, RawService>>,
    /// Whether every file was read and parsed, so every defined name is known. When not,
    /// a reference to an unknown name may well point into the broken file, and reporting
    /// it would only bury the real error.
    pub complete: bool,
}

/// Merges `documents`, reporting duplicate definitions into `errors`. The first definition
/// (in file order) is kept.
pub(crate) fn merge<'a>(documents: &'a [RawDocument], errors: &mut Vec<ConfigError>) -> Merged<'a> {
    let mut merged = Merged {
        daemon: DaemonKeys::default(),
        groups: BTreeMap::new(),
        services: BTreeMap::new(),
        complete: documents.iter().all(|document| document.complete),
    };
    for document in documents {
        let source = &document.source;
        if let Some(raw) = &document.daemon {
            let keys = &mut merged.daemon;
            set_once(&mut keys.host, source, raw.host.as_ref(), "host", errors);
            set_once(
                &mut keys.lease_recall_timeout,
                source,
                raw.lease_recall_timeout.as_ref(),
                "lease_recall_timeout",
                errors,
            );
            set_once(
                &mut keys.upcall_expiry,
                source,
                raw.upcall_expiry.as_ref(),
                "upcall_expiry",
                errors,
            );
            set_once(
                &mut keys.max_watches_per_client,
                source,
                raw.max_watches_per_client.as_ref(),
                "max_watches_per_client",
                errors,
            );
            set_once(
                &mut keys.max_leases_per_client,
                source,
                raw.max_leases_per_client.as_ref(),
                "max_leases_per_client",
                errors,
            );
        }
        for entry in &document.groups {
            define(&mut merged.groups, source, entry, "group", errors);
        }
        for entry in &document.services {
            define(&mut merged.services, source, entry, "service", errors);
        }
    }
    merged
}

fn set_once<'a, T>(
    slot: &mut Option<Setting<'a, T>>,
    source: &'a SourceText,
    value: Option<&'a Spanned<T>>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) {
    let Some(value) = value else {
        return;
    };
    match slot {
        Some(first) => errors.push(source.error(
            value.span(),
            format!(
                "[daemon] key {key:?} is set in both {} and {}: set it in one file only",
                place(first.source, first.value.span()),
                place(source, value.span()),
            ),
        )),
        None => *slot = Some(Setting { source, value }),
    }
}

fn define<'a, T>(
    defined: &mut BTreeMap<&'a str, Defined<'a, T>>,
    source: &'a SourceText,
    entry: &'a Entry<T>,
    kind: &str,
    errors: &mut Vec<ConfigError>,
) {
    match defined.entry(entry.name.get_ref().as_str()) {
        MapEntry::Occupied(first) => errors.push(source.error(
            entry.name.span(),
            format!(
                "{kind} {:?} is defined in both {} and {}: keep one definition",
                entry.name.get_ref(),
                place(first.get().source, first.get().name.span()),
                place(source, entry.name.span()),
            ),
        )),
        MapEntry::Vacant(slot) => {
            slot.insert(Defined {
                source,
                name: &entry.name,
                body: entry.body.as_ref(),
            });
        }
    }
}

/// `file:line`, for messages that name a second place.
fn place(source: &SourceText, span: Range<usize>) -> String {
    let (line, _) = source.locate(span.start);
    format!("{}:{line}", source.path.display())
}
