//! Checks a service's resource keys: the cgroup limits (`memory_max`, `tasks_max`,
//! `cpu_weight`) and what the child gets at exec (`limit_nofile`, `limit_core`,
//! `limit_nproc`, `limit_memlock`, `umask`, `no_new_privileges`).
//!
//! The forms are systemd's: sizes in bytes with an optional `K`, `M`, `G` or `T` suffix
//! (powers of 1024, like `MemoryMax=`), `"infinity"` for no limit, and rlimits as one value
//! for both limits or `"SOFT:HARD"` (like `LimitNOFILE=`). Integers may be written bare;
//! anything with a suffix, `infinity` or a colon is a string.

use toml::Value;

use super::checks::Checker;
use super::model::{CgroupLimits, Max, ProcessLimits, RLIM_INFINITY, Rlimit};
use super::raw::{RawService, Scalar};

const SIZE_FORM: &str = "bytes with an optional K, M, G or T suffix (powers of 1024), e.g. \
                         \"512M\", or \"infinity\"";
const COUNT_FORM: &str = "a positive integer, e.g. 256, or \"infinity\"";
const RLIMIT_COUNT_FORM: &str = "an integer, e.g. 256, or \"infinity\"";
/// The largest `cpu.weight` the kernel takes.
const CPU_WEIGHT_MAX: i64 = 10_000;

/// `memory_max`, `tasks_max`, `cpu_weight`.
pub(crate) fn cgroup_limits(check: &mut Checker, raw: &RawService) -> CgroupLimits {
    CgroupLimits {
        memory_max: raw
            .memory_max
            .as_ref()
            .and_then(|v| max(check, v, "memory_max", Unit::Bytes)),
        tasks_max: raw
            .tasks_max
            .as_ref()
            .and_then(|v| max(check, v, "tasks_max", Unit::Count)),
        cpu_weight: raw.cpu_weight.as_ref().and_then(|value| {
            let weight = *value.get_ref();
            if (1..=CPU_WEIGHT_MAX).contains(&weight) {
                Some(weight as u32)
            } else {
                check.error(
                    value.span(),
                    format!(
                        "key \"cpu_weight\" is {weight}, but must be between 1 and \
                         {CPU_WEIGHT_MAX} (the default weight is 100)"
                    ),
                );
                None
            }
        }),
    }
}

/// The rlimits, `umask` and `no_new_privileges`.
pub(crate) fn process_limits(check: &mut Checker, raw: &RawService) -> ProcessLimits {
    let mut rlimit = |value: &Option<Scalar>, key: &str, unit: Unit| {
        value
            .as_ref()
            .and_then(|v| parse_rlimit(check, v, key, unit))
    };
    ProcessLimits {
        limit_nofile: rlimit(&raw.limit_nofile, "limit_nofile", Unit::Count),
        limit_core: rlimit(&raw.limit_core, "limit_core", Unit::Bytes),
        limit_nproc: rlimit(&raw.limit_nproc, "limit_nproc", Unit::Count),
        limit_memlock: rlimit(&raw.limit_memlock, "limit_memlock", Unit::Bytes),
        umask: raw.umask.as_ref().and_then(|value| umask(check, value)),
        no_new_privileges: raw.no_new_privileges.unwrap_or(false),
    }
}

/// What a number counts: bytes take size suffixes, counts do not.
#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Bytes,
    Count,
}

impl Unit {
    fn form(self) -> &'static str {
        match self {
            Unit::Bytes => SIZE_FORM,
            Unit::Count => COUNT_FORM,
        }
    }

    /// The same for an rlimit, where 0 is a valid limit.
    fn rlimit_form(self) -> &'static str {
        match self {
            Unit::Bytes => SIZE_FORM,
            Unit::Count => RLIMIT_COUNT_FORM,
        }
    }
}

/// `memory_max` or `tasks_max`: at least 1, or infinity.
fn max(check: &mut Checker, value: &Scalar, key: &str, unit: Unit) -> Option<Max> {
    let parsed = match value.get_ref() {
        Value::Integer(n) => u64::try_from(*n).ok(),
        Value::String(text) => parse_number(text, unit),
        _ => None,
    };
    match parsed {
        Some(RLIM_INFINITY) => Some(Max::Infinity),
        Some(n) if n > 0 => Some(Max::Value(n)),
        _ => {
            check.error(
                value.span(),
                format!("key {key:?} is {}: expected {}", show(value), unit.form()),
            );
            None
        }
    }
}

