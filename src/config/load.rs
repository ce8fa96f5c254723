//! Where the configuration comes from and how it is read: the public entry points.
//!
//! The files of a configuration, in the order they are read:
//! - [`ConfigSource::Default`]: `/etc/corral/corral.toml`, then `/etc/corral/corral.d/*.toml`
//!   sorted by file name. Both are optional: a machine without any corral configuration
//!   gets an empty one (no groups, no services), the way a fresh systemd install runs with
//!   an empty `/etc/systemd/system`. Packages can drop files into `corral.d` alone.
//! - [`ConfigSource::Path`] of a directory: its `*.toml`, sorted by file name.
//! - [`ConfigSource::Path`] of a file: that file, which must exist (it was asked for by
//!   name), then `corral.d/*.toml` beside it if that directory exists, so that
//!   `--config /etc/corral/corral.toml` reads exactly what the default reads.
//!
//! Like a shell's `*.toml`, a listing skips names that start with a dot (editor lock and
//! backup files such as `.#web.toml`).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::document::parse_document;
use super::error::{ConfigError, ConfigErrors, SourceText};
use super::model::Config;
use super::raw::RawDocument;
use super::validate::validate;

/// The main configuration file read by default.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/corral/corral.toml";
/// The drop-in directory read by default, after [`DEFAULT_CONFIG_FILE`].
pub const DEFAULT_CONFIG_DIR: &str = "/etc/corral/corral.d";
/// The drop-in directory's name beside a main file given by path.
const DROP_IN_DIR: &str = "corral.d";

/// Which configuration to read (`--config PATH` or the default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ConfigSource {
    /// [`DEFAULT_CONFIG_FILE`] and [`DEFAULT_CONFIG_DIR`]; either may be missing.
    #[default]
    Default,
    /// A directory of `*.toml` files, or a main file plus the `corral.d` beside it.
    Path(PathBuf),
}

/// Parses and validates one configuration file given as text; `file` names it in errors.
/// References (`after`, `group`) must be satisfied within this one file.
pub fn parse_str(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    parse_texts(&[(file.to_owned(), text.to_owned())], file)
}

/// Parses, merges and validates the files of one configuration given as `(path, text)` in
/// reading order, exactly as [`load`] does once it has read them; `main_file` is named by
/// errors about the configuration as a whole.
pub fn parse_texts(files: &[(PathBuf, String)], main_file: &Path) -> Result<Config, ConfigErrors> {
    let texts = files.iter().map(|(path, text)| (path, Ok(text.clone())));
    validate_texts(texts, main_file)
}

/// Reads, merges and validates the configuration of `source`. On failure, returns every
/// problem of every file (unreadable files included), each with its file and line.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigErrors> {
    let paths = files_of(source).map_err(|(path, error)| {
        ConfigErrors(vec![ConfigError::whole_file(
            path,
            format!("cannot list this directory: {error}"),
        )])
    })?;
    read_and_validate(&paths, &main_file(source))
}

/// Reads `paths` in order and validates them together; `main_file` is named by errors
/// about the configuration as a whole.
fn read_and_validate(paths: &[PathBuf], main_file: &Path) -> Result<Config, ConfigErrors> {
    let texts = paths.iter().map(|path| (path, fs::read_to_string(path)));
    validate_texts(texts, main_file)
}

/// Parses each file's text (or reports why it could not be read) and validates them
/// together: the one path from file contents to a [`Config`].
fn validate_texts<'a>(
    texts: impl Iterator<Item = (&'a PathBuf, io::Result<String>)>,
    main_file: &Path,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let documents: Vec<RawDocument> = texts
        .map(|(path, text)| match text {
            Ok(text) => parse_document(SourceText::new(path, text), &mut errors),
            Err(error) => {
                errors.push(ConfigError::whole_file(
                    path,
                    format!("cannot read this file: {error}"),
                ));
                RawDocument::unread(path)
            }
        })
        .collect();
    validate(&documents, errors, main_file)
}

/// The files [`load`] reads for `source`, in reading order. A main file given by
/// [`ConfigSource::Path`] is listed even when missing, since `load` reports it.
pub fn files(source: &ConfigSource) -> io::Result<Vec<PathBuf>> {
    files_of(source).map_err(|(path, error)| {
        io::Error::new(error.kind(), format!("{}: {error}", path.display()))
    })
}

