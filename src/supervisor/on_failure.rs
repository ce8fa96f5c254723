//! `on_failure`: a program run each time a service becomes `failed` (its start limit hit,
//! a failed run the restart policy does not restart — a crash, a watchdog miss, a failed
//! health check), like systemd's `OnFailure=`. leprechaun mailed the admin; a mail
//! command is one use.
//!
//! The program runs detached from supervision: a task of its own spawns it, owns the child
//! and awaits it, so however slow it is, nothing waits for it. It runs as root in `/`, with
//! an environment of its own — `PATH` (the default), `CORRAL_SERVICE`, `CORRAL_RESULT`
//! (`exit-code|signal|timeout|watchdog|unhealthy|start-limit`) and `CORRAL_LAST_ERROR` —
//! and its output goes where the service's goes (the journal under the service's name).
//! A program that cannot be run is logged.

use std::process::Stdio;

use super::actor::Supervisor;
use crate::config::DEFAULT_PATH;
use crate::process::output;
use crate::process::spawn::resolve_program;

impl Supervisor {
    /// `name` just became failed: run its `on_failure` program, if it has one.
    pub(super) fn run_on_failure(&self, name: &str) {
        let Some(unit) = self.units.get(name) else {
            return;
        };
        let Some(argv) = unit.spec.on_failure.clone() else {
            return;
        };
        let environment = [
            ("PATH", DEFAULT_PATH.to_owned()),
            ("CORRAL_SERVICE", name.to_owned()),
            ("CORRAL_RESULT", unit.result.as_str().to_owned()),
            ("CORRAL_LAST_ERROR", unit.last_error.clone()),
        ];
        let (name, mode) = (name.to_owned(), self.settings.output.clone());
        tokio::spawn(async move {
            let program = match resolve_program(&argv[0], DEFAULT_PATH) {
                Ok(program) => program,
                Err(err) => return tracing::warn!(service = name, "on_failure: {err}"),
            };
            let out = match output::prepare(&mode, &name) {
                Ok(out) => out,
                Err(err) => {
                    return tracing::warn!(service = name, "on_failure: no output for it: {err}");
                }
            };
            let mut command = tokio::process::Command::new(&program);
            command
                .arg0(&argv[0])
                .args(&argv[1..])
                .env_clear()
                .envs(environment)
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.stdout))
                .stderr(Stdio::from(out.stderr));
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(err) => {
                    return tracing::warn!(
                        service = name,
                        "on_failure: cannot run {}: {err}",
                        program.display()
                    );
                }
            };
            drop(command);
            let pid = child.id().unwrap_or(0);
            if let Some(pipes) = out.piped {
                output::forward(&name, pid, pipes);
            }
            tracing::info!(
                service = name,
                pid,
                "on_failure: started {}",
                argv.join(" ")
            );
            match child.wait().await {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::warn!(service = name, "on_failure: {argv:?} {status}"),
                Err(err) => tracing::warn!(service = name, "on_failure: {err}"),
            }
        });
    }
}