/// An rlimit: one value for both limits, or `"SOFT:HARD"`.
fn parse_rlimit(check: &mut Checker, value: &Scalar, key: &str, unit: Unit) -> Option<Rlimit> {
    let parsed = match value.get_ref() {
        Value::Integer(n) => u64::try_from(*n).ok().map(|n| (n, n)),
        Value::String(text) => match text.split_once(':') {
            Some((soft, hard)) => parse_number(soft, unit).zip(parse_number(hard, unit)),
            None => parse_number(text, unit).map(|n| (n, n)),
        },
        _ => None,
    };
    let Some((soft, hard)) = parsed else {
        check.error(
            value.span(),
            format!(
                "key {key:?} is {}: expected {}, or \"SOFT:HARD\" with two of those \
                 (soft limit first)",
                show(value),
                unit.rlimit_form()
            ),
        );
        return None;
    };
    if soft > hard {
        check.error(
            value.span(),
            format!(
                "key {key:?}: the soft limit {} is above the hard limit {}; write \"SOFT:HARD\" \
                 with SOFT <= HARD",
                show_limit(soft),
                show_limit(hard)
            ),
        );
        return None;
    }
    Some(Rlimit { soft, hard })
}

/// `umask = "0022"`: octal digits in a string, at most 0777.
fn umask(check: &mut Checker, value: &Scalar) -> Option<u32> {
    let parsed = match value.get_ref() {
        Value::String(text) if (1..=4).contains(&text.len()) => {
            u32::from_str_radix(text, 8).ok().filter(|&m| m <= 0o777)
        }
        _ => None,
    };
    if parsed.is_none() {
        check.error(
            value.span(),
            format!(
                "key \"umask\" is {}: expected octal digits in a string, at most \"0777\", \
                 e.g. umask = \"0022\"",
                show(value)
            ),
        );
    }
    parsed
}

/// A number as written in a string: digits with an optional size suffix (bytes only), or
/// `infinity` ([`RLIM_INFINITY`]). `None` when it is neither or does not fit.
fn parse_number(text: &str, unit: Unit) -> Option<u64> {
    if text == "infinity" {
        return Some(RLIM_INFINITY);
    }
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' if unit == Unit::Bytes => (&text[..text.len() - 1], 10),
        b'M' if unit == Unit::Bytes => (&text[..text.len() - 1], 20),
        b'G' if unit == Unit::Bytes => (&text[..text.len() - 1], 30),
        b'T' if unit == Unit::Bytes => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let n = n.checked_mul(1 << shift)?;
    // u64::MAX itself means infinity; a number that large was not meant as one.
    (n != RLIM_INFINITY).then_some(n)
}

/// A value as the user wrote it, for messages.
fn show(value: &Scalar) -> String {
    match value.get_ref() {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    }
}

