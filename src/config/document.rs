//! Reads one file into its [`RawDocument`], reporting TOML and serde errors.
//!
//! A file is not deserialized in one piece. It is parsed into a TOML tree first, then
//! `[daemon]` and each `[groups.NAME]` and `[services.NAME]` table is deserialized on its
//! own. That way a typo in one service does not hide the errors of the others, and every
//! serde error can say which service, and which key in it, it is about.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::{ConfigError, SourceText};
use super::raw::{Entry, FleetTable, RawDocument};

/// The top-level keys, for the "unknown key" message.
const TOP_LEVEL_KEYS: &str = "daemon, fleet, groups, services";

/// Parses one file, appending every problem to `errors`.
pub(crate) fn parse_document(source: SourceText, errors: &mut Vec<ConfigError>) -> RawDocument {
    let mut daemon = None;
    let mut fleet = None;
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
                    "daemon" if value.get_ref().is_table() => {
                        daemon = deserialize_table(&source, value, "[daemon]", errors);
                    }
                    "daemon" => errors.push(source.error(
                        value.span(),
                        "\"daemon\" must be a table: write it as [daemon]",
                    )),
                    "fleet" if value.get_ref().is_table() => {
                        let span = key.span();
                        let body = deserialize_table(&source, value, "[fleet]", errors);
                        fleet = Some(FleetTable { span, body });
                    }
                    "fleet" => errors.push(source.error(
                        value.span(),
                        "\"fleet\" must be a table: write it as [fleet]",
                    )),
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
        fleet,
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
    let message = in_toml_terms(&one_line(message));
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

/// serde describes what it expected in Rust terms (`i64`, `struct RawWorkers`, a map, a
/// sequence); a user reads TOML.
fn in_toml_terms(message: &str) -> String {
    let message = match message.split_once(", expected struct ") {
        Some((found, _)) => format!("{found}, expected a table"),
        None => message.to_owned(),
    };
    message
        .replace("expected i64", "expected an integer")
        .replace("expected a map", "expected a table")
        .replace("expected a sequence", "expected an array")
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{FILE, errors, only_error, parse};

    #[test]
    fn syntax_error_is_reported_with_its_position() {
        let shown = only_error("[services.a]\nexec = [\"/bin/a\"\n");
        assert!(shown.starts_with(&format!("{FILE}:2:")), "{shown}");
        assert!(shown.contains("invalid TOML: "), "{shown}");
        assert!(
            shown.ends_with("(nothing in this file was loaded)"),
            "{shown}"
        );
        assert!(!shown.contains('\n'));
        // A key defined twice in one file is a TOML error too.
        let shown =
            only_error("[services.a]\nexec = [\"/bin/a\"]\n[services.a]\nexec = [\"/bin/b\"]\n");
        assert!(shown.starts_with(&format!("{FILE}:3:")), "{shown}");
        assert!(shown.contains("duplicate"), "{shown}");
    }

    #[test]
    fn unknown_key_names_the_service_and_the_expected_keys() {
        let shown = only_error("[services.web]\nexec = [\"/bin/web\"]\nexex = [\"/bin/web\"]\n");
        assert!(shown.starts_with(&format!(
            "{FILE}:3:1: service \"web\": unknown key \"exex\" (expected one of: group, description, exec, type,"
        )), "{shown}");
        assert!(
            shown.ends_with("methods, workers, recipes, watchdog, on_failure, health)"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_key_in_a_nested_table_names_the_table() {
        let shown = only_error(
            "[services.web]\nexec = [\"/bin/web\"]\n[services.web.methods.export]\nexex = [\"/bin/e\"]\n",
        );
        assert_eq!(
            shown,
            format!(
                "{FILE}:4:1: service \"web\", in \"methods.export\": unknown key \"exex\" \
                 (expected one of: exec, control)"
            )
        );
        let shown = only_error("[services.w]\nexec = [\"/bin/w\"]\nworkers = { max = 1 }\n");
        assert!(shown.starts_with(&format!(
            "{FILE}:3:13: service \"w\", in \"workers\": unknown key \"max\" (expected one of: max_active, max_queued)"
        )), "{shown}");
        let shown = only_error("[daemon]\nhots = \"x\"\n");
        assert!(
            shown.starts_with(&format!("{FILE}:2:1: [daemon]: unknown key \"hots\"")),
            "{shown}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let shown = only_error("[services.web]\nexec = [\"/bin/web\"]\nautostart = \"yes\"\n");
        assert!(shown.starts_with(&format!(
            "{FILE}:3:13: service \"web\": key \"autostart\": invalid type: string \"yes\", expected a boolean"
        )), "{shown}");
        let shown = only_error("[services.web]\nexec = [\"/bin/web\", 5]\n");
        assert!(shown.starts_with(&format!(
            "{FILE}:2:21: service \"web\": key \"exec\": invalid type: integer `5`, expected a string"
        )), "{shown}");
        let shown = only_error("[services.web]\nexec = [\"/bin/web\"]\nstart_limit_burst = 1.5\n");
        assert!(
            shown.ends_with(
                "key \"start_limit_burst\": invalid type: floating point `1.5`, expected an integer"
            ),
            "{shown}"
        );
        let shown =
            only_error("[services.web]\nexec = [\"/bin/web\"]\nrecipes.r.steps = [\"a\"]\n");
        assert!(
            shown.contains(":3:20: service \"web\": key \"recipes.r.steps\": invalid type"),
            "{shown}"
        );
    }

    #[test]
    fn types_are_named_in_toml_terms() {
        let shown = only_error("[services.w]\nexec = [\"/bin/w\"]\nworkers = 5\n");
        assert!(
            shown.ends_with(
                ":3:11: service \"w\": key \"workers\": invalid type: integer `5`, expected a table"
            ),
            "{shown}"
        );
        let shown = only_error("[services.w]\nexec = [\"/bin/w\"]\nmethods = []\n");
        assert!(
            shown.ends_with("key \"methods\": invalid type: sequence, expected a table"),
            "{shown}"
        );
        let shown = only_error("[services.w]\nexec = \"/bin/w\"\n");
        assert!(
            shown.ends_with("key \"exec\": invalid type: string \"/bin/w\", expected an array"),
            "{shown}"
        );
        let shown = only_error("daemon = \"x\"\n");
        assert!(
            shown.ends_with(":1:10: \"daemon\" must be a table: write it as [daemon]"),
            "{shown}"
        );
    }

    #[test]
    fn a_broken_service_does_not_hide_the_errors_of_others() {
        let errors = errors(
            "[services.a]\nexec = [\"/bin/a\"]\ntimeout = \"5s\"\n\n\
             [services.b]\nexec = [\"/bin/b\"]\nafter = [\"a\"]\nstop_signal = \"TERMINATE\"\n",
        );
        let positions: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        // Service "a" is still known: b's `after = ["a"]` is no error.
        assert_eq!(positions, [(3, 1), (8, 15)], "{errors:#?}");
        assert!(
            errors[0]
                .message
                .starts_with("service \"a\": unknown key \"timeout\"")
        );
        assert!(
            errors[1]
                .message
                .starts_with("service \"b\": key \"stop_signal\": bad signal")
        );
    }

    #[test]
    fn top_level_shape_is_checked() {
        let shown = only_error("[service.a]\nexec = [\"/bin/a\"]\n");
        assert_eq!(
            shown,
            format!(
                "{FILE}:1:2: unknown top-level key \"service\" (expected one of: daemon, fleet, groups, services)"
            )
        );
        let shown = only_error("services = 5\n");
        assert!(
            shown.starts_with(&format!(
                "{FILE}:1:12: \"services\" must be a table of [services.NAME] sections"
            )),
            "{shown}"
        );
        let shown = only_error("[services]\nweb = \"/bin/web\"\n");
        assert_eq!(
            shown,
            format!("{FILE}:2:7: service \"web\" must be a table: write it as [services.web]")
        );
        let shown = only_error("[groups]\ng = 1\n");
        assert!(
            shown.starts_with(&format!("{FILE}:2:5: group \"g\" must be a table")),
            "{shown}"
        );
    }

    #[test]
    fn empty_file_is_an_empty_configuration() {
        let config = parse("# nothing yet\n").unwrap();
        assert!(config.services.is_empty() && config.groups.is_empty());
    }
}
