//! Running one job: the steps of its recipe, one after the other, each started like the
//! service itself (its environment, user, working directory, limits; its output to the
//! journal under the service's name) in a process group of its own, until one fails or the
//! job is cancelled.
//!
//! A step is reaped only after it exited *and* the jobs actor is not frozen for a live
//! re-exec: a step that ends during a re-exec stays a zombie for the next corrald, which
//! collects its exit status and goes on with the next step ([`Resume`]).

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Service;
use crate::events::JobOutcome;
use crate::process::child::Child;
use crate::process::signal::signal_group;
use crate::process::{OutputMode, SpawnRequest};

/// Where a job's steps begin.
#[derive(Debug, Clone, Copy)]
pub(super) enum Resume {
    /// At the first step.
    Start,
    /// Step `index` already runs as `pid` (a child of this process from before a re-exec).
    Running { index: usize, pid: u32 },
}

/// What a job task needs besides its recipe.
pub(super) struct StepEnv<'a> {
    pub service: &'a str,
    pub output: &'a OutputMode,
    pub cancel: &'a CancellationToken,
    /// True while the jobs actor is frozen for a live re-exec.
    pub frozen: watch::Receiver<bool>,
    /// Told of each step as it starts: (index, pid).
    pub started: &'a (dyn Fn(usize, u32) + Send + Sync),
}

/// Runs the steps of `recipe` in order from `resume`; stops at the first that fails. When
/// `cancel` fires, the running step's process group gets SIGTERM, then SIGKILL after the
/// service's `stop_timeout`, and the job ends as cancelled.
pub(super) async fn run_steps(
    spec: &Service,
    recipe: &str,
    resume: Resume,
    mut env: StepEnv<'_>,
) -> JobOutcome {
    let Some(recipe_spec) = spec.recipes.get(recipe) else {
        return JobOutcome::Failed {
            error: format!("recipe {recipe:?} was removed before it ran"),
        };
    };
    let first = match resume {
        Resume::Start => 0,
        Resume::Running { index, .. } => index,
    };
    for (i, step) in recipe_spec.steps.iter().enumerate().skip(first) {
        if env.cancel.is_cancelled() {
            return JobOutcome::Cancelled;
        }
        let what = || format!("step {} ({})", i + 1, step.join(" "));
        let child = match resume {
            Resume::Running { index, pid } if index == i => Child::inherit(pid),
            _ => spawn_unfrozen(spec, step, i, &mut env).await,
        };
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                return JobOutcome::Failed {
                    error: format!("{} could not run: {error}", what()),
                };
            }
        };
        let status = match wait_step(spec, &mut child, &mut env).await {
            Some(Ok(status)) => status,
            Some(Err(error)) => {
                return JobOutcome::Failed {
                    error: format!("{} was lost: {error}", what()),
                };
            }
            None => return JobOutcome::Cancelled,
        };
        if !status.success() {
            let code = crate::process::exit_code(status);
            tracing::warn!(
                service = env.service,
                "recipe {recipe:?} {} exited with {code} (its output is in the service's log)",
                what()
            );
            return JobOutcome::Finished { status: code };
        }
    }
    JobOutcome::Finished { status: 0 }
}

/// Starts step `index` once the actor is not frozen, and records it as started — while
/// holding the flag, so a re-exec that freezes meanwhile waits and then sees this step.
async fn spawn_unfrozen(
    spec: &Service,
    argv: &[String],
    index: usize,
    env: &mut StepEnv<'_>,
) -> std::io::Result<Child> {
    loop {
        {
            let frozen = env.frozen.borrow_and_update();
            if !*frozen {
                let child = spawn_step(spec, argv, env.service, env.output)?;
                (env.started)(index, child.id().unwrap_or(0));
                return Ok(child);
            }
        }
        if env.frozen.changed().await.is_err() {
            return Err(std::io::Error::other("corrald is stopping"));
        }
    }
}

fn spawn_step(
    spec: &Service,
    argv: &[String],
    service: &str,
    output: &OutputMode,
) -> std::io::Result<Child> {
    let step = Service {
        exec: argv.to_vec(),
        ..spec.clone()
    };
    let request = SpawnRequest {
        name: service,
        service: &step,
        notify_socket: None,
        output,
        cgroup: None,
    };
    crate::process::spawn(&request).map_err(std::io::Error::other)
}

/// Awaits the step's end: its exit status, or `None` when the job was cancelled.
async fn wait_step(
    spec: &Service,
    child: &mut Child,
    env: &mut StepEnv<'_>,
) -> Option<std::io::Result<ExitStatus>> {
    let pgid = child.id().unwrap_or(0);
    tokio::select! {
        exited = child.exited() => {
            if let Err(err) = exited {
                return Some(Err(err));
            }
        }
        _ = env.cancel.cancelled() => {
            let _ = signal_group(pgid, Signal::SIGTERM);
            let grace = spec.stop_timeout.max(Duration::from_millis(1));
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = signal_group(pgid, Signal::SIGKILL);
                let _ = child.wait().await;
            }
            // Whatever else of the group is left goes too.
            let _ = signal_group(pgid, Signal::SIGKILL);
            return None;
        }
    }
    // Not reaped while frozen: a re-exec hands the zombie, and its status, over.
    let _ = env.frozen.wait_for(|frozen| !*frozen).await;
    Some(child.wait().await)
}
