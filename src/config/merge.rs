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
use super::raw::{Entry, FleetTable, RawDocument, RawGroup, RawService, Text};

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

/// The `[fleet]` table, with the file that has it.
#[derive(Debug)]
pub(crate) struct FleetDefined<'a> {
    pub source: &'a SourceText,
    pub table: &'a FleetTable,
}

/// Every definition of every file, each name once.
#[derive(Debug)]
pub(crate) struct Merged<'a> {
    pub daemon: DaemonKeys<'a>,
    /// `[fleet]`: one table in one file, since its keys only make sense together.
    pub fleet: Option<FleetDefined<'a>>,
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
        fleet: None,
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
        if let Some(table) = &document.fleet {
            match &merged.fleet {
                Some(first) => errors.push(source.error(
                    table.span.clone(),
                    format!(
                        "[fleet] is set in both {} and {}: keep it in one file",
                        place(first.source, first.table.span.clone()),
                        place(source, table.span.clone()),
                    ),
                )),
                None => merged.fleet = Some(FleetDefined { source, table }),
            }
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::super::{ConfigErrors, ConfigSource, load};

    /// A `corral.toml` with `main` and `corral.d/<name>` files, loaded like the default.
    fn load_files(
        main: &str,
        drop_ins: &[(&str, &str)],
    ) -> (
        tempfile::TempDir,
        Result<super::super::Config, ConfigErrors>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("corral.toml"), main).unwrap();
        fs::create_dir(dir.path().join("corral.d")).unwrap();
        for (name, text) in drop_ins {
            fs::write(dir.path().join("corral.d").join(name), text).unwrap();
        }
        let result = load(&ConfigSource::Path(dir.path().join("corral.toml")));
        (dir, result)
    }

    fn main_path(dir: &Path) -> PathBuf {
        dir.join("corral.toml")
    }

    fn drop_in(dir: &Path, name: &str) -> PathBuf {
        dir.join("corral.d").join(name)
    }

    #[test]
    fn files_add_services_groups_and_daemon_keys() {
        let (_dir, result) = load_files(
            "[daemon]\nhost = \"node-a\"\n[services.portmap]\nexec = [\"rpcbind\"]\n",
            &[
                (
                    "nfs.toml",
                    "[daemon]\nupcall_expiry = \"5m\"\n[groups.storage]\npeer = \"node-a\"\n\
                     [services.nfs]\nexec = [\"ganesha.nfsd\"]\ngroup = \"storage\"\nafter = [\"portmap\"]\n",
                ),
                (
                    "web.toml",
                    "[services.web]\nexec = [\"/bin/web\"]\nafter = [\"nfs\"]\n",
                ),
            ],
        );
        let config = result.unwrap();
        assert_eq!(config.daemon.host, "node-a");
        assert_eq!(
            config.daemon.upcall_expiry,
            std::time::Duration::from_secs(300)
        );
        assert_eq!(
            config.services.keys().collect::<Vec<_>>(),
            ["nfs", "portmap", "web"]
        );
        assert_eq!(config.groups["storage"].peer, "node-a");
        // `after` and `group` resolve across files.
        assert_eq!(config.services["nfs"].after, ["portmap"]);
        assert!(config.is_served_here(&config.services["nfs"]));
    }

    #[test]
    fn a_service_defined_in_two_files_names_both() {
        let (dir, result) = load_files(
            "\n[services.web]\nexec = [\"/bin/web\"]\n",
            &[("web.toml", "[services.web]\nexec = [\"/bin/web2\"]\n")],
        );
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        assert_eq!(
            errors.to_string(),
            format!(
                "{}:1:11: service \"web\" is defined in both {}:2 and {}:1: keep one definition",
                drop_in(dir.path(), "web.toml").display(),
                main_path(dir.path()).display(),
                drop_in(dir.path(), "web.toml").display(),
            )
        );
    }

    #[test]
    fn a_group_defined_in_two_files_names_both() {
        let (dir, result) = load_files(
            "[groups.g]\npeer = \"a\"\n",
            &[("g.toml", "\n\n[groups.g]\npeer = \"b\"\n")],
        );
        let shown = result.unwrap_err().to_string();
        assert!(
            shown.contains(&format!(
                "group \"g\" is defined in both {}:1 and {}:3",
                main_path(dir.path()).display(),
                drop_in(dir.path(), "g.toml").display()
            )),
            "{shown}"
        );
    }

    #[test]
    fn a_daemon_key_set_in_two_files_names_both() {
        let (dir, result) = load_files(
            "[daemon]\nhost = \"a\"\nupcall_expiry = \"1m\"\n",
            &[(
                "host.toml",
                "[daemon]\nlease_recall_timeout = \"1s\"\nhost = \"b\"\n",
            )],
        );
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        let error = &errors.0[0];
        assert_eq!(
            (error.file.clone(), error.line, error.column),
            (drop_in(dir.path(), "host.toml"), 3, 8)
        );
        assert_eq!(
            error.message,
            format!(
                "[daemon] key \"host\" is set in both {}:2 and {}:3: set it in one file only",
                main_path(dir.path()).display(),
                drop_in(dir.path(), "host.toml").display()
            )
        );
    }

    #[test]
    fn every_file_reports_its_errors_after_a_syntax_error_in_another() {
        let (dir, result) = load_files(
            "[services.a]\nexec = [\"/bin/a\"\n",
            &[
                (
                    "b.toml",
                    "[services.b]\nexec = []\nafter = [\"a\", \"maybe-in-broken-file\"]\n",
                ),
                (
                    "c.toml",
                    "[services.c]\nexec = [\"/bin/c\"]\nrestart = \"never\"\n",
                ),
            ],
        );
        let errors = result.unwrap_err();
        let places: Vec<(PathBuf, usize)> =
            errors.iter().map(|e| (e.file.clone(), e.line)).collect();
        // The unknown `after` names are not reported: they may be defined in the broken file.
        assert_eq!(
            places,
            [
                (main_path(dir.path()), 2),
                (drop_in(dir.path(), "b.toml"), 2),
                (drop_in(dir.path(), "c.toml"), 3),
            ],
            "{errors}"
        );
        assert!(errors.0[0].message.starts_with("invalid TOML"));
    }

    #[test]
    fn cycles_are_found_across_files() {
        let (dir, result) = load_files(
            "[services.a]\nexec = [\"/bin/a\"]\nafter = [\"b\"]\n",
            &[(
                "b.toml",
                "[services.b]\nexec = [\"/bin/b\"]\nafter = [\"a\"]\n",
            )],
        );
        let shown = result.unwrap_err().to_string();
        assert!(
            shown.starts_with(&format!(
                "{}:3:10: dependency cycle: a -> b -> a",
                drop_in(dir.path(), "b.toml").display()
            )),
            "{shown}"
        );
    }
}
