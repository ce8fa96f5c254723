//! `corralctl jobs [SERVICE]` and `corralctl cancel ID`: the recipe-job history corrald
//! keeps in its state store, and cancelling a queued or running job.

use std::process::ExitCode;

use serde_json::json;

use super::commands::{Context, manager};
use super::output::{paint_as, table};
use super::status::format_timestamp;
use crate::client::{BusResult, JobRow};

/// Lists the jobs of `service` (all with `None`), oldest first.
pub(super) async fn list(cx: &Context, service: Option<&str>) -> BusResult<ExitCode> {
    let rows = manager(cx).await?.list_jobs(service.unwrap_or("")).await?;
    if cx.json {
        let jobs: Vec<_> = rows
            .iter()
            .map(|j| {
                json!({
                    "id": j.id, "service": j.service, "recipe": j.recipe, "state": j.state,
                    "queued": j.queued, "finished": j.finished, "exit_status": j.exit_status,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(jobs));
    } else {
        print!("{}", render(&rows, cx.color));
    }
    Ok(ExitCode::SUCCESS)
}

/// Cancels job `id`.
pub(super) async fn cancel(cx: &Context, id: u64) -> BusResult<ExitCode> {
    manager(cx).await?.cancel_job(id).await?;
    Ok(ExitCode::SUCCESS)
}

fn render(rows: &[JobRow], color: bool) -> String {
    let cells: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|j| {
            // Colour like unit states: finished ok green, failed red, the rest as they are.
            let tone = match (j.state.as_str(), j.exit_status) {
                ("finished", 0) => "active",
                ("finished", _) | ("failed", _) => "failed",
                ("running", _) => "activating",
                _ => "",
            };
            let status = if j.exit_status < 0 {
                "-".to_owned()
            } else {
                j.exit_status.to_string()
            };
            let cell = |text: String| (text.clone(), text);
            vec![
                cell(j.id.to_string()),
                cell(j.service.clone()),
                cell(j.recipe.clone()),
                (j.state.clone(), paint_as(&j.state, tone, color)),
                cell(format_timestamp(j.queued)),
                cell(format_timestamp(j.finished)),
                cell(status),
            ]
        })
        .collect();
    table(
        &[
            "ID", "SERVICE", "RECIPE", "STATE", "QUEUED", "FINISHED", "STATUS",
        ],
        &cells,
    )
}
