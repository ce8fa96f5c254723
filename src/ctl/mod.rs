//! `corralctl`: a systemctl-like client of corrald over D-Bus (zbus proxies from
//! [`crate::client`]).
//!
//! Exit codes: 0 success; 1 a request failed; 3 `status` of a service that is not
//! active; 4 no such service; 2 bad usage (from clap).

pub mod cli;
mod commands;
mod fleet;
pub mod generate;
mod jobs;
pub mod monitor;
pub mod output;
mod reexec;
mod status;

use std::process::ExitCode;

use zbus::DBusError;

use crate::client::BusError;
pub use cli::{Cli, Command};

/// Runs one `corralctl` invocation.
pub async fn run(cli: Cli) -> ExitCode {
    // Packaging runs this at build time, where there is no bus to connect to.
    if let Command::Generate { artifact } = cli.command {
        return generate::run(artifact);
    }
    let connection = match connect(&cli).await {
        Ok(connection) => connection,
        Err(err) => {
            eprintln!("corralctl: cannot reach the bus: {err}");
            return ExitCode::FAILURE;
        }
    };
    let context = commands::Context {
        connection,
        json: cli.json,
        color: output::use_color(cli.no_color),
    };
    match commands::run(&context, cli.command).await {
        Ok(code) => code,
        Err(err) => {
            let code = exit_code_for(&err);
            eprintln!("corralctl: {}", describe(&err));
            code
        }
    }
}

async fn connect(cli: &Cli) -> zbus::Result<zbus::Connection> {
    let builder = match (&cli.bus_address, cli.session) {
        (Some(address), _) => zbus::connection::Builder::address(address.as_str()),
        (None, true) => zbus::connection::Builder::session(),
        (None, false) => zbus::connection::Builder::system(),
    };
    builder.build().await
}

/// The part of an error a person needs: corral's own message, or advice when corrald is not
/// there at all.
pub fn describe(err: &BusError) -> String {
    use zbus::fdo::Error as Fdo;
    match err {
        BusError::ZBus(zbus::Error::FDO(fdo))
            if matches!(**fdo, Fdo::ServiceUnknown(_) | Fdo::NameHasNoOwner(_)) =>
        {
            "corrald is not running on this bus (try `systemctl status corral`)".to_owned()
        }
        BusError::ZBus(zbus::Error::MethodError(name, message, _)) => {
            format!("{name}: {}", message.as_deref().unwrap_or(""))
        }
        BusError::ZBus(other) => other.to_string(),
        corral => {
            let name = corral.name();
            let short = name
                .as_str()
                .strip_prefix("org.corral.Corral1.Error.")
                .unwrap_or(name.as_str());
            format!("{short}: {}", corral.description().unwrap_or(""))
        }
    }
}

/// `corralctl`'s exit status for a request that failed with `err`.
pub fn exit_code_for(err: &BusError) -> ExitCode {
    match err {
        BusError::NoSuchService(_) => ExitCode::from(4),
        _ => ExitCode::FAILURE,
    }
}
