//! Ordered batches: starting (or stopping) many services at once while honouring `after`.
//! A member is launched as soon as every member it waits for has settled, so independent
//! services start concurrently and a chain starts link by link. Like systemd's `After=`,
//! this is ordering only: a dependency that failed still releases its dependents.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use crate::config::Service;

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
    reply: Option<oneshot::Sender<()>>,
}

impl Batch {
    /// Builds a batch over `names`; returns it with the members that can be launched at once.
    pub fn new<'a>(
        kind: BatchKind,
        names: &[String],
        spec_of: impl Fn(&str) -> Option<&'a Service>,
        reply: oneshot::Sender<()>,
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
            reply: Some(reply),
        };
        (batch, ready)
    }

    /// Records that `name` settled; returns the members it released.
    pub fn settled(&mut self, name: &str) -> Vec<String> {
        self.unsettled = self.unsettled.saturating_sub(1);
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
                let _ = reply.send(());
            }
            true
        } else {
            false
        }
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
        assert!(batch.settled("db").is_empty());
        assert_eq!(batch.settled("cache"), names(&["web"]));
        assert!(!batch.finish_if_done());
        assert!(batch.settled("web").is_empty());
        assert!(batch.finish_if_done());
        assert!(rx.try_recv().is_ok());
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
        assert_eq!(batch.settled("web"), names(&["db"]));
    }
}
