//! `corralctl`'s command line. Kept in the library so the packaging can generate shell
//! completions and man pages from the same definition.

use clap::{Parser, Subcommand};

/// Control corral, the D-Bus service supervisor (talks to corrald on the system bus).
#[derive(Parser, Debug)]
#[command(name = "corralctl", version = crate::VERSION, about, propagate_version = true)]
pub struct Cli {
    /// Use the session bus (for a corrald started with --session).
    #[arg(long, global = true, conflicts_with = "bus_address")]
    pub session: bool,
    /// Connect to this bus address instead of the system bus.
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub bus_address: Option<String>,
    /// Machine-readable output (one JSON document, or one JSON object per line for monitor).
    #[arg(long, global = true)]
    pub json: bool,
    /// Never colour the output (also: NO_COLOR in the environment).
    #[arg(long, global = true)]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every service with its state (a table, like `systemctl list-units`).
    List,
    /// Show corrald's state, or the details of the named services. Exits 3 if a named
    /// service is not active (like systemctl).
    Status { names: Vec<String> },
    /// Start services; returns once they run (notify: after READY=1).
    Start {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop services; returns once their processes are gone.
    Stop {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Restart services.
    Restart {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Pause services (freeze their cgroups; SIGSTOP to the process group without cgroups).
    Pause {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Resume paused services (thaw their cgroups; SIGCONT without cgroups).
    Resume {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Forget what `start`/`stop` asked for (kept across restarts of corrald): the
    /// services follow `autostart` again from the next start-up or reload on.
    Revert {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Send a signal to services' process groups.
    Kill {
        /// Signal name or number.
        #[arg(long, short, default_value = "SIGTERM")]
        signal: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Call a service's manager method with arguments; prints its result.
    Call {
        service: String,
        method: String,
        args: Vec<String>,
    },
    /// Queue a job running one of a service's recipes; prints the job id.
    RunRecipe { service: String, recipe: String },
    /// List recipe jobs (of one service, or all), oldest first, with their outcome.
    Jobs { service: Option<String> },
    /// Cancel a queued or running recipe job.
    Cancel { id: u64 },
    /// Re-execute corrald in place (after an upgrade of its binary): same PID, every
    /// service keeps running. Returns once the new corrald serves the bus.
    DaemonReexec,
    /// Re-read the configuration and apply it; prints the transitions applied.
    Reload,
    /// Print every corral signal (transitions, state and property changes) as it happens.
    Monitor,
    /// List the hosts of the fleet: alive or not, version, configuration generation, the
    /// groups each serves, and * for a configuration that differs from most hosts'.
    Hosts,
    /// Place a fleet group on another host: the host serving it stops its services, then
    /// PEER starts them. Returns once the placement is written.
    Move { group: String, peer: String },
    /// Write shell completions or the man page to stdout (for packagers).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        artifact: super::generate::Artifact,
    },
}
