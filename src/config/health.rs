//! Checks the keys that watch over a running service: `watchdog` (sd_notify pings),
//! `on_failure` (a program run when it becomes failed) and the `[services.X.health]` table
//! (a periodic check).

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::checks::Checker;
use super::duration::parse_duration;
use super::model::{HealthAction, HealthCheck, HealthProbe, MethodDriver};
use super::raw::{Argv, RawHealth, Text};

/// The defaults of the `[health]` keys other than the probe.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
pub const HEALTH_FAILURES: u32 = 3;

/// `watchdog = "10s"`: above zero (leave the key out for no watchdog).
pub(crate) fn watchdog(check: &mut Checker, value: Option<&Text>) -> Option<Duration> {
    let value = value?;
    match parse_duration(value.get_ref()) {
        Ok(timeout) if timeout.is_zero() => {
            check.error(
                value.span(),
                "key \"watchdog\" must be above zero; leave it out for no watchdog",
            );
            None
        }
        Ok(timeout) => Some(timeout),
        Err(error) => {
            check.error(value.span(), format!("key \"watchdog\": {error}"));
            None
        }
    }
}

/// `on_failure = ["/usr/local/bin/notify-admin", ...]`.
pub(crate) fn on_failure(check: &mut Checker, value: Option<&Argv>) -> Option<Vec<String>> {
    check.argv(value?, "on_failure")
}

/// `[services.X.health]`; `None` when absent or invalid (the error is reported).
pub(crate) fn health(
    check: &mut Checker,
    raw: Option<&Spanned<RawHealth>>,
    methods: &BTreeMap<String, MethodDriver>,
) -> Option<HealthCheck> {
    let raw_table = raw?;
    let raw = raw_table.get_ref();
    let probe = match (&raw.exec, &raw.method) {
        (Some(_), Some(_)) => {
            check.error(
                raw_table.span(),
                "[health] sets both \"exec\" and \"method\": keep the one that checks the service",
            );
            None
        }
        (None, None) => {
            check.error(
                raw_table.span(),
                "[health] needs a check: exec = [\"/path/to/program\", ...] or method = \
                 \"name\" (one of the service's [methods])",
            );
            None
        }
        (Some(argv), None) => check.argv(argv, "health.exec").map(HealthProbe::Exec),
        (None, Some(method)) => health_method(check, method, methods),
    };
    let interval = above_zero(
        check,
        raw.interval.as_ref(),
        "health.interval",
        HEALTH_INTERVAL,
    );
    let timeout = above_zero(
        check,
        raw.timeout.as_ref(),
        "health.timeout",
        HEALTH_TIMEOUT,
    );
    let failures = check.count(raw.failures.as_ref(), "health.failures", 1, HEALTH_FAILURES);
    let action = match raw.action.as_ref() {
        None => HealthAction::Restart,
        Some(value) => match value.get_ref().as_str() {
            "restart" => HealthAction::Restart,
            "none" => HealthAction::None,
            other => {
                check.error(
                    value.span(),
                    format!("key \"health.action\" is {other:?} (expected one of: restart, none)"),
                );
                HealthAction::Restart
            }
        },
    };
    Some(HealthCheck {
        probe: probe?,
        interval,
        timeout,
        failures,
        action,
    })
}

/// `method = "ping"`: one of the service's own manager methods.
fn health_method(
    check: &mut Checker,
    method: &Text,
    methods: &BTreeMap<String, MethodDriver>,
) -> Option<HealthProbe> {
    let name = check.text(method, "health.method")?;
    if methods.contains_key(&name) {
        return Some(HealthProbe::Method(name));
    }
    let known: Vec<&str> = methods.keys().map(String::as_str).collect();
    check.error(
        method.span(),
        format!(
            "key \"health.method\" names {name:?}, which is not a method of this service \
             (it has: {}); define it in [services.<name>.methods.{name}]",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ),
    );
    None
}

