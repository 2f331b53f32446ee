//! The job tools: dispatch_async, dispatch_status, dispatch_wait, dispatch_cancel,
//! dispatch_jobs, dispatch_gc and fetch_result.
//!
//! Every job id is validated here, before any I/O is requested (and the driver validates it
//! again before it builds a path). Jobs this core owns are answered from memory; others are
//! read from the jobs folder, whose parsed summaries are cached by modification time.

use std::time::Duration;

use serde_json::{json, Value};

use crate::background::{self, JobKey};
use crate::config::{AgentConfig, Settings};
use crate::engine::{Call, CallId, Core, Event, Next, Step};
use crate::io::{IoRequest, IoResult, JobFile};
use crate::jobs::{job_id_error, valid_job_id, JobRecord, JobStatus, JobSummary};
use crate::time::Timestamp;
use crate::timer::TimerKey;
use crate::tools::agents::{error, unknown_agent};
use crate::tools::Tool;

/// How often dispatch_wait looks at a job another process runs.
const POLL: Duration = Duration::from_millis(500);

/// Where a job tool call is.
#[derive(Debug)]
pub(crate) enum JobStep {
    Start,
    /// dispatch_async: waiting for the config.
    AsyncConfig,
    /// dispatch_async: the pending record is being written; the run starts once it is.
    AsyncSaving(Box<AsyncPlan>),
    /// Reading one record another process owns (dispatch_wait: with its deadline).
    Reading {
        id: String,
        deadline: Option<Timestamp>,
    },
    /// dispatch_wait: until the job ends or the deadline (polling a job we don't own).
    Waiting {
        id: String,
        deadline: Timestamp,
    },
    /// dispatch_cancel of a pending job another process owns: writing it cancelled.
    CancelWriting {
        id: String,
    },
    /// dispatch_jobs / dispatch_gc: listing the folder.
    Listing,
    /// dispatch_jobs / dispatch_gc: reading the records that changed since we last looked.
    ReadingChanged {
        files: Vec<JobFile>,
    },
    /// dispatch_gc: deleting.
    Deleting {
        ids: Vec<String>,
    },
}

/// What dispatch_async needs to start the run once the record is on disk.
#[derive(Debug)]
pub(crate) struct AsyncPlan {
    key: JobKey,
    id: String,
    name: String,
    agent: AgentConfig,
    settings: Settings,
    task: String,
    context: String,
    caller: String,
    goal: String,
    response_format: String,
    timeout: i64,
}

impl Core {
    /// Advances a job tool call by one event.
    pub(crate) fn job_tool(
        &mut self,
        id: CallId,
        call: &Call,
        step: JobStep,
        event: Event,
    ) -> Next {
        match (step, event) {
            (JobStep::Start, Event::Start)
                if self.recovering() && call.tool != Tool::DispatchAsync =>
            {
                self.after_recovery(id);
                wait(JobStep::Start)
            }
            (JobStep::Start, Event::Start) => self.job_start(id, call),
            (JobStep::AsyncConfig, Event::Io(IoResult::Config { result })) => {
                self.async_create(id, call, result)
            }
            (JobStep::AsyncSaving(plan), Event::JobSaved { result, .. }) => {
                self.async_saved(*plan, result)
            }
            (JobStep::Reading { id: job, deadline }, Event::Io(IoResult::Jobs { records })) => {
                let record = match read_one(&job, records) {
                    Ok(record) => record,
                    Err(_) if call.tool == Tool::FetchResult => {
                        return Next::Done(error(&format!("Ref not found: {job}")), true)
                    }
                    Err(reply) => return Next::Done(reply, true),
                };
                self.on_foreign_record(id, call, record, deadline)
            }
            (JobStep::Waiting { id: job, .. }, Event::JobDone) => {
                self.timers.cancel(TimerKey::Wait(id.0));
                match self.owned_record(&job) {
                    Some(record) => Next::Done(record.to_value(), false),
                    None => Next::Done(background::not_found(&job), true),
                }
            }
            (JobStep::Waiting { id: job, deadline }, Event::Tick) => {
                if let Some(record) = self.owned_record(&job) {
                    let mut value = record.to_value();
                    value["timed_out_waiting"] = json!(true);
                    if let Some(j) = self.jobs.owned.get_mut(&job) {
                        j.waiters.retain(|w| *w != id);
                    }
                    return Next::Done(value, false);
                }
                self.io(
                    id,
                    IoRequest::ReadJobs {
                        dir: self.options.jobs_dir.clone(),
                        ids: vec![job.clone()],
                    },
                );
                wait(JobStep::Reading {
                    id: job,
                    deadline: Some(deadline),
                })
            }
            (JobStep::CancelWriting { id: job }, Event::Io(IoResult::Written { result })) => {
                match result {
                    Ok(()) => Next::Done(
                        json!({"job_id": job, "outcome": "cancelled", "status": "cancelled"}),
                        false,
                    ),
                    Err(e) if e.contains("never overwritten") => {
                        let status = e
                            .split("already ")
                            .nth(1)
                            .and_then(|r| r.split(';').next())
                            .unwrap_or("done");
                        Next::Done(
                            json!({"job_id": job, "outcome": "already_terminal", "status": status}),
                            false,
                        )
                    }
                    Err(e) => Next::Done(io_error("dispatch_cancel", &e), true),
                }
            }
            (JobStep::Listing, Event::Io(IoResult::JobList { result })) => match result {
                Ok(files) => self.refresh_index(id, call, files),
                Err(e) => Next::Done(io_error(tool_name(call.tool), &e), true),
            },
            (JobStep::ReadingChanged { files }, Event::Io(IoResult::Jobs { records })) => {
                for (file, text) in files.iter().zip(records) {
                    let row = text
                        .ok()
                        .flatten()
                        .and_then(|t| JobSummary::parse(&file.id, &t).ok());
                    self.index_record(file, row);
                }
                self.answer_listing(id, call)
            }
            (JobStep::Deleting { ids }, Event::Io(IoResult::Deleted { result })) => match result {
                Ok(n) => {
                    for job in &ids {
                        self.jobs.index.remove(job);
                    }
                    let days = call.args.num("max_age_days");
                    self.log(
                        crate::io::LogLevel::Info,
                        format!("Purged {n} terminal jobs older than {days}d"),
                    );
                    Next::Done(json!({"purged": n, "max_age_days": days}), false)
                }
                Err(e) => Next::Done(io_error("dispatch_gc", &e), true),
            },
            (step, event) => Next::Done(
                error(&format!("internal error: {step:?} got {event:?}")),
                true,
            ),
        }
    }

