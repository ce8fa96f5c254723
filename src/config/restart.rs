//! Checks what happens when a service's process exits on its own: the `restart` policy and
//! the backoff between attempts (`restart_delay`, doubling up to `restart_delay_max`).

use std::time::Duration;

use super::checks::Checker;
use super::duration::format_duration;
use super::model::{RestartPolicy, Service};
use super::raw::{RawService, Text};

/// `restart = "no" | "on-failure" | "always"`; `default` when unset or invalid.
pub(crate) fn policy(
    check: &mut Checker,
    value: Option<&Text>,
    default: RestartPolicy,
) -> RestartPolicy {
    let Some(value) = value else {
        return default;
    };
    match value.get_ref().as_str() {
        "no" => RestartPolicy::No,
        "on-failure" => RestartPolicy::OnFailure,
        "always" => RestartPolicy::Always,
        other => {
            check.error(
                value.span(),
                format!("key \"restart\" is {other:?} (expected one of: no, on-failure, always)"),
            );
            default
        }
    }
}

/// `restart_delay` and `restart_delay_max`. An unset maximum is at least the delay, so
/// `restart_delay = "1m"` alone means a steady one-minute delay instead of an error about a
/// default the user never wrote.
pub(crate) fn delays(
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
        let default_note = if raw.restart_delay.is_none() {
            ", the default"
        } else {
            ""
        };
        check.error(
            max_value.span(),
            format!(
                "\"restart_delay_max\" ({}) is less than \"restart_delay\" ({}{default_note}); \
                 the delay starts at restart_delay and doubles up to restart_delay_max",
                format_duration(max),
                format_duration(delay),
            ),
        );
    }
    (delay, max)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{only_error, only_service, service};
    use super::*;

    #[test]
    fn restart_takes_known_words_only() {
        assert_eq!(
            only_service(&service("restart = \"always\"")).restart,
            RestartPolicy::Always
        );
        assert_eq!(
            only_service(&service("restart = \"no\"")).restart,
            RestartPolicy::No
        );
        assert_eq!(only_service(&service("")).restart, RestartPolicy::OnFailure);
        assert!(only_error(&service("restart = \"On-Failure\"")).contains(
            ":3:11: service \"s\": key \"restart\" is \"On-Failure\" (expected one of: no, on-failure, always)"
        ));
    }

    #[test]
    fn restart_delay_max_is_not_below_restart_delay() {
        let shown = only_error(&service(
            "restart_delay = \"10s\"\nrestart_delay_max = \"5s\"",
        ));
        assert!(shown.contains(
            ":4:21: service \"s\": \"restart_delay_max\" (5s) is less than \"restart_delay\" (10s);"
        ), "{shown}");
        let shown = only_error(&service("restart_delay_max = \"50ms\""));
        assert!(
            shown.contains("(50ms) is less than \"restart_delay\" (100ms, the default)"),
            "{shown}"
        );
        let both = only_service(&service(
            "restart_delay = \"2s\"\nrestart_delay_max = \"2s\"",
        ));
        assert_eq!(
            (both.restart_delay, both.restart_delay_max),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
    }

    #[test]
    fn unset_restart_delay_max_is_at_least_the_delay() {
        // Without a maximum, a long delay is a steady delay rather than an error.
        let steady = only_service(&service("restart_delay = \"1m\""));
        assert_eq!(
            (steady.restart_delay, steady.restart_delay_max),
            (Duration::from_secs(60), Duration::from_secs(60))
        );
        let short = only_service(&service("restart_delay = \"1s\""));
        assert_eq!(short.restart_delay_max, Duration::from_secs(30));
    }
}
