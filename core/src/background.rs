//! Background jobs owned by this core: their records, the writes that keep the files
//! current, the calls waiting on them, and start-up recovery of records an earlier server
//! abandoned.
//!
//! A job's record is the truth on disk. It is written when the job is created (before the
//! caller hears its id), when its child starts, at most once a second while progress
//! arrives, every few minutes as a heartbeat (so a long healthy job is never mistaken for
//! an abandoned one), and when it ends. One write per job is in flight at a time; changes
//! made meanwhile are coalesced into the next write. The driver refuses to overwrite a
//! finished record, so a job cancelled elsewhere is never resurrected.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::dispatch::outcome::DispatchResult;
use crate::engine::{CallId, Core, Event};
use crate::io::{IoRequest, IoResult, JobFile, LogLevel};
use crate::jobs::{JobRecord, JobStatus};
use crate::timer::TimerKey;

/// How often a running job's record is rewritten even without progress.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(300);
/// At most one progress write per job per this interval.
pub(crate) const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// The length of one progress message in a record (how many are kept is
/// `settings.limits.progress_tail`).
pub(crate) const PROGRESS_CHARS: usize = 300;
/// A `running` record not written for this long belonged to a server that died.
pub(crate) const STALE_RUNNING_SECS: f64 = 3600.0;
/// A `pending` record older than this never started.
pub(crate) const STALE_PENDING_SECS: f64 = 24.0 * 3600.0;

/// Identifies a job owned by this core (timer keys need a `Copy` id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct JobKey(pub u64);

/// A job this core created and is running.
#[derive(Debug)]
pub(crate) struct OwnedJob {
    pub key: JobKey,
    pub record: JobRecord,
    /// A write of this record is in flight.
    writing: bool,
    /// The record changed since the write in flight started.
    dirty: bool,
    last_write: Option<crate::time::Timestamp>,
    /// The dispatch_async call waiting for the first write, to answer with the id.
    pub creator: Option<CallId>,
    /// How many progress messages the record keeps.
    progress_keep: usize,
    /// dispatch_wait calls waiting for the end.
    pub waiters: Vec<CallId>,
}

/// What we know of a record on disk, kept so listing thousands of jobs does not re-parse
/// every file on every call.
#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    pub modified: f64,
    pub size: u64,
    /// `None`: the file does not parse.
    pub row: Option<Row>,
}

/// The facts about one record that listing, gc and recovery need.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub status: JobStatus,
    pub agent: String,
    pub created_at: f64,
    pub completed_at: Option<f64>,
    pub summary: Value,
}

impl Row {
    pub fn of(record: &JobRecord) -> Row {
        Row {
            status: record.status,
            agent: record.agent.clone(),
            created_at: record.created_at,
            completed_at: record.completed_at,
            summary: record.summary(),
        }
    }
}

/// Every job this core owns, and the index of the jobs folder.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    pub owned: BTreeMap<String, OwnedJob>,
    keys: BTreeMap<JobKey, String>,
    pub index: BTreeMap<String, IndexEntry>,
    next: u64,
}

impl Jobs {
    /// The id of an owned job.
    pub fn id(&self, key: JobKey) -> Option<&String> {
        self.keys.get(&key)
    }
}

/// Where start-up recovery is.
#[derive(Debug)]
pub(crate) enum Recovery {
    ReadingConfig,
    Listing {
        retention_days: f64,
    },
    Reading {
        retention_days: f64,
        files: Vec<JobFile>,
    },
}

impl Core {
    /// The wall-clock time now, in Unix seconds.
    pub(crate) fn unix_now(&self) -> f64 {
        self.options.unix_time_at_epoch + self.now().as_duration().as_secs_f64()
    }

    /// A fresh job id: 32 lowercase hex digits.
    pub(crate) fn fresh_job_id(&mut self) -> String {
        self.fresh_uuid().replace('-', "")
    }

