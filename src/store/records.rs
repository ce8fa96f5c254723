//! What the state store keeps, as plain data: the rows of its three tables, what it hands
//! back at start-up ([`Loaded`]), its health, and its errors. No I/O here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a client last asked of a service: `Start`/`Restart` → `Started`, `Stop` → `Stopped`.
/// It overrides `autostart` until the opposite call or until a reload destroys the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    Started,
    Stopped,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Started => "started",
            Desired::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<Desired> {
        match text {
            "started" => Some(Desired::Started),
            "stopped" => Some(Desired::Stopped),
            _ => None,
        }
    }
}

/// One service's desired state with who asked and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRecord {
    pub state: Desired,
    /// µs since the epoch.
    pub since_us: u64,
    /// Who asked: `"uid 0"`, a D-Bus caller description, `"corralctl"`… free text.
    pub by: String,
}

/// Where a job is in its life (the strings are `Manager.ListJobs`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobState {
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        Some(match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "finished" => JobState::Finished,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    /// Queued and running jobs are not over: at start-up they belong to a corrald that died.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// One job, as `Manager.ListJobs` reports it. Recording a job again with the same `id`
/// replaces the row (queued → running → finished).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    pub id: u64,
    pub service: String,
    pub recipe: String,
    pub state: JobState,
    /// µs since the epoch.
    pub queued_us: u64,
    /// µs since the epoch, 0 while not finished.
    pub finished_us: u64,
    /// −1 when there is none (not finished, or failed before a step ran).
    pub exit_status: i32,
    /// Why it failed; empty otherwise.
    pub error: String,
}

/// What corrald needs to re-adopt a service's running process after it was killed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub main_pid: u32,
    /// Field 22 of `/proc/PID/stat` (clock ticks after boot): with the PID, it tells the
    /// process apart from a later one that reused the PID; see
    /// [`crate::process::procfs::start_ticks`].
    pub start_time: u64,
    /// Process group.
    pub pgid: u32,
    /// The service's cgroup path, `""` without cgroups.
    pub cgroup: String,
    pub run_id: u64,
    pub n_restarts: u32,
    /// Whatever else the supervisor wants back (stored as JSON text).
    pub extra: serde_json::Value,
}

impl RunRecord {
    /// Whether the recorded process still runs: the PID exists and has the recorded start
    /// time, so a PID reused by another process does not count, and it is not a zombie
    /// (dead, its new parent has not reaped it yet).
    pub fn is_running(&self) -> bool {
        use crate::process::procfs;
        procfs::start_ticks(self.main_pid) == Some(self.start_time)
            && procfs::stat(self.main_pid).is_some_and(|stat| !stat.exited)
    }
}

/// Everything corrald needs from the store at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// Service name → its desired state.
    pub desired: HashMap<String, DesiredRecord>,
    /// Service name → its last run, for re-adoption.
    pub runs: HashMap<String, RunRecord>,
    /// Jobs still queued or running when the last corrald stopped (oldest first): it died
    /// under them, so they need an outcome. The finished history is [`super::Store::list_jobs`].
    pub unfinished_jobs: Vec<JobRecord>,
    /// The highest job id ever used: the next job must take a higher one, so ids never
    /// repeat across restarts. When the history could not be read (corrupt, unreadable,
    /// newer schema), this is the current time in µs since the epoch — above any id a
    /// counter starting at 1 has reached — so ids stay unique then too.
    pub max_job_id: u64,
}

/// Whether what corrald holds reaches the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    Ok,
    /// Writes are not reaching the disk (they are kept in memory and retried), or state was
    /// lost during this run of corrald (a corrupt database was moved aside); `reason` says
    /// which, what to do, and where.
    Degraded {
        reason: String,
    },
}

impl StoreHealth {
    pub fn is_ok(&self) -> bool {
        matches!(self, StoreHealth::Ok)
    }
}

/// What the store's callers can get back as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the state directory's lock. Fatal for corrald: two corralds
    /// on one state directory would both supervise the same services.
    #[error(
        "another corrald is using the state directory {}: only one may use it at a time (stop the other one, or give this one its own with --state-dir)",
        dir.display()
    )]
    Locked { dir: PathBuf },
    /// A flush could not commit what it waited for; the writes stay queued and are retried.
    #[error("the state store cannot write: {reason}")]
    NotWritten { reason: String },
    /// The store's writer thread is gone (closed, or it panicked: see the health).
    #[error("the state store is closed")]
    Closed,
}

/// Now, in µs since the epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_strings() {
        for s in [Desired::Started, Desired::Stopped] {
            assert_eq!(Desired::parse(s.as_str()), Some(s));
        }
        for s in [
            JobState::Queued,
            JobState::Running,
            JobState::Finished,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert_eq!(Desired::parse("Started"), None);
        assert_eq!(JobState::parse(""), None);
    }

    #[test]
    fn a_run_record_matches_its_process_only_with_the_same_start_time() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut run = RunRecord {
            main_pid: pid,
            start_time: crate::process::procfs::start_ticks(pid).unwrap(),
            pgid: pid,
            cgroup: String::new(),
            run_id: 1,
            n_restarts: 0,
            extra: serde_json::Value::Null,
        };
        assert!(run.is_running());
        run.start_time += 1;
        assert!(!run.is_running(), "another process under the same PID");
        run.start_time -= 1;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!run.is_running());
    }
}
