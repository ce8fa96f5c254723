//! The subcommands of `corralctl`.

use std::process::ExitCode;

use futures_util::future::join_all;
use serde_json::json;
use zbus::Connection;

use super::cli::Command;
use super::output::{paint_as, paint_state, table};
use crate::client::{self, ManagerProxy, ServiceProxy};

pub struct Context {
    pub connection: Connection,
    pub json: bool,
    pub color: bool,
}

pub async fn run(cx: &Context, command: Command) -> zbus::Result<ExitCode> {
    match command {
        Command::List => list(cx).await,
        Command::Status { names } if names.is_empty() => overview(cx).await,
        Command::Status { names } => status(cx, &names).await,
        Command::Start { names } => each(cx, &names, Verb::Start).await,
        Command::Stop { names } => each(cx, &names, Verb::Stop).await,
        Command::Restart { names } => each(cx, &names, Verb::Restart).await,
        Command::Pause { names } => each(cx, &names, Verb::Pause).await,
        Command::Resume { names } => each(cx, &names, Verb::Resume).await,
        Command::Kill { signal, names } => {
            let number = parse_signal(&signal).map_err(zbus::Error::Failure)?;
            each(cx, &names, Verb::Kill(number)).await
        }
        Command::Call {
            service,
            method,
            args,
        } => {
            let result = manager(cx).await?.call(&service, &method, &args).await?;
            if cx.json {
                println!("{}", json!({ "result": result }));
            } else if result.ends_with('\n') || result.is_empty() {
                print!("{result}");
            } else {
                println!("{result}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::RunRecipe { service, recipe } => {
            manager(cx).await?.get_service(&service).await?;
            let id = client::service(&cx.connection, &service)
                .await?
                .run_recipe(&recipe)
                .await?;
            if cx.json {
                println!("{}", json!({ "job": id }));
            } else {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload => reload(cx).await,
        Command::Monitor => {
            super::monitor::run(&cx.connection, cx.json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { artifact } => Ok(super::generate::run(artifact)),
    }
}

async fn manager(cx: &Context) -> zbus::Result<ManagerProxy<'static>> {
    ManagerProxy::builder(&cx.connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

async fn list(cx: &Context) -> zbus::Result<ExitCode> {
    let rows = manager(cx).await?.list_services().await?;
    if cx.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(name, group, active, sub, pid, path)| {
                json!({"name": name, "group": group, "active_state": active, "sub_state": sub, "main_pid": pid, "path": path.as_str()})
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", service_table(cx, &rows));
    Ok(ExitCode::SUCCESS)
}

type Row = (String, String, String, String, u32, zbus::OwnedObjectPath);

fn service_table(cx: &Context, rows: &[Row]) -> String {
    let cells: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|(name, group, active, sub, pid, _)| {
            let pid = if *pid == 0 {
                "-".to_owned()
            } else {
                pid.to_string()
            };
            let group = if group.is_empty() {
                "-".to_owned()
            } else {
                group.clone()
            };
            vec![
                (name.clone(), name.clone()),
                (group.clone(), group),
                (active.clone(), paint_state(active, cx.color)),
                (sub.clone(), sub.clone()),
                (pid.clone(), pid),
            ]
        })
        .collect();
    table(&["NAME", "GROUP", "ACTIVE", "SUB", "PID"], &cells)
}

async fn overview(cx: &Context) -> zbus::Result<ExitCode> {
    let m = manager(cx).await?;
    let (version, host, state, generation, rows) = (
        m.version().await?,
        m.host().await?,
        m.state().await?,
        m.config_generation().await?,
        m.list_services().await?,
    );
    if cx.json {
        println!(
            "{}",
            json!({"version": version, "host": host, "state": state, "config_generation": generation, "services": rows.len()})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for row in &rows {
        match counts.iter_mut().find(|(s, _)| *s == row.2) {
            Some((_, n)) => *n += 1,
            None => counts.push((row.2.clone(), 1)),
        }
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "corrald {version} on {host}: {}, configuration generation {generation}",
        paint_state(&state, cx.color)
    );
    println!("{} services: {}\n", rows.len(), summary.join(", "));
    print!("{}", service_table(cx, &rows));
    Ok(ExitCode::SUCCESS)
}

async fn status(cx: &Context, names: &[String]) -> zbus::Result<ExitCode> {
    let m = manager(cx).await?;
    let mut all_active = true;
    let mut documents = Vec::new();
    for (i, name) in names.iter().enumerate() {
        m.get_service(name).await?;
        let s = client::service(&cx.connection, name).await?;
        let details = Details::read(&s).await?;
        all_active &= details.active == "active";
        if cx.json {
            documents.push(details.to_json(name));
        } else {
            if i > 0 {
                println!();
            }
            print!("{}", details.render(name, cx.color));
        }
    }
    if cx.json {
        println!("{}", serde_json::Value::Array(documents));
    }
    Ok(if all_active {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Every property of one service.
struct Details {
    description: String,
    group: String,
    served: bool,
    active: String,
    sub: String,
    pid: u32,
    since: u64,
    restarts: u32,
    exit_status: i32,
    status_text: String,
    last_error: String,
    online: bool,
    methods: Vec<String>,
    recipes: Vec<String>,
    health: String,
    last_health_check: u64,
    result: String,
}

impl Details {
    async fn read(s: &ServiceProxy<'_>) -> zbus::Result<Details> {
        Ok(Details {
            description: s.description().await?,
            group: s.group().await?,
            served: s.served().await?,
            active: s.active_state().await?,
            sub: s.sub_state().await?,
            pid: s.main_pid().await?,
            since: s.state_change_timestamp().await?,
            restarts: s.n_restarts().await?,
            exit_status: s.exec_main_status().await?,
            status_text: s.status_text().await?,
            last_error: s.last_error().await?,
            online: s.online().await?,
            methods: s.methods().await?,
            recipes: s.recipes().await?,
            health: s.health().await?,
            last_health_check: s.last_health_check().await?,
            result: s.result().await?,
        })
    }

    fn to_json(&self, name: &str) -> serde_json::Value {
        json!({
            "name": name, "description": self.description, "group": self.group, "served": self.served,
            "active_state": self.active, "sub_state": self.sub, "main_pid": self.pid,
            "state_change_timestamp": self.since, "n_restarts": self.restarts,
            "exec_main_status": self.exit_status, "status_text": self.status_text,
            "last_error": self.last_error, "online": self.online,
            "methods": self.methods, "recipes": self.recipes, "health": self.health,
            "last_health_check": self.last_health_check, "result": self.result,
        })
    }

    fn render(&self, name: &str, color: bool) -> String {
        let mut out = String::new();
        let dot = paint_as("●", &self.active, color);
        let title = if self.description.is_empty() {
            name.to_owned()
        } else {
            format!("{name} - {}", self.description)
        };
        out.push_str(&format!("{dot} {title}\n"));
        let group = if self.group.is_empty() {
            "-".to_owned()
        } else {
            self.group.clone()
        };
        let served = if self.served {
            "served here"
        } else {
            "served by another peer"
        };
        out.push_str(&format!("     Group: {group} ({served})\n"));
        out.push_str(&format!(
            "    Active: {} ({}) since {}\n",
            paint_state(&self.active, color),
            self.sub,
            format_timestamp(self.since)
        ));
        if self.pid != 0 {
            out.push_str(&format!("  Main PID: {}\n", self.pid));
        }
        out.push_str(&format!(
            "  Restarts: {}; last exit status {}\n",
            self.restarts, self.exit_status
        ));
        if !self.status_text.is_empty() {
            out.push_str(&format!("    Status: \"{}\"\n", self.status_text));
        }
        if self.health != "unknown" || self.last_health_check != 0 {
            out.push_str(&format!(
                "    Health: {} (last check {})\n",
                self.health,
                format_timestamp(self.last_health_check)
            ));
        }
        if self.result != "success" {
            out.push_str(&format!("    Result: {}\n", self.result));
        }
        if !self.last_error.is_empty() {
            out.push_str(&format!("     Error: {}\n", self.last_error));
        }
        if !self.methods.is_empty() {
            out.push_str(&format!("   Methods: {}\n", self.methods.join(", ")));
        }
        if !self.recipes.is_empty() {
            out.push_str(&format!("   Recipes: {}\n", self.recipes.join(", ")));
        }
        out.push_str(&format!(
            "    Online: {}\n",
            if self.online { "yes" } else { "no" }
        ));
        out
    }
}

/// `2026-11-22 03:04:05 UTC` from µs since the epoch (no time-zone database needed).
pub fn format_timestamp(usec: u64) -> String {
    if usec == 0 {
        return "-".to_owned();
    }
    let secs = usec / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

enum Verb {
    Start,
    Stop,
    Restart,
    Pause,
    Resume,
    Kill(i32),
}

/// Applies `verb` to every named service concurrently; reports each failure.
async fn each(cx: &Context, names: &[String], verb: Verb) -> zbus::Result<ExitCode> {
    let m = manager(cx).await?;
    let verb = &verb;
    let results = join_all(names.iter().map(|name| {
        let m = &m;
        async move {
            let result = async {
                match verb {
                    Verb::Start => m.start_service(name).await,
                    Verb::Stop => m.stop_service(name).await,
                    Verb::Restart => m.restart_service(name).await,
                    Verb::Pause => client::service(&cx.connection, name).await?.pause().await,
                    Verb::Resume => client::service(&cx.connection, name).await?.resume().await,
                    Verb::Kill(signal) => {
                        m.get_service(name).await?;
                        client::service(&cx.connection, name)
                            .await?
                            .kill(*signal)
                            .await
                    }
                }
            }
            .await;
            (name, result)
        }
    }))
    .await;
    let mut code = ExitCode::SUCCESS;
    for (name, result) in results {
        if let Err(err) = result {
            eprintln!("corralctl: {name}: {}", super::describe(&err));
            code = match &err {
                zbus::Error::MethodError(n, _, _) if n.as_str().ends_with(".NoSuchService") => {
                    ExitCode::from(4)
                }
                _ => ExitCode::FAILURE,
            };
        }
    }
    Ok(code)
}

async fn reload(cx: &Context) -> zbus::Result<ExitCode> {
    let transitions = manager(cx).await?.reload().await?;
    if cx.json {
        let items: Vec<_> = transitions
            .iter()
            .map(|(kind, subject)| json!({"kind": kind, "subject": subject}))
            .collect();
        println!("{}", serde_json::Value::Array(items));
    } else {
        for (kind, subject) in &transitions {
            println!("{kind} {subject}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `SIGHUP`, `hup`, `1` → 1.
fn parse_signal(text: &str) -> Result<i32, String> {
    if let Ok(number) = text.parse::<i32>() {
        return Ok(number);
    }
    crate::config::signal::parse_signal(text)
        .map(|s| s as i32)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_readable() {
        assert_eq!(format_timestamp(0), "-");
        assert_eq!(
            format_timestamp(1_795_316_415_394_437),
            "2026-11-22 03:00:15 UTC"
        );
        assert_eq!(
            format_timestamp(951_782_400_000_000),
            "2000-02-29 00:00:00 UTC"
        );
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("SIGHUP"), Ok(1));
        assert_eq!(parse_signal("term"), Ok(15));
        assert!(parse_signal("nope").is_err());
    }
}
