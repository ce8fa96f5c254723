//! The jobs actor: the one task that owns every pool — queues, running jobs, schedules —
//! and the job history's writes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::reexec::Inherited;
use super::steps::Resume;
use super::{Request, ended};
use crate::config::Service;
use crate::error::{CommandError, CommandResult};
use crate::events::{JobOutcome, JobReport};
use crate::process::OutputMode;
use crate::store::{JobRecord, JobState, Store, now_us};
use crate::supervisor::{Handle, JobsUpdate};

pub(super) struct Pool {
    pub(super) spec: Arc<Service>,
    pub(super) active: u32,
    pub(super) queue: VecDeque<JobRecord>,
    pub(super) schedules: Vec<AbortHandle>,
}

/// A job whose steps run.
pub(super) struct Running {
    pub(super) record: JobRecord,
    pub(super) cancel: CancellationToken,
    /// The step that runs now, as (index, pid): written by the job's task as each step
    /// starts, read by a re-exec.
    pub(super) step: Arc<Mutex<Option<(usize, u32)>>>,
}

pub(super) struct Jobs {
    pub(super) pools: HashMap<String, Pool>,
    pub(super) running: HashMap<u64, Running>,
    pub(super) next_id: u64,
    /// Where the job facts go (and whom a scheduled run asks whether it is served here).
    pub(super) supervisor: Handle,
    /// Where every job's record is kept.
    pub(super) store: Store,
    /// Where steps' output goes.
    pub(super) output: OutputMode,
    /// True while frozen for a live re-exec; requests meanwhile wait in `deferred`.
    pub(super) frozen: watch::Sender<bool>,
    pub(super) deferred: Vec<Request>,
    /// What a re-exec handed over, until each service's pool is configured.
    pub(super) inherited: Inherited,
    pub(super) tx: mpsc::UnboundedSender<Request>,
}

impl Jobs {
    pub(super) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        while let Some(request) = requests.recv().await {
            if *self.frozen.borrow() && !matches!(request, Request::Thaw) {
                self.deferred.push(request);
                continue;
            }
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
                        // The caller holds the job's id only once the job is on disk: a
                        // corrald killed right after cannot lose it from the history. (A
                        // store that cannot write answers at once; the job still runs.)
                        let store = self.store.clone();
                        tokio::spawn(async move {
                            if result.is_ok() {
                                let _ = store.flush().await;
                            }
                            let _ = reply.send(result);
                        });
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
                Request::Freeze(reply) => {
                    let _ = reply.send(self.freeze());
                }
                Request::Thaw => {
                    self.frozen.send_replace(false);
                    for request in std::mem::take(&mut self.deferred) {
                        let _ = self.tx.send(request);
                    }
                }
                Request::SettleInherited => self.settle_inherited(),
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
        if !self.pools.contains_key(&service) {
            let queue = self.inherited.queued.remove(&service).unwrap_or_default();
            let running = self.inherited.running.remove(&service).unwrap_or_default();
            self.pools.insert(
                service.clone(),
                Pool {
                    spec: spec.clone(),
                    active: running.len() as u32,
                    queue: queue.into(),
                    schedules: Vec::new(),
                },
            );
            for job in running {
                let resume = Resume::Running {
                    index: job.step,
                    pid: job.pid,
                };
                self.launch(&service, job.record, resume);
            }
        }
        let pool = self.pools.get_mut(&service).expect("just made");
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
        while let Some(pool) = self.pools.get_mut(service)
            && pool.active < pool.spec.workers.max_active
        {
            let Some(mut record) = pool.queue.pop_front() else {
                break;
            };
            pool.active += 1;
            record.state = JobState::Running;
            self.store.record_job(record.clone());
            self.launch(service, record, Resume::Start);
        }
        let Some(pool) = self.pools.get(service) else {
            return;
        };
        let update = JobsUpdate {
            service: service.to_owned(),
            active: pool.active,
            queued: pool.queue.len() as u32,
            finished,
        };
        self.supervisor.jobs_changed(update).await;
    }
}
