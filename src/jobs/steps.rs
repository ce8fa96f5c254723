//! Running one job: the steps of its recipe, one after the other, each in a process group
//! of its own, until one fails or the job is cancelled.

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::config::Service;
use crate::events::JobOutcome;
use crate::process::signal::signal_group;

/// How much of a failed step's stderr is kept for the log.
const STDERR_KEPT: u64 = 64 * 1024;

/// Runs the steps of `recipe` in order; stops at the first that fails. When `cancel`
/// fires, the running step's process group gets SIGTERM, then SIGKILL after the service's
/// `stop_timeout`, and the job ends as cancelled.
pub(super) async fn run_steps(
    spec: &Service,
    recipe: &str,
    cancel: &CancellationToken,
) -> JobOutcome {
    let Some(recipe_spec) = spec.recipes.get(recipe) else {
        return JobOutcome::Failed {
            error: format!("recipe {recipe:?} was removed before it ran"),
        };
    };
    for (i, step) in recipe_spec.steps.iter().enumerate() {
        if cancel.is_cancelled() {
            return JobOutcome::Cancelled;
        }
        let what = || format!("step {} ({})", i + 1, step.join(" "));
        let status = match run_step(spec, step, cancel).await {
            Ok(Step::Exited(status, stderr)) => (status, stderr),
            Ok(Step::Cancelled) => return JobOutcome::Cancelled,
            Err(error) => {
                return JobOutcome::Failed {
                    error: format!("{} could not run: {error}", what()),
                };
            }
        };
        let (status, stderr) = status;
        if !status.success() {
            let code = crate::process::exit_code(status);
            tracing::warn!(
                "recipe {recipe:?} {} exited with {code}: {}",
                what(),
                String::from_utf8_lossy(&stderr).trim()
            );
            return JobOutcome::Finished { status: code };
        }
    }
    JobOutcome::Finished { status: 0 }
}

enum Step {
    Exited(ExitStatus, Vec<u8>),
    Cancelled,
}

async fn run_step(
    spec: &Service,
    argv: &[String],
    cancel: &CancellationToken,
) -> Result<Step, String> {
    let mut command = crate::process::command::command(spec, argv, &[])?;
    // Its own group, so a cancel reaches whatever the step forked; corrald stops it itself.
    command.process_group(0).kill_on_drop(false);
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let pgid = child.id().unwrap_or(0);
    // Read both pipes to the end, so a chatty step never blocks on a full pipe.
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let drain = tokio::spawn(async move {
        if let Some(mut out) = stdout {
            let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
        }
    });
    let collect = tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(err) = stderr {
            let mut err = err.take(STDERR_KEPT);
            let _ = err.read_to_end(&mut kept).await;
            let _ = tokio::io::copy(&mut err.into_inner(), &mut tokio::io::sink()).await;
        }
        kept
    });
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| e.to_string())?,
        _ = cancel.cancelled() => {
            let _ = signal_group(pgid, Signal::SIGTERM);
            let grace = spec.stop_timeout.max(Duration::from_millis(1));
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = signal_group(pgid, Signal::SIGKILL);
                let _ = child.wait().await;
            }
            // Whatever else of the group is left goes too.
            let _ = signal_group(pgid, Signal::SIGKILL);
            drain.abort();
            collect.abort();
            return Ok(Step::Cancelled);
        }
    };
    let _ = drain.await;
    let stderr = collect.await.unwrap_or_default();
    Ok(Step::Exited(status, stderr))
}
