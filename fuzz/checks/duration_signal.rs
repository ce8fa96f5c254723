//! `duration_signal`: the duration and signal-name parsers of the configuration.
//!
//! The input is tried as both. What must hold: a duration read prints (`format_duration`)
//! as text that reads back as itself; a refused one quotes the input; a signal read is
//! also read from its own name, with or without `SIG` and in any case; and a refused number
//! names the signal that number is here. The input's first twelve bytes, as seconds and
//! nanoseconds, also make a `Duration` that must survive format → parse.

use std::time::Duration;

use corral::config::duration::{format_duration, parse_duration};
use corral::config::signal::parse_signal;

pub fn check(data: &[u8]) {
    if let Some((secs, rest)) = data.split_first_chunk::<8>()
        && let Some((nanos, _)) = rest.split_first_chunk::<4>()
    {
        let duration = Duration::new(
            u64::from_le_bytes(*secs),
            u32::from_le_bytes(*nanos) % 1_000_000_000,
        );
        assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_duration(text) {
        Ok(duration) => {
            let written = format_duration(duration);
            assert_eq!(
                parse_duration(&written),
                Ok(duration),
                "{text:?} → {written:?}"
            );
        }
        Err(error) => {
            assert_eq!(error.input, text);
            assert!(!error.reason.is_empty());
            assert!(error.to_string().contains(&format!("{text:?}")));
        }
    }
    match parse_signal(text) {
        Ok(signal) => {
            let name = signal.as_str();
            assert_eq!(parse_signal(name), Ok(signal));
            assert_eq!(parse_signal(&name[3..].to_ascii_lowercase()), Ok(signal));
        }
        Err(error) => {
            assert_eq!(error.input, text);
            if let Some(signal) = error.number_of {
                assert_eq!(text.parse::<i32>(), Ok(signal as i32), "{error}");
            }
            assert!(!error.to_string().is_empty());
        }
    }
}