/// The file named by errors about the configuration as a whole.
fn main_file(source: &ConfigSource) -> PathBuf {
    match source {
        ConfigSource::Default => PathBuf::from(DEFAULT_CONFIG_FILE),
        ConfigSource::Path(path) => path.clone(),
    }
}

/// The files of `source`; on failure, the directory that could not be listed.
fn files_of(source: &ConfigSource) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    match source {
        ConfigSource::Default => main_and_drop_ins(
            Path::new(DEFAULT_CONFIG_FILE),
            false,
            Path::new(DEFAULT_CONFIG_DIR),
        ),
        ConfigSource::Path(path) if path.is_dir() => toml_files_in(path, true),
        ConfigSource::Path(path) => {
            let dir = path.parent().unwrap_or(Path::new("/")).join(DROP_IN_DIR);
            main_and_drop_ins(path, true, &dir)
        }
    }
}

/// `main` (skipped when absent, unless `required`), then the `*.toml` of `drop_in_dir`.
fn main_and_drop_ins(
    main: &Path,
    required: bool,
    drop_in_dir: &Path,
) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    let mut files = Vec::new();
    // Only a main file that is certainly absent is skipped: a dangling symlink or a file
    // that cannot be inspected is listed, so reading it reports the problem.
    let absent = matches!(main.symlink_metadata(), Err(e) if e.kind() == io::ErrorKind::NotFound);
    if required || !absent {
        files.push(main.to_owned());
    }
    files.extend(toml_files_in(drop_in_dir, false)?);
    Ok(files)
}