    fn job_start(&mut self, id: CallId, call: &Call) -> Next {
        let args = &call.args;
        match call.tool {
            Tool::DispatchAsync => {
                let path = self.options.config_path.clone();
                self.io(id, IoRequest::ReadConfig { path, lock: false });
                wait(JobStep::AsyncConfig)
            }
            Tool::DispatchJobs => {
                let status = args.str("status").trim().to_lowercase();
                if !status.is_empty() && JobStatus::parse(&status).is_none() {
                    let e = format!(
                        "Invalid status: {}. Use one of: cancelled, done, failed, pending, running or empty.",
                        crate::config::py_repr(args.str("status"))
                    );
                    return Next::Done(error(&e), true);
                }
                self.io(
                    id,
                    IoRequest::ListJobs {
                        dir: self.options.jobs_dir.clone(),
                        clean_temps: false,
                    },
                );
                wait(JobStep::Listing)
            }
            Tool::DispatchGc => {
                let days = args.num("max_age_days");
                if days.is_nan() || days <= 0.0 {
                    return Next::Done(error("max_age_days must be > 0"), true);
                }
                if !(days * 86_400.0).is_finite() {
                    return Next::Done(error("max_age_days is too large (non-finite)"), true);
                }
                self.io(
                    id,
                    IoRequest::ListJobs {
                        dir: self.options.jobs_dir.clone(),
                        clean_temps: false,
                    },
                );
                wait(JobStep::Listing)
            }
            _ => {
                let job = job_arg(call);
                if !valid_job_id(job) {
                    return Next::Done(error(&job_id_error(job)), true);
                }
                self.on_job_id(id, call, job.to_string())
            }
        }
    }

    /// status / wait / cancel / fetch with a valid id: from memory when owned, else read.
    fn on_job_id(&mut self, id: CallId, call: &Call, job: String) -> Next {
        let (Some(key), Some(record)) = (self.owned_key(&job), self.owned_record(&job).cloned())
        else {
            self.io(
                id,
                IoRequest::ReadJobs {
                    dir: self.options.jobs_dir.clone(),
                    ids: vec![job.clone()],
                },
            );
            return wait(JobStep::Reading {
                id: job,
                deadline: None,
            });
        };
        match call.tool {
            Tool::DispatchWait if !record.status.is_terminal() => {
                let deadline = self.now().plus(wait_limit(call));
                if let Some(j) = self.jobs.owned.get_mut(&job) {
                    j.waiters.push(id);
                }
                self.timers.set(TimerKey::Wait(id.0), deadline);
                wait(JobStep::Waiting { id: job, deadline })
            }
            Tool::DispatchCancel => {
                let before = record.status;
                if before.is_terminal() {
                    return Next::Done(
                        json!({"job_id": job, "outcome": "already_terminal", "status": before.as_str()}),
                        false,
                    );
                }
                self.cancel_owned_job(key);
                self.log(
                    crate::io::LogLevel::Info,
                    format!("Cancel {job}: {}", cancel_outcome(before)),
                );
                let mut reply = json!({"job_id": job, "outcome": cancel_outcome(before), "status": "cancelled"});
                if before == JobStatus::Running {
                    reply["message"] = json!("Job was running; its subprocess has been killed.");
                }
                Next::Done(reply, false)
            }
            _ => answer_record(call, &record),
        }
    }

