//! `corralctl`: a systemctl-like client of corrald over D-Bus (zbus proxies from
//! [`crate::client`]).
//!
//! Exit codes: 0 success; 1 a request failed; 3 `status` of a service that is not
//! active; 4 no such service; 2 bad usage (from clap).

pub mod cli;
mod commands;
pub mod generate;
pub mod monitor;
pub mod output;

use std::process::ExitCode;

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

/// The part of a D-Bus error a person needs: corral's own message, or advice when corrald
/// is not there at all.
pub fn describe(err: &zbus::Error) -> String {
    use zbus::fdo::Error as Fdo;
    match err {
        zbus::Error::FDO(fdo)
            if matches!(**fdo, Fdo::ServiceUnknown(_) | Fdo::NameHasNoOwner(_)) =>
        {
            "corrald is not running on this bus (try `systemctl status corral`)".to_owned()
        }
        zbus::Error::MethodError(name, message, _) => {
            let name = name.as_str();
            let short = name
                .strip_prefix("org.corral.Corral1.Error.")
                .unwrap_or(name);
            format!("{short}: {}", message.as_deref().unwrap_or(""))
        }
        other => other.to_string(),
    }
}

fn exit_code_for(err: &zbus::Error) -> ExitCode {
    match err {
        zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.corral.Corral1.Error.NoSuchService" =>
        {
            ExitCode::from(4)
        }
        _ => ExitCode::FAILURE,
    }
}
