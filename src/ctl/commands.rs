//! The subcommands of `corralctl`.

use std::process::ExitCode;

use futures_util::future::join_all;
use serde_json::json;
use zbus::Connection;

use super::cli::Command;
use super::output::{paint_state, table};
use crate::client::{BusError, BusResult, ManagerProxy, ServiceProxy, ServiceRow, lookup_service};

pub struct Context {
    pub connection: Connection,
    pub json: bool,
    pub color: bool,
}

pub async fn run(cx: &Context, command: Command) -> BusResult<ExitCode> {
    match command {
        Command::List => list(cx).await,
        Command::Status { names } if names.is_empty() => overview(cx).await,
        Command::Status { names } => super::status::status(cx, &names).await,
        Command::Start { names } => each(cx, &names, Verb::Start).await,
        Command::Stop { names } => each(cx, &names, Verb::Stop).await,
        Command::Restart { names } => each(cx, &names, Verb::Restart).await,
        Command::Pause { names } => each(cx, &names, Verb::Pause).await,
        Command::Resume { names } => each(cx, &names, Verb::Resume).await,
        Command::Revert { names } => each(cx, &names, Verb::Revert).await,
        Command::Kill { signal, names } => {
            let number =
                parse_signal(&signal).map_err(|e| BusError::ZBus(zbus::Error::Failure(e)))?;
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
            let m = manager(cx).await?;
            let recipe = &recipe;
            let id =
                on_service(&m, &service, |s| async move { s.run_recipe(recipe).await }).await?;
            if cx.json {
                println!("{}", json!({ "job": id }));
            } else {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { service } => super::jobs::list(cx, service.as_deref()).await,
        Command::Cancel { id } => super::jobs::cancel(cx, id).await,
        Command::Reload => reload(cx).await,
        Command::DaemonReexec => super::reexec::run(cx).await,
        Command::Hosts => super::fleet::hosts(cx).await,
        Command::Move { group, peer } => super::fleet::move_group(cx, &group, &peer).await,
        Command::Monitor => {
            super::monitor::run(&cx.connection, cx.json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { artifact } => Ok(super::generate::run(artifact)),
    }
}

pub(super) async fn manager(cx: &Context) -> BusResult<ManagerProxy<'static>> {
    Ok(ManagerProxy::builder(&cx.connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

async fn list(cx: &Context) -> BusResult<ExitCode> {
    let rows = manager(cx).await?.list_services().await?;
    if cx.json {
        let items: Vec<_> = rows
            .iter()
            .map(|row| {
                json!({"name": row.name, "group": row.group, "active_state": row.active_state,
                       "sub_state": row.sub_state, "main_pid": row.main_pid, "path": row.path.as_str()})
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", service_table(cx, &rows));
    Ok(ExitCode::SUCCESS)
}

fn service_table(cx: &Context, rows: &[ServiceRow]) -> String {
    let cells: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|row| {
            let pid = if row.main_pid == 0 {
                "-".to_owned()
            } else {
                row.main_pid.to_string()
            };
            let group = if row.group.is_empty() {
                "-".to_owned()
            } else {
                row.group.clone()
            };
            let active = &row.active_state;
            vec![
                (row.name.clone(), row.name.clone()),
                (group.clone(), group),
                (active.clone(), paint_state(active, cx.color)),
                (row.sub_state.clone(), row.sub_state.clone()),
                (pid.clone(), pid),
            ]
        })
        .collect();
    table(&["NAME", "GROUP", "ACTIVE", "SUB", "PID"], &cells)
}

async fn overview(cx: &Context) -> BusResult<ExitCode> {
    let m = manager(cx).await?;
    let (version, host, state, generation, fleet, rows) = (
        m.version().await?,
        m.host().await?,
        m.state().await?,
        m.config_generation().await?,
        m.fleet().await?,
        m.list_services().await?,
    );
    let (mode, control_group) = (m.supervision_mode().await?, m.control_group().await?);
    if cx.json {
        println!(
            "{}",
            json!({"version": version, "host": host, "state": state, "config_generation": generation,
                   "fleet": fleet, "supervision_mode": mode, "control_group": control_group,
                   "services": rows.len()})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for row in &rows {
        match counts.iter_mut().find(|(s, _)| *s == row.active_state) {
            Some((_, n)) => *n += 1,
            None => counts.push((row.active_state.clone(), 1)),
        }
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let fleet = if fleet == "off" {
        String::new()
    } else {
        format!(", fleet {fleet}")
    };
    println!(
        "corrald {version} on {host}: {}, configuration generation {generation}{fleet}",
        paint_state(&state, cx.color)
    );
    if control_group.is_empty() {
        println!("services tracked by {mode}");
    } else {
        println!("services tracked by {mode} below {control_group}");
    }
    println!("{} services: {}\n", rows.len(), summary.join(", "));
    print!("{}", service_table(cx, &rows));
    Ok(ExitCode::SUCCESS)
}

enum Verb {
    Start,
    Stop,
    Restart,
    Pause,
    Resume,
    Revert,
    Kill(i32),
}

/// Applies `verb` to every named service concurrently; reports each failure.
async fn each(cx: &Context, names: &[String], verb: Verb) -> BusResult<ExitCode> {
    let m = manager(cx).await?;
    let verb = &verb;
    let results = join_all(names.iter().map(|name| {
        let m = &m;
        async move {
            let result = on_service(m, name, |s| async move {
                match verb {
                    Verb::Start => s.start().await,
                    Verb::Stop => s.stop().await,
                    Verb::Restart => s.restart().await,
                    Verb::Pause => s.pause().await,
                    Verb::Resume => s.resume().await,
                    Verb::Revert => s.revert().await,
                    Verb::Kill(signal) => s.kill(*signal).await,
                }
            })
            .await;
            (name, result)
        }
    }))
    .await;
    let mut code = ExitCode::SUCCESS;
    for (name, result) in results {
        if let Err(err) = result {
            eprintln!("corralctl: {name}: {}", super::describe(&err));
            code = super::exit_code_for(&err);
        }
    }
    Ok(code)
}

/// Runs `request` on the service called `name`, resolved by corrald: the one way every
/// verb finds its service, so an unknown name is `NoSuchService` (exit 4) for all of them.
/// A service removed by a reload between the lookup and the request is no such service
/// either, not the bare `UnknownObject` of its vanished object.
pub(super) async fn on_service<'m, T, F, Fut>(
    m: &'m ManagerProxy<'_>,
    name: &str,
    request: F,
) -> BusResult<T>
where
    F: FnOnce(ServiceProxy<'m>) -> Fut,
    Fut: Future<Output = BusResult<T>>,
{
    let service = lookup_service(m, name).await?;
    request(service)
        .await
        .map_err(|err| vanished_is_no_such_service(name, err))
}

/// `err` of a request to the object of service `name`, with D-Bus's `UnknownObject` (the
/// object is gone) as `NoSuchService`.
fn vanished_is_no_such_service(name: &str, err: BusError) -> BusError {
    match err {
        BusError::ZBus(zbus::Error::FDO(fdo))
            if matches!(*fdo, zbus::fdo::Error::UnknownObject(_)) =>
        {
            BusError::NoSuchService(format!("no service named {name:?}: it was just removed"))
        }
        other => other,
    }
}

async fn reload(cx: &Context) -> BusResult<ExitCode> {
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
    fn a_vanished_service_object_is_no_such_service() {
        let gone = zbus::fdo::Error::UnknownObject("Unknown object '/x'".into());
        let err = vanished_is_no_such_service("web", BusError::ZBus(zbus::Error::FDO(gone.into())));
        assert!(
            matches!(&err, BusError::NoSuchService(m) if m.contains("\"web\"")),
            "{err:?}"
        );
        assert_eq!(super::super::exit_code_for(&err), ExitCode::from(4));
        let denied = BusError::AccessDenied("no".into());
        assert!(matches!(
            vanished_is_no_such_service("web", denied),
            BusError::AccessDenied(_)
        ));
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("SIGHUP"), Ok(1));
        assert_eq!(parse_signal("term"), Ok(15));
        assert!(parse_signal("nope").is_err());
    }
}
