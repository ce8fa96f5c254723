//! One-off commands of a service — an `exec` manager method, a recipe step — run the way
//! the service itself would run: its `PATH` and environment (nothing of corrald's), its
//! user, working directory, rlimits, umask and no_new_privileges (not its cgroup: the
//! command is corrald's, bounded by `frame_timeout`).

use std::os::unix::process::CommandExt;
use std::process::Stdio;

use super::spawn::{prepare_child, resolve_program};
use crate::config::Service;

/// A command for `argv` + `args` as the service would run it: its `PATH` and environment
/// (nothing of corrald's), its user and working directory; output piped, killed if dropped.
pub(crate) fn command(
    spec: &Service,
    argv: &[String],
    args: &[String],
) -> Result<tokio::process::Command, String> {
    let program = resolve_program(&argv[0], spec.path_env()).map_err(|e| e.to_string())?;
    let mut command = std::process::Command::new(program);
    command
        .args(&argv[1..])
        .args(args)
        .env_clear()
        .env("PATH", spec.path_env())
        .envs(&spec.environment)
        .current_dir(&spec.working_directory)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: what it leaves behind is then recognisably an orphan, which
        // corrald, a child subreaper, reaps (`process::reaper`).
        .process_group(0);
    prepare_child(&mut command, spec).map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    Ok(command)
}
