//! What the jobs actor does with a job: start its task, and its part in a live re-exec
//! (freeze, and settle what was handed over).

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::actor::{Jobs, Running};
use super::reexec::{JobsState, RunningState};
use super::steps::{self, Resume, StepEnv};
use super::{Request, ended};
use crate::events::{JobOutcome, JobReport};
use crate::store::JobRecord;

impl Jobs {
    /// Starts the task that runs `record`'s steps from `resume`.
    pub(super) fn launch(&mut self, service: &str, record: JobRecord, resume: Resume) {
        let Some(pool) = self.pools.get(service) else {
            return;
        };
        let cancel = CancellationToken::new();
        let step = Arc::new(Mutex::new(match resume {
            Resume::Start => None,
            Resume::Running { index, pid } => Some((index, pid)),
        }));
        let (spec, tx, output) = (pool.spec.clone(), self.tx.clone(), self.output.clone());
        let (token, progress, frozen) = (cancel.clone(), step.clone(), self.frozen.subscribe());
        let (id, recipe, service) = (record.id, record.recipe.clone(), service.to_owned());
        tokio::spawn(async move {
            let started = move |index: usize, pid: u32| {
                *progress.lock().unwrap_or_else(|e| e.into_inner()) = Some((index, pid));
            };
            let env = StepEnv {
                service: &service,
                output: &output,
                cancel: &token,
                frozen,
                started: &started,
            };
            let outcome = steps::run_steps(&spec, &recipe, resume, env).await;
            let report = JobReport {
                service,
                id,
                recipe,
                outcome,
            };
            let _ = tx.send(Request::Done(report));
        });
        self.running.insert(
            id,
            Running {
                record,
                cancel,
                step,
            },
        );
    }

    /// Freezes for a live re-exec (no step starts or is reaped from now on) and says what
    /// to hand over.
    pub(super) fn freeze(&mut self) -> JobsState {
        // Waits for a task that is starting a step right now (it holds the flag's read
        // lock meanwhile), so the step it records is the one that runs.
        self.frozen.send_replace(true);
        let running = self
            .running
            .values()
            .filter_map(|job| {
                let (step, pid) = (*job.step.lock().unwrap_or_else(|e| e.into_inner()))?;
                Some(RunningState {
                    record: job.record.clone(),
                    step,
                    pid,
                })
            })
            .collect();
        let queued = self
            .pools
            .values()
            .flat_map(|pool| pool.queue.iter().cloned())
            .collect();
        JobsState {
            next_id: self.next_id,
            running,
            queued,
        }
    }

    /// After start-up: jobs handed over for services that are gone end here.
    pub(super) fn settle_inherited(&mut self) {
        let inherited = std::mem::take(&mut self.inherited);
        for job in inherited.queued.into_values().flatten() {
            let mut record = ended(job, &JobOutcome::Cancelled);
            record.error = "its service was removed".to_owned();
            self.store.record_job(record);
        }
        for job in inherited.running.into_values().flatten() {
            let store = self.store.clone();
            // Its step is still corrald's child: reap it, and record how the job ended.
            tokio::spawn(async move {
                if let Ok(mut child) = crate::process::child::Child::inherit(job.pid) {
                    let _ = child.wait().await;
                }
                let mut record = ended(job.record, &JobOutcome::Cancelled);
                record.error = "its service was removed during a re-exec of corrald".to_owned();
                store.record_job(record);
            });
        }
    }
}