/// A duration that must be above zero; `default` when unset or invalid.
fn above_zero(check: &mut Checker, value: Option<&Text>, key: &str, default: Duration) -> Duration {
    let duration = check.duration(value, key, default);
    if duration.is_zero() {
        if let Some(value) = value {
            check.error(value.span(), format!("key {key:?} must be above zero"));
        }
        return default;
    }
    duration
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{only_error, only_service, service};
    use super::*;

    #[test]
    fn watchdog_and_on_failure_are_read() {
        let parsed = only_service(&service(
            "watchdog = \"10s\"\non_failure = [\"/usr/local/bin/notify-admin\", \"-v\"]",
        ));
        assert_eq!(parsed.watchdog, Some(Duration::from_secs(10)));
        assert_eq!(
            parsed.on_failure,
            Some(vec!["/usr/local/bin/notify-admin".into(), "-v".into()])
        );
        let plain = only_service(&service(""));
        assert_eq!(
            (plain.watchdog, plain.on_failure, plain.health),
            (None, None, None)
        );
    }

    #[test]
    fn watchdog_and_on_failure_are_checked() {
        assert!(only_error(&service("watchdog = \"0\"")).contains(
            ":3:12: service \"s\": key \"watchdog\" must be above zero; leave it out for no watchdog"
        ));
        assert!(
            only_error(&service("watchdog = \"ten\""))
                .contains(":3:12: service \"s\": key \"watchdog\": bad duration \"ten\"")
        );
        assert!(
            only_error(&service("on_failure = []"))
                .contains(":3:14: service \"s\": key \"on_failure\" is empty")
        );
        assert!(
            only_error(&service("on_failure = [\"bin/mail\"]"))
                .contains("key \"on_failure\": the program \"bin/mail\" is a relative path")
        );
    }

    #[test]
    fn only_a_changed_watchdog_changes_the_process() {
        let base = only_service(&service(""));
        let with = |extra: &str| only_service(&service(extra));
        assert!(
            base.process_differs(&with("watchdog = \"5s\"")),
            "WATCHDOG_USEC changes"
        );
        assert!(!base.process_differs(&with("on_failure = [\"/bin/mail\"]")));
        assert!(!base.process_differs(&with("[services.s.health]\nexec = [\"true\"]")));
    }

    #[test]
    fn a_health_table_gets_its_defaults() {
        let parsed = only_service(&service("[services.s.health]\nexec = [\"true\"]"));
        assert_eq!(
            parsed.health,
            Some(HealthCheck {
                probe: HealthProbe::Exec(vec!["true".into()]),
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                failures: 3,
                action: HealthAction::Restart,
            })
        );
        let parsed = only_service(&service(
            "[services.s.methods.ping]\nexec = [\"/bin/ping-it\"]\n\
             [services.s.health]\nmethod = \"ping\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
             failures = 1\naction = \"none\"",
        ));
        assert_eq!(
            parsed.health,
            Some(HealthCheck {
                probe: HealthProbe::Method("ping".into()),
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                failures: 1,
                action: HealthAction::None,
            })
        );
    }

    #[test]
    fn a_health_table_is_checked_key_by_key() {
        let table = |body: &str| service(&format!("[services.s.health]\n{body}"));
        assert!(only_error(&table("interval = \"1s\"")).contains(
            ":3:1: service \"s\": [health] needs a check: exec = [\"/path/to/program\", ...] or method"
        ));
        assert!(
            only_error(&table("exec = [\"true\"]\nmethod = \"ping\""))
                .contains("[health] sets both \"exec\" and \"method\"")
        );
        assert!(only_error(&table("method = \"ping\"")).contains(
            ":4:10: service \"s\": key \"health.method\" names \"ping\", which is not a method of this service (it has: none)"
        ));
        assert!(
            only_error(&table("exec = [\"true\"]\ninterval = \"0\""))
                .contains(":5:12: service \"s\": key \"health.interval\" must be above zero")
        );
        assert!(
            only_error(&table("exec = [\"true\"]\ntimeout = \"5 s\""))
                .contains(":5:11: service \"s\": key \"health.timeout\": bad duration")
        );
        assert!(
            only_error(&table("exec = [\"true\"]\nfailures = 0")).contains(
                ":5:12: service \"s\": key \"health.failures\" is 0, but must be between 1"
            )
        );
        assert!(only_error(&table("exec = [\"true\"]\naction = \"reboot\"")).contains(
            ":5:10: service \"s\": key \"health.action\" is \"reboot\" (expected one of: restart, none)"
        ));
        assert!(only_error(&table("exec = [\"true\"]\nevery = \"1s\"")).contains(
            "service \"s\", in \"health\": unknown key \"every\" (expected one of: exec, method, \
             interval, timeout, failures, action)"
        ));
    }
}