    /// Takes ownership of a new job record and writes it; `creator` hears when it is saved.
    pub(crate) fn own_job(
        &mut self,
        record: JobRecord,
        creator: Option<CallId>,
        progress_keep: u64,
    ) -> JobKey {
        self.jobs.next += 1;
        let key = JobKey(self.jobs.next);
        let id = record.id.clone();
        self.jobs.keys.insert(key, id.clone());
        let job = OwnedJob {
            key,
            record,
            writing: false,
            dirty: false,
            last_write: None,
            creator,
            progress_keep: usize::try_from(progress_keep).unwrap_or(usize::MAX),
            waiters: Vec::new(),
        };
        self.jobs.owned.insert(id.clone(), job);
        self.save_job(&id);
        key
    }

    /// The job's child got its slot and started.
    pub(crate) fn job_started(&mut self, key: JobKey) {
        let now = self.unix_now();
        let Some(job) = self.owned_job(key) else {
            return;
        };
        if job.record.status != JobStatus::Pending {
            return;
        }
        job.record.status = JobStatus::Running;
        job.record.started_at = Some(now);
        let id = job.record.id.clone();
        self.save_job(&id);
        self.timers
            .set(TimerKey::JobWrite(key.0), self.now().plus(HEARTBEAT));
    }

    /// A progress message of the job's child: kept in the record's rolling tail.
    pub(crate) fn job_progress(&mut self, key: JobKey, agent: &str, message: &str) {
        let now = self.unix_now();
        let clock = self.now();
        let Some(job) = self.owned_job(key) else {
            return;
        };
        let text = crate::engine::truncate_chars(&format!("[{agent}] {message}"), PROGRESS_CHARS)
            .to_string();
        let tail = job.record.progress.get_or_insert_with(Vec::new);
        tail.push(text);
        let excess = tail.len().saturating_sub(job.progress_keep);
        tail.drain(..excess);
        job.record.progress_updated_at = Some(now);
        let due = job
            .last_write
            .map_or(clock, |t| t.plus(PROGRESS_WRITE_INTERVAL));
        let id = job.record.id.clone();
        if due <= clock {
            self.save_job(&id);
            self.timers
                .set(TimerKey::JobWrite(key.0), clock.plus(HEARTBEAT));
        } else {
            self.timers.set(TimerKey::JobWrite(key.0), due);
        }
    }

    /// The job's run ended: record the result, tell the waiters, write the final record.
    pub(crate) fn job_finished(&mut self, key: JobKey, result: DispatchResult) {
        let now = self.unix_now();
        let Some(job) = self.owned_job(key) else {
            return;
        };
        if job.record.status.is_terminal() {
            return;
        }
        job.record.status = if result.success {
            JobStatus::Done
        } else {
            JobStatus::Failed
        };
        job.record.completed_at = Some(now);
        if !result.success {
            job.record.error = result.error.clone();
        }
        job.record.result = Some(result.to_json());
        self.end_job(key);
    }

    /// Marks an owned job cancelled (pending: before it ran; running: its child is killed).
    pub(crate) fn cancel_owned_job(&mut self, key: JobKey) {
        let now = self.unix_now();
        let Some(job) = self.owned_job(key) else {
            return;
        };
        job.record.error = Some(match job.record.status {
            JobStatus::Running => "Cancelled while running — subprocess killed".to_string(),
            _ => "Cancelled before execution".to_string(),
        });
        job.record.status = JobStatus::Cancelled;
        job.record.completed_at = Some(now);
        self.cancel_job_run(key);
        self.end_job(key);
    }

