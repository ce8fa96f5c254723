//! `corralctl`: control corral from the shell (see `corral::ctl`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = corral::ctl::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    runtime.block_on(corral::ctl::run(cli))
}
