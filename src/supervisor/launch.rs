//! Launching many services at once: the spawns of a round of batch members run on a few
//! threads, because one `posix_spawn` blocks its thread until the child has exec'd
//! (~0.8 ms here, mostly the child's own work) and a sequential loop leaves that wait
//! unused. Everything around a spawn (state, events, the child's owner task) stays
//! in the supervisor task, in the batch's order, so the parallelism changes no outcome.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::time::Instant;

use crate::config::Service;
use crate::process::cgroup::ServiceCgroup;
use crate::process::{OutputMode, SpawnError, SpawnRequest, spawn};

/// Threads spawning at once. On 2 cores, 1000 spawns took ~790 ms from one thread, ~750 ms
/// from two and ~600 ms from four; more were not measured.
const SPAWN_THREADS: usize = 4;

/// A launch between its preparation and its spawn.
pub(super) struct Launch {
    pub name: String,
    pub run_id: u64,
    pub spec: Arc<Service>,
    /// The notify socket's path, for a notify-type service.
    pub notify: Option<PathBuf>,
    /// The cgroup the child joins before it execs (cgroup mode).
    pub cgroup: Option<ServiceCgroup>,
    pub now: Instant,
}

impl Launch {
    pub fn request<'a>(&'a self, output: &'a OutputMode) -> SpawnRequest<'a> {
        SpawnRequest {
            name: &self.name,
            service: &self.spec,
            notify_socket: self.notify.as_deref(),
            output,
            cgroup: self.cgroup.as_ref(),
        }
    }
}

pub(super) type Spawned = Result<crate::process::Child, SpawnError>;

/// Spawns every launch, on up to [`SPAWN_THREADS`] threads; results in `launches`' order.
/// Must run inside the tokio runtime (the children are registered with it).
pub(super) fn spawn_all(launches: &[Launch], output: &OutputMode) -> Vec<Spawned> {
    let threads = SPAWN_THREADS.min(launches.len());
    if threads <= 1 {
        return launches.iter().map(|l| spawn(&l.request(output))).collect();
    }
    let runtime = tokio::runtime::Handle::current();
    let mut results: Vec<Option<Spawned>> = launches.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let runtime = &runtime;
                scope.spawn(move || {
                    let _context = runtime.enter();
                    // Interleaved, so each thread's share is spread over the whole list.
                    (t..launches.len())
                        .step_by(threads)
                        .map(|i| (i, spawn(&launches[i].request(output))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            for (i, spawned) in worker.join().expect("a spawn thread panicked") {
                results[i] = Some(spawned);
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every launch spawned"))
        .collect()
}
