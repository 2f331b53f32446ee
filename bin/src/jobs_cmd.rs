//! `jobs`, `job`, `cancel`, `gc`: the background jobs `dispatch_async` starts.
//!
//! Like the registry commands, each one is an MCP tool (`dispatch_jobs`, `dispatch_status`,
//! `dispatch_cancel`, `dispatch_gc`) called on an in-process server over the shared jobs
//! folder (`AGENT_DISPATCH_JOBS_DIR` or `<config dir>/jobs`); the CLI only formats the answer
//! for people, or prints it as it is with `--json`.
//!
//! A job id is checked here before any server starts, so a malformed one (`../x`, upper
//! case, the wrong length) never leads to a file-system access.

use std::time::{SystemTime, UNIX_EPOCH};

use agent_dispatch_core::config::py_repr;
use agent_dispatch_core::jobs::valid_job_id;
use agent_dispatch_core::Options;
use agent_dispatch_transports::local::{LocalClient, ToolOutcome};
use serde_json::{json, Map, Value};

use crate::registry::{call, checked, print_json_outcome, server_error, text, tool_error};
use crate::ui::{self, note, say, CliError, Outcome, Paint};

/// `jobs` shows this many by default (the tool's own default is 50).
pub const DEFAULT_LIMIT: i64 = 20;

/// `gc` deletes finished jobs older than this many days by default.
pub const DEFAULT_GC_DAYS: f64 = 7.0;

/// `gc --all`: `dispatch_gc` needs an age above 0, so `--all` asks for every finished job
/// older than 1e-9 days (86 µs) — every one that ended before the call. Pending and running
/// jobs are never deleted, whatever the age.
pub const ALL_DAYS: f64 = 1e-9;

/// Without `COLUMNS`, the table is cut to this width on a terminal (and not cut in a pipe).
const DEFAULT_WIDTH: usize = 100;

/// The narrowest the task column gets, however wide the other columns are.
const MIN_TASK_WIDTH: usize = 20;

/// `agent-dispatch jobs` → `dispatch_jobs`: a table of the newest jobs.
pub fn jobs(
    options: Options,
    status: Option<&str>,
    limit: i64,
    agent: Option<&str>,
    json: bool,
) -> Outcome {
    if limit < 1 {
        return Err(CliError::usage(format!(
            "--limit must be at least 1 (got {limit})"
        )));
    }
    let mut args = Map::new();
    if let Some(status) = status {
        args.insert("status".into(), json!(status));
    }
    args.insert("limit".into(), json!(limit));
    if let Some(agent) = agent {
        args.insert("agent".into(), json!(agent));
    }
    let outcome = call(options, "dispatch_jobs", Value::Object(args))?;
    if outcome.is_error {
        if json {
            ui::print_json(&outcome.value);
        }
        let err = tool_error(&outcome.value);
        // An unknown --status is a mistake on the command line.
        if text(&outcome.value["error"]).starts_with("Invalid status") {
            return Err(CliError {
                code: ui::EXIT_USAGE,
                ..err
            });
        }
        return Err(err);
    }
    if json {
        ui::print_json(&outcome.value);
        return Ok(());
    }
    let rows = outcome.value.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        say!("{}", no_jobs(status, agent));
        return Ok(());
    }
    print_table(&rows, now(), width());
    if rows.len() as i64 == limit {
        note!("(the newest {limit} shown; more with --limit N)");
    }
    Ok(())
}

/// `No jobs.`, or which ones there are none of.
fn no_jobs(status: Option<&str>, agent: Option<&str>) -> String {
    let status = status.map(str::trim).filter(|s| !s.is_empty());
    match (status, agent.filter(|a| !a.is_empty())) {
        (None, None) => "No jobs.".to_owned(),
        (Some(s), None) => format!("No {} jobs.", s.to_lowercase()),
        (None, Some(a)) => format!("No jobs for agent '{a}'."),
        (Some(s), Some(a)) => format!("No {} jobs for agent '{a}'.", s.to_lowercase()),
    }
}

/// `agent-dispatch job ID` → `dispatch_status`: one job in full.
pub fn job(options: Options, id: &str, json: bool) -> Outcome {
    check_id(id)?;
    let outcome = call(options, "dispatch_status", json!({ "job_id": id }))?;
    if json {
        return print_json_outcome(&outcome);
    }
    let record = checked(outcome)?;
    print_job(&record, now());
    Ok(())
}

