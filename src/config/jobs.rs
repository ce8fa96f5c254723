//! Checks the work a service offers besides running: manager methods
//! (`[services.X.methods.NAME]`), the worker pool (`[services.X.workers]`) and recipes
//! (`[services.X.recipes.NAME]`).

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::checks::Checker;
use super::duration::parse_duration;
use super::model::{MethodDriver, Recipe, Workers};
use super::raw::{RawMethod, RawRecipe, RawWorkers, Text};

/// The manager methods; a method with a problem is reported and left out.
pub(crate) fn methods(
    check: &mut Checker,
    raw: Option<&BTreeMap<Text, Spanned<RawMethod>>>,
    has_control_socket: bool,
) -> BTreeMap<String, MethodDriver> {
    let mut methods = BTreeMap::new();
    for (name, method) in raw.into_iter().flatten() {
        let valid_name = check.name(name, "method");
        let driver = match (&method.get_ref().exec, &method.get_ref().control) {
            (Some(_), Some(_)) => {
                check.error(
                    method.span(),
                    format!(
                        "method {:?} sets both \"exec\" and \"control\": keep the one that \
                         carries it out",
                        name.get_ref()
                    ),
                );
                None
            }
            (None, None) => {
                check.error(
                    method.span(),
                    format!(
                        "method {:?} needs a driver: exec = [\"/path/to/program\", ...] or \
                         control = \"rpc.method\"",
                        name.get_ref()
                    ),
                );
                None
            }
            (Some(argv), None) => check
                .argv(argv, &format!("methods.{}.exec", name.get_ref()))
                .map(MethodDriver::Exec),
            (None, Some(control)) => control_method(check, name, control, has_control_socket),
        };
        if let (true, Some(driver)) = (valid_name, driver) {
            methods.insert(name.get_ref().clone(), driver);
        }
    }
    methods
}

/// A `control = "rpc.method"` driver: forwarded over the control socket, so the service
/// must have one.
fn control_method(
    check: &mut Checker,
    name: &Text,
    control: &Text,
    has_control_socket: bool,
) -> Option<MethodDriver> {
    let key = format!("methods.{}.control", name.get_ref());
    let rpc_method = check.text(control, &key)?;
    if rpc_method.is_empty() {
        check.error(
            control.span(),
            format!(
                "key {key:?} is empty: give the JSON-RPC method name, e.g. \"exports.refresh\""
            ),
        );
        return None;
    }
    if !has_control_socket {
        check.error(
            control.span(),
            format!(
                "method {:?} is forwarded over the control channel, but the service has no \
                 \"control_socket\"",
                name.get_ref()
            ),
        );
        return None;
    }
    Some(MethodDriver::Control(rpc_method))
}

/// `[workers]`: at least one job may run; the queue may be empty (then a busy service
/// refuses jobs at once).
pub(crate) fn workers(check: &mut Checker, raw: Option<&RawWorkers>, defaults: Workers) -> Workers {
    let Some(raw) = raw else {
        return defaults;
    };
    Workers {
        max_active: check.count(
            raw.max_active.as_ref(),
            "workers.max_active",
            1,
            defaults.max_active,
        ),
        max_queued: check.count(
            raw.max_queued.as_ref(),
            "workers.max_queued",
            0,
            defaults.max_queued,
        ),
    }
}

/// The recipes; a recipe with a problem is reported and left out.
pub(crate) fn recipes(
    check: &mut Checker,
    raw: Option<&BTreeMap<Text, Spanned<RawRecipe>>>,
) -> BTreeMap<String, Recipe> {
    let mut recipes = BTreeMap::new();
    for (name, recipe) in raw.into_iter().flatten() {
        let valid_name = check.name(name, "recipe");
        let steps = steps(check, name, recipe);
        let schedule = recipe
            .get_ref()
            .schedule
            .as_ref()
            .and_then(|schedule| parse_schedule(check, name, schedule));
        let schedule_valid = recipe.get_ref().schedule.is_none() || schedule.is_some();
        if let (true, Some(steps), true) = (valid_name, steps, schedule_valid) {
            recipes.insert(name.get_ref().clone(), Recipe { steps, schedule });
        }
    }
    recipes
}

/// `steps = [[argv], ...]`: at least one step, each a valid command line.
fn steps(
    check: &mut Checker,
    name: &Text,
    recipe: &Spanned<RawRecipe>,
) -> Option<Vec<Vec<String>>> {
    let key = format!("recipes.{}.steps", name.get_ref());
    let Some(raw_steps) = &recipe.get_ref().steps else {
        check.error(
            recipe.span(),
            format!(
                "recipe {:?} has no \"steps\": give a list of commands, \
                 e.g. steps = [[\"/usr/bin/program\", \"arg\"]]",
                name.get_ref()
            ),
        );
        return None;
    };
    if raw_steps.get_ref().is_empty() {
        check.error(
            raw_steps.span(),
            format!("key {key:?} is empty: give at least one command"),
        );
        return None;
    }
    let steps: Vec<Option<Vec<String>>> = raw_steps
        .get_ref()
        .iter()
        .map(|argv| check.argv(argv, &key))
        .collect();
    steps.into_iter().collect()
}

/// `schedule = "every <duration>"` with a duration above zero.
fn parse_schedule(check: &mut Checker, name: &Text, schedule: &Text) -> Option<Duration> {
    let key = format!("recipes.{}.schedule", name.get_ref());
    let Some(period) = schedule.get_ref().strip_prefix("every ") else {
        check.error(
            schedule.span(),
            format!(
                "key {key:?} is {:?}, but must be \"every <duration>\", e.g. \"every 1h\"",
                schedule.get_ref()
            ),
        );
        return None;
    };
    match parse_duration(period.trim()) {
        Ok(Duration::ZERO) => {
            check.error(
                schedule.span(),
                format!("key {key:?}: the period must be above zero"),
            );
            None
        }
        Ok(period) => Some(period),
        Err(error) => {
            check.error(schedule.span(), format!("key {key:?}: {error}"));
            None
        }
    }
}
