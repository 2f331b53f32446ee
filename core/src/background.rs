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
use crate::jobs::{JobRecord, JobStatus, JobSummary};
use crate::timer::TimerKey;

/// How often a running job's record is rewritten even without progress.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(300);
/// At most one progress write per job per this interval.
pub(crate) const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the final record of a finished job is tried again after its write failed.
pub(crate) const WRITE_RETRY: Duration = Duration::from_secs(5);
/// The length of one progress message in a record (how many are kept is
/// `settings.limits.progress_tail`).
pub(crate) const PROGRESS_CHARS: usize = 300;
/// A `running` record not written for this long belonged to a server that died.
pub(crate) const STALE_RUNNING_SECS: f64 = 3600.0;
/// A `pending` record older than this never started.
pub(crate) const STALE_PENDING_SECS: f64 = 24.0 * 3600.0;
/// How many records start-up recovery reads per request.
const RECOVERY_CHUNK: usize = 256;

/// Identifies a job owned by this core (timer keys need a `Copy` id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct JobKey(pub u64);

/// A job this core created and is running, or whose final record is not on disk yet.
#[derive(Debug)]
pub(crate) struct OwnedJob {
    pub key: JobKey,
    pub record: JobRecord,
    /// A write of this record is in flight.
    writing: bool,
    /// The last write failed (a full disk): the record on disk is behind this one.
    pub unsaved: bool,
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
    pub row: Option<JobSummary>,
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
    Listing { retention_days: f64 },
    Reading(Sweep),
}

/// Start-up recovery's pass over the records, [`RECOVERY_CHUNK`] records per read: only a
/// chunk of record texts is in memory at a time, and the core serves other inputs between
/// chunks instead of parsing the whole folder in one go.
#[derive(Debug)]
pub(crate) struct Sweep {
    retention_days: f64,
    files: Vec<JobFile>,
    /// Where the chunk being read starts in `files`.
    next: usize,
    /// Finished jobs older than the retention, deleted once every record was read.
    expired: Vec<String>,
    /// How many abandoned records were marked failed.
    abandoned: usize,
}

