//! Configuration errors, and the translation of byte offsets in a file into the 1-based
//! line and column a user looks for in an editor.
//!
//! Every problem found while reading configuration becomes one [`ConfigError`]; a failed load
//! returns all of them as [`ConfigErrors`], so a user fixes a file in one round instead of
//! one error per reload (STYLE rule 8).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in the configuration, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is not at a place in the file (a missing file).
    pub line: usize,
    /// 1-based column counted in characters; 0 together with `line`.
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// An error about `file` as a whole (missing, unreadable): no line or column.
    pub fn whole_file(file: impl Into<PathBuf>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.into(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line != 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one attempt to load a configuration; never empty when returned
/// as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in file order and then by position.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no problem was recorded (a loader never returns such a value as an error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i != 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The text of one configuration file, kept so the spans that TOML parsing hands out can be
/// turned into lines and columns.
#[derive(Debug)]
pub(crate) struct SourceText {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset where each line starts; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
}

impl SourceText {
    pub fn new(path: &Path, text: String) -> SourceText {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceText {
            path: path.to_owned(),
            text,
            line_starts,
        }
    }

    /// The 1-based (line, column) of byte `offset`. The column counts characters, not
    /// bytes, so it matches what an editor shows on lines with non-ASCII text.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // The last line start at or before `offset`.
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..)
            .unwrap_or_default()
            .char_indices()
            .take_while(|(i, _)| start + i < offset)
            .count();
        (line + 1, column + 1)
    }

    /// An error at the start of `span`.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.locate(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_position() {
        let located = ConfigError {
            file: PathBuf::from("/etc/corral/corral.toml"),
            line: 3,
            column: 7,
            message: "bad".into(),
        };
        assert_eq!(located.to_string(), "/etc/corral/corral.toml:3:7: bad");
        let whole = ConfigError::whole_file("/x.toml", "cannot read it");
        assert_eq!(whole.to_string(), "/x.toml: cannot read it");
        let all = ConfigErrors(vec![located, whole]);
        assert_eq!(
            all.to_string(),
            "/etc/corral/corral.toml:3:7: bad\n/x.toml: cannot read it"
        );
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let source = SourceText::new(Path::new("f.toml"), "ab\ncd\n\nxyz".into());
        assert_eq!(source.locate(0), (1, 1));
        assert_eq!(source.locate(1), (1, 2));
        // The newline itself still belongs to line 1.
        assert_eq!(source.locate(2), (1, 3));
        assert_eq!(source.locate(3), (2, 1));
        assert_eq!(source.locate(6), (3, 1));
        assert_eq!(source.locate(9), (4, 3));
        // Past the end clamps to the end instead of panicking.
        assert_eq!(source.locate(100), (4, 4));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let source = SourceText::new(Path::new("f.toml"), "d = \"é\" x".into());
        // 'x' starts at byte 9, but 'é' is two bytes: x is the 9th character, not the 10th.
        assert_eq!(source.locate(9), (1, 9));
        let error = source.error(9..10, "here");
        assert_eq!((error.line, error.column), (1, 9));
    }
}
