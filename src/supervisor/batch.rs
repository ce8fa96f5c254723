//! Ordered batches: starting (or stopping) many services at once while honouring `after`
//! (start-up, reloads, shutdown). A member is launched as soon as every member it waits
//! for has settled, so independent services start concurrently and a chain starts link by
//! link. Like systemd's `After=`, this is ordering only: a dependency that failed still
//! releases its dependents. The batch reports what failed, for `ReloadFinished`.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use super::actor::Supervisor;
use super::launch::{Launch, spawn_all};
use super::unit::{Phase, Waiter};
use crate::config::Service;
use crate::error::CommandResult;

/// Which way a batch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// A member waits for the members it is `after`.
    Start,
    /// A member waits for the members that are `after` it.
    Stop,
}

/// One batch in flight.
pub struct Batch {
    pub kind: BatchKind,
    /// Members not launched yet → how many members they still wait for.
    waiting: HashMap<String, usize>,
    /// Member → the members waiting for it.
    releases: HashMap<String, Vec<String>>,
    /// Members not settled yet.
    unsettled: usize,
    /// Why members failed, one sentence each.
    problems: Vec<String>,
    reply: Option<oneshot::Sender<Vec<String>>>,
}

impl Batch {
    /// Builds a batch over `names`; returns it with the members that can be launched at once.
    pub fn new<'a>(
        kind: BatchKind,
        names: &[String],
        spec_of: impl Fn(&str) -> Option<&'a Service>,
        reply: oneshot::Sender<Vec<String>>,
    ) -> (Batch, Vec<String>) {
        let members: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut waiting: HashMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
        let mut releases: HashMap<String, Vec<String>> = HashMap::new();
        for name in names {
            let Some(spec) = spec_of(name) else { continue };
            for dep in spec.after.iter().filter(|d| members.contains(d.as_str())) {
                // Start: `name` waits for `dep`. Stop: `dep` waits for `name`.
                let (waiter, first) = match kind {
                    BatchKind::Start => (name, dep),
                    BatchKind::Stop => (dep, name),
                };
                *waiting.get_mut(waiter).expect("member") += 1;
                releases
                    .entry(first.clone())
                    .or_default()
                    .push(waiter.clone());
            }
        }
        // Launch in the given order (dependency or stop order), which keeps events
        // deterministic for members that are ready together.
        let ready: Vec<String> = names
            .iter()
            .filter(|n| waiting.get(*n) == Some(&0))
            .cloned()
            .collect();
        for name in &ready {
            waiting.remove(name);
        }
        let batch = Batch {
            kind,
            waiting,
            releases,
            unsettled: names.len(),
            problems: Vec::new(),
            reply: Some(reply),
        };
        (batch, ready)
    }

    /// Records that `name` settled with `result`; returns the members it released.
    pub fn settled(&mut self, name: &str, result: CommandResult) -> Vec<String> {
        self.unsettled = self.unsettled.saturating_sub(1);
        if let Err(err) = result {
            self.problems.push(err.to_string());
        }
        let mut ready = Vec::new();
        for waiter in self.releases.remove(name).unwrap_or_default() {
            if let Some(count) = self.waiting.get_mut(&waiter) {
                *count -= 1;
                if *count == 0 {
                    self.waiting.remove(&waiter);
                    ready.push(waiter);
                }
            }
        }
        ready
    }

    /// Whether every member settled; replies to the batch's requester when so.
    pub fn finish_if_done(&mut self) -> bool {
        if self.unsettled == 0 {
            if let Some(reply) = self.reply.take() {
                let _ = reply.send(std::mem::take(&mut self.problems));
            }
            true
        } else {
            false
        }
    }
}

impl Supervisor {
    /// Starts driving a batch over `names`; `reply` hears what failed once all settled.
    pub(super) fn begin_batch(
        &mut self,
        kind: BatchKind,
        names: Vec<String>,
        reply: oneshot::Sender<Vec<String>>,
    ) {
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let units = &self.units;
        let (mut batch, ready) =
            Batch::new(kind, &names, |n| units.get(n).map(|u| &*u.spec), reply);
        if batch.finish_if_done() {
            return;
        }
        self.batches.insert(id, batch);
        self.ready.extend(ready.into_iter().map(|name| (id, name)));
    }

