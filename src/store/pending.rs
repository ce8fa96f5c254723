//! The writer's memory: what corrald wants on disk and which part of it is not there yet.
//!
//! Desired states and run records are one row per service, so the writer keeps all of them
//! (a mirror of the tables, O(services)) and marks the services whose row changed: many
//! changes to one service before a commit become one row, the latest. Should the database
//! be lost (corrupt, moved aside), the whole mirror is written into the fresh one. Job rows
//! are only kept until written, at most [`KEEP_JOBS`] per service — the same bound as the
//! table's, so a long outage loses nothing that the table would have kept.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{Transaction, params};

use super::KEEP_JOBS;
use super::records::{DesiredRecord, JobRecord, Loaded, RunRecord};

/// One change from a caller.
#[derive(Debug)]
pub(super) enum Write {
    /// `None` deletes the row.
    Desired(String, Option<DesiredRecord>),
    Job(JobRecord),
    Run(String, Option<RunRecord>),
}

/// A run record as the mirror keeps it (every running service has one): `extra` as the
/// JSON text it is written as. Kept parsed, a `serde_json::Value` object is a B-tree node of
/// its own, ~600 bytes per running service; as text, about 80.
#[derive(Debug)]
struct RunRow {
    main_pid: u32,
    start_time: u64,
    pgid: u32,
    cgroup: Box<str>,
    run_id: u64,
    n_restarts: u32,
    extra: Box<str>,
}

