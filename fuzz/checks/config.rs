//! `config`: TOML text → validated [`Config`], through the loader's own path
//! ([`parse_texts`], which `load` uses once it has read the files).
//!
//! The input is one file, or several separated by NUL bytes (which TOML never contains):
//! the main file and its drop-ins, merged. What must hold:
//! - a `Config` is only returned when it keeps every promise of `config::model` (valid
//!   names, non-empty argvs, absolute paths, references that resolve, no `after` cycle, …);
//! - errors name one of the files, at a line and column inside it;
//! - one file read alone gives what `parse_str` gives;
//! - files add to each other, none overrides another: the order they are read in does not
//!   change whether the configuration is valid, nor what it is; and a file that is valid on
//!   its own defines the same services and groups in the merged configuration.

use std::path::{Path, PathBuf};

use corral::config::{
    Config, ConfigErrors, MethodDriver, Service, ServiceType, parse_str, parse_texts,
};
use corral::names::is_valid_name;
use corral::transitions::order::dependency_order;

const MAIN_FILE: &str = "/etc/corral/corral.toml";
/// The longest unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// More files add nothing new to what is checked, only time per input.
const MAX_FILES: usize = 4;

pub fn check(data: &[u8]) {
    // A file that is not UTF-8 is refused before parsing ("cannot read this file").
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files: Vec<(PathBuf, String)> = text
        .split('\0')
        .take(MAX_FILES)
        .enumerate()
        .map(|(i, text)| (file_name(i), text.to_owned()))
        .collect();
    let main = Path::new(MAIN_FILE);
    let merged = parse_texts(&files, main);
    check_outcome(&merged, &files);

    if let [(path, text)] = files.as_slice() {
        assert_eq!(
            parse_str(text, path),
            merged,
            "parse_str and parse_texts disagree"
        );
        return;
    }
    let reversed: Vec<_> = files.iter().rev().cloned().collect();
    match (&merged, parse_texts(&reversed, main)) {
        (Ok(config), Ok(other)) => assert_eq!(config, &other, "file order changed the config"),
        (Err(_), Err(_)) => {}
        (merged, other) => panic!(
            "file order decided validity: in order {merged:?}, reversed {:?}",
            other.map(|_| ())
        ),
    }
    if let Ok(config) = &merged {
        for (path, text) in &files {
            let Ok(alone) = parse_str(text, path) else {
                continue;
            };
            for (name, service) in &alone.services {
                assert_eq!(
                    config.services.get(name),
                    Some(service),
                    "service {name:?} of {} differs once merged",
                    path.display()
                );
            }
            for (name, group) in &alone.groups {
                assert_eq!(
                    config.groups.get(name),
                    Some(group),
                    "group {name:?} differs"
                );
            }
        }
    }
}

/// The main file, then drop-ins in reading order.
fn file_name(index: usize) -> PathBuf {
    match index {
        0 => PathBuf::from(MAIN_FILE),
        i => PathBuf::from(format!("/etc/corral/corral.d/{i:02}.toml")),
    }
}

fn check_outcome(outcome: &Result<Config, ConfigErrors>, files: &[(PathBuf, String)]) {
    match outcome {
        Ok(config) => check_config(config),
        Err(errors) => check_errors(errors, files),
    }
}

fn check_errors(errors: &ConfigErrors, files: &[(PathBuf, String)]) {
    assert!(!errors.is_empty(), "an error without any problem in it");
    for error in errors {
        assert!(!error.message.is_empty(), "{error:?} says nothing");
        // Errors about the configuration as a whole name the main file, which is listed.
        let Some((_, text)) = files.iter().find(|(path, _)| *path == error.file) else {
            panic!("{error:?} names a file that was not read");
        };
        if error.line == 0 {
            assert_eq!(error.column, 0, "{error:?}: a column without a line");
            continue;
        }
        let Some(line) = text.split('\n').nth(error.line - 1) else {
            panic!("{error:?} is past the last line");
        };
        let columns = line.chars().count() + 1;
        assert!(
            (1..=columns).contains(&error.column),
            "{error:?} is outside its line ({columns} columns)"
        );
        assert!(error.to_string().contains(&error.message));
    }
}

