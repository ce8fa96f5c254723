//! Checks how a service's child process is set up: its environment and the user it runs as.

use std::collections::BTreeMap;

use nix::unistd::User;

use super::checks::Checker;
use super::raw::Text;

/// The child's environment: names that `execve` and a shell can use, no NUL in values.
pub(crate) fn environment(
    check: &mut Checker,
    raw: Option<&BTreeMap<Text, Text>>,
) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    for (name, value) in raw.into_iter().flatten() {
        let text = name.get_ref();
        let problem = if text.is_empty() {
            Some("is empty")
        } else if text.contains('=') {
            // `A=B=c` would reach the child as variable `A` with value `B=c`.
            Some("contains \"=\", which separates name from value")
        } else if text.contains('\0') {
            Some("contains a NUL character")
        } else {
            None
        };
        if let Some(problem) = problem {
            check.error(
                name.span(),
                format!("environment variable name {text:?} {problem}"),
            );
            continue;
        }
        if let Some(value) = check.text(value, &format!("environment.{text}")) {
            environment.insert(text.clone(), value);
        }
    }
    environment
}

/// `user`, which must exist here: a typo would otherwise surface only when the service
/// starts, long after the reload that introduced it succeeded.
pub(crate) fn user(check: &mut Checker, user: &Text) -> Option<String> {
    let name = check.text(user, "user")?;
    match User::from_name(&name) {
        Ok(Some(_)) => Some(name),
        Ok(None) => {
            check.error(
                user.span(),
                format!(
                    "user {name:?} does not exist on this machine: create it, or change \"user\""
                ),
            );
            None
        }
        Err(error) => {
            check.error(
                user.span(),
                format!("cannot look up user {name:?}: {error}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, only_error, only_service, service};

    #[test]
    fn user_must_exist_here() {
        assert_eq!(
            only_service(&service("user = \"root\"")).user.as_deref(),
            Some("root")
        );
        assert_eq!(only_service(&service("")).user, None);
        assert!(
            only_error(&service("user = \"corral-no-such-user\"")).contains(
                ":3:8: service \"s\": user \"corral-no-such-user\" does not exist on this machine"
            )
        );
    }

    #[test]
    fn environment_is_taken_as_written() {
        let parsed = only_service(&service(
            "environment = { LANG = \"C\", PATH = \"/opt/bin\", EMPTY = \"\" }",
        ));
        assert_eq!(parsed.environment["LANG"], "C");
        assert_eq!(parsed.environment["EMPTY"], "");
        assert_eq!(parsed.path_env(), "/opt/bin");
    }

    #[test]
    fn environment_names_and_values_are_checked() {
        let errors = errors(&service(
            "[services.s.environment]\n\"\" = \"x\"\n\"A=B\" = \"x\"\n\"N\\u0000UL\" = \"x\"\nV = \"a\\u0000b\"",
        ));
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(shown[0].contains(":4:1: service \"s\": environment variable name \"\" is empty"));
        assert!(
            shown[1]
                .contains(":5:1: service \"s\": environment variable name \"A=B\" contains \"=\"")
        );
        assert!(
            shown[2].contains(
                ":6:1: service \"s\": environment variable name \"N\\0UL\" contains a NUL"
            )
        );
        assert!(
            shown[3]
                .contains(":7:5: service \"s\": key \"environment.V\" contains a NUL character")
        );
    }
}
