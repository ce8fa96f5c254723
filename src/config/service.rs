//! Checks one `[services.NAME]` table on its own and builds its [`Service`].
//!
//! Only what the table says by itself is checked here; names of other services and groups
//! (`after`, `group`) are checked over all files in `references`. Manager methods, workers
//! and recipes are in `jobs`.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::unistd::User;

use super::checks::Checker;
use super::error::{ConfigError, SourceText};
use super::jobs;
use super::model::{RestartPolicy, Service, ServiceType};
use super::raw::{RawService, Text};
use super::signal::parse_signal;

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
    let restart =
        raw.restart
            .as_ref()
            .map_or(defaults.restart, |value| match value.get_ref().as_str() {
                "no" => RestartPolicy::No,
                "on-failure" => RestartPolicy::OnFailure,
                "always" => RestartPolicy::Always,
                other => {
                    check.error(
                        value.span(),
                        format!(
                            "key \"restart\" is {other:?} (expected one of: no, on-failure, always)"
                        ),
                    );
                    defaults.restart
                }
            });
    let (restart_delay, restart_delay_max) = restart_delays(&mut check, raw, &defaults);
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
        environment: environment(&mut check, raw.environment.as_ref()),
        user: raw
            .user
            .as_ref()
            .and_then(|user| check_user(&mut check, user)),
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
        methods: jobs::methods(&mut check, raw.methods.as_ref(), control_socket.is_some()),
        control_socket,
        frame_timeout: check.duration(
            raw.frame_timeout.as_ref(),
            "frame_timeout",
            defaults.frame_timeout,
        ),
        upcall,
        workers: jobs::workers(&mut check, raw.workers.as_ref(), defaults.workers),
        recipes: jobs::recipes(&mut check, raw.recipes.as_ref()),
    }
}

/// `restart_delay` and `restart_delay_max`. An unset maximum is at least the delay, so
/// `restart_delay = "1m"` alone means a steady one-minute delay instead of an error about a
/// default the user never wrote.
fn restart_delays(
    check: &mut Checker,
    raw: &RawService,
    defaults: &Service,
) -> (Duration, Duration) {
    let delay = check.duration(
        raw.restart_delay.as_ref(),
        "restart_delay",
        defaults.restart_delay,
    );
    let Some(max_value) = &raw.restart_delay_max else {
        return (delay, delay.max(defaults.restart_delay_max));
    };
    let max = check.duration(
        Some(max_value),
        "restart_delay_max",
        defaults.restart_delay_max,
    );
    if max < delay {
        check.error(
            max_value.span(),
            format!(
                "\"restart_delay_max\" ({}) is less than \"restart_delay\" ({}{}); the delay \
                 starts at restart_delay and doubles up to restart_delay_max",
                super::duration::format_duration(max),
                super::duration::format_duration(delay),
                if raw.restart_delay.is_none() {
                    ", the default"
                } else {
                    ""
                },
            ),
        );
    }
    (delay, max)
}

/// The child's environment: names that `execve` and the shell can use, no NUL in values.
fn environment(
    check: &mut Checker,
    raw: Option<&BTreeMap<Text, Text>>,
) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    for (name, value) in raw.into_iter().flatten() {
        let text = name.get_ref();
        let problem = if text.is_empty() {
            Some("is empty")
        } else if text.contains('=') {
            Some("contains \"=\", which separates name from value")
        } else if text.contains('\0') {
            Some("contains a NUL character")
        } else {
            None
        };
        if let Some(problem) = problem {
            check.error(
                name.span(),
                format!("environment variable name {text:?} {problem}"),
            );
            continue;
        }
        if let Some(value) = check.text(value, &format!("environment.{text}")) {
            environment.insert(text.clone(), value);
        }
    }
    environment
}

/// `user`, which must exist here: a typo would otherwise surface only when the service
/// starts, long after the reload that introduced it succeeded.
fn check_user(check: &mut Checker, user: &Text) -> Option<String> {
    let name = check.text(user, "user")?;
    match User::from_name(&name) {
        Ok(Some(_)) => Some(name),
        Ok(None) => {
            check.error(
                user.span(),
                format!(
                    "user {name:?} does not exist on this machine: create it, or change \"user\""
                ),
            );
            None
        }
        Err(error) => {
            check.error(
                user.span(),
                format!("cannot look up user {name:?}: {error}"),
            );
            None
        }
    }
}
