//! corrald's own logs: to the journal with structured fields (`SERVICE`, `PID`, …) when
//! journald is there, else to stderr. The level comes from `--log-level`, else `RUST_LOG`,
//! else `info`.

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// journald's native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// The journal if its socket exists, else stderr.
    Auto,
    Journal,
    Stderr,
}

/// Installs the global subscriber. `identifier` becomes `SYSLOG_IDENTIFIER`.
pub fn init(target: LogTarget, level: Option<&str>, identifier: &str) {
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let use_journal = match target {
        LogTarget::Auto => Path::new(JOURNAL_SOCKET).exists(),
        LogTarget::Journal => true,
        LogTarget::Stderr => false,
    };
    if use_journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier(identifier.to_owned());
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .init();
                return;
            }
            Err(err) => {
                eprintln!("{identifier}: journald is not reachable ({err}); logging to stderr")
            }
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                // Colours only on a terminal: escape codes in a log file help nobody.
                .with_ansi(
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                ),
        )
        .init();
}