    /// A record read from disk (a job another process owns, or one that ended).
    fn on_foreign_record(
        &mut self,
        id: CallId,
        call: &Call,
        record: JobRecord,
        deadline: Option<Timestamp>,
    ) -> Next {
        match call.tool {
            Tool::DispatchWait if !record.status.is_terminal() => {
                let deadline = deadline.unwrap_or_else(|| self.now().plus(wait_limit(call)));
                self.wait_or_poll(id, record, deadline)
            }
            Tool::DispatchCancel => match record.status {
                JobStatus::Pending => {
                    let mut record = record;
                    record.status = JobStatus::Cancelled;
                    record.completed_at = Some(self.unix_now());
                    record.error = Some("Cancelled before execution".into());
                    let job = record.id.clone();
                    self.io(
                        id,
                        IoRequest::WriteJob {
                            dir: self.options.jobs_dir.clone(),
                            id: job.clone(),
                            contents: record.to_json_pretty(),
                        },
                    );
                    wait(JobStep::CancelWriting { id: job })
                }
                JobStatus::Running => Next::Done(
                    json!({"job_id": record.id, "outcome": "running", "status": "running",
                        "message": "Job is running but was not started by this server instance, so its subprocess cannot be killed safely. Poll dispatch_status until it finishes."}),
                    false,
                ),
                status => Next::Done(
                    json!({"job_id": record.id, "outcome": "already_terminal", "status": status.as_str()}),
                    false,
                ),
            },
            _ => answer_record(call, &record),
        }
    }

    fn wait_or_poll(&mut self, id: CallId, record: JobRecord, deadline: Timestamp) -> Next {
        if self.now() >= deadline {
            let mut value = record.to_value();
            value["timed_out_waiting"] = json!(true);
            return Next::Done(value, false);
        }
        let next = self.now().plus(POLL).min(deadline);
        self.timers.set(TimerKey::Wait(id.0), next);
        wait(JobStep::Waiting {
            id: record.id,
            deadline,
        })
    }

    // ---- dispatch_async ----

    fn async_create(
        &mut self,
        id: CallId,
        call: &Call,
        result: Result<Option<Vec<u8>>, String>,
    ) -> Next {
        let doc = match self.load(result) {
            Ok(doc) => doc,
            Err(e) => return Next::Done(e, true),
        };
        if call.cancelled {
            return Next::Done(Value::Null, true); // nobody will hear of it: create nothing
        }
        let args = &call.args;
        let name = args.str("agent");
        let Some(agent) = doc.config.agent(name) else {
            return Next::Done(unknown_agent(&doc, name), true);
        };
        self.resize_limit(doc.config.settings.max_concurrency as usize);
        let opt = |k: &str| Some(args.str(k).to_string()).filter(|s| !s.is_empty());
        let job = self.fresh_job_id();
        let record = JobRecord {
            context: opt("context"),
            caller: opt("caller"),
            goal: opt("goal"),
            ..JobRecord::new(
                job.clone(),
                name.to_string(),
                args.str("task").to_string(),
                self.unix_now(),
            )
        };
        let key = self.own_job(record, Some(id), doc.config.settings.limits.progress_tail);
        let plan = AsyncPlan {
            key,
            id: job,
            name: name.to_string(),
            agent: agent.clone(),
            settings: doc.config.settings.clone(),
            task: args.str("task").to_string(),
            context: args.str("context").to_string(),
            caller: args.str("caller").to_string(),
            goal: args.str("goal").to_string(),
            response_format: args.str("response_format").to_string(),
            timeout: args.int("timeout_seconds"),
        };
        wait(JobStep::AsyncSaving(Box::new(plan)))
    }

