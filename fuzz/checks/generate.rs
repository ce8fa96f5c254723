//! Configurations made from fuzz input, for the `transitions` target: each byte picks one
//! choice, from small sets of names and values so that two configurations made from one
//! input share services, groups and hosts and differ in a few keys, which is where the
//! diff has work to do. Every configuration made is one the loader could return: groups
//! and `after` name what exists, `after` has no cycle, forking services have a pidfile,
//! upcalls a control socket. Input that runs out reads as zeros (the defaults).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use corral::config::{
    CgroupLimits, Config, Group, Max, MethodDriver, ProcessLimits, Recipe, RestartPolicy, Service,
    ServiceType, Workers,
};
use nix::sys::signal::Signal;

const HOSTS: [&str; 3] = ["a", "b", "c"];
const GROUPS: [&str; 3] = ["g1", "g2", "g3"];
const SERVICES: [&str; 8] = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];
const DURATIONS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_secs(5),
    Duration::from_secs(3600),
];

/// The fuzz input, read one choice at a time.
pub struct Choices<'a>(std::slice::Iter<'a, u8>);

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Choices<'a> {
        Choices(data.iter())
    }

    fn byte(&mut self) -> u8 {
        self.0.next().copied().unwrap_or(0)
    }

    /// One of `options`; the first once the input is used up.
    fn pick<T: Clone>(&mut self, options: &[T]) -> T {
        options[usize::from(self.byte()) % options.len()].clone()
    }

    /// `None` (the default) or one of `options`.
    fn maybe<T: Clone>(&mut self, options: &[T]) -> Option<T> {
        match usize::from(self.byte()) % (options.len() + 1) {
            0 => None,
            i => Some(options[i - 1].clone()),
        }
    }

    fn flag(&mut self) -> bool {
        self.byte() % 2 == 1
    }

    /// A whole configuration.
    pub fn config(&mut self) -> Config {
        let mut config = Config::empty(self.pick(&HOSTS));
        config.daemon.lease_recall_timeout = self.pick(&DURATIONS);
        config.daemon.max_watches_per_client = u32::from(self.byte() % 3);
        for group in GROUPS {
            if let Some(peer) = self.maybe(&HOSTS) {
                let peer = peer.to_owned();
                let peers = if self.flag() {
                    vec![peer.clone()]
                } else {
                    Vec::new()
                };
                config
                    .groups
                    .insert(group.to_owned(), Group { peer, peers });
            }
        }
        // Services are made in an order of the input's choosing, and each may be `after`
        // those made before it: any acyclic dependency graph, in any name order.
        let count = usize::from(self.byte()) % (SERVICES.len() + 1);
        for _ in 0..count {
            let name = self.pick(&SERVICES);
            if config.services.contains_key(name) {
                continue;
            }
            let service = self.service(&config);
            config.services.insert(name.to_owned(), service.into());
        }
        config
    }

    /// A service whose references point into `config` as made so far.
    fn service(&mut self, config: &Config) -> Service {
        let groups: Vec<String> = config.groups.keys().cloned().collect();
        let earlier: Vec<String> = config.services.keys().cloned().collect();
        let mut after_mask = self.byte();
        let after = earlier
            .into_iter()
            .filter(|_| {
                let chosen = after_mask & 1 == 1;
                after_mask >>= 1;
                chosen
            })
            .collect();
        let service_type = self.pick(&[
            ServiceType::Simple,
            ServiceType::Notify,
            ServiceType::Forking,
        ]);
        let pidfile = match (service_type, self.maybe(&["/run/a.pid", "/run/b.pid"])) {
            (ServiceType::Forking, None) => Some("/run/forking.pid"),
            (_, pidfile) => pidfile,
        };
        let control_socket = self
            .maybe(&["/run/a.sock", "/run/b.sock"])
            .map(PathBuf::from);
        let upcall = control_socket.is_some() && self.flag();
        let restart_delay = self.pick(&DURATIONS);
        Service {
            group: self.maybe(&groups),
            description: self.pick(&["", "x", "y"]).to_owned(),
            exec: self
                .pick(&[&["true"][..], &["sleep", "1"], &["/usr/bin/daemon", "-f"]])
                .iter()
                .map(|word| word.to_string())
                .collect(),
            service_type,
            autostart: !self.flag(),
            pidfile: pidfile.map(PathBuf::from),
            after,
            environment: self
                .maybe(&["1", "2"])
                .map(|value| BTreeMap::from([("V".to_owned(), value.to_owned())]))
                .unwrap_or_default(),
            user: self.maybe(&["root"]).map(str::to_owned),
            working_directory: PathBuf::from(self.pick(&["/", "/srv"])),
            restart: self.pick(&[
                RestartPolicy::OnFailure,
                RestartPolicy::No,
                RestartPolicy::Always,
            ]),
            restart_delay,
            restart_delay_max: restart_delay.max(self.pick(&DURATIONS)),
            start_limit_burst: 1 + u32::from(self.byte() % 3),
            start_limit_interval: self.pick(&DURATIONS),
            start_timeout: self.pick(&DURATIONS),
            stop_signal: self.pick(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGKILL]),
            stop_timeout: self.pick(&DURATIONS),
            frame_timeout: self.pick(&DURATIONS),
            upcall,
            methods: match (self.byte() % 3, &control_socket) {
                (1, _) => {
                    BTreeMap::from([("m".to_owned(), MethodDriver::Exec(vec!["true".into()]))])
                }
                (2, Some(_)) => {
                    BTreeMap::from([("m".to_owned(), MethodDriver::Control("m".into()))])
                }
                _ => BTreeMap::new(),
            },
            control_socket,
            workers: Workers {
                max_active: 1 + u32::from(self.byte() % 2),
                max_queued: u32::from(self.byte() % 2),
            },
            recipes: match self.byte() % 3 {
                0 => BTreeMap::new(),
                n => BTreeMap::from([(
                    "r".to_owned(),
                    Recipe {
                        steps: vec![vec!["true".into()]],
                        schedule: (n == 2).then_some(Duration::from_secs(60)),
                    },
                )]),
            },
            // A limit changed alone is applied in place; one of the child's restarts it.
            cgroup_limits: CgroupLimits {
                tasks_max: self.maybe(&[Max::Value(32)]),
                ..CgroupLimits::default()
            },
            process_limits: ProcessLimits {
                umask: self.maybe(&[0o077]),
                ..ProcessLimits::default()
            },
            // The watchdog reaches the child's environment: a change restarts it.
            watchdog: self.maybe(&[Duration::from_secs(10)]),
            on_failure: None,
            health: None,
        }
    }
}