/// `agent-dispatch cancel ID` → `dispatch_cancel`. A job running in the daemon is cancelled
/// there (only the server running a job can kill it). Exit 0 when the job was cancelled, 1
/// when it had already finished, is not found, or runs in another server that is not the
/// daemon.
pub fn cancel(options: Options, id: &str, json: bool) -> Outcome {
    check_id(id)?;
    let socket = crate::daemon::default_socket(&options.config_path);
    let mut outcome = call(options, "dispatch_cancel", json!({ "job_id": id }))?;
    if outcome.value["outcome"] == "running" {
        if let Some(theirs) = cancel_in_daemon(&socket, id) {
            outcome = theirs;
        }
    }
    if json {
        ui::print_json(&outcome.value);
    }
    let answer = checked(outcome)?;
    let status = text(&answer["status"]);
    match answer["outcome"].as_str().unwrap_or_default() {
        "cancelled" => {
            if !json {
                say!("Cancelled job {id} (it had not started yet).");
            }
            Ok(())
        }
        "cancelled_running" => {
            if !json {
                say!("Cancelled job {id}: killed the running job.");
            }
            Ok(())
        }
        "already_terminal" => Err(CliError::fail(format!(
            "Job {id} already finished ({status}); nothing to cancel."
        ))),
        "running" => Err(CliError::fail(format!(
            "Job {id} is running in another agent-dispatch server (not the daemon): cannot kill it from here."
        ))
        .with_hint(format!(
            "cancel it from the Claude Code session that started it (dispatch_cancel), or wait for it: agent-dispatch job {id}"
        ))),
        other => Err(CliError::fail(format!(
            "dispatch_cancel answered with an unknown outcome {}: {answer}",
            py_repr(other)
        ))),
    }
}

/// `dispatch_cancel` in the daemon, when one answers on `socket`: it may be the server
/// running the job. `None` when there is no daemon or it gave no answer.
fn cancel_in_daemon(socket: &std::path::Path, id: &str) -> Option<ToolOutcome> {
    if !socket.exists() {
        return None;
    }
    agent_dispatch_transports::remote::call_tool_in_daemon(
        socket,
        "dispatch_cancel",
        json!({ "job_id": id }),
        std::time::Duration::from_secs(10),
    )
    .map_err(|why| note!("agent-dispatch: could not ask the daemon: {why}"))
    .ok()
}

/// `agent-dispatch gc` → `dispatch_gc`: deletes finished jobs older than `--days` (default
/// 7), or every finished job with `--all`; `--dry-run` lists them instead.
pub fn gc(options: Options, days: Option<f64>, all: bool, dry_run: bool, json: bool) -> Outcome {
    let max_age =
        match (days, all) {
            (Some(_), true) => return Err(CliError::usage(
                "give --days or --all, not both (--all is every finished job, whatever its age)",
            )),
            (None, true) => ALL_DAYS,
            (Some(d), false) if d.is_nan() || d <= 0.0 => {
                return Err(CliError::usage(format!(
                "--days must be greater than 0 (got {d}); to delete every finished job use --all"
            )))
            }
            (Some(d), false) if !(d * 86_400.0).is_finite() => {
                return Err(CliError::usage(format!("--days is too large (got {d})")))
            }
            (Some(d), false) => d,
            (None, false) => DEFAULT_GC_DAYS,
        };
    let mut client = LocalClient::start(options).map_err(server_error)?;
    let outcome = client
        .call_tool(
            "dispatch_gc",
            json!({"max_age_days": max_age, "dry_run": dry_run}),
            None,
        )
        .map_err(server_error)?;
    if json {
        return print_json_outcome(&outcome);
    }
    let answer = checked(outcome)?;
    let older = if all {
        String::new()
    } else {
        format!(" older than {}", days_text(max_age))
    };
    if !dry_run {
        let n = answer["purged"].as_u64().unwrap_or(0) as usize;
        if n == 0 {
            say!("{}", nothing_to_delete(all, &older));
        } else {
            say!(
                "Deleted {}{older}.",
                ui::plural(n, "finished job", "finished jobs")
            );
        }
        return Ok(());
    }
    let ids: Vec<String> = answer["job_ids"]
        .as_array()
        .map(|ids| ids.iter().map(text).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        say!("{}", nothing_to_delete(all, &older));
        return Ok(());
    }
    // The rows people recognise jobs by; a job the listing does not reach shows its id only.
    let listed = client
        .call_tool("dispatch_jobs", json!({"limit": 1000}), None)
        .ok()
        .filter(|o| !o.is_error)
        .and_then(|o| o.value.as_array().cloned())
        .unwrap_or_default();
    client.shutdown();
    let rows: Vec<Value> = ids
        .iter()
        .map(|id| {
            listed
                .iter()
                .find(|row| row["id"] == json!(id))
                .cloned()
                .unwrap_or_else(|| json!({ "id": id }))
        })
        .collect();
    say!(
        "Would delete {}{older}:",
        ui::plural(ids.len(), "finished job", "finished jobs")
    );
    print_table(&rows, now(), width());
    note!("(dry run: nothing was deleted)");
    Ok(())
}