/// The promises of `config::model`: what the supervisor may rely on without checking.
fn check_config(config: &Config) {
    let daemon = &config.daemon;
    assert!(
        !daemon.host.is_empty() && !daemon.host.contains('\0'),
        "{daemon:?}"
    );
    for (name, group) in &config.groups {
        assert!(is_valid_name(name), "group name {name:?}");
        assert!(
            !group.peer.is_empty() && !group.peer.contains('\0'),
            "{group:?}"
        );
    }
    for (name, service) in &config.services {
        assert!(is_valid_name(name), "service name {name:?}");
        check_service(config, name, service);
    }
    // No `after` cycle: the start order of all services puts each after what it names.
    let names: Vec<String> = config.services.keys().cloned().collect();
    let order = dependency_order(config, &names);
    let position = |name: &str| order.iter().position(|n| n == name);
    for (name, service) in &config.services {
        for dep in &service.after {
            assert!(
                position(dep) < position(name),
                "{name:?} starts before {dep:?}, which it is after (a cycle got through)"
            );
        }
    }
}

fn check_service(config: &Config, name: &str, service: &Service) {
    let context = format!("service {name:?}: {service:?}");
    check_argv(&service.exec, &context);
    if let Some(group) = &service.group {
        assert!(
            config.groups.contains_key(group),
            "{context}: unknown group"
        );
    }
    for dep in &service.after {
        assert!(
            config.services.contains_key(dep),
            "{context}: after names {dep:?}"
        );
    }
    if service.service_type == ServiceType::Forking {
        assert!(
            service.pidfile.is_some(),
            "{context}: forking without pidfile"
        );
    }
    for path in [&service.pidfile, &service.control_socket]
        .into_iter()
        .flatten()
        .chain([&service.working_directory])
    {
        assert_absolute(path, &context);
    }
    if let Some(socket) = &service.control_socket {
        assert!(socket.as_os_str().len() <= MAX_SOCKET_PATH, "{context}");
    }
    if service.upcall {
        assert!(
            service.control_socket.is_some(),
            "{context}: upcall without socket"
        );
    }
    for (key, value) in &service.environment {
        assert!(
            !key.is_empty() && !key.contains(['=', '\0']),
            "{context}: {key:?}"
        );
        assert!(!value.contains('\0'), "{context}: {key}={value:?}");
    }
    for text in [&service.description]
        .into_iter()
        .chain(&service.user)
        .chain(&service.group)
    {
        assert!(!text.contains('\0'), "{context}: NUL in {text:?}");
    }
    assert!(
        service.restart_delay <= service.restart_delay_max,
        "{context}"
    );
    assert!(service.start_limit_burst >= 1, "{context}");
    assert!(service.workers.max_active >= 1, "{context}");
    for (method, driver) in &service.methods {
        assert!(is_valid_name(method), "{context}: method name {method:?}");
        match driver {
            MethodDriver::Exec(argv) => check_argv(argv, &context),
            MethodDriver::Control(rpc) => {
                assert!(!rpc.is_empty() && !rpc.contains('\0'), "{context}");
                assert!(service.control_socket.is_some(), "{context}: no socket");
            }
        }
    }
    for (recipe_name, recipe) in &service.recipes {
        assert!(
            is_valid_name(recipe_name),
            "{context}: recipe {recipe_name:?}"
        );
        assert!(!recipe.steps.is_empty(), "{context}: recipe without steps");
        for step in &recipe.steps {
            check_argv(step, &context);
        }
        assert!(
            recipe.schedule.is_none_or(|period| !period.is_zero()),
            "{context}"
        );
    }
}

/// A program that is absolute or a bare name, and no NUL anywhere.
fn check_argv(argv: &[String], context: &str) {
    let program = argv
        .first()
        .unwrap_or_else(|| panic!("{context}: empty argv"));
    assert!(!program.is_empty(), "{context}: empty program");
    assert!(
        program.starts_with('/') || !program.contains('/'),
        "{context}: relative program path"
    );
    assert!(
        argv.iter().all(|word| !word.contains('\0')),
        "{context}: NUL"
    );
}

fn assert_absolute(path: &Path, context: &str) {
    assert!(
        path.is_absolute(),
        "{context}: {} is not absolute",
        path.display()
    );
    assert!(
        !path.as_os_str().as_encoded_bytes().contains(&0),
        "{context}"
    );
}
