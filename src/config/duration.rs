//! Durations as written in the configuration: `"500ms"`, `"5s"`, `"1m30s"`, `"1h"`, `"0"`.
//!
//! A string with a unit on every number, because a bare `timeout = 30` is ambiguous (seconds?
//! milliseconds?) and systemd users already write `30s`. [`format_duration`] is the inverse,
//! so messages print a duration the way the user would have written it.

use std::fmt;
use std::time::Duration;

/// The accepted units with their length in nanoseconds, largest first (the order
/// [`format_duration`] writes them in). A unit is the whole run of letters after a number,
/// so `"ms"` is never read as `"m"` followed by `"s"`.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    /// The rejected text, quoted back to the user.
    pub input: String,
    /// What exactly is wrong with it.
    pub reason: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad duration {:?}: {}; use a number with ms, s, m or h, e.g. \"500ms\", \"5s\", \
             \"1m\", \"1h\" (or a combination such as \"1m30s\")",
            self.input, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration: one or more `<digits><unit>` with unit `h`, `m`, `s`, `ms`, `us` or
/// `ns` (`"1m30s"`), or the bare `"0"`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason: &str| DurationError {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(fail("it is empty"));
    }
    if input.starts_with('-') {
        return Err(fail("durations cannot be negative"));
    }
    let mut total: u128 = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let digits_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_len);
        if digits.is_empty() {
            return Err(fail("expected a number"));
        }
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(match after.chars().next() {
                Some('.') => fail("fractions are not supported, use a smaller unit (\"1500ms\")"),
                Some(_) => fail("unexpected character"),
                None => fail("the number has no unit"),
            });
        }
        let nanos_per_unit = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, nanos)| *nanos)
            .ok_or_else(|| fail(&format!("unknown unit {unit:?}")))?;
        let too_long = || fail("it is too long");
        let number: u128 = digits.parse().map_err(|_| too_long())?;
        total = number
            .checked_mul(nanos_per_unit)
            .and_then(|nanos| total.checked_add(nanos))
            .ok_or_else(too_long)?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| fail("it is too long"))?;
    // The remainder is below 10^9, so it fits.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats `duration` the way [`parse_duration`] reads it, largest units first:
/// `"1h"`, `"1m30s"`, `"500ms"`, `"0"`.
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0".to_owned();
    }
    let mut rest = duration.as_nanos();
    let mut out = String::new();
    for (unit, nanos_per_unit) in UNITS {
        let count = rest / nanos_per_unit;
        if count != 0 {
            out.push_str(&format!("{count}{unit}"));
            rest %= nanos_per_unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(input: &str) -> String {
        parse_duration(input).unwrap_err().reason
    }

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_combinations() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::from_millis(3_723_004))
        );
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        assert_eq!(reason(""), "it is empty");
        assert_eq!(reason("-5s"), "durations cannot be negative");
        assert_eq!(reason("5"), "the number has no unit");
        assert_eq!(reason("1m30"), "the number has no unit");
        assert_eq!(reason("5x"), "unknown unit \"x\"");
        assert_eq!(reason("5sec"), "unknown unit \"sec\"");
        assert_eq!(reason("s"), "expected a number");
        assert_eq!(reason("5 s"), "unexpected character");
        assert_eq!(reason(" 5s"), "expected a number");
        assert!(reason("1.5s").starts_with("fractions are not supported"));
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(
            reason("99999999999999999999999999999999999999999h"),
            "it is too long"
        );
        // Fits in u128 nanoseconds but not in Duration's u64 seconds.
        assert_eq!(reason("18446744073709551616s"), "it is too long");
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn error_message_quotes_input_and_shows_examples() {
        let message = parse_duration("5x").unwrap_err().to_string();
        assert!(message.starts_with("bad duration \"5x\": unknown unit \"x\"; "));
        assert!(message.contains("\"500ms\", \"5s\", \"1m\", \"1h\""));
    }

    #[test]
    fn format_is_the_inverse_of_parse() {
        assert_eq!(format_duration(Duration::ZERO), "0");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::new(1, 1_000)), "1s1us");
        for duration in [
            Duration::from_nanos(1),
            Duration::from_millis(61_001),
            Duration::new(98_765, 432_101_234),
            Duration::from_secs(u64::MAX),
        ] {
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_duration_round_trips(secs: u64, nanos in 0u32..1_000_000_000) {
            let duration = Duration::new(secs, nanos);
            proptest::prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }
}