fn nothing_to_delete(all: bool, older: &str) -> String {
    if all {
        "Nothing to delete: there are no finished jobs.".to_owned()
    } else {
        format!("Nothing to delete: no finished job is{older}.")
    }
}

/// `7 days`, `1 day`, `0.5 days`.
fn days_text(days: f64) -> String {
    let n = if days.fract() == 0.0 && days.abs() < 1e15 {
        format!("{}", days as i64)
    } else {
        format!("{days}")
    };
    if days == 1.0 {
        format!("{n} day")
    } else {
        format!("{n} days")
    }
}

/// Refuses a malformed id before any server (or file) is touched: exit 2.
fn check_id(id: &str) -> Result<(), CliError> {
    if valid_job_id(id) {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "Invalid job id {}: a job id is 32 lowercase hex characters, as 'agent-dispatch jobs' shows",
        py_repr(id)
    )))
}

// ---- formatting ----

/// The jobs table: id (in full: people copy it), status, agent, age, task; for a running job
/// its last progress line below it.
fn print_table(rows: &[Value], now: f64, width: Option<usize>) {
    let paint = Paint::stdout();
    let ages: Vec<String> = rows
        .iter()
        .map(|row| match row["created_at"].as_f64() {
            Some(created) => ago(now - created),
            None => "-".to_owned(),
        })
        .collect();
    let agent_w = column_width(rows.iter().map(|r| text(&r["agent"])), "AGENT");
    let age_w = column_width(ages.iter().cloned(), "AGE");
    // id, status ("cancelled" is the longest), agent, age, each followed by two spaces.
    let task_col = 32 + 2 + 9 + 2 + agent_w + 2 + age_w + 2;
    let task_w = width.map(|w| w.saturating_sub(task_col).max(MIN_TASK_WIDTH));
    say!(
        "{}",
        format!(
            "{:<32}  {:<9}  {:<agent_w$}  {:<age_w$}  TASK",
            "ID", "STATUS", "AGENT", "AGE"
        )
        .trim_end()
    );
    for (row, age) in rows.iter().zip(&ages) {
        let status = text(&row["status"]);
        let shown_status = status_colour(paint, &status, &format!("{status:<9}"));
        let task = fit(&one_line(&text(&row["task"])), task_w);
        let line = format!(
            "{:<32}  {shown_status}  {:<agent_w$}  {age:<age_w$}  {task}",
            text(&row["id"]),
            text(&row["agent"]),
        );
        say!("{}", line.trim_end());
        if status == "running" {
            if let Some(progress) = row["last_progress"].as_str() {
                let indent = 32 + 2;
                let room = width.map(|w| w.saturating_sub(indent + 2).max(MIN_TASK_WIDTH));
                say!("{:indent$}↳ {}", "", fit(&one_line(progress), room));
            }
        }
    }
}

fn column_width(values: impl Iterator<Item = String>, title: &str) -> usize {
    values
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0)
        .max(title.len())
}

fn status_colour(paint: Paint, status: &str, shown: &str) -> String {
    match status {
        "done" => paint.green(shown),
        "failed" => paint.red(shown),
        "running" | "pending" => paint.yellow(shown),
        _ => shown.to_owned(),
    }
}

