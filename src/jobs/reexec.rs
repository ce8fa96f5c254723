//! The jobs actor's part in a live re-exec of corrald: the queued jobs and the running
//! ones — which step runs, as which process — handed to the corrald this one becomes,
//! which goes on awaiting that step (still its child, so its exit status is collected) and
//! runs the rest. Reports (`JobFinished`/`JobFailed`, the history) come from the new one.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::store::JobRecord;

/// Everything the jobs actor hands over.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JobsState {
    pub next_id: u64,
    pub running: Vec<RunningState>,
    pub queued: Vec<JobRecord>,
}

/// A running job: its record and the step that runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunningState {
    pub record: JobRecord,
    /// Index of the running step.
    pub step: usize,
    /// Its process, a child of corrald's.
    pub pid: u32,
}

/// What was handed over, by service, until each service's pool is configured.
#[derive(Debug, Default)]
pub(super) struct Inherited {
    pub running: HashMap<String, Vec<RunningState>>,
    pub queued: HashMap<String, Vec<JobRecord>>,
}

impl Inherited {
    pub fn new(state: JobsState) -> Inherited {
        let mut inherited = Inherited::default();
        for job in state.running {
            let service = job.record.service.clone();
            inherited.running.entry(service).or_default().push(job);
        }
        for job in state.queued {
            let service = job.service.clone();
            inherited.queued.entry(service).or_default().push(job);
        }
        inherited
    }

    /// The ids of every job handed over (the store lists them as unfinished, but they are
    /// not: they go on here).
    pub fn ids(&self) -> Vec<u64> {
        self.running
            .values()
            .flatten()
            .map(|job| job.record.id)
            .chain(self.queued.values().flatten().map(|job| job.id))
            .collect()
    }
}