impl Sweep {
    /// The part of `files` read by the current (or next) request.
    fn chunk(&self) -> std::ops::Range<usize> {
        self.next..(self.next + RECOVERY_CHUNK).min(self.files.len())
    }
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
            unsaved: false,
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
        job.unsaved = result.is_err();
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
        } else if job.record.status.is_terminal() && job.unsaved {
            // The result lives only here: keep answering from memory and write it again
            // later, rather than leave the file saying `running` until recovery gives up.
            self.timers
                .set(TimerKey::JobWrite(key.0), self.now().plus(WRITE_RETRY));
        } else if job.record.status.is_terminal() && job.waiters.is_empty() {
            let id = id.to_string();
            self.forget_job(&id);
        }
    }

    /// A job timer fired: a coalesced progress write, a heartbeat, or another try at the
    /// final record of a finished job.
    pub(crate) fn job_timer(&mut self, key: JobKey) {
        let Some(id) = self.jobs.id(key).cloned() else {
            return;
        };
        let Some(job) = self.jobs.owned.get(&id) else {
            return;
        };
        if !job.record.status.is_terminal() {
            self.save_job(&id);
            self.timers
                .set(TimerKey::JobWrite(key.0), self.now().plus(HEARTBEAT));
        } else if job.unsaved {
            self.save_job(&id);
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

    /// Remembers a record's summary (`None`: it does not parse) in the index.
    pub(crate) fn index_record(&mut self, file: &JobFile, row: Option<JobSummary>) {
        let entry = IndexEntry {
            modified: file.modified,
            size: file.size,
            row,
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
                self.read_chunk(Sweep {
                    retention_days,
                    files,
                    next: 0,
                    expired: Vec::new(),
                    abandoned: 0,
                });
            }
            (Recovery::Reading(mut sweep), IoResult::Jobs { records }) => {
                self.recover(&mut sweep, records);
                if sweep.next < sweep.files.len() {
                    self.read_chunk(sweep);
                } else {
                    self.end_sweep(sweep);
                }
            }
            (step, other) => self.log(
                LogLevel::Warn,
                format!("job recovery: unexpected {other:?} in {step:?}"),
            ),
        }
    }

    fn read_chunk(&mut self, sweep: Sweep) {
        let ids = sweep.files[sweep.chunk()]
            .iter()
            .map(|f| f.id.clone())
            .collect();
        self.recovery = Some(Recovery::Reading(sweep));
        self.push_recovery_io(IoRequest::ReadJobs {
            dir: self.options.jobs_dir.clone(),
            ids,
        });
    }

    /// Handles one chunk of records: fails the abandoned ones, notes the expired ones and
    /// indexes the rest.
    fn recover(&mut self, sweep: &mut Sweep, records: Vec<Result<Option<String>, String>>) {
        let now = self.unix_now();
        let chunk = sweep.chunk();
        sweep.next = chunk.end;
        for (file, text) in sweep.files[chunk].iter().zip(records) {
            let Ok(Some(text)) = text else { continue };
            let Ok(row) = JobSummary::parse(&file.id, &text) else {
                self.index_record(file, None);
                continue;
            };
            let idle = now - file.modified;
            let age = now - row.created_at;
            let reason = match row.status {
                JobStatus::Running if idle > STALE_RUNNING_SECS => Some(("running", idle)),
                JobStatus::Pending if age > STALE_PENDING_SECS => Some(("pending", age)),
                _ => None,
            };
            if let Some((state, secs)) = reason {
                // Only a record that is rewritten needs parsing in full (it does parse: its
                // summary did).
                let Ok(mut record) = JobRecord::parse(&file.id, &text) else {
                    self.index_record(file, None);
                    continue;
                };
                record.status = JobStatus::Failed;
                record.completed_at = Some(now);
                record.error = Some(format!(
                    "Abandoned in '{state}' for {}s — likely a server restart. Re-dispatch if still needed.",
                    secs as u64
                ));
                sweep.abandoned += 1;
                self.index_record(file, Some(JobSummary::of(&record)));
                self.push_recovery_io(IoRequest::WriteJob {
                    dir: self.options.jobs_dir.clone(),
                    id: record.id.clone(),
                    contents: record.to_json_pretty(),
                });
                continue;
            }
            let ended = row.completed_at.unwrap_or(row.created_at);
            if sweep.retention_days > 0.0
                && row.status.is_terminal()
                && ended < now - sweep.retention_days * 86_400.0
            {
                sweep.expired.push(file.id.clone());
                continue;
            }
            self.index_record(file, Some(row));
        }
    }

    /// Every record was read: report, and delete the expired ones.
    fn end_sweep(&mut self, sweep: Sweep) {
        if sweep.abandoned > 0 {
            self.log(
                LogLevel::Info,
                format!(
                    "Recovered {} stale job(s) from a prior run",
                    sweep.abandoned
                ),
            );
        }
        if !sweep.expired.is_empty() {
            self.log(
                LogLevel::Info,
                format!(
                    "Deleting {} job(s) older than {} days",
                    sweep.expired.len(),
                    sweep.retention_days
                ),
            );
            self.push_recovery_io(IoRequest::DeleteJobs {
                dir: self.options.jobs_dir.clone(),
                ids: sweep.expired,
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
        let row = JobSummary::of(&job.record);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{Effect, Input, Options, Timestamp};

    const NOW: f64 = 1_800_000_000.0;

    /// Recovery over more records than one chunk, with a record of every kind in each chunk:
    /// abandoned ones failed and rewritten, expired ones deleted in one request at the end,
    /// broken ones indexed as such, the rest indexed as they are.
    #[test]
    fn recovery_reads_chunk_by_chunk_and_treats_every_record_alike() {
        const N: usize = 2 * RECOVERY_CHUNK + 40;
        let mut disk: BTreeMap<String, String> = BTreeMap::new();
        for i in 0..N {
            let id = format!("{i:032x}");
            let mut record = JobRecord::new(id.clone(), "a".into(), "t".into(), NOW - 60.0);
            let text = match i % 5 {
                0 => {
                    record.status = JobStatus::Running; // written 2 h ago: abandoned
                    record.to_json_pretty()
                }
                1 => {
                    record.created_at = NOW - 2.0 * 86_400.0; // pending for 2 days: abandoned
                    record.to_json_pretty()
                }
                2 => {
                    record.status = JobStatus::Done; // ended 10 days ago: expired
                    record.created_at = NOW - 10.0 * 86_400.0;
                    record.to_json_pretty()
                }
                3 => "{ broken".into(),
                _ => {
                    record.status = JobStatus::Done;
                    record.to_json_pretty()
                }
            };
            disk.insert(id, text);
        }
        let options = Options {
            config_path: "/cfg/agents.yaml".into(),
            jobs_dir: "/jobs".into(),
            unix_time_at_epoch: NOW,
            ..Options::default()
        };
        let mut core = Core::new(options, Timestamp::ZERO);
        let (mut reads, mut writes, mut deleted, mut logs) = (Vec::new(), Vec::new(), None, vec![]);
        while let Some(effect) = core.poll_effect() {
            let (op, request) = match effect {
                Effect::Io { op, request } => (op, request),
                Effect::Log { message, .. } => {
                    logs.push(message);
                    continue;
                }
                other => panic!("unexpected {other:?}"),
            };
            let result = match request {
                IoRequest::ReadConfig { .. } => IoResult::Config {
                    result: Ok(Some(b"settings:\n  job_retention_days: 7\n".to_vec())),
                },
                IoRequest::ListJobs { .. } => IoResult::JobList {
                    result: Ok(disk
                        .iter()
                        .map(|(id, text)| JobFile {
                            id: id.clone(),
                            modified: NOW - 7200.0,
                            size: text.len() as u64,
                        })
                        .collect()),
                },
                IoRequest::ReadJobs { ids, .. } => {
                    reads.push(ids.len());
                    IoResult::Jobs {
                        records: ids.iter().map(|id| Ok(disk.get(id).cloned())).collect(),
                    }
                }
                IoRequest::WriteJob { id, contents, .. } => {
                    writes.push(JobRecord::parse(&id, &contents).unwrap());
                    IoResult::Written { result: Ok(()) }
                }
                IoRequest::DeleteJobs { ids, .. } => {
                    deleted = Some(ids.clone());
                    IoResult::Deleted {
                        result: Ok(ids.len()),
                    }
                }
                other => panic!("unexpected {other:?}"),
            };
            core.handle(Timestamp::ZERO, Input::IoDone { op, result })
                .unwrap();
        }
        assert!(!core.recovering());
        assert_eq!(reads, [RECOVERY_CHUNK, RECOVERY_CHUNK, 40]);
        let id_of = |i: usize| format!("{i:032x}");
        let of_kind = |k: usize| (0..N).filter(move |i| i % 5 == k).map(id_of);
        // Abandoned: failed, rewritten and indexed as failed.
        let written: Vec<&str> = writes.iter().map(|r| r.id.as_str()).collect();
        let abandoned: Vec<String> = (0..N).filter(|i| i % 5 < 2).map(id_of).collect();
        assert_eq!(written, abandoned);
        for record in &writes {
            assert_eq!(record.status, JobStatus::Failed);
            assert_eq!(record.completed_at, Some(NOW));
            assert!(record
                .error
                .as_deref()
                .unwrap()
                .starts_with("Abandoned in '"));
            let row = core.jobs.index[&record.id].row.as_ref().unwrap();
            assert_eq!(row, &JobSummary::of(record));
        }
        // Expired: one delete at the end, and not indexed.
        assert_eq!(deleted, Some(of_kind(2).collect()));
        assert!(of_kind(2).all(|id| !core.jobs.index.contains_key(&id)));
        // Broken: indexed without a row; the rest: as read.
        assert!(of_kind(3).all(|id| core.jobs.index[&id].row.is_none()));
        for id in of_kind(4) {
            let row = core.jobs.index[&id].row.as_ref().unwrap();
            assert_eq!(Ok(row), JobSummary::parse(&id, &disk[&id]).as_ref());
        }
        let abandoned_log = format!(
            "Recovered {} stale job(s) from a prior run",
            abandoned.len()
        );
        assert!(logs.contains(&abandoned_log), "{logs:?}");
        let deleting = format!("Deleting {} job(s) older than 7 days", of_kind(2).count());
        assert!(logs.contains(&deleting), "{logs:?}");
    }
}
