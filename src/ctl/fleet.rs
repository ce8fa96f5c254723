//! `corralctl hosts` and `corralctl move`: the fleet as the connected corrald sees it.

use std::process::ExitCode;

use serde_json::json;

use super::commands::{Context, manager};
use super::output::{paint_state, table};
use crate::client::{BusResult, HostRow};

/// `corralctl hosts`: one line per host, `*` marking a configuration that differs from
/// the one most hosts run.
pub async fn hosts(cx: &Context) -> BusResult<ExitCode> {
    let rows = manager(cx).await?.list_host_details().await?;
    if cx.json {
        let items: Vec<_> = rows
            .iter()
            .map(|h| {
                json!({"host": h.host, "alive": h.alive, "version": h.version,
                       "config_generation": h.config_generation, "serving": h.serving,
                       "drift": h.drift, "problem": h.problem})
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&rows, cx.color));
    Ok(ExitCode::SUCCESS)
}

/// The table, then a line for each host whose report could not be read, then what `*`
/// means if any host has it.
pub fn render(rows: &[HostRow], color: bool) -> String {
    let dash = |text: &str| {
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.to_owned()
        }
    };
    let cells: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|h| {
            let (alive, state) = if h.alive {
                ("yes", "active")
            } else {
                ("no", "failed")
            };
            let version = if h.problem.is_empty() {
                dash(&h.version)
            } else {
                "unreadable".to_owned()
            };
            let generation = if h.alive && h.problem.is_empty() {
                h.config_generation.to_string()
            } else {
                "-".to_owned()
            };
            let drift = if h.drift { "*" } else { "" }.to_owned();
            let serving = dash(&h.serving.join(","));
            vec![
                (h.host.clone(), h.host.clone()),
                (
                    alive.to_owned(),
                    super::output::paint_as(alive, state, color),
                ),
                (version.clone(), version),
                (generation.clone(), generation),
                (drift.clone(), paint_state(&drift, color)),
                (serving.clone(), serving),
            ]
        })
        .collect();
    let mut out = table(
        &["HOST", "ALIVE", "VERSION", "GENERATION", "DRIFT", "SERVING"],
        &cells,
    );
    for h in rows.iter().filter(|h| !h.problem.is_empty()) {
        out.push_str(&format!("\n{}: {}", h.host, h.problem));
    }
    if rows.iter().any(|h| !h.problem.is_empty()) {
        out.push('\n');
    }
    if rows.iter().any(|h| h.drift) {
        out.push_str("\n* its configuration (groups and services) differs from most hosts'\n");
    }
    out
}

/// `corralctl move GROUP PEER`: returns once the placement is written; every host applies
/// it (the old one stops the group's services, then the new one starts them).
pub async fn move_group(cx: &Context, group: &str, peer: &str) -> BusResult<ExitCode> {
    manager(cx).await?.move_group(group, peer).await?;
    if cx.json {
        println!("{}", json!({"group": group, "peer": peer}));
    } else {
        println!("{group} placed on {peer}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, alive: bool, serving: &[&str], drift: bool, problem: &str) -> HostRow {
        HostRow {
            host: host.into(),
            version: if alive && problem.is_empty() {
                "0.1.0".into()
            } else {
                String::new()
            },
            config_generation: 3,
            alive,
            serving: serving.iter().map(|s| s.to_string()).collect(),
            drift,
            problem: problem.into(),
        }
    }

    #[test]
    fn the_table_marks_drift_dead_hosts_and_unreadable_reports() {
        let rows = [
            row("a", true, &["g", "h"], false, ""),
            row("b", true, &[], true, ""),
            row("c", false, &[], false, ""),
            row("d", true, &[], false, "unreadable report: eof"),
        ];
        let text = render(&rows, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "HOST  ALIVE  VERSION     GENERATION  DRIFT  SERVING"
        );
        assert_eq!(lines[1], "a     yes    0.1.0       3                  g,h");
        assert_eq!(lines[2], "b     yes    0.1.0       3           *      -");
        assert_eq!(lines[3], "c     no     -           -                  -");
        assert_eq!(lines[4], "d     yes    unreadable  -                  -");
        assert!(text.contains("\nd: unreadable report: eof\n"), "{text}");
        assert!(
            text.ends_with("* its configuration (groups and services) differs from most hosts'\n")
        );
    }
}