    fn async_saved(&mut self, plan: AsyncPlan, saved: Result<(), String>) -> Next {
        if let Err(e) = saved {
            self.forget_job(&plan.id);
            return Next::Done(
                io_error(
                    "dispatch_async",
                    &format!("could not create the job record: {e}"),
                ),
                true,
            );
        }
        let request = crate::dispatch::prompt::Request {
            task: &plan.task,
            context: &plan.context,
            caller: &plan.caller,
            goal: &plan.goal,
            response_format: &plan.response_format,
        };
        let owner = crate::dispatch::run::Owner::Job(plan.key);
        if let Err(result) = self.plan_run(
            owner,
            &plan.name,
            &plan.agent,
            &plan.settings,
            &request,
            plan.timeout,
            None,
        ) {
            self.job_finished(plan.key, *result);
        }
        self.log(
            crate::io::LogLevel::Info,
            format!("Started async dispatch {} to {}", plan.id, plan.name),
        );
        let status = self
            .owned_record(&plan.id)
            .map_or("pending", |r| r.status.as_str());
        Next::Done(
            json!({"job_id": plan.id, "status": status, "agent": plan.name}),
            false,
        )
    }

    // ---- dispatch_jobs and dispatch_gc ----

    /// Drops vanished files from the index and reads the records that changed.
    fn refresh_index(&mut self, id: CallId, call: &Call, files: Vec<JobFile>) -> Next {
        let present: std::collections::BTreeSet<&str> =
            files.iter().map(|f| f.id.as_str()).collect();
        let owned = &self.jobs.owned;
        self.jobs
            .index
            .retain(|job, _| present.contains(job.as_str()) || owned.contains_key(job));
        let changed: Vec<JobFile> = files
            .into_iter()
            .filter(|f| !self.jobs.owned.contains_key(&f.id))
            .filter(|f| {
                self.jobs
                    .index
                    .get(&f.id)
                    .is_none_or(|e| e.modified != f.modified || e.size != f.size)
            })
            .collect();
        if changed.is_empty() {
            return self.answer_listing(id, call);
        }
        let ids = changed.iter().map(|f| f.id.clone()).collect();
        self.io(
            id,
            IoRequest::ReadJobs {
                dir: self.options.jobs_dir.clone(),
                ids,
            },
        );
        wait(JobStep::ReadingChanged { files: changed })
    }

    /// dispatch_jobs: the newest matching rows; dispatch_gc: deletes the old finished ones.
    fn answer_listing(&mut self, id: CallId, call: &Call) -> Next {
        // Rows are borrowed from the index; only the ones returned become JSON. An owned
        // job is shown from memory (its record on disk may be a write behind), never purged.
        let on_disk = self
            .jobs
            .index
            .iter()
            .filter(|(job, _)| !self.jobs.owned.contains_key(*job))
            .filter_map(|(job, entry)| Some((job.as_str(), entry.row.as_ref()?)));
        if call.tool == Tool::DispatchGc {
            let days = call.args.num("max_age_days");
            let cutoff = self.unix_now() - days * 86_400.0;
            let ids: Vec<String> = on_disk
                .filter(|(_, r)| {
                    r.status.is_terminal() && r.completed_at.unwrap_or(r.created_at) < cutoff
                })
                .map(|(job, _)| job.to_string())
                .collect();
            return self.gc(id, call, ids);
        }
        let owned: Vec<(&str, JobSummary)> = self
            .jobs
            .owned
            .iter()
            .map(|(job, j)| (job.as_str(), JobSummary::of(&j.record)))
            .collect();
        let rows = on_disk.chain(owned.iter().map(|(job, row)| (*job, row)));
        let status = JobStatus::parse(call.args.str("status").trim().to_lowercase().as_str());
        let agent = call.args.str("agent");
        let rows = rows.filter(|(_, r)| {
            status.is_none_or(|s| r.status == s) && (agent.is_empty() || r.agent == agent)
        });
        let limit = call.args.int("limit").clamp(1, 1000) as usize;
        let newest = newest_first(rows.collect(), limit);
        Next::Done(
            Value::Array(newest.iter().map(|(job, r)| r.to_value(job)).collect()),
            false,
        )
    }

    /// dispatch_gc of these records (dry run: only says which).
    fn gc(&mut self, id: CallId, call: &Call, ids: Vec<String>) -> Next {
        let days = call.args.num("max_age_days");
        if call.args.bool("dry_run") {
            let n = ids.len();
            return Next::Done(
                json!({"dry_run": true, "purged": 0, "would_purge": n, "job_ids": ids, "max_age_days": days}),
                false,
            );
        }
        if ids.is_empty() {
            return Next::Done(json!({"purged": 0, "max_age_days": days}), false);
        }
        self.io(
            id,
            IoRequest::DeleteJobs {
                dir: self.options.jobs_dir.clone(),
                ids: ids.clone(),
            },
        );
        wait(JobStep::Deleting { ids })
    }
}