fn show_limit(n: u64) -> String {
    if n == RLIM_INFINITY {
        "infinity".to_owned()
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, only_error, only_service, service};
    use super::*;

    #[test]
    fn sizes_counts_and_weights_are_parsed() {
        let parsed = only_service(&service(
            "memory_max = \"512M\"\ntasks_max = 256\ncpu_weight = 100",
        ));
        assert_eq!(
            parsed.cgroup_limits,
            CgroupLimits {
                memory_max: Some(Max::Value(512 << 20)),
                tasks_max: Some(Max::Value(256)),
                cpu_weight: Some(100),
            }
        );
        let parsed = only_service(&service(
            "memory_max = \"infinity\"\ntasks_max = \"infinity\"",
        ));
        assert_eq!(parsed.cgroup_limits.memory_max, Some(Max::Infinity));
        assert_eq!(parsed.cgroup_limits.tasks_max, Some(Max::Infinity));
        for (text, bytes) in [
            ("1G", 1u64 << 30),
            ("2T", 2 << 40),
            ("64K", 64 << 10),
            ("4096", 4096),
        ] {
            let parsed = only_service(&service(&format!("memory_max = \"{text}\"")));
            assert_eq!(
                parsed.cgroup_limits.memory_max,
                Some(Max::Value(bytes)),
                "{text}"
            );
        }
        assert_eq!(
            only_service(&service("memory_max = 1048576"))
                .cgroup_limits
                .memory_max,
            Some(Max::Value(1 << 20))
        );
        assert_eq!(
            only_service(&service("")).cgroup_limits,
            CgroupLimits::default()
        );
    }

    #[test]
    fn bad_cgroup_limits_name_the_accepted_form() {
        assert!(only_error(&service("memory_max = \"512MB\"")).contains(
            ":3:14: service \"s\": key \"memory_max\" is \"512MB\": expected bytes with an optional K, M, G or T suffix (powers of 1024), e.g. \"512M\", or \"infinity\""
        ));
        assert!(
            only_error(&service("memory_max = 0")).contains("key \"memory_max\" is 0: expected")
        );
        assert!(only_error(&service("tasks_max = \"1K\"")).contains(
            ":3:13: service \"s\": key \"tasks_max\" is \"1K\": expected a positive integer, e.g. 256, or \"infinity\""
        ));
        assert!(only_error(&service("tasks_max = -1")).contains("key \"tasks_max\" is -1"));
        assert!(only_error(&service("memory_max = true")).contains("key \"memory_max\" is true"));
        assert!(only_error(&service("cpu_weight = 0")).contains(
            ":3:14: service \"s\": key \"cpu_weight\" is 0, but must be between 1 and 10000"
        ));
        assert!(only_error(&service("cpu_weight = 10001")).contains("is 10001, but must be"));
        // A size that overflows 64 bits is not silently "infinity".
        assert!(
            only_error(&service("memory_max = \"99999999999T\""))
                .contains("key \"memory_max\" is \"99999999999T\"")
        );
    }

    #[test]
    fn rlimits_take_one_value_or_soft_and_hard() {
        let parsed = only_service(&service(
            "limit_nofile = 65536\nlimit_core = \"infinity\"\nlimit_nproc = \"100:200\"\n\
             limit_memlock = \"64K:1M\"",
        ));
        let limits = parsed.process_limits;
        assert_eq!(
            limits.limit_nofile,
            Some(Rlimit {
                soft: 65536,
                hard: 65536
            })
        );
        assert_eq!(
            limits.limit_core,
            Some(Rlimit {
                soft: RLIM_INFINITY,
                hard: RLIM_INFINITY
            })
        );
        assert_eq!(
            limits.limit_nproc,
            Some(Rlimit {
                soft: 100,
                hard: 200
            })
        );
        assert_eq!(
            limits.limit_memlock,
            Some(Rlimit {
                soft: 64 << 10,
                hard: 1 << 20
            })
        );
        assert_eq!(
            only_service(&service("limit_nofile = \"1024:infinity\""))
                .process_limits
                .limit_nofile,
            Some(Rlimit {
                soft: 1024,
                hard: RLIM_INFINITY
            })
        );
        assert_eq!(
            only_service(&service("limit_core = 0"))
                .process_limits
                .limit_core,
            Some(Rlimit { soft: 0, hard: 0 })
        );
    }

    #[test]
    fn bad_rlimits_name_the_accepted_form() {
        assert!(only_error(&service("limit_nofile = \"2048:1024\"")).contains(
            ":3:16: service \"s\": key \"limit_nofile\": the soft limit 2048 is above the hard limit 1024"
        ));
        assert!(only_error(&service("limit_nofile = \"64K\"")).contains(
            ":3:16: service \"s\": key \"limit_nofile\" is \"64K\": expected an integer, e.g. 256, or \"infinity\", or \"SOFT:HARD\""
        ));
        assert!(only_error(&service("limit_core = \"1:2:3\"")).contains(
            "key \"limit_core\" is \"1:2:3\": expected bytes with an optional K, M, G or T suffix"
        ));
        assert!(only_error(&service("limit_nproc = -5")).contains("key \"limit_nproc\" is -5"));
        assert!(only_error(&service("limit_memlock = \":\"")).contains("key \"limit_memlock\""));
    }

    #[test]
    fn umask_is_octal_text() {
        let parsed = only_service(&service("umask = \"0027\"\nno_new_privileges = true"));
        assert_eq!(parsed.process_limits.umask, Some(0o027));
        assert!(parsed.process_limits.no_new_privileges);
        assert_eq!(
            only_service(&service("umask = \"077\""))
                .process_limits
                .umask,
            Some(0o077)
        );
        assert_eq!(
            only_service(&service("")).process_limits,
            ProcessLimits::default()
        );
        for bad in ["\"0999\"", "\"1777\"", "\"\"", "22", "\"u=rwx\""] {
            let shown = only_error(&service(&format!("umask = {bad}")));
            assert!(
                shown.contains(":3:9: service \"s\": key \"umask\" is")
                    && shown.contains(
                        "expected octal digits in a string, at most \"0777\", e.g. umask = \"0022\""
                    ),
                "{bad}: {shown}"
            );
        }
    }

    #[test]
    fn every_bad_resource_key_is_reported_at_once() {
        let found = errors(&service(
            "memory_max = \"x\"\ntasks_max = \"y\"\ncpu_weight = 0\nlimit_nofile = \"z\"\numask = \"9\"",
        ));
        assert_eq!(found.len(), 5, "{found:#?}");
    }
}