impl From<&RunRecord> for RunRow {
    fn from(record: &RunRecord) -> RunRow {
        RunRow {
            main_pid: record.main_pid,
            start_time: record.start_time,
            pgid: record.pgid,
            cgroup: record.cgroup.as_str().into(),
            run_id: record.run_id,
            n_restarts: record.n_restarts,
            extra: record.extra.to_string().into(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Pending {
    desired: HashMap<String, DesiredRecord>,
    runs: HashMap<String, RunRow>,
    dirty_desired: HashSet<String>,
    dirty_runs: HashSet<String>,
    /// Not yet written, per service, by id.
    jobs: HashMap<String, BTreeMap<u64, JobRecord>>,
    max_job_id: u64,
    max_job_id_dirty: bool,
}

impl Pending {
    /// Starts from what was read at open, all of it clean (it is on disk already).
    pub(super) fn from_loaded(loaded: &Loaded) -> Pending {
        Pending {
            desired: loaded.desired.clone(),
            runs: (loaded.runs.iter())
                .map(|(service, record)| (service.clone(), RunRow::from(record)))
                .collect(),
            max_job_id: loaded.max_job_id,
            ..Pending::default()
        }
    }

    pub(super) fn absorb(&mut self, write: Write) {
        match write {
            Write::Desired(service, record) => {
                match record {
                    Some(record) => self.desired.insert(service.clone(), record),
                    None => self.desired.remove(&service),
                };
                self.dirty_desired.insert(service);
            }
            Write::Run(service, record) => {
                match record {
                    Some(record) => self.runs.insert(service.clone(), RunRow::from(&record)),
                    None => self.runs.remove(&service),
                };
                self.dirty_runs.insert(service);
            }
            Write::Job(job) => {
                if job.id > self.max_job_id {
                    self.max_job_id = job.id;
                    self.max_job_id_dirty = true;
                }
                let queue = self.jobs.entry(job.service.clone()).or_default();
                queue.insert(job.id, job);
                if queue.len() > KEEP_JOBS {
                    queue.pop_first();
                }
            }
        }
    }

    /// Whether anything waits to be written.
    pub(super) fn is_empty(&self) -> bool {
        self.dirty_desired.is_empty()
            && self.dirty_runs.is_empty()
            && self.jobs.is_empty()
            && !self.max_job_id_dirty
    }

    /// How many rows wait to be written, for log messages.
    pub(super) fn len(&self) -> usize {
        self.dirty_desired.len()
            + self.dirty_runs.len()
            + self.jobs.values().map(BTreeMap::len).sum::<usize>()
    }

    /// After the database was replaced by an empty one: everything in the mirror is to be
    /// written again.
    pub(super) fn mark_all_dirty(&mut self) {
        self.dirty_desired.extend(self.desired.keys().cloned());
        self.dirty_runs.extend(self.runs.keys().cloned());
        self.max_job_id_dirty = true;
    }

    /// Writes everything pending into `tx` and prunes each touched service's history to the
    /// last [`KEEP_JOBS`]. Nothing is marked clean here: the caller does that once the
    /// transaction has committed ([`Pending::written`]).
    pub(super) fn write(&self, tx: &Transaction) -> rusqlite::Result<()> {
        for service in &self.dirty_desired {
            match self.desired.get(service) {
                Some(d) => tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO desired (service, state, since_us, by)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![service, d.state.as_str(), d.since_us as i64, d.by])?,
                None => tx
                    .prepare_cached("DELETE FROM desired WHERE service = ?1")?
                    .execute([service])?,
            };
        }
        for service in &self.dirty_runs {
            match self.runs.get(service) {
                Some(r) => tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO runs
                         (service, main_pid, start_time, pgid, cgroup, run_id, n_restarts, extra)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        service,
                        r.main_pid,
                        r.start_time as i64,
                        r.pgid,
                        r.cgroup,
                        r.run_id as i64,
                        r.n_restarts,
                        &*r.extra,
                    ])?,
                None => tx
                    .prepare_cached("DELETE FROM runs WHERE service = ?1")?
                    .execute([service])?,
            };
        }
        for (service, jobs) in &self.jobs {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO jobs
                 (id, service, recipe, state, queued_us, finished_us, exit_status, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for j in jobs.values() {
                insert.execute(params![
                    j.id as i64,
                    j.service,
                    j.recipe,
                    j.state.as_str(),
                    j.queued_us as i64,
                    j.finished_us as i64,
                    j.exit_status,
                    j.error,
                ])?;
            }
            tx.prepare_cached(
                "DELETE FROM jobs WHERE service = ?1 AND id <
                 (SELECT id FROM jobs WHERE service = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )?
            .execute(params![service, (KEEP_JOBS - 1) as i64])?;
        }
        if self.max_job_id_dirty {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('max_job_id', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            )?
            .execute([self.max_job_id as i64])?;
        }
        Ok(())
    }

    /// The transaction that [`Pending::write`] filled has committed.
    pub(super) fn written(&mut self) {
        self.dirty_desired.clear();
        self.dirty_runs.clear();
        // A start-up marks every service dirty at once; keep no table that size for good.
        self.dirty_desired.shrink_to_fit();
        self.dirty_runs.shrink_to_fit();
        self.jobs.clear();
        self.max_job_id_dirty = false;
    }

    /// Jobs not yet written, to lay over what the database returns.
    pub(super) fn unwritten_jobs(&self, service: Option<&str>) -> Vec<JobRecord> {
        match service {
            Some(service) => self
                .jobs
                .get(service)
                .map(|jobs| jobs.values().cloned().collect())
                .unwrap_or_default(),
            None => self
                .jobs
                .values()
                .flat_map(|j| j.values().cloned())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{Desired, JobState};

    fn job(id: u64, service: &str) -> JobRecord {
        JobRecord {
            id,
            service: service.into(),
            recipe: "r".into(),
            state: JobState::Finished,
            queued_us: id,
            finished_us: id + 1,
            exit_status: 0,
            error: String::new(),
        }
    }

    #[test]
    fn many_changes_to_one_service_leave_one_row_the_latest() {
        let mut pending = Pending::default();
        for i in 0..100 {
            let state = if i % 2 == 0 {
                Desired::Started
            } else {
                Desired::Stopped
            };
            let record = DesiredRecord {
                state,
                since_us: i,
                by: "uid 0".into(),
            };
            pending.absorb(Write::Desired("web".into(), Some(record)));
        }
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.desired["web"].state, Desired::Stopped);
        assert_eq!(pending.desired["web"].since_us, 99);
    }

    #[test]
    fn unwritten_jobs_are_bounded_per_service_keeping_the_newest() {
        let mut pending = Pending::default();
        for id in 1..=(KEEP_JOBS as u64 + 50) {
            pending.absorb(Write::Job(job(id, "web")));
        }
        pending.absorb(Write::Job(job(5000, "db")));
        let web = pending.unwritten_jobs(Some("web"));
        assert_eq!(web.len(), KEEP_JOBS);
        assert_eq!(web.first().unwrap().id, 51);
        assert_eq!(pending.max_job_id, 5000);
        assert_eq!(pending.len(), KEEP_JOBS + 1);
    }

    #[test]
    fn a_fresh_database_gets_the_whole_mirror_again() {
        let mut loaded = Loaded::default();
        let record = DesiredRecord {
            state: Desired::Started,
            since_us: 1,
            by: "x".into(),
        };
        loaded.desired.insert("web".into(), record);
        let mut pending = Pending::from_loaded(&loaded);
        assert!(pending.is_empty());
        pending.mark_all_dirty();
        assert!(!pending.is_empty());
        assert_eq!(pending.len(), 1);
    }
}