    /// A job write finished.
    pub(crate) fn job_written(&mut self, id: &str, result: Result<(), String>) {
        let Some(job) = self.jobs.owned.get_mut(id) else {
            return;
        };
        job.writing = false;
        let key = job.key;
        let creator = job.creator.take();
        if let Err(e) = &result {
            self.log(LogLevel::Warn, format!("Could not write job {id}: {e}"));
            if e.contains("never overwritten") {
                // Finished elsewhere (cancelled from another process): stop ours.
                self.cancel_job_run(key);
                self.forget_job(id);
                return;
            }
        }
        match creator {
            Some(call) if self.has_call(call) => {
                self.advance_call(call, Event::JobSaved { key, result })
            }
            Some(call) => {
                // The dispatch_async request was cancelled (or its client left) while the
                // record was being written: nobody knows the id, so the job must not run,
                // nor stay pending until recovery gives up on it. The call ends silently.
                if result.is_ok() {
                    self.cancel_owned_job(key);
                } else {
                    self.forget_job(id); // never written: nothing to cancel or recover
                }
                let result = Err("the request was cancelled".to_string());
                self.advance_call(call, Event::JobSaved { key, result });
            }
            None => {}
        }
        let Some(job) = self.jobs.owned.get_mut(id) else {
            return;
        };
        if job.dirty {
            job.dirty = false;
            let id = id.to_string();
            self.save_job(&id);
        } else if job.record.status.is_terminal() && job.waiters.is_empty() {
            let id = id.to_string();
            self.forget_job(&id);
        }
    }

    /// A job timer fired: a coalesced progress write or a heartbeat.
    pub(crate) fn job_timer(&mut self, key: JobKey) {
        let Some(id) = self.jobs.id(key).cloned() else {
            return;
        };
        let running = self
            .jobs
            .owned
            .get(&id)
            .is_some_and(|j| !j.record.status.is_terminal());
        if running {
            self.save_job(&id);
            self.timers
                .set(TimerKey::JobWrite(key.0), self.now().plus(HEARTBEAT));
        }
    }

    /// The current record of a job, from memory when we own it.
    pub(crate) fn owned_record(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.owned.get(id).map(|j| &j.record)
    }

    /// The key of an owned job.
    pub(crate) fn owned_key(&self, id: &str) -> Option<JobKey> {
        self.jobs.owned.get(id).map(|j| j.key)
    }

    /// Remembers a parsed record in the index.
    pub(crate) fn index_record(&mut self, file: &JobFile, record: Option<&JobRecord>) {
        let entry = IndexEntry {
            modified: file.modified,
            size: file.size,
            row: record.map(Row::of),
        };
        self.jobs.index.insert(file.id.clone(), entry);
    }

    // ---- start-up recovery ----

    /// Starts recovery: read the retention setting, list the records, fail the abandoned
    /// ones, delete the expired ones, and remove temp files of interrupted writes.
    pub(crate) fn start_recovery(&mut self) {
        let path = self.options.config_path.clone();
        self.recovery = Some(Recovery::ReadingConfig);
        self.push_recovery_io(IoRequest::ReadConfig { path, lock: false });
    }

    pub(crate) fn recovery_step(&mut self, result: IoResult) {
        let Some(step) = self.recovery.take() else {
            return;
        };
        match (step, result) {
            (Recovery::ReadingConfig, IoResult::Config { result }) => {
                let retention_days = result
                    .ok()
                    .and_then(|bytes| {
                        crate::config::ConfigDoc::parse(
                            bytes.as_deref(),
                            &self.options.home,
                            &self.options.cwd,
                        )
                        .ok()
                    })
                    .map_or(0.0, |doc| doc.config.settings.job_retention_days);
                self.recovery = Some(Recovery::Listing { retention_days });
                self.push_recovery_io(IoRequest::ListJobs {
                    dir: self.options.jobs_dir.clone(),
                    clean_temps: true,
                });
            }
            (Recovery::Listing { retention_days }, IoResult::JobList { result }) => {
                let files = result.unwrap_or_else(|e| {
                    self.log(LogLevel::Warn, format!("Could not list jobs: {e}"));
                    Vec::new()
                });
                if files.is_empty() {
                    return;
                }
                let ids = files.iter().map(|f| f.id.clone()).collect();
                self.recovery = Some(Recovery::Reading {
                    retention_days,
                    files,
                });
                self.push_recovery_io(IoRequest::ReadJobs {
                    dir: self.options.jobs_dir.clone(),
                    ids,
                });
            }
            (
                Recovery::Reading {
                    retention_days,
                    files,
                },
                IoResult::Jobs { records },
            ) => {
                self.recover(retention_days, &files, records);
            }
            (step, other) => self.log(
                LogLevel::Warn,
                format!("job recovery: unexpected {other:?} in {step:?}"),
            ),
        }
    }

