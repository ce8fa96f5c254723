//! Turns the parsed files into a [`Config`], or into every error they contain.
//!
//! The steps: merge the files (`merge`), check `[daemon]` and the groups here, each service
//! on its own (`service`), then the names that point across services and files
//! (`references`). Each step reports into one list and carries on, so a single load reports
//! every problem; the `Config` is returned only when that list stayed empty.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::checks::Checker;
use super::error::{ConfigError, ConfigErrors};
use super::fleet::{fleet_settings, group_placement};
use super::merge::{DaemonKeys, Defined, Setting, merge};
use super::model::{Config, DaemonSettings, Group};
use super::raw::{RawDocument, RawGroup};
use super::references::check_references;
use super::service::check_service;

/// Validates `documents` (in the order they were read). `errors` holds what parsing found;
/// `fallback_file` is named by errors about the configuration as a whole.
pub(crate) fn validate(
    documents: &[RawDocument],
    mut errors: Vec<ConfigError>,
    fallback_file: &Path,
) -> Result<Config, ConfigErrors> {
    let merged = merge(documents, &mut errors);
    let daemon = daemon_settings(&merged.daemon, fallback_file, &mut errors);
    let fleet = fleet_settings(
        merged.fleet.as_ref(),
        &merged.daemon,
        &daemon.host,
        &mut errors,
    );
    let groups = groups(&merged.groups, &mut errors);
    let services = merged
        .services
        .iter()
        .filter_map(|(name, defined)| {
            let raw = defined.body?;
            let service = check_service(defined.name, raw, defined.source, &mut errors);
            Some((name.to_string(), Arc::new(service)))
        })
        .collect();
    check_references(&merged, &mut errors);

    if errors.is_empty() {
        return Ok(Config {
            daemon,
            groups,
            services,
            fleet,
        });
    }
    // Report in the order a user reads: file by file, top to bottom.
    let file_rank = |error: &ConfigError| {
        documents
            .iter()
            .position(|document| document.source.path == error.file)
            .unwrap_or(usize::MAX)
    };
    errors.sort_by_key(|error| (file_rank(error), error.line, error.column));
    Err(ConfigErrors(errors))
}

/// `[daemon]`; each key is checked against the file that set it.
fn daemon_settings(
    keys: &DaemonKeys,
    fallback_file: &Path,
    errors: &mut Vec<ConfigError>,
) -> DaemonSettings {
    let defaults = DaemonSettings::default();
    let host = match &keys.host {
        Some(setting) => {
            let mut check = Checker::new(setting.source, "[daemon]", errors);
            let host = check.text(setting.value, "host").unwrap_or_default();
            if setting.value.get_ref().is_empty() {
                check.error(
                    setting.value.span(),
                    "key \"host\" is empty: give this peer's name, or remove it to use the hostname",
                );
            }
            host
        }
        None => hostname().unwrap_or_else(|message| {
            errors.push(ConfigError::whole_file(fallback_file, message));
            String::new()
        }),
    };
    DaemonSettings {
        host,
        lease_recall_timeout: daemon_duration(
            keys.lease_recall_timeout.as_ref(),
            "lease_recall_timeout",
            defaults.lease_recall_timeout,
            errors,
        ),
        upcall_expiry: daemon_duration(
            keys.upcall_expiry.as_ref(),
            "upcall_expiry",
            defaults.upcall_expiry,
            errors,
        ),
        max_watches_per_client: daemon_count(
            keys.max_watches_per_client.as_ref(),
            "max_watches_per_client",
            defaults.max_watches_per_client,
            errors,
        ),
        max_leases_per_client: daemon_count(
            keys.max_leases_per_client.as_ref(),
            "max_leases_per_client",
            defaults.max_leases_per_client,
            errors,
        ),
    }
}

fn daemon_duration(
    setting: Option<&Setting<String>>,
    key: &str,
    default: Duration,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    let Some(setting) = setting else {
        return default;
    };
    Checker::new(setting.source, "[daemon]", errors).duration(Some(setting.value), key, default)
}

/// A per-client cap; 0 is allowed and switches the feature off for clients.
fn daemon_count(
    setting: Option<&Setting<i64>>,
    key: &str,
    default: u32,
    errors: &mut Vec<ConfigError>,
) -> u32 {
    let Some(setting) = setting else {
        return default;
    };
    Checker::new(setting.source, "[daemon]", errors).count(Some(setting.value), key, 0, default)
}

/// The default `daemon.host`: this machine's hostname.
fn hostname() -> Result<String, String> {
    let name = nix::unistd::gethostname()
        .map_err(|error| format!("cannot read the hostname ({error}): set \"host\" in [daemon]"))?;
    name.into_string()
        .map_err(|_| "the hostname is not valid UTF-8: set \"host\" in [daemon]".to_owned())
}

