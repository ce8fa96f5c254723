//! Signal names as written in `stop_signal`: `"SIGTERM"`, `"TERM"`, `"sigterm"`.
//!
//! Numbers are refused on purpose: signal numbers differ between architectures (SIGUSR1 is
//! 10 on x86 but 16 on MIPS), so a config that says `"10"` means different things on
//! different machines. The error names the signal the number stands for here, so fixing
//! it is a copy-paste.

use std::fmt;
use std::str::FromStr;

use nix::sys::signal::Signal;

/// Why a signal name was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalError {
    /// The rejected text, quoted back to the user.
    pub input: String,
    /// When the input was a number of a signal on this machine: that signal.
    pub number_of: Option<Signal>,
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number_of {
            Some(signal) => write!(
                f,
                "bad signal {:?}: write the signal's name, not its number (here {} is \"{}\")",
                self.input,
                self.input,
                signal.as_str()
            ),
            None => write!(
                f,
                "bad signal {:?}: expected a signal name such as \"SIGTERM\", \"SIGINT\", \
                 \"SIGQUIT\" or \"SIGKILL\"",
                self.input
            ),
        }
    }
}

impl std::error::Error for SignalError {}

/// Parses a signal name, case-insensitively and with or without the `SIG` prefix.
pub fn parse_signal(input: &str) -> Result<Signal, SignalError> {
    let upper = input.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Ok(signal) = Signal::from_str(&full) {
        return Ok(signal);
    }
    let number_of = input
        .parse::<i32>()
        .ok()
        .and_then(|number| Signal::try_from(number).ok());
    Err(SignalError {
        input: input.to_owned(),
        number_of,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_with_or_without_prefix_in_any_case() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("Int"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("SIGKILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("usr1"), Ok(Signal::SIGUSR1));
    }

    #[test]
    fn every_signal_parses_from_its_own_name() {
        for signal in Signal::iterator() {
            assert_eq!(parse_signal(signal.as_str()), Ok(signal));
        }
    }

    #[test]
    fn rejects_unknown_names() {
        for input in ["", "SIG", "TERMINATE", "SIGFOO", " SIGTERM"] {
            let error = parse_signal(input).unwrap_err();
            assert_eq!(error.number_of, None, "{input:?}");
            assert!(error.to_string().contains("expected a signal name"));
        }
    }

    #[test]
    fn numbers_are_refused_with_the_name_to_use() {
        let error = parse_signal("15").unwrap_err();
        assert_eq!(error.number_of, Some(Signal::SIGTERM));
        assert_eq!(
            error.to_string(),
            "bad signal \"15\": write the signal's name, not its number (here 15 is \"SIGTERM\")"
        );
        // A number that is no signal gets the generic message.
        let error = parse_signal("999").unwrap_err();
        assert_eq!(error.number_of, None);
    }
}
