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

mod steps;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Service;
use crate::error::{CommandError, CommandResult};
use crate::events::{JobOutcome, JobReport};
use crate::store::{JobRecord, JobState, Store, now_us};
use crate::supervisor::{Handle, JobsUpdate};

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

    /// The jobs of `service` (all services with `None`), oldest first.
    pub async fn list(&self, service: Option<&str>) -> Vec<JobRecord> {
        self.store.list_jobs(service).await
    }
}

/// Starts the jobs task. Job ids continue after `max_job_id`; `unfinished` are the jobs the
/// last corrald left queued or running, recorded now as failed.
pub fn spawn(
    supervisor: Handle,
    store: Store,
    unfinished: Vec<JobRecord>,
    max_job_id: u64,
) -> JobsHandle {
    for mut job in unfinished {
        job.state = JobState::Failed;
        job.finished_us = now_us();
        job.error = "corrald stopped before the job finished".to_owned();
        store.record_job(job);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let jobs = Jobs {
        pools: HashMap::new(),
        running: HashMap::new(),
        next_id: max_job_id,
        supervisor,
        store: store.clone(),
        tx: tx.clone(),
    };
    tokio::spawn(jobs.run(rx));
    JobsHandle {
        requests: tx,
        store,
    }
}

struct Pool {
    spec: Arc<Service>,
    active: u32,
    queue: VecDeque<JobRecord>,
    schedules: Vec<AbortHandle>,
}

/// A job whose steps run.
struct Running {
    record: JobRecord,
    cancel: CancellationToken,
}

struct Jobs {
    pools: HashMap<String, Pool>,
    running: HashMap<u64, Running>,
    next_id: u64,
    /// Where the job facts go (and whom a scheduled run asks whether it is served here).
    supervisor: Handle,
    /// Where every job's record is kept.
    store: Store,
    tx: mpsc::UnboundedSender<Request>,
}

impl Jobs {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        while let Some(request) = requests.recv().await {
            match request {
                Request::Configure(service, spec) => self.configure(service, spec),
                Request::Run {
                    service,
                    recipe,
                    reply,
                } => {
                    let result = self.enqueue(&service, &recipe);
                    if let Err(err) = &result
                        && reply.is_none()
                    {
                        tracing::warn!(service, "scheduled recipe {recipe:?} not queued: {err}");
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                    self.start_ready(&service, None).await;
                }
                Request::Done(report) => {
                    let service = report.service.clone();
                    if let Some(pool) = self.pools.get_mut(&service) {
                        pool.active = pool.active.saturating_sub(1);
                    }
                    if let Some(running) = self.running.remove(&report.id) {
                        self.store
                            .record_job(ended(running.record, &report.outcome));
                    }
                    self.start_ready(&service, Some(report)).await;
                }
                Request::Cancel(id, reply) => {
                    let result = self.cancel(id).await;
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn configure(&mut self, service: String, spec: Option<Arc<Service>>) {
        let Some(spec) = spec else {
            if let Some(pool) = self.pools.remove(&service) {
                pool.schedules.iter().for_each(AbortHandle::abort);
                // Running jobs finish on the definition they started with; queued ones go.
                for job in pool.queue {
                    let mut record = ended(job, &JobOutcome::Cancelled);
                    record.error = "its service was removed".to_owned();
                    self.store.record_job(record);
                }
            }
            return;
        };
        let pool = self.pools.entry(service.clone()).or_insert_with(|| Pool {
            spec: spec.clone(),
            active: 0,
            queue: VecDeque::new(),
            schedules: Vec::new(),
        });
        pool.schedules.iter().for_each(AbortHandle::abort);
        pool.spec = spec.clone();
        pool.schedules = spec
            .recipes
            .iter()
            .filter_map(|(recipe, r)| r.schedule.map(|every| (recipe.clone(), every)))
            .map(|(recipe, every)| {
                let (tx, service) = (self.tx.clone(), service.clone());
                let supervisor = self.supervisor.clone();
                tokio::spawn(async move {
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    loop {
                        tick.tick().await;
                        // Served here is the supervisor's fact: ask it at each tick.
                        if let Err(why) = supervisor.check_served(&service).await {
                            tracing::debug!(service, "scheduled recipe {recipe:?} not run: {why}");
                            continue;
                        }
                        let run = Request::Run {
                            service: service.clone(),
                            recipe: recipe.clone(),
                            reply: None,
                        };
                        if tx.send(run).is_err() {
                            return;
                        }
                    }
                })
                .abort_handle()
            })
            .collect();
    }

    fn enqueue(&mut self, service: &str, recipe: &str) -> CommandResult<u64> {
        let pool = self
            .pools
            .get_mut(service)
            .ok_or_else(|| CommandError::NoSuchService(service.to_owned()))?;
        if !pool.spec.recipes.contains_key(recipe) {
            let known: Vec<&str> = pool.spec.recipes.keys().map(String::as_str).collect();
            return Err(CommandError::NoSuchMethod(format!(
                "service {service:?} has no recipe {recipe:?}; it has: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        }
        let workers = pool.spec.workers;
        if pool.active >= workers.max_active && pool.queue.len() as u32 >= workers.max_queued {
            return Err(CommandError::QueueFull(format!(
                "service {service:?} runs {} jobs and has {} queued (workers.max_active = {}, workers.max_queued = {}); try again later",
                pool.active,
                pool.queue.len(),
                workers.max_active,
                workers.max_queued
            )));
        }
        self.next_id += 1;
        let record = JobRecord {
            id: self.next_id,
            service: service.to_owned(),
            recipe: recipe.to_owned(),
            state: JobState::Queued,
            queued_us: now_us(),
            finished_us: 0,
            exit_status: -1,
            error: String::new(),
        };
        self.store.record_job(record.clone());
        pool.queue.push_back(record);
        Ok(self.next_id)
    }

    /// `CancelJob(id)`: a queued job is dropped at once (and announced as failed,
    /// "cancelled"); a running one is told to stop and ends through `Done`.
    async fn cancel(&mut self, id: u64) -> CommandResult {
        if let Some(running) = self.running.get(&id) {
            running.cancel.cancel();
            return Ok(());
        }
        let queued = self.pools.iter_mut().find_map(|(service, pool)| {
            let at = pool.queue.iter().position(|job| job.id == id)?;
            Some((service.clone(), pool.queue.remove(at)?))
        });
        let Some((service, record)) = queued else {
            return Err(CommandError::InvalidArgs(format!(
                "no queued or running job {id}; `corralctl jobs` lists them"
            )));
        };
        self.store
            .record_job(ended(record.clone(), &JobOutcome::Cancelled));
        let report = JobReport {
            service: service.clone(),
            id,
            recipe: record.recipe,
            outcome: JobOutcome::Cancelled,
        };
        self.start_ready(&service, Some(report)).await;
        Ok(())
    }

    /// Starts queued jobs while there are free workers, then publishes the counts (with
    /// the job that just ended, if one did).
    async fn start_ready(&mut self, service: &str, finished: Option<JobReport>) {
        let Some(pool) = self.pools.get_mut(service) else {
            return;
        };
        while pool.active < pool.spec.workers.max_active {
            let Some(mut record) = pool.queue.pop_front() else {
                break;
            };
            pool.active += 1;
            record.state = JobState::Running;
            self.store.record_job(record.clone());
            let cancel = CancellationToken::new();
            let (spec, tx, token) = (pool.spec.clone(), self.tx.clone(), cancel.clone());
            let (id, recipe, service_name) = (record.id, record.recipe.clone(), service.to_owned());
            tokio::spawn(async move {
                let outcome = steps::run_steps(&spec, &recipe, &token).await;
                let report = JobReport {
                    service: service_name,
                    id,
                    recipe,
                    outcome,
                };
                let _ = tx.send(Request::Done(report));
            });
            self.running.insert(id, Running { record, cancel });
        }
        let update = JobsUpdate {
            service: service.to_owned(),
            active: pool.active,
            queued: pool.queue.len() as u32,
            finished,
        };
        self.supervisor.jobs_changed(update).await;
    }
}

/// `record` as it ended with `outcome`.
fn ended(mut record: JobRecord, outcome: &JobOutcome) -> JobRecord {
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