/// `[groups.NAME]`: a valid name and a placement (`fleet::group_placement`).
fn groups(
    defined: &BTreeMap<&str, Defined<RawGroup>>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Group> {
    let mut groups = BTreeMap::new();
    for (name, group) in defined {
        let Some(raw) = group.body else {
            continue;
        };
        let mut check = Checker::new(group.source, format!("group {name:?}"), errors);
        check.name(group.name, "group");
        let (peer, peers) = group_placement(&mut check, group.name, raw);
        groups.insert(name.to_string(), Group { peer, peers });
    }
    groups
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use nix::sys::signal::Signal;

    use super::super::model::{
        CgroupLimits, Max, MethodDriver, ProcessLimits, Recipe, RestartPolicy, Rlimit, Service,
        ServiceType, Workers,
    };
    use super::super::test_support::{FILE, errors, only_error, parse};
    use super::*;

    /// DESIGN.md's example, verbatim, plus the `portmap` service it is `after`.
    const DESIGN_EXAMPLE: &str = r#"
[daemon]
host = "node-a"              # this peer; default: the hostname
lease_recall_timeout = "5s"
upcall_expiry = "60s"

[groups.storage]             # ProxyFS "volume group"
peer = "node-a"              # the peer that serves this group's services

[services.nfs]
group = "storage"            # optional; ungrouped services are served everywhere
description = "NFS server"
exec = ["/usr/bin/ganesha.nfsd", "-F"]   # argv, never a shell string; a bare name is looked up
                             # in the service's PATH (default /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
type = "simple"              # simple | notify (waits for READY=1) | forking (pidfile)
autostart = true             # start when served (at start-up, reload, or a group moving here)
pidfile = "/run/ganesha.pid" # forking: main PID; any type: detect an already-running daemon
after = ["portmap"]          # start after / stop before these
environment = { LANG = "C" }
user = "nobody"              # optional
working_directory = "/"
restart = "on-failure"       # no | on-failure | always
restart_delay = "1s"         # doubles per consecutive failure, capped by restart_delay_max
start_timeout = "30s"
stop_signal = "SIGTERM"
stop_timeout = "10s"         # then SIGKILL to the whole process group
control_socket = "/run/corral/nfs.sock"   # optional: the service listens here
frame_timeout = "30s"        # bound on one control-channel request
upcall = false
# resources: cgroup v2 where corrald has a delegated subtree; rlimits, umask, NNP always
memory_max = "512M"
tasks_max = 256
cpu_weight = 100
limit_nofile = 65536
no_new_privileges = true
umask = "0022"

[services.nfs.methods.export]        # a manager method; driver = exec or control
exec = ["/usr/sbin/exportfs", "-ra"] # runs the command; args from Call are appended
# or: control = "exports.refresh"     # forwarded over the control socket

[services.nfs.workers]
max_active = 2
max_queued = 16

[services.nfs.recipes.backup]
steps = [["tar", "-czf", "/var/backups/nfs.tgz", "/etc/ganesha"]]
schedule = "every 1h"                # optional periodic run

[services.portmap]
exec = ["rpcbind", "-f"]
"#;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn design_example_yields_the_expected_config() {
        let config = parse(DESIGN_EXAMPLE).unwrap();
        let nfs = Service {
            group: Some("storage".into()),
            description: "NFS server".into(),
            exec: strings(&["/usr/bin/ganesha.nfsd", "-F"]),
            service_type: ServiceType::Simple,
            autostart: true,
            pidfile: Some(PathBuf::from("/run/ganesha.pid")),
            after: strings(&["portmap"]),
            environment: BTreeMap::from([("LANG".into(), "C".into())]),
            user: Some("nobody".into()),
            working_directory: PathBuf::from("/"),
            restart: RestartPolicy::OnFailure,
            restart_delay: Duration::from_secs(1),
            restart_delay_max: Duration::from_secs(30),
            start_limit_burst: 5,
            start_limit_interval: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            control_socket: Some(PathBuf::from("/run/corral/nfs.sock")),
            frame_timeout: Duration::from_secs(30),
            upcall: false,
            methods: BTreeMap::from([(
                "export".into(),
                MethodDriver::Exec(strings(&["/usr/sbin/exportfs", "-ra"])),
            )]),
            workers: Workers {
                max_active: 2,
                max_queued: 16,
            },
            recipes: BTreeMap::from([(
                "backup".into(),
                Recipe {
                    steps: vec![strings(&[
                        "tar",
                        "-czf",
                        "/var/backups/nfs.tgz",
                        "/etc/ganesha",
                    ])],
                    schedule: Some(Duration::from_secs(3600)),
                },
            )]),
            cgroup_limits: CgroupLimits {
                memory_max: Some(Max::Value(512 << 20)),
                tasks_max: Some(Max::Value(256)),
                cpu_weight: Some(100),
            },
            process_limits: ProcessLimits {
                limit_nofile: Some(Rlimit {
                    soft: 65536,
                    hard: 65536,
                }),
                umask: Some(0o022),
                no_new_privileges: true,
                ..ProcessLimits::default()
            },
            watchdog: None,
            on_failure: None,
            health: None,
        };
        let portmap = Service {
            exec: strings(&["rpcbind", "-f"]),
            ..Service::default()
        };
        let expected = Config {
            daemon: DaemonSettings {
                host: "node-a".into(),
                lease_recall_timeout: Duration::from_secs(5),
                upcall_expiry: Duration::from_secs(60),
                ..DaemonSettings::default()
            },
            groups: BTreeMap::from([(
                "storage".into(),
                Group {
                    peer: "node-a".into(),
                    peers: Vec::new(),
                },
            )]),
            services: BTreeMap::from([
                ("nfs".into(), Arc::new(nfs)),
                ("portmap".into(), Arc::new(portmap)),
            ]),
            fleet: None,
        };
        assert_eq!(config, expected);
        assert!(config.is_served_here(&config.services["nfs"]));
    }

    #[test]
    fn every_error_of_a_file_is_reported_in_line_order() {
        let text = r#"
[services.b]
exec = ["/bin/b"]
stop_timeout = "10 s"
restart = "sometimes"

[services.a]
exec = ["bin/a"]
after = ["nosuch"]
type = "forking"

[groups.g]
"#;
        let errors = errors(text);
        let positions: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(
            positions,
            [(4, 16), (5, 11), (8, 9), (9, 10), (10, 8), (12, 9)],
            "{errors:#?}"
        );
        assert!(errors.iter().all(|e| e.file == Path::new(FILE)));
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert!(
            messages[0].starts_with("service \"b\": key \"stop_timeout\": bad duration \"10 s\"")
        );
        assert!(messages[1].starts_with("service \"b\": key \"restart\" is \"sometimes\""));
        assert!(messages[2].contains("the program \"bin/a\" is a relative path"));
        assert_eq!(
            messages[3],
            "service \"a\": \"after\" names \"nosuch\", which is not a service defined in any file"
        );
        assert!(messages[4].starts_with("service \"a\": type = \"forking\" needs a \"pidfile\""));
        // A missing key is reported at its table's header.
        assert!(messages[5].starts_with("group \"g\": missing required key \"peer\""));
        // The displayed form leads with file:line:column.
        assert!(
            errors[3]
                .to_string()
                .starts_with(&format!("{FILE}:9:10: service \"a\""))
        );
    }

    #[test]
    fn daemon_settings_are_read_and_defaulted() {
        let config = parse(
            "[daemon]\nupcall_expiry = \"2m\"\nmax_watches_per_client = 0\nmax_leases_per_client = 7\n",
        )
        .unwrap();
        assert_eq!(config.daemon.upcall_expiry, Duration::from_secs(120));
        assert_eq!(config.daemon.lease_recall_timeout, Duration::from_secs(5));
        assert_eq!(config.daemon.max_watches_per_client, 0);
        assert_eq!(config.daemon.max_leases_per_client, 7);
        let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert_eq!(config.daemon.host, hostname);
    }

    #[test]
    fn daemon_values_are_checked() {
        let errors = errors(
            "[daemon]\nhost = \"\"\nlease_recall_timeout = \"5\"\nmax_leases_per_client = -1\n\
             max_watches_per_client = 4294967296\n",
        );
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(shown[0].starts_with(&format!("{FILE}:2:8: [daemon]: key \"host\" is empty")));
        assert!(shown[1].contains(":3:24: [daemon]: key \"lease_recall_timeout\": bad duration \"5\": the number has no unit"));
        assert!(shown[2].contains(":4:25: [daemon]: key \"max_leases_per_client\" is -1, but must be between 0 and 4294967295"));
        assert!(shown[3].contains(":5:26: [daemon]: key \"max_watches_per_client\" is 4294967296"));
    }

    #[test]
    fn groups_need_a_valid_name_and_a_peer() {
        let shown = only_error("[groups.\"bad name\"]\npeer = \"node-a\"\n");
        assert!(shown.starts_with(&format!(
            "{FILE}:1:9: group \"bad name\": group name \"bad name\" is not valid"
        )));
        let shown = only_error("[groups.g]\npeer = \"\"\n");
        assert!(shown.starts_with(&format!("{FILE}:2:8: group \"g\": key \"peer\" is empty")));
        let config = parse("[groups.g]\npeer = \"node-b\"\n").unwrap();
        assert_eq!(config.groups["g"].peer, "node-b");
    }
}