/// dispatch_status, dispatch_wait (ended), fetch_result.
fn answer_record(call: &Call, record: &JobRecord) -> Next {
    if call.tool != Tool::FetchResult {
        return Next::Done(record.to_value(), false);
    }
    let Some(result) = &record.result else {
        return Next::Done(record.to_value(), false);
    };
    let mut result = result.clone();
    let cap = call.args.int("max_chars").max(0) as usize;
    let text = result["result"].as_str().unwrap_or("").to_string();
    let size = text.chars().count();
    if cap > 0 && size > cap {
        result["result"] = json!(crate::engine::truncate_chars(&text, cap));
        result["truncated"] = json!(true);
        result["full_size"] = json!(size);
    }
    Next::Done(result, false)
}

/// The `limit` newest rows, newest first; rows created at the same time keep their order.
/// The same rows as a stable sort of them all, but only the rows returned are sorted.
fn newest_first<'a>(
    rows: Vec<(&'a str, &'a JobSummary)>,
    limit: usize,
) -> Vec<(&'a str, &'a JobSummary)> {
    type Ranked<'r> = (usize, &'r str, &'r JobSummary);
    let order = |a: &Ranked, b: &Ranked| {
        (b.2.created_at)
            .total_cmp(&a.2.created_at)
            .then(a.0.cmp(&b.0))
    };
    let mut rows: Vec<Ranked> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (job, row))| (i, job, row))
        .collect();
    if rows.len() > limit {
        rows.select_nth_unstable_by(limit, order);
        rows.truncate(limit);
    }
    rows.sort_unstable_by(order);
    rows.into_iter().map(|(_, job, row)| (job, row)).collect()
}

fn wait(step: JobStep) -> Next {
    Next::Wait(Step::Job(step))
}

fn job_arg(call: &Call) -> &str {
    match call.tool {
        Tool::FetchResult => call.args.str("ref"),
        _ => call.args.str("job_id"),
    }
}

fn wait_limit(call: &Call) -> Duration {
    Duration::from_secs(call.args.int("timeout_seconds").clamp(1, 3600) as u64)
}

fn cancel_outcome(before: JobStatus) -> &'static str {
    match before {
        JobStatus::Running => "cancelled_running",
        _ => "cancelled",
    }
}

fn tool_name(tool: Tool) -> &'static str {
    match tool {
        Tool::DispatchGc => "dispatch_gc",
        _ => "dispatch_jobs",
    }
}

/// The one record of a `ReadJobs` answer, or the error reply.
fn read_one(id: &str, records: Vec<Result<Option<String>, String>>) -> Result<JobRecord, Value> {
    match records.into_iter().next() {
        Some(Ok(Some(text))) => JobRecord::parse(id, &text).map_err(|e| {
            error(&format!(
                "Job record {id} is damaged and cannot be read: {e}"
            ))
        }),
        Some(Ok(None)) | None => Err(background::not_found(id)),
        Some(Err(e)) => Err(io_error("job read", &e)),
    }
}

fn io_error(tool: &str, e: &str) -> Value {
    json!({"error": format!("{tool} failed on I/O: {e}"), "hint": "Check free disk space and the jobs folder's permissions (agent-dispatch doctor), then retry."})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_is_a_stable_sort_cut_to_the_limit() {
        // Many rows created at the same time, in no particular order.
        let rows: Vec<(String, JobSummary)> = (0..200u32)
            .map(|i| {
                let id = format!("{i:032x}");
                let created_at = f64::from(i * 7919 % 13);
                let record = JobRecord::new(id.clone(), "a".into(), "t".into(), created_at);
                (id, JobSummary::of(&record))
            })
            .collect();
        let rows: Vec<(&str, &JobSummary)> = rows.iter().map(|(id, r)| (id.as_str(), r)).collect();
        let ids = |rows: &[(&str, &JobSummary)]| -> Vec<String> {
            rows.iter().map(|(id, _)| id.to_string()).collect()
        };
        for limit in [1, 5, 13, 50, 199, 200, 1000] {
            let mut expected = rows.clone();
            expected.sort_by(|a, b| b.1.created_at.total_cmp(&a.1.created_at));
            expected.truncate(limit);
            let newest = newest_first(rows.clone(), limit);
            assert_eq!(ids(&newest), ids(&expected), "limit {limit}");
        }
    }
}
