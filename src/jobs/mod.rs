//! Recipes and their worker pools (leprechaun's agents and workers): `RunRecipe` queues a
//! job that runs a recipe's steps one after the other; each service runs at most
//! `workers.max_active` jobs at once and queues at most `workers.max_queued` more (beyond
//! that `Error.QueueFull`). A recipe with `schedule = "every 1h"` is queued periodically.
//! When a job ends, the service object emits `JobFinished(id, recipe, status)` — status 0
//! when every step succeeded, else the exit status of the step that failed — or
//! `JobFailed(id, recipe, error)` when a step could not be run at all.
//!
//! One task owns every pool (an actor like the supervisor); jobs run in tasks of their own
//! and report back to it. It is the one owner of the job facts: it sends the counts and
//! each ended job, in order, through the supervisor's command channel to the publisher.
//! Recipes run only where their service is served: a client's `RunRecipe` is checked
//! before it reaches the pool, and a scheduled run asks the supervisor at each tick.
//!
//! Every job is recorded in the state store as it is queued, runs and ends (the last 1000
//! per service are kept): `ListJobs` reads that history, job ids never repeat across
//! restarts of corrald, and a job that was queued or running when corrald died is recorded
//! as failed at the next start. `CancelJob` drops a queued job or stops a running one.

mod actor;
mod launch;
pub mod reexec;
mod steps;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Service;
use crate::error::{CommandError, CommandResult};
use crate::events::{JobOutcome, JobReport};
use crate::process::OutputMode;
use crate::store::{JobRecord, JobState, Store, now_us};
use crate::supervisor::Handle;
use actor::Jobs;
use reexec::{Inherited, JobsState};

enum Request {
    Configure(String, Option<Arc<Service>>),
    Run {
        service: String,
        recipe: String,
        reply: Option<oneshot::Sender<CommandResult<u64>>>,
    },
    /// A job ended (its service is `report.service`).
    Done(JobReport),
    Cancel(u64, oneshot::Sender<CommandResult>),
    /// A live re-exec: the state to hand over; then nothing moves until `Thaw` or the exec.
    Freeze(oneshot::Sender<JobsState>),
    Thaw,
    /// After start-up: what a re-exec handed over for services that are gone is ended.
    SettleInherited,
}

/// A cheap handle on the jobs task.
#[derive(Clone)]
pub struct JobsHandle {
    requests: mpsc::UnboundedSender<Request>,
    /// The job history (the jobs task writes it; reading it needs no round trip).
    store: Store,
}

impl JobsHandle {
    /// Queues `recipe` of `service`; returns the job id.
    pub async fn run(&self, service: &str, recipe: &str) -> CommandResult<u64> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Run {
                service: service.to_owned(),
                recipe: recipe.to_owned(),
                reply: Some(reply),
            })
            .map_err(|_| CommandError::ShuttingDown)?;
        answer.await.map_err(|_| CommandError::ShuttingDown)?
    }

    /// Sets (or with `None` removes) the definition whose recipes and workers apply.
    pub fn configure(&self, service: &str, spec: Option<Arc<Service>>) {
        let _ = self
            .requests
            .send(Request::Configure(service.to_owned(), spec));
    }

    /// Drops a queued job, or stops a running one (its step's process group gets SIGTERM,
    /// then SIGKILL after the service's `stop_timeout`).
    pub async fn cancel(&self, id: u64) -> CommandResult {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Cancel(id, reply))
            .map_err(|_| CommandError::ShuttingDown)?;
        answer.await.map_err(|_| CommandError::ShuttingDown)?
    }

    /// A live re-exec begins: the queued and running jobs, and the actor stops moving
    /// (running steps go on, but none is reaped and none starts) until [`JobsHandle::thaw`].
    pub async fn freeze(&self) -> Option<JobsState> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Freeze(reply)).ok()?;
        answer.await.ok()
    }

    /// The re-exec failed: the jobs go on.
    pub fn thaw(&self) {
        let _ = self.requests.send(Request::Thaw);
    }

    /// After start-up: jobs a re-exec handed over for services no longer configured end.
    pub fn settle_inherited(&self) {
        let _ = self.requests.send(Request::SettleInherited);
    }

    /// The jobs of `service` (all services with `None`), oldest first.
    pub async fn list(&self, service: Option<&str>) -> Vec<JobRecord> {
        self.store.list_jobs(service).await
    }
}

/// Starts the jobs task; steps' output goes where services' does (`output`). Job ids
/// continue after `max_job_id`; `unfinished` are the jobs the last corrald left queued or
/// running, recorded now as failed — except those a live re-exec hands over (`inherited`),
/// which go on.
pub fn spawn(
    supervisor: Handle,
    store: Store,
    output: OutputMode,
    unfinished: Vec<JobRecord>,
    max_job_id: u64,
    inherited: Option<JobsState>,
) -> JobsHandle {
    let next_id = max_job_id.max(inherited.as_ref().map_or(0, |state| state.next_id));
    let inherited = inherited.map(Inherited::new).unwrap_or_default();
    let going_on = inherited.ids();
    for mut job in unfinished
        .into_iter()
        .filter(|job| !going_on.contains(&job.id))
    {
        job.state = JobState::Failed;
        job.finished_us = now_us();
        job.error = "corrald stopped before the job finished".to_owned();
        store.record_job(job);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let jobs = Jobs {
        pools: HashMap::new(),
        running: HashMap::new(),
        next_id,
        supervisor,
        store: store.clone(),
        output,
        frozen: watch::channel(false).0,
        deferred: Vec::new(),
        inherited,
        tx: tx.clone(),
    };
    tokio::spawn(jobs.run(rx));
    JobsHandle {
        requests: tx,
        store,
    }
}

/// `record` as it ended with `outcome`.
pub(super) fn ended(mut record: JobRecord, outcome: &JobOutcome) -> JobRecord {
    record.finished_us = now_us();
    match outcome {
        JobOutcome::Finished { status } => {
            record.state = JobState::Finished;
            record.exit_status = *status;
        }
        JobOutcome::Failed { error } => {
            record.state = JobState::Failed;
            record.error = error.clone();
        }
        JobOutcome::Cancelled => {
            record.state = JobState::Cancelled;
            record.error = "cancelled by request".to_owned();
        }
    }
    record
}