    fn recover(
        &mut self,
        retention_days: f64,
        files: &[JobFile],
        records: Vec<Result<Option<String>, String>>,
    ) {
        let now = self.unix_now();
        let mut expired = Vec::new();
        let mut abandoned = 0;
        for (file, text) in files.iter().zip(records) {
            let Ok(Some(text)) = text else { continue };
            let Ok(mut record) = JobRecord::parse(&file.id, &text) else {
                self.index_record(file, None);
                continue;
            };
            let idle = now - file.modified;
            let age = now - record.created_at;
            let reason = match record.status {
                JobStatus::Running if idle > STALE_RUNNING_SECS => Some(("running", idle)),
                JobStatus::Pending if age > STALE_PENDING_SECS => Some(("pending", age)),
                _ => None,
            };
            if let Some((state, secs)) = reason {
                record.status = JobStatus::Failed;
                record.completed_at = Some(now);
                record.error = Some(format!(
                    "Abandoned in '{state}' for {}s — likely a server restart. Re-dispatch if still needed.",
                    secs as u64
                ));
                abandoned += 1;
                self.index_record(file, Some(&record));
                self.push_recovery_io(IoRequest::WriteJob {
                    dir: self.options.jobs_dir.clone(),
                    id: record.id.clone(),
                    contents: record.to_json_pretty(),
                });
                continue;
            }
            let ended = record.completed_at.unwrap_or(record.created_at);
            if retention_days > 0.0
                && record.status.is_terminal()
                && ended < now - retention_days * 86_400.0
            {
                expired.push(record.id.clone());
                continue;
            }
            self.index_record(file, Some(&record));
        }
        if abandoned > 0 {
            self.log(
                LogLevel::Info,
                format!("Recovered {abandoned} stale job(s) from a prior run"),
            );
        }
        if !expired.is_empty() {
            self.log(
                LogLevel::Info,
                format!(
                    "Deleting {} job(s) older than {retention_days} days",
                    expired.len()
                ),
            );
            self.push_recovery_io(IoRequest::DeleteJobs {
                dir: self.options.jobs_dir.clone(),
                ids: expired,
            });
        }
    }

    // ---- internals ----

    fn owned_job(&mut self, key: JobKey) -> Option<&mut OwnedJob> {
        let id = self.jobs.keys.get(&key)?;
        self.jobs.owned.get_mut(id)
    }

    /// The record reached its end: wake the waiters, stop the heartbeat, write it.
    fn end_job(&mut self, key: JobKey) {
        self.timers.cancel(TimerKey::JobWrite(key.0));
        let Some(job) = self.owned_job(key) else {
            return;
        };
        let waiters = std::mem::take(&mut job.waiters);
        let id = job.record.id.clone();
        self.save_job(&id);
        for call in waiters {
            self.advance_call(call, Event::JobDone);
        }
    }

    fn save_job(&mut self, id: &str) {
        let clock = self.now();
        let Some(job) = self.jobs.owned.get_mut(id) else {
            return;
        };
        if job.writing {
            job.dirty = true;
            return;
        }
        job.writing = true;
        job.last_write = Some(clock);
        let contents = job.record.to_json_pretty();
        let row = Row::of(&job.record);
        let now = self.unix_now();
        self.jobs.index.insert(
            id.to_string(),
            IndexEntry {
                modified: now,
                size: contents.len() as u64,
                row: Some(row),
            },
        );
        self.push_job_write(id.to_string(), contents);
    }

    pub(crate) fn forget_job(&mut self, id: &str) {
        if let Some(job) = self.jobs.owned.remove(id) {
            self.jobs.keys.remove(&job.key);
            self.timers.cancel(TimerKey::JobWrite(job.key.0));
        }
    }
}

/// A job reply for an id we could not find.
pub(crate) fn not_found(id: &str) -> Value {
    json!({ "error": format!("Job not found: {id}") })
}