/// One job in full: its fields, then the result text (all of it) or, while it runs, the
/// progress tail.
fn print_job(job: &Value, now: f64) {
    let paint = Paint::stdout();
    let status = text(&job["status"]);
    let result = &job["result"];
    say!("Job {}", text(&job["id"]));
    let row = |label: &str, value: &str| {
        let value = value.replace('\n', "\n              ");
        say!("  {:<11} {value}", format!("{label}:"));
    };
    row("status", &status_colour(paint, &status, &status));
    row("agent", &text(&job["agent"]));
    row("task", &text(&job["task"]));
    for key in ["caller", "goal"] {
        if let Some(value) = job[key].as_str().filter(|v| !v.is_empty()) {
            row(key, value);
        }
    }
    let created = job["created_at"].as_f64();
    let started = job["started_at"].as_f64();
    let completed = job["completed_at"].as_f64();
    if let Some(t) = created {
        row("created", &format!("{} ({})", iso_utc(t), ago(now - t)));
    }
    if let Some(t) = started {
        row("started", &iso_utc(t));
    }
    if let Some(t) = completed {
        row("completed", &iso_utc(t));
    }
    match (started, completed) {
        (Some(s), Some(c)) => row("duration", &duration_text(c - s)),
        (Some(s), None) if status == "running" => {
            row("duration", &format!("{} so far", duration_text(now - s)))
        }
        _ => {}
    }
    if let Some(error) = job["error"].as_str().filter(|e| !e.is_empty()) {
        row("error", error);
    }
    if let Some(kind) = result["error_type"].as_str().filter(|e| !e.is_empty()) {
        row("error type", kind);
    }
    if let Some(outcome) = result["outcome"].as_str() {
        row("outcome", outcome);
    }
    if let Some(cost) = result["cost_usd"].as_f64() {
        row("cost", &format!("${cost:.4}"));
    }
    if let Some(turns) = result["num_turns"].as_u64() {
        row("turns", &turns.to_string());
    }
    if let Some(session) = result["session_id"].as_str().filter(|s| !s.is_empty()) {
        row("session", session);
    }
    let answer = text(&result["result"]);
    if !answer.is_empty() {
        say!("---");
        say!("{answer}");
    } else if status == "running" || status == "pending" {
        let progress: Vec<String> = job["progress"]
            .as_array()
            .map(|p| p.iter().map(text).collect())
            .unwrap_or_default();
        if !progress.is_empty() {
            say!("--- progress (newest last)");
            for line in progress {
                say!("  {line}");
            }
        }
    }
    if let Some(hint) = result["hint"].as_str().filter(|h| !h.trim().is_empty()) {
        note!("Note: {hint}");
    }
}

/// The text on one line: every run of whitespace (newlines included) becomes one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts `text` to `width` characters, ending with `…` when cut.
fn fit(text: &str, width: Option<usize>) -> String {
    match width {
        Some(w) if text.chars().count() > w => {
            let kept: String = text.chars().take(w.saturating_sub(1)).collect();
            format!("{kept}…")
        }
        _ => text.to_owned(),
    }
}

/// The width to cut the table to: `$COLUMNS`, else 100 on a terminal; `None` (no cutting)
/// when stdout is not a terminal.
fn width() -> Option<usize> {
    use std::io::IsTerminal;
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0);
    match columns {
        Some(c) => Some(c),
        None if std::io::stdout().is_terminal() => Some(DEFAULT_WIDTH),
        None => None,
    }
}

/// Now, in Unix seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How long ago, roughly: `12s ago`, `3m ago`, `5h ago`, `2d ago`.
pub fn ago(seconds: f64) -> String {
    let s = if seconds.is_finite() {
        seconds.max(0.0) as u64
    } else {
        0
    };
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A duration: `4.2s`, `3m 5s`, `2h 10m`, `3d 4h`.
pub fn duration_text(seconds: f64) -> String {
    let seconds = if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    };
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let s = seconds as u64;
    match s {
        0..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Unix seconds as ISO 8601 in UTC, to the second: `2023-11-14T22:13:20Z`.
pub fn iso_utc(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".to_owned();
    }
    let s = seconds.floor() as i64;
    let (days, secs) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(1_700_000_000.75), "2023-11-14T22:13:20Z");
        assert_eq!(iso_utc(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(-1.0), "1969-12-31T23:59:59Z");
        assert_eq!(iso_utc(4_102_444_800.0), "2100-01-01T00:00:00Z");
        assert_eq!(iso_utc(f64::NAN), "?");
    }

    #[test]
    fn ages_and_durations() {
        assert_eq!(ago(-5.0), "0s ago");
        assert_eq!(ago(59.9), "59s ago");
        assert_eq!(ago(190.0), "3m ago");
        assert_eq!(ago(7200.0), "2h ago");
        assert_eq!(ago(3.0 * 86_400.0 + 5.0), "3d ago");
        assert_eq!(duration_text(4.25), "4.2s");
        assert_eq!(duration_text(185.0), "3m 5s");
        assert_eq!(duration_text(7800.0), "2h 10m");
        assert_eq!(duration_text(-1.0), "0.0s");
        assert_eq!(duration_text(90_000.0), "1d 1h");
    }

    #[test]
    fn text_helpers() {
        assert_eq!(one_line("Fix\n  the   bug\t"), "Fix the bug");
        assert_eq!(fit("abcdef", Some(4)), "abc…");
        assert_eq!(fit("abcd", Some(4)), "abcd");
        assert_eq!(fit("abcdef", None), "abcdef");
        assert_eq!(days_text(7.0), "7 days");
        assert_eq!(days_text(1.0), "1 day");
        assert_eq!(days_text(0.5), "0.5 days");
        assert_eq!(no_jobs(Some(" Running"), None), "No running jobs.");
        assert_eq!(no_jobs(None, Some("web")), "No jobs for agent 'web'.");
    }
}
