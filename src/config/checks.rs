//! The checks shared by every table: names, durations, counts, absolute paths and argvs.
//!
//! A [`Checker`] reports into the shared error list and returns a usable value even after
//! an error (the default, or `None`), so checking goes on and every problem is found in one
//! pass. Whether the result may be used at all is decided once, at the end, by whether any
//! error was recorded.

use std::fmt::Display;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::duration::parse_duration;
use super::error::{ConfigError, SourceText};
use super::raw::{Argv, Text};
use crate::{fs_trust, names};

/// The longest path a unix socket address holds (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Reports problems of one table (`context`, e.g. `service "web"`) in one file.
pub(crate) struct Checker<'a> {
    pub source: &'a SourceText,
    context: String,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub fn new(
        source: &'a SourceText,
        context: impl Into<String>,
        errors: &'a mut Vec<ConfigError>,
    ) -> Checker<'a> {
        Checker {
            source,
            context: context.into(),
            errors,
        }
    }

    /// Records `message` about this table at `span`.
    pub fn error(&mut self, span: Range<usize>, message: impl Display) {
        let message = format!("{}: {message}", self.context);
        self.errors.push(self.source.error(span, message));
    }

    /// Whether `name` is a valid name of a `kind` (service, group, method, recipe).
    pub fn name(&mut self, name: &Text, kind: &str) -> bool {
        let valid = names::is_valid_name(name.get_ref());
        if !valid {
            self.error(
                name.span(),
                format!(
                    "{kind} name {:?} is not valid: use 1 to {} of the characters A-Z a-z 0-9 _ . @ -",
                    name.get_ref(),
                    names::MAX_NAME_LEN
                ),
            );
        }
        valid
    }

    /// `key`'s duration, or `default` when unset or invalid.
    pub fn duration(&mut self, value: Option<&Text>, key: &str, default: Duration) -> Duration {
        let Some(value) = value else {
            return default;
        };
        parse_duration(value.get_ref()).unwrap_or_else(|error| {
            self.error(value.span(), format!("key {key:?}: {error}"));
            default
        })
    }

    /// `key`'s integer, which must be at least `min` and fit in 32 bits; `default` when unset
    /// or out of range.
    pub fn count(
        &mut self,
        value: Option<&Spanned<i64>>,
        key: &str,
        min: u32,
        default: u32,
    ) -> u32 {
        let Some(value) = value else {
            return default;
        };
        match u32::try_from(*value.get_ref()) {
            Ok(count) if count >= min => count,
            _ => {
                self.error(
                    value.span(),
                    format!(
                        "key {key:?} is {}, but must be between {min} and {}",
                        value.get_ref(),
                        u32::MAX
                    ),
                );
                default
            }
        }
    }

    /// The text of `key`, which must not contain NUL: it ends up in a C string or on D-Bus,
    /// neither of which can carry one.
    pub fn text(&mut self, value: &Text, key: &str) -> Option<String> {
        if value.get_ref().contains('\0') {
            self.error(
                value.span(),
                format!("key {key:?} contains a NUL character"),
            );
            return None;
        }
        Some(value.get_ref().clone())
    }

    /// `key`'s absolute path; `None` when unset or invalid.
    pub fn absolute_path(&mut self, value: Option<&Text>, key: &str) -> Option<PathBuf> {
        let value = value?;
        let text = self.text(value, key)?;
        if !text.starts_with('/') {
            self.error(
                value.span(),
                format!("key {key:?} must be an absolute path (starting with \"/\"), not {text:?}"),
            );
            return None;
        }
        Some(PathBuf::from(text))
    }

    /// `key`'s unix socket path: absolute, short enough for a socket address, and not in a
    /// directory where anyone can remove and replace it (world-writable without the sticky
    /// bit). Directories that do not exist yet are not judged: the service may create its
    /// own, and whoever then listens is checked when corrald connects.
    pub fn socket_path(&mut self, value: Option<&Text>, key: &str) -> Option<PathBuf> {
        let path = self.absolute_path(value, key)?;
        let span = value.map(Spanned::span).unwrap_or_default();
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            self.error(
                span,
                format!(
                    "key {key:?} is {len} bytes long, but a unix socket path holds at most \
                     {MAX_SOCKET_PATH}: choose a shorter path"
                ),
            );
            return None;
        }
        if let Some(dir) = fs_trust::open_to_everyone(&path) {
            self.error(
                span,
                format!(
                    "key {key:?}: {} is writable by everyone without the sticky bit, so any \
                     user can replace the socket; put it in a directory only the service can \
                     write (e.g. /run/corral), or `chmod +t {}`",
                    dir.display(),
                    dir.display()
                ),
            );
            return None;
        }
        Some(path)
    }

    /// A command line: not empty, a program that is an absolute path or a bare name, no NUL
    /// anywhere. `key` names it in messages (`"exec"`, `"steps"`). `None` when invalid.
    pub fn argv(&mut self, argv: &Argv, key: &str) -> Option<Vec<String>> {
        let Some(program) = argv.get_ref().first() else {
            self.error(
                argv.span(),
                format!(
                    "key {key:?} is empty: give the program and its arguments, \
                     e.g. [\"/usr/bin/program\", \"--flag\"]"
                ),
            );
            return None;
        };
        let mut valid = true;
        let program_text = program.get_ref();
        if program_text.is_empty() {
            self.error(
                program.span(),
                format!("key {key:?}: the program name is empty"),
            );
            valid = false;
        } else if !program_text.starts_with('/') && program_text.contains('/') {
            self.error(
                program.span(),
                format!(
                    "key {key:?}: the program {program_text:?} is a relative path; use an \
                     absolute path (\"/usr/bin/x\") or a bare name looked up in PATH (\"x\")"
                ),
            );
            valid = false;
        }
        for word in argv.get_ref() {
            valid &= self.text(word, key).is_some();
        }
        valid.then(|| {
            argv.get_ref()
                .iter()
                .map(|word| word.get_ref().clone())
                .collect()
        })
    }
}
