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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::config::Service;
use crate::error::{CommandError, CommandResult};
use crate::events::{JobOutcome, JobReport};
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
}

/// A cheap handle on the jobs task.
#[derive(Clone)]
pub struct JobsHandle(mpsc::UnboundedSender<Request>);

impl JobsHandle {
    /// Queues `recipe` of `service`; returns the job id.
    pub async fn run(&self, service: &str, recipe: &str) -> CommandResult<u64> {
        let (reply, answer) = oneshot::channel();
        self.0
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
        let _ = self.0.send(Request::Configure(service.to_owned(), spec));
    }
}

/// Starts the jobs task.
pub fn spawn(supervisor: Handle) -> JobsHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let jobs = Jobs {
        pools: HashMap::new(),
        next_id: 0,
        supervisor,
        tx: tx.clone(),
    };
    tokio::spawn(jobs.run(rx));
    JobsHandle(tx)
}

struct Pool {
    spec: Arc<Service>,
    active: u32,
    queue: VecDeque<(u64, String)>,
    schedules: Vec<AbortHandle>,
}

struct Jobs {
    pools: HashMap<String, Pool>,
    next_id: u64,
    /// Where the job facts go (and whom a scheduled run asks whether it is served here).
    supervisor: Handle,
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
                    self.start_ready(&service, Some(report)).await;
                }
            }
        }
    }

    fn configure(&mut self, service: String, spec: Option<Arc<Service>>) {
        let Some(spec) = spec else {
            if let Some(pool) = self.pools.remove(&service) {
                pool.schedules.iter().for_each(AbortHandle::abort);
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
        pool.queue.push_back((self.next_id, recipe.to_owned()));
        Ok(self.next_id)
    }

    /// Starts queued jobs while there are free workers, then publishes the counts (with
    /// the job that just ended, if one did).
    async fn start_ready(&mut self, service: &str, finished: Option<JobReport>) {
        let Some(pool) = self.pools.get_mut(service) else {
            return;
        };
        while pool.active < pool.spec.workers.max_active {
            let Some((id, recipe)) = pool.queue.pop_front() else {
                break;
            };
            pool.active += 1;
            let (spec, tx, service) = (pool.spec.clone(), self.tx.clone(), service.to_owned());
            tokio::spawn(async move {
                let outcome = run_steps(&spec, &recipe).await;
                let report = JobReport {
                    service,
                    id,
                    recipe,
                    outcome,
                };
                let _ = tx.send(Request::Done(report));
            });
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

/// Runs the steps of `recipe` in order; stops at the first that fails.
async fn run_steps(spec: &Service, recipe: &str) -> JobOutcome {
    let Some(recipe_spec) = spec.recipes.get(recipe) else {
        return JobOutcome::Failed {
            error: format!("recipe {recipe:?} was removed before it ran"),
        };
    };
    for (i, step) in recipe_spec.steps.iter().enumerate() {
        let output = match crate::process::command::command(spec, step, &[]) {
            Ok(mut command) => command.output().await.map_err(|e| e.to_string()),
            Err(err) => Err(err),
        };
        match output {
            Err(error) => {
                return JobOutcome::Failed {
                    error: format!("step {} ({}) could not run: {error}", i + 1, step.join(" ")),
                };
            }
            Ok(output) if !output.status.success() => {
                let status = crate::process::exit_code(output.status);
                tracing::warn!(
                    "recipe {recipe:?} step {} ({}) exited with {status}: {}",
                    i + 1,
                    step.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                return JobOutcome::Finished { status };
            }
            Ok(_) => {}
        }
    }
    JobOutcome::Finished { status: 0 }
}