/// `dir/*.toml`, sorted by file name. A missing `dir` is empty unless `required`.
fn toml_files_in(dir: &Path, required: bool) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound && !required => {
            return Ok(Vec::new());
        }
        Err(error) => return Err((dir.to_owned(), error)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| (dir.to_owned(), error))?;
        let name = entry.file_name();
        let path = entry.path();
        let hidden = name.as_encoded_bytes().starts_with(b".");
        let is_toml = path.extension() == Some(OsStr::new("toml"));
        // Directories named `x.toml` are not configuration; symlinks to files are.
        if is_toml && !hidden && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "[services.web]\nexec = [\"/usr/bin/web\"]\n";

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn service(name: &str) -> String {
        format!("[services.{name}]\nexec = [\"/usr/bin/{name}\"]\n")
    }

    #[test]
    fn directory_lists_toml_files_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in ["20-b.toml", "10-a.toml", "30-c.toml"] {
            write(&root.join(name), "");
        }
        // Not configuration: other extensions, hidden files, directories named *.toml.
        write(&root.join("notes.txt"), "");
        write(&root.join("web.toml.bak"), "");
        write(&root.join(".#10-a.toml"), "");
        fs::create_dir(root.join("sub.toml")).unwrap();

        let listed = files(&ConfigSource::Path(root.to_owned())).unwrap();
        let names: Vec<_> = listed.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["10-a.toml", "20-b.toml", "30-c.toml"]);
        assert!(listed.iter().all(|p| p.starts_with(root)));
    }

    #[test]
    fn main_file_brings_its_sibling_drop_in_directory() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("corral.toml");
        write(&main, &service("a"));
        write(&dir.path().join("corral.d/b.toml"), &service("b"));
        write(&dir.path().join("corral.d/a-first.toml"), &service("c"));

        let listed = files(&ConfigSource::Path(main.clone())).unwrap();
        assert_eq!(
            listed,
            [
                main.clone(),
                dir.path().join("corral.d/a-first.toml"),
                dir.path().join("corral.d/b.toml"),
            ]
        );
        let config = load(&ConfigSource::Path(main)).unwrap();
        assert_eq!(config.services.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn main_file_without_drop_in_directory_is_read_alone() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("custom.toml");
        write(&main, SERVICE);
        assert_eq!(
            files(&ConfigSource::Path(main.clone())).unwrap(),
            std::slice::from_ref(&main)
        );
        assert!(
            load(&ConfigSource::Path(main))
                .unwrap()
                .services
                .contains_key("web")
        );
    }

    #[test]
    fn missing_main_file_given_by_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("corral.toml");
        let errors = load(&ConfigSource::Path(main.clone())).unwrap_err();
        assert_eq!(errors.len(), 1);
        let error = &errors.0[0];
        assert_eq!(error.file, main);
        assert_eq!(error.line, 0);
        assert!(
            error.message.starts_with("cannot read this file: "),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: cannot read", main.display()))
        );
    }

    #[test]
    fn missing_default_main_file_means_drop_ins_only_or_empty() {
        // The `Default` rules, on a temporary directory instead of /etc/corral.
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("corral.toml");
        let drop_ins = dir.path().join("corral.d");
        let listed = main_and_drop_ins(&main, false, &drop_ins).unwrap();
        assert!(listed.is_empty());
        let config = read_and_validate(&listed, &main).unwrap();
        assert!(config.services.is_empty() && config.groups.is_empty());
        assert!(
            !config.daemon.host.is_empty(),
            "host defaults to the hostname"
        );

        write(&drop_ins.join("web.toml"), SERVICE);
        let listed = main_and_drop_ins(&main, false, &drop_ins).unwrap();
        assert_eq!(listed, [drop_ins.join("web.toml")]);
        let config = read_and_validate(&listed, &main).unwrap();
        assert!(config.services.contains_key("web"));
    }

    #[test]
    fn drop_in_path_that_is_not_a_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("corral.toml");
        write(&main, SERVICE);
        write(&dir.path().join("corral.d"), "not a directory");
        let errors = load(&ConfigSource::Path(main)).unwrap_err();
        assert_eq!(errors.0[0].file, dir.path().join("corral.d"));
        assert!(
            errors.0[0]
                .message
                .starts_with("cannot list this directory")
        );
        assert!(files(&ConfigSource::Path(dir.path().join("corral.toml"))).is_err());
    }

    #[test]
    fn unreadable_file_is_reported_with_the_other_files_errors() {
        let dir = tempfile::tempdir().unwrap();
        // Not UTF-8: read_to_string fails even for root, unlike a permission bit.
        fs::write(dir.path().join("a.toml"), b"\xff\xfe").unwrap();
        write(&dir.path().join("b.toml"), "[services.b]\nexec = []\n");
        let errors = load(&ConfigSource::Path(dir.path().to_owned())).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(shown[0].starts_with(&format!(
            "{}: cannot read this file",
            dir.path().join("a.toml").display()
        )));
        assert!(shown[1].starts_with(&format!("{}:2:8: ", dir.path().join("b.toml").display())));
    }

    #[test]
    fn parse_str_names_the_given_file() {
        let error = parse_str("[services.x]\n", Path::new("/tmp/x.toml")).unwrap_err();
        assert_eq!(error.0[0].file, Path::new("/tmp/x.toml"));
        assert!(
            error
                .to_string()
                .starts_with("/tmp/x.toml:1:11: service \"x\": missing required key \"exec\"")
        );
    }

    #[test]
    fn parse_texts_reads_like_load_of_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("corral.toml");
        let drop_in = dir.path().join("corral.d/b.toml");
        let main_text = format!("[groups.g]\npeer = \"p\"\n{}", service("a"));
        let drop_in_text = format!("{}group = \"g\"\nafter = [\"a\"]\n", service("b"));
        write(&main, &main_text);
        write(&drop_in, &drop_in_text);
        let texts = [(main.clone(), main_text), (drop_in.clone(), drop_in_text)];
        let loaded = load(&ConfigSource::Path(main.clone())).unwrap();
        assert_eq!(parse_texts(&texts, &main), Ok(loaded));

        // And the same errors, each naming its file: "a" defined twice.
        write(&drop_in, &service("a"));
        let texts = [texts[0].clone(), (drop_in.clone(), service("a"))];
        let errors = load(&ConfigSource::Path(main.clone())).unwrap_err();
        assert_eq!(parse_texts(&texts, &main), Err(errors.clone()));
        assert_eq!(errors.0[0].file, drop_in);
    }

    #[test]
    fn source_default_is_the_etc_files() {
        assert_eq!(ConfigSource::default(), ConfigSource::Default);
        assert_eq!(
            main_file(&ConfigSource::Default),
            Path::new(DEFAULT_CONFIG_FILE)
        );
    }
}
