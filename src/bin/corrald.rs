//! `corrald`: the corral daemon. Parses the command line, sets up logging, becomes a child
//! subreaper, and runs [`corral::daemon::run`] until SIGTERM or SIGINT.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use corral::bus::BusAddress;
use corral::config::ConfigSource;
use corral::daemon::systemd::{Notifier, watchdog_from_env};
use corral::daemon::{self, DaemonError, Options};
use corral::logging::{self, LogTarget};
use corral::process::OutputMode;
use corral::process::output::JOURNAL_STDOUT;
use corral::process::reaper;
use corral::reexec::Handover;

/// Supervise daemons and publish them on the D-Bus system bus
///
/// corrald starts the services of its configuration in dependency order, restarts them
/// with back-off, applies configuration changes without disturbing what did not change,
/// and publishes each service on the D-Bus system bus as org.corral.Corral1. See corrald(8).
#[derive(Parser, Debug)]
#[command(
    name = "corrald",
    version = corral::VERSION,
    // A later option overrides an earlier one, as in most daemons' command lines.
    args_override_self = true,
    override_usage = "corrald [OPTIONS]\n       corrald --check [--config PATH]"
)]
struct Args {
    /// Configuration file or directory [default: /etc/corral/corral.toml plus
    /// /etc/corral/corral.d/*.toml].
    ///
    /// A file is read together with the corral.d/ directory beside it; a directory, as
    /// all the *.toml files in it.
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Use the session bus instead of the system bus (for development).
    #[arg(long, conflicts_with = "bus_address")]
    session: bool,
    /// Connect to this bus address (default: the system bus, or DBUS_SYSTEM_BUS_ADDRESS).
    #[arg(long, value_name = "ADDRESS")]
    bus_address: Option<String>,
    /// Directory for corrald's sockets (the notify socket of `type = "notify"` services).
    /// Created with mode 0755 when missing; corrald refuses to start (exit status 1) when
    /// it exists and is owned by another user or writable by group or others.
    #[arg(long, value_name = "DIR", default_value = "/run/corral")]
    runtime_dir: PathBuf,
    /// Directory for corrald's state database state.db (desired states, job history, run
    /// records). Only one corrald may use a state directory: a second one exits with
    /// status 1.
    #[arg(long, value_name = "DIR", default_value = corral::store::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Log level or filter, e.g. "debug" or "corral=trace" [default: RUST_LOG, else info].
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Where corrald's own logs go.
    ///
    /// In the journal they carry SYSLOG_IDENTIFIER=corrald; "auto" means the journal when
    /// /run/systemd/journal/socket exists.
    #[arg(long, value_enum, default_value = "auto")]
    log_target: LogTarget,
    /// Where services' stdout/stderr go: the journal (as SYSLOG_IDENTIFIER=name) if
    /// journald runs, else corrald's stderr prefixed by the service name.
    #[arg(long, value_enum, default_value = "auto")]
    child_output: ChildOutput,
    /// Track services with process groups only, even where corrald could give each a
    /// cgroup.
    ///
    /// By default each service runs in a cgroup v2 of its own below corrald's (see
    /// "Resources and cgroups" in the README): memory_max, tasks_max and cpu_weight are
    /// enforced, a stop kills every process however it forked, and Pause freezes the
    /// cgroup. With this option every service runs in its own process group only, as on a
    /// host without a writable cgroup v2, and its cgroup limits are reported unenforced.
    #[arg(long)]
    no_cgroups: bool,
    /// journald's stream socket, where services' output goes with --child-output journal
    /// (and where "auto" looks for journald).
    #[arg(long, value_name = "PATH", default_value = JOURNAL_STDOUT)]
    journal_stdout: PathBuf,
    /// Check the configuration, print what would run, and exit.
    ///
    /// Exits 0 when the configuration is valid, else 2 after printing every error with
    /// its file, line and column.
    #[arg(long)]
    check: bool,
    /// Write the corrald(8) man page to stdout (for packagers).
    #[arg(long, hide = true, exclusive = true)]
    generate_man: bool,
    /// Print the live re-exec handover format this binary reads, and exit (asked by a
    /// running corrald before it re-executes into this binary).
    #[arg(long, hide = true, exclusive = true)]
    reexec_format: bool,
    /// Take over from the corrald that re-executed into this one: its state is in this
    /// descriptor.
    #[arg(long, hide = true, value_name = "FD")]
    deserialize: Option<i32>,
    /// Run as the fence of a corrald with a fleet table (started by corrald itself; see
    /// corral::fence): kill what stdin names once stdin ends.
    #[arg(long, hide = true, exclusive = true)]
    fence: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ChildOutput {
    /// The journal if journald runs, else stderr.
    Auto,
    /// One journal stream per service, as SYSLOG_IDENTIFIER=name.
    Journal,
    /// corrald's stderr, each line prefixed with the service's name and PID.
    Stderr,
}

fn main() -> ExitCode {
    // What a live re-exec runs again: this binary, as it was found at start-up (a package
    // upgrade replaces the file; the path stays), with these arguments.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/sbin/corrald"));
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let args = Args::parse();
    if args.generate_man {
        return generate_man();
    }
    if args.reexec_format {
        println!("{}", corral::reexec::FORMAT);
        return ExitCode::SUCCESS;
    }
    if args.fence {
        return corral::fence::serve::run();
    }
    let config = match &args.config {
        Some(path) => ConfigSource::Path(path.clone()),
        None => ConfigSource::Default,
    };
    if args.check {
        return check(&config);
    }
    corral::memory::tune_allocator();
    logging::init(args.log_target, args.log_level.as_deref(), "corrald");
    raise_descriptor_limit();
    // Before any other thread: slots that make a spawn cost O(1) in corrald's descriptors.
    match corral::process::stdio_slots::reserve(8) {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            "spawning without staged descriptors (close_range unsharing unavailable)"
        ),
        Err(err) => tracing::warn!("cannot reserve descriptor slots for spawning: {err}"),
    }
    let bus = match (&args.bus_address, args.session) {
        (Some(address), _) => BusAddress::Address(address.clone()),
        (None, true) => BusAddress::Session,
        (None, false) => BusAddress::System,
    };
    let options = Options {
        config,
        bus,
        runtime_dir: args.runtime_dir,
        state_dir: args.state_dir,
        output: match args.child_output {
            ChildOutput::Auto => OutputMode::detect(&args.journal_stdout),
            ChildOutput::Journal => OutputMode::Journal(args.journal_stdout),
            ChildOutput::Stderr => OutputMode::Stderr,
        },
        notifier: Notifier::from_env(),
        watchdog: watchdog_from_env(),
        exe,
        args: argv,
        // The running executable even if the file was replaced or deleted since (an
        // upgrade): the fence must be the same corrald.
        fence_program: PathBuf::from("/proc/self/exe"),
        cgroups: !args.no_cgroups,
    };
    become_subreaper();
    // A handover that cannot be read is not fatal: corrald then starts as after a crash,
    // re-adopting every service from the state store's run records.
    let handover = args.deserialize.and_then(|fd| match Handover::read(fd) {
        Ok(handover) => Some(handover),
        Err(err) => {
            tracing::error!("{err}; re-adopting the services from the state store instead");
            None
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    match runtime.block_on(serve(options, handover)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("corrald: {err}");
            if matches!(err, DaemonError::BusLost) {
                // Now, with the runtime alive: dropping it would drop the children's
                // handles, and those kill their processes.
                std::process::exit(1);
            }
            match err {
                DaemonError::Config(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

async fn serve(options: Options, handover: Option<Handover>) -> Result<(), DaemonError> {
    tokio::spawn(reaper::run());
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
        token.cancel();
    });
    daemon::run(options, handover, shutdown).await
}

/// `--check`: validate and summarise, like `nginx -t`.
fn check(source: &ConfigSource) -> ExitCode {
    match corral::config::load(source) {
        Ok(config) => {
            let served = config
                .services
                .values()
                .filter(|s| config.is_served_here(s))
                .count();
            println!(
                "configuration ok: {} services ({} served on {}), {} groups",
                config.services.len(),
                served,
                config.daemon.host,
                config.groups.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(2)
        }
    }
}

/// `--generate-man`: corrald(8) from this command line plus the prose of [`corral::man`].
fn generate_man() -> ExitCode {
    let page = corral::man::corrald(Args::command());
    match std::io::stdout().lock().write_all(&page) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("corrald: cannot write: {err}");
            ExitCode::FAILURE
        }
    }
}

/// corrald holds several descriptors per service, so it raises its soft `RLIMIT_NOFILE` to
/// the hard limit, as systemd does for itself; its children get 1024 back at spawn
/// (`corral::process::limits`).
fn raise_descriptor_limit() {
    match corral::process::limits::raise_nofile() {
        Ok((before, after)) => tracing::info!(
            "descriptor limit (RLIMIT_NOFILE): soft {} -> {}, hard {}; services get soft {} \
             unless they set limit_nofile",
            before.soft,
            after.soft,
            after.hard,
            corral::process::limits::CHILD_NOFILE_SOFT.min(after.hard)
        ),
        Err(err) => tracing::warn!("cannot raise the descriptor limit (RLIMIT_NOFILE): {err}"),
    }
}

/// corrald is a child subreaper, as systemd is for its services: what a service's process
/// leaves behind when it exits (a forking daemon, a double-forked grandchild) is
/// reparented to corrald, not to init, so a forking daemon's exit status is known and no
/// process of a service leaves corral's reach. The reaper task (`serve`) reaps the orphans
/// that exit.
fn become_subreaper() {
    if let Err(err) = reaper::become_subreaper() {
        tracing::warn!(
            "cannot become a child subreaper (PR_SET_CHILD_SUBREAPER): {err}; a forking \
             daemon's exit status will be unknown"
        );
    }
}
