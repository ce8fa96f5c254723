//! Checks one `[services.NAME]` table on its own and builds its [`Service`].
//!
//! Only what the table says by itself is checked here; names of other services and groups
//! (`after`, `group`) are checked over all files in `references`. Manager methods, workers
//! and recipes are in `jobs`; the environment and user in `process`; the restart policy
//! and its delays in `restart`; limits, umask and no_new_privileges in `resources`; the
//! watchdog, `on_failure` and the health check in `health`.

use super::checks::Checker;
use super::error::{ConfigError, SourceText};
use super::model::{Service, ServiceType};
use super::raw::{RawService, Text};
use super::signal::parse_signal;
use super::{child, health, resources, restart, work};

/// Builds the service `name` from `raw`, reporting every problem into `errors`. The result
/// is meaningful only if no error was added.
pub(crate) fn check_service(
    name: &Text,
    raw: &RawService,
    source: &SourceText,
    errors: &mut Vec<ConfigError>,
) -> Service {
    let mut check = Checker::new(source, format!("service {:?}", name.get_ref()), errors);
    check.name(name, "service");
    let defaults = Service::default();

    let exec = match &raw.exec {
        Some(argv) => check.argv(argv, "exec").unwrap_or_default(),
        None => {
            check.error(
                name.span(),
                "missing required key \"exec\": give the command line, \
                 e.g. exec = [\"/usr/sbin/daemon\", \"--foreground\"]",
            );
            Vec::new()
        }
    };
    let service_type =
        raw.service_type
            .as_ref()
            .map_or(defaults.service_type, |value| {
                match value.get_ref().as_str() {
                    "simple" => ServiceType::Simple,
                    "notify" => ServiceType::Notify,
                    "forking" => ServiceType::Forking,
                    other => {
                        check.error(
                    value.span(),
                    format!("key \"type\" is {other:?} (expected one of: simple, notify, forking)"),
                );
                        defaults.service_type
                    }
                }
            });
    let pidfile = check.absolute_path(raw.pidfile.as_ref(), "pidfile");
    if let (ServiceType::Forking, None, Some(value)) =
        (service_type, &raw.pidfile, &raw.service_type)
    {
        check.error(
            value.span(),
            "type = \"forking\" needs a \"pidfile\": the started process exits, and the \
             pidfile is how corrald finds the daemon it left behind",
        );
    }
    let restart = restart::policy(&mut check, raw.restart.as_ref(), defaults.restart);
    let (restart_delay, restart_delay_max) = restart::delays(&mut check, raw, &defaults);
    let stop_signal = raw
        .stop_signal
        .as_ref()
        .map_or(defaults.stop_signal, |value| {
            parse_signal(value.get_ref()).unwrap_or_else(|error| {
                check.error(value.span(), format!("key \"stop_signal\": {error}"));
                defaults.stop_signal
            })
        });
    let control_socket = check.socket_path(raw.control_socket.as_ref(), "control_socket");
    let methods = work::methods(&mut check, raw.methods.as_ref(), control_socket.is_some());
    let upcall = raw.upcall.unwrap_or(defaults.upcall);
    if upcall && raw.control_socket.is_none() {
        check.error(
            name.span(),
            "\"upcall = true\" needs a \"control_socket\": upcalls arrive over the control channel",
        );
    }

    Service {
        group: raw
            .group
            .as_ref()
            .and_then(|group| check.text(group, "group")),
        description: raw
            .description
            .as_ref()
            .and_then(|text| check.text(text, "description"))
            .unwrap_or_default(),
        exec,
        service_type,
        autostart: raw.autostart.unwrap_or(defaults.autostart),
        pidfile,
        after: raw
            .after
            .iter()
            .flatten()
            .map(|target| target.get_ref().clone())
            .collect(),
        environment: child::environment(&mut check, raw.environment.as_ref()),
        user: raw
            .user
            .as_ref()
            .and_then(|user| child::user(&mut check, user)),
        working_directory: check
            .absolute_path(raw.working_directory.as_ref(), "working_directory")
            .unwrap_or(defaults.working_directory),
        restart,
        restart_delay,
        restart_delay_max,
        start_limit_burst: check.count(
            raw.start_limit_burst.as_ref(),
            "start_limit_burst",
            1,
            defaults.start_limit_burst,
        ),
        start_limit_interval: check.duration(
            raw.start_limit_interval.as_ref(),
            "start_limit_interval",
            defaults.start_limit_interval,
        ),
        start_timeout: check.duration(
            raw.start_timeout.as_ref(),
            "start_timeout",
            defaults.start_timeout,
        ),
        stop_signal,
        stop_timeout: check.duration(
            raw.stop_timeout.as_ref(),
            "stop_timeout",
            defaults.stop_timeout,
        ),
        health: health::health(&mut check, raw.health.as_ref(), &methods),
        methods,
        control_socket,
        frame_timeout: check.duration(
            raw.frame_timeout.as_ref(),
            "frame_timeout",
            defaults.frame_timeout,
        ),
        upcall,
        workers: work::workers(&mut check, raw.workers.as_ref(), defaults.workers),
        recipes: work::recipes(&mut check, raw.recipes.as_ref()),
        cgroup_limits: resources::cgroup_limits(&mut check, raw),
        process_limits: resources::process_limits(&mut check, raw),
        watchdog: health::watchdog(&mut check, raw.watchdog.as_ref()),
        on_failure: health::on_failure(&mut check, raw.on_failure.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use super::super::test_support::{FILE, errors, only_error, only_service, service};
    use super::*;

    #[test]
    fn minimal_service_gets_every_default() {
        let parsed = only_service(&service(""));
        let expected = Service {
            exec: vec!["/bin/s".into()],
            ..Service::default()
        };
        assert_eq!(parsed, expected);
    }

    #[test]
    fn exec_is_required_and_checked() {
        assert!(
            only_error("[services.s]\ndescription = \"x\"\n").starts_with(&format!(
                "{FILE}:1:11: service \"s\": missing required key \"exec\""
            ))
        );
        assert!(
            only_error("[services.s]\nexec = []\n")
                .starts_with(&format!("{FILE}:2:8: service \"s\": key \"exec\" is empty"))
        );
        assert!(
            only_error("[services.s]\nexec = [\"\"]\n")
                .contains(":2:9: service \"s\": key \"exec\": the program name is empty")
        );
        assert!(
            only_error("[services.s]\nexec = [\"./run\", \"x\"]\n").contains(
                ":2:9: service \"s\": key \"exec\": the program \"./run\" is a relative path"
            )
        );
        assert!(
            only_error("[services.s]\nexec = [\"/bin/s\", \"a\\u0000b\"]\n")
                .contains(":2:19: service \"s\": key \"exec\" contains a NUL character")
        );
        // A bare name is looked up in PATH at start; an absolute path is used as is.
        assert_eq!(
            only_service("[services.s]\nexec = [\"sleep\", \"1\"]\n").exec,
            ["sleep", "1"]
        );
    }

    #[test]
    fn service_names_are_restricted() {
        let shown = only_error("[services.\"a/b\"]\nexec = [\"/bin/x\"]\n");
        assert!(
            shown.contains(":1:11: service \"a/b\": service name \"a/b\" is not valid"),
            "{shown}"
        );
        let long = "x".repeat(65);
        let shown = only_error(&format!("[services.{long}]\nexec = [\"/bin/x\"]\n"));
        assert!(shown.contains("is not valid: use 1 to 64 of the characters"));
        assert_eq!(
            only_service("[services.\"getty@tty1\"]\nexec = [\"/bin/x\"]\n").exec,
            ["/bin/x"]
        );
    }

    #[test]
    fn type_takes_known_words_only() {
        assert_eq!(
            only_service(&service("type = \"notify\"")).service_type,
            ServiceType::Notify
        );
        assert!(only_error(&service("type = \"oneshot\"")).contains(
            ":3:8: service \"s\": key \"type\" is \"oneshot\" (expected one of: simple, notify, forking)"
        ));
    }

    #[test]
    fn forking_needs_an_absolute_pidfile() {
        assert!(
            only_error(&service("type = \"forking\""))
                .contains(":3:8: service \"s\": type = \"forking\" needs a \"pidfile\"")
        );
        let forking = only_service(&service("type = \"forking\"\npidfile = \"/run/s.pid\""));
        assert_eq!(forking.service_type, ServiceType::Forking);
        assert_eq!(forking.pidfile, Some(PathBuf::from("/run/s.pid")));
        assert!(only_error(&service("pidfile = \"run/s.pid\"")).contains(
            ":3:11: service \"s\": key \"pidfile\" must be an absolute path (starting with \"/\"), not \"run/s.pid\""
        ));
    }

    #[test]
    fn other_paths_must_be_absolute() {
        assert!(
            only_error(&service("working_directory = \"srv\"")).contains(
                ":3:21: service \"s\": key \"working_directory\" must be an absolute path"
            )
        );
        assert!(
            only_error(&service("control_socket = \"\""))
                .contains(":3:18: service \"s\": key \"control_socket\" must be an absolute path")
        );
        let long = format!("/run/{}", "s".repeat(103));
        assert!(
            only_error(&service(&format!("control_socket = \"{long}\""))).contains(
                "key \"control_socket\" is 108 bytes long, but a unix socket path holds at most 107"
            )
        );
        let parsed = only_service(&service(
            "working_directory = \"/srv\"\ncontrol_socket = \"/run/s.sock\"",
        ));
        assert_eq!(parsed.working_directory, PathBuf::from("/srv"));
        assert_eq!(parsed.control_socket, Some(PathBuf::from("/run/s.sock")));
    }

    #[test]
    fn a_control_socket_anyone_could_replace_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |path: &std::path::Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let socket =
            |path: std::path::PathBuf| service(&format!("control_socket = \"{}\"", path.display()));
        let shown = only_error(&socket(open.join("s.sock")));
        assert!(
            shown.contains(&format!(
                ":3:18: service \"s\": key \"control_socket\": {} is writable by everyone \
                 without the sticky bit",
                open.display()
            )),
            "{shown}"
        );
        assert!(shown.contains("chmod +t"), "says how to fix it: {shown}");
        // Deeper, not yet existing directories below an open one are as exposed.
        assert!(only_error(&socket(open.join("later/s.sock"))).contains("without the sticky bit"));
        // Every service with the problem is reported, not just the first.
        let two = format!(
            "{}\n[services.t]\nexec = [\"/bin/t\"]\ncontrol_socket = \"{}\"\n",
            socket(open.join("s.sock")),
            open.join("t.sock").display()
        );
        let all = errors(&two);
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(
            all[1].to_string().contains(":7:18: service \"t\""),
            "{}",
            all[1]
        );

        chmod(&open, 0o1777);
        assert_eq!(
            only_service(&socket(open.join("s.sock"))).control_socket,
            Some(open.join("s.sock")),
            "sticky, like /tmp: the peer check at connect time keeps squatters out"
        );
        chmod(&open, 0o755);
        assert!(
            only_service(&socket(open.join("s.sock")))
                .control_socket
                .is_some()
        );
    }

    #[test]
    fn durations_and_counts_are_parsed_and_checked() {
        let parsed = only_service(&service(
            "start_timeout = \"1m30s\"\nstop_timeout = \"0\"\nstart_limit_interval = \"500ms\"\n\
             start_limit_burst = 3\nframe_timeout = \"2s\"",
        ));
        assert_eq!(parsed.start_timeout, Duration::from_secs(90));
        assert_eq!(parsed.stop_timeout, Duration::ZERO);
        assert_eq!(parsed.start_limit_interval, Duration::from_millis(500));
        assert_eq!(parsed.start_limit_burst, 3);
        assert_eq!(parsed.frame_timeout, Duration::from_secs(2));
        assert!(only_error(&service("stop_timeout = \"5x\"")).contains(
            ":3:16: service \"s\": key \"stop_timeout\": bad duration \"5x\": unknown unit \"x\"; use a number with ms, s, m or h, e.g. \"500ms\", \"5s\", \"1m\", \"1h\""
        ));
        assert!(only_error(&service("start_limit_burst = 0")).contains(
            ":3:21: service \"s\": key \"start_limit_burst\" is 0, but must be between 1 and 4294967295"
        ));
    }

    #[test]
    fn stop_signal_is_a_signal_name() {
        assert_eq!(
            only_service(&service("stop_signal = \"int\"")).stop_signal,
            Signal::SIGINT
        );
        assert!(only_error(&service("stop_signal = \"SIGSTOPP\"")).contains(
            ":3:15: service \"s\": key \"stop_signal\": bad signal \"SIGSTOPP\": expected a signal name"
        ));
        assert!(only_error(&service("stop_signal = \"9\"")).contains("(here 9 is \"SIGKILL\")"));
    }

    #[test]
    fn upcall_needs_a_control_socket() {
        assert!(
            only_error(&service("upcall = true"))
                .contains(":1:11: service \"s\": \"upcall = true\" needs a \"control_socket\"")
        );
        let parsed = only_service(&service("upcall = true\ncontrol_socket = \"/run/s.sock\""));
        assert!(parsed.upcall);
    }

    #[test]
    fn plain_values_are_taken_as_written() {
        let parsed = only_service(&service(
            "description = \"The S daemon\"\nautostart = false\ngroup = \"g\"\n[groups.g]\npeer = \"p\"",
        ));
        assert_eq!(parsed.description, "The S daemon");
        assert!(!parsed.autostart);
        assert_eq!(parsed.group.as_deref(), Some("g"));
    }
}
