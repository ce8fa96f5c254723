//! Helpers for the configuration tests: parse a snippet, get its errors as text.

use std::path::Path;

use super::{Config, ConfigError, parse_str};

/// The file name the snippets are reported under.
pub const FILE: &str = "/etc/corral/corral.toml";

/// Parses `text` as [`FILE`].
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    parse_str(text, Path::new(FILE)).map_err(|errors| errors.0)
}

/// The errors of `text`, which must not be valid.
pub fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors,
    }
}

/// The only error of `text`, displayed (`file:line:column: message`).
pub fn only_error(text: &str) -> String {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors[0].to_string()
}

/// The one service of `text`, which must be valid.
pub fn only_service(text: &str) -> super::Service {
    let config = parse(text).unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"));
    assert_eq!(config.services.len(), 1);
    let service = config.services.into_values().next().unwrap();
    std::sync::Arc::unwrap_or_clone(service)
}

/// A valid service `s` with `extra` lines added from line 3 on.
pub fn service(extra: &str) -> String {
    format!("[services.s]\nexec = [\"/bin/s\"]\n{extra}\n")
}