    /// A member of batch `id` settled.
    pub(super) fn batch_settled(&mut self, id: u64, name: &str, result: CommandResult) {
        let Some(batch) = self.batches.get_mut(&id) else {
            return;
        };
        let released = batch.settled(name, result);
        self.ready.extend(released.into_iter().map(|n| (id, n)));
        if batch.finish_if_done() {
            self.batches.remove(&id);
        }
    }

    /// Launches the batch members released so far. Fresh starts (inactive units) are
    /// prepared one by one, then spawned together (see `launch`); anything else first
    /// lets those spawns finish, so it sees their units as started.
    pub(super) fn launch_ready(&mut self) {
        let mut launches: Vec<Launch> = Vec::new();
        let mut launching: HashSet<String> = HashSet::new();
        while !self.ready.is_empty() {
            while let Some((id, name)) = self.ready.pop_front() {
                let Some(kind) = self.batches.get(&id).map(|b| b.kind) else {
                    continue;
                };
                let fresh = kind == BatchKind::Start
                    && !launching.contains(&name)
                    && self
                        .units
                        .get(&name)
                        .is_some_and(|u| matches!(u.phase, Phase::Inactive { .. }));
                if fresh {
                    self.units
                        .get_mut(&name)
                        .expect("unit exists")
                        .start_waiters
                        .push(Waiter::Batch(id));
                    if let Some(launch) = self.prepare_launch(&name) {
                        launching.insert(name);
                        launches.push(launch);
                    }
                    continue;
                }
                self.spawn_launches(&mut launches, &mut launching);
                match kind {
                    BatchKind::Start => self.start_unit(&name, Waiter::Batch(id)),
                    BatchKind::Stop => self.stop_unit(&name, Waiter::Batch(id)),
                }
            }
            // Finishing a launch can settle it and release more members: go round again.
            self.spawn_launches(&mut launches, &mut launching);
        }
    }

    pub(super) fn spawn_launches(
        &mut self,
        launches: &mut Vec<Launch>,
        launching: &mut HashSet<String>,
    ) {
        if launches.is_empty() {
            return;
        }
        let spawned = spawn_all(launches, &self.settings.output);
        for (launch, spawned) in launches.drain(..).zip(spawned) {
            self.finish_launch(launch, spawned);
        }
        launching.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(after: &[&str]) -> Service {
        Service {
            exec: vec!["x".into()],
            after: after.iter().map(|s| s.to_string()).collect(),
            ..Service::default()
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn start_releases_dependents_when_dependencies_settle() {
        let specs: HashMap<&str, Service> = [
            ("db", spec(&[])),
            ("cache", spec(&[])),
            ("web", spec(&["db", "cache"])),
        ]
        .into();
        let (tx, mut rx) = oneshot::channel();
        let (mut batch, ready) = Batch::new(
            BatchKind::Start,
            &names(&["cache", "db", "web"]),
            |n| specs.get(n),
            tx,
        );
        assert_eq!(ready, names(&["cache", "db"]));
        assert!(batch.settled("db", Ok(())).is_empty());
        assert_eq!(batch.settled("cache", Ok(())), names(&["web"]));
        assert!(!batch.finish_if_done());
        let failed = crate::error::CommandError::StartFailed("web: exited".into());
        assert!(batch.settled("web", Err(failed)).is_empty());
        assert!(batch.finish_if_done());
        let problems = rx.try_recv().unwrap();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("web: exited"), "{problems:?}");
    }

    #[test]
    fn stop_goes_the_other_way() {
        let specs: HashMap<&str, Service> = [("db", spec(&[])), ("web", spec(&["db"]))].into();
        let (tx, _rx) = oneshot::channel();
        let (mut batch, ready) = Batch::new(
            BatchKind::Stop,
            &names(&["web", "db"]),
            |n| specs.get(n),
            tx,
        );
        assert_eq!(ready, names(&["web"]));
        assert_eq!(batch.settled("web", Ok(())), names(&["db"]));
    }
}
