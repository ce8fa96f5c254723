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

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, only_error, only_service};
    use super::*;

    /// A service with a control socket and `extra` lines added.
    fn service(extra: &str) -> String {
        format!("[services.s]\nexec = [\"/bin/s\"]\ncontrol_socket = \"/run/s.sock\"\n{extra}\n")
    }

    #[test]
    fn methods_run_a_command_or_forward_over_the_control_channel() {
        let parsed = only_service(&service(
            "[services.s.methods.reload]\nexec = [\"/bin/kill\", \"-HUP\"]\n\
             [services.s.methods.refresh]\ncontrol = \"exports.refresh\"",
        ));
        assert_eq!(
            parsed.methods["reload"],
            MethodDriver::Exec(vec!["/bin/kill".into(), "-HUP".into()])
        );
        assert_eq!(
            parsed.methods["refresh"],
            MethodDriver::Control("exports.refresh".into())
        );
    }

    #[test]
    fn a_method_has_exactly_one_driver() {
        let shown = only_error(&service(
            "[services.s.methods.m]\nexec = [\"/bin/m\"]\ncontrol = \"m\"",
        ));
        assert!(
            shown.contains(":4:1: service \"s\": method \"m\" sets both \"exec\" and \"control\""),
            "{shown}"
        );
        let shown = only_error(&service("methods.m = {}"));
        assert!(
            shown.contains(":4:13: service \"s\": method \"m\" needs a driver"),
            "{shown}"
        );
    }

    #[test]
    fn method_drivers_are_checked() {
        let shown = only_error(&service("methods.m = { exec = [] }"));
        assert!(
            shown.contains(":4:22: service \"s\": key \"methods.m.exec\" is empty"),
            "{shown}"
        );
        let shown = only_error(&service("methods.m = { exec = [\"sbin/m\"] }"));
        assert!(
            shown.contains("key \"methods.m.exec\": the program \"sbin/m\" is a relative path")
        );
        let shown = only_error(&service("methods.m = { control = \"\" }"));
        assert!(
            shown.contains(":4:25: service \"s\": key \"methods.m.control\" is empty"),
            "{shown}"
        );
        let shown = only_error(&service("methods.\"m n\" = { control = \"x\" }"));
        assert!(
            shown.contains(":4:9: service \"s\": method name \"m n\" is not valid"),
            "{shown}"
        );
    }

    #[test]
    fn control_methods_need_a_control_socket() {
        let shown = only_error(
            "[services.s]\nexec = [\"/bin/s\"]\n[services.s.methods.m]\ncontrol = \"m\"\n",
        );
        assert!(
            shown.contains(
                ":4:11: service \"s\": method \"m\" is forwarded over the control channel, but the \
             service has no \"control_socket\""
            ),
            "{shown}"
        );
    }

    #[test]
    fn workers_bounds_are_checked() {
        let parsed = only_service(&service("workers = { max_active = 4 }"));
        assert_eq!(
            parsed.workers,
            Workers {
                max_active: 4,
                max_queued: 16
            }
        );
        let parsed = only_service(&service("workers = { max_queued = 0 }"));
        assert_eq!(
            parsed.workers,
            Workers {
                max_active: 1,
                max_queued: 0
            }
        );
        let errors = errors(&service(
            "[services.s.workers]\nmax_active = 0\nmax_queued = -1",
        ));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!((errors[0].line, errors[0].column), (5, 14));
        assert!(
            errors[0]
                .message
                .ends_with("key \"workers.max_active\" is 0, but must be between 1 and 4294967295")
        );
        assert_eq!((errors[1].line, errors[1].column), (6, 14));
        assert!(
            errors[1].message.ends_with(
                "key \"workers.max_queued\" is -1, but must be between 0 and 4294967295"
            )
        );
    }

    #[test]
    fn recipes_have_steps_and_an_optional_schedule() {
        let parsed = only_service(&service(
            "[services.s.recipes.backup]\nsteps = [[\"tar\", \"-c\"], [\"/bin/sync\"]]\n\
             [services.s.recipes.rotate]\nsteps = [[\"logrotate\"]]\nschedule = \"every 1m30s\"",
        ));
        assert_eq!(
            parsed.recipes["backup"],
            Recipe {
                steps: vec![vec!["tar".into(), "-c".into()], vec!["/bin/sync".into()]],
                schedule: None,
            }
        );
        assert_eq!(
            parsed.recipes["rotate"].schedule,
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn recipe_steps_are_checked() {
        let shown = only_error(&service("[services.s.recipes.r]\nschedule = \"every 1h\""));
        assert!(
            shown.contains(":4:1: service \"s\": recipe \"r\" has no \"steps\""),
            "{shown}"
        );
        let shown = only_error(&service("recipes.r = { steps = [] }"));
        assert!(
            shown.contains(":4:23: service \"s\": key \"recipes.r.steps\" is empty"),
            "{shown}"
        );
        let errors = errors(&service(
            "recipes.r = { steps = [[\"/bin/a\"], [], [\"x/y\"]] }",
        ));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0]
                .message
                .contains("key \"recipes.r.steps\" is empty")
        );
        assert!(
            errors[1]
                .message
                .contains("the program \"x/y\" is a relative path")
        );
        let shown = only_error(&service("recipes.\"\" = { steps = [[\"a\"]] }"));
        assert!(shown.contains("recipe name \"\" is not valid"), "{shown}");
    }

    #[test]
    fn schedules_are_every_and_a_positive_duration() {
        let recipe = |schedule: &str| {
            service(&format!(
                "recipes.r = {{ steps = [[\"a\"]], schedule = \"{schedule}\" }}"
            ))
        };
        assert!(only_error(&recipe("hourly")).contains(
            "key \"recipes.r.schedule\" is \"hourly\", but must be \"every <duration>\", e.g. \"every 1h\""
        ));
        assert!(
            only_error(&recipe("every 0"))
                .contains("key \"recipes.r.schedule\": the period must be above zero")
        );
        assert!(
            only_error(&recipe("every 1d"))
                .contains("key \"recipes.r.schedule\": bad duration \"1d\": unknown unit \"d\"")
        );
    }
}
