//! `agent-dispatch doctor`: checks the setup section by section and names the command that
//! fixes each problem.
//!
//! Status meanings: `fail` blocks agent-dispatch from working (a broken `agents.yaml`, no
//! `claude` CLI) and makes the exit code 1; `warn` is worth fixing but does not block (with
//! `--strict` it fails too); `ok` is fine.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agent_dispatch_core::config::ConfigDoc;
use agent_dispatch_core::jobs::{is_temp_name, valid_job_id, JobRecord, JobStatus};
use agent_dispatch_core::Options;
use agent_dispatch_transports::{files, jobs, local};
use serde_json::{json, Value};

use crate::init::{Registration, INSTALL_CLAUDE, REREGISTER, SERVER_NAME};
use crate::jobs_cmd;
use crate::paths;
use crate::registry::text;
use crate::run::run;
use crate::ui::{self, plural, say, CliError, Outcome, Paint};

const VERSION_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One finding.
#[derive(Debug)]
struct Check {
    section: &'static str,
    status: Status,
    message: String,
    /// Further lines: details, then the command that fixes it.
    details: Vec<String>,
}

#[derive(Debug, Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        section: &'static str,
        status: Status,
        message: String,
        details: Vec<String>,
    ) {
        self.checks.push(Check {
            section,
            status,
            message,
            details,
        });
    }

    fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    fn status(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }
}

pub fn doctor(options: Options, json: bool, strict: bool) -> Outcome {
    let mut report = Report::default();
    environment(&mut report);
    let doc = config(&mut report, &options);
    registration(&mut report, &options);
    // The jobs folder is read before anything starts an in-process server (the agents check
    // does): a server's start-up recovery would fix stale records before we could see them.
    let mut jobs = Report::default();
    jobs_folder(&mut jobs, &options.config_path);
    agents(&mut report, options.clone(), doc.as_ref());
    report.checks.append(&mut jobs.checks);

    let issues = report.count(Status::Fail);
    let warnings = report.count(Status::Warn);
    if json {
        let checks: Vec<Value> = report
            .checks
            .iter()
            .map(|c| {
                json!({
                    "section": c.section,
                    "status": c.status.word(),
                    "message": c.message,
                    "details": c.details,
                })
            })
            .collect();
        ui::print_json(&json!({
            "schema_version": 1,
            "status": report.status().word(),
            "issues": issues,
            "warnings": warnings,
            "checks": checks,
        }));
    } else {
        print_human(&report);
        say!();
        if issues == 0 && warnings == 0 {
            say!("All checks passed.");
        } else {
            say!(
                "{}, {}",
                plural(issues, "issue", "issues"),
                plural(warnings, "warning", "warnings")
            );
        }
    }
    if issues > 0 || (strict && warnings > 0) {
        return Err(CliError::quiet(ui::EXIT_FAILURE));
    }
    Ok(())
}

fn print_human(report: &Report) {
    let paint = Paint::stdout();
    let mut section = "";
    for check in &report.checks {
        if check.section != section {
            section = check.section;
            say!();
            say!("{}", paint.bold(section));
        }
        let tag = match check.status {
            Status::Ok => paint.green("[OK]"),
            Status::Warn => paint.yellow("[WARN]"),
            Status::Fail => paint.red("[FAIL]"),
        };
        say!("  {tag} {}", check.message);
        for line in &check.details {
            say!("    {line}");
        }
    }
}

const ENVIRONMENT: &str = "Environment";

fn environment(report: &mut Report) {
    match paths::claude() {
        None => report.add(
            ENVIRONMENT,
            Status::Fail,
            "claude CLI not found on PATH".into(),
            vec![
                "agent-dispatch runs every agent with the claude CLI.".into(),
                format!("Install: {INSTALL_CLAUDE}"),
                "Then: agent-dispatch init".into(),
            ],
        ),
        Some(claude) => match run(&claude, &["--version"], VERSION_LIMIT) {
            Ok(ran) if ran.ok() => report.add(
                ENVIRONMENT,
                Status::Ok,
                format!("claude CLI: {} ({})", claude.display(), ran.stdout.trim()),
                vec![],
            ),
            Ok(ran) => report.add(
                ENVIRONMENT,
                Status::Warn,
                format!(
                    "claude CLI: {}, but 'claude --version' failed",
                    claude.display()
                ),
                vec![ran.complaint(), format!("Reinstall: {INSTALL_CLAUDE}")],
            ),
            Err(e) => report.add(
                ENVIRONMENT,
                Status::Warn,
                format!(
                    "claude CLI: {}, but 'claude --version' failed",
                    claude.display()
                ),
                vec![e, format!("Reinstall: {INSTALL_CLAUDE}")],
            ),
        },
    }
    let version = env!("CARGO_PKG_VERSION");
    let exe = match paths::this_exe() {
        Ok(exe) => exe,
        Err(e) => {
            report.add(ENVIRONMENT, Status::Warn, e, vec![]);
            return;
        }
    };
    match paths::which("agent-dispatch") {
        Some(found) if paths::same_file(&found, &exe) => report.add(
            ENVIRONMENT,
            Status::Ok,
            format!("agent-dispatch {version}: {}", exe.display()),
            vec![],
        ),
        Some(found) => report.add(
            ENVIRONMENT,
            Status::Warn,
            format!(
                "agent-dispatch on PATH is {}, not this binary ({})",
                found.display(),
                exe.display()
            ),
            vec![
                "Commands you type run the other one.".into(),
                "Put this binary first on PATH, or: cargo install --path bin".into(),
            ],
        ),
        None => report.add(
            ENVIRONMENT,
            Status::Warn,
            format!(
                "agent-dispatch {version}: {} is not on PATH (the MCP server still works through its absolute path)",
                exe.display()
            ),
            vec![format!(
                "Add its folder to PATH: export PATH=\"{}:$PATH\"",
                exe.parent().unwrap_or(Path::new("/")).display()
            )],
        ),
    }
}

const CONFIG: &str = "Config";

/// Checks `agents.yaml`; returns it when it loads.
fn config(report: &mut Report, options: &Options) -> Option<ConfigDoc> {
    let path = &options.config_path;
    let shown = path.display();
    let bytes = match files::read_config(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            report.add(
                CONFIG,
                Status::Warn,
                format!("Config not found: {shown}"),
                vec!["Run: agent-dispatch init".into()],
            );
            // A missing file is an empty configuration.
            return Some(ConfigDoc::default());
        }
        Err(e) => {
            report.add(
                CONFIG,
                Status::Fail,
                format!("Config could not be read: {shown}"),
                vec![
                    e,
                    format!("Fix its permissions: chmod 600 {}", quoted(path)),
                ],
            );
            return None;
        }
    };
    let doc = match ConfigDoc::parse(Some(&bytes), &options.home, &options.cwd) {
        Ok(doc) => doc,
        Err(e) => {
            report.add(
                CONFIG,
                Status::Fail,
                format!("Config invalid: {shown}"),
                vec![
                    e,
                    format!("Fix that part of {shown} (or restore a backup), then run: agent-dispatch doctor"),
                ],
            );
            return None;
        }
    };
    let n = doc.config.agents.len();
    report.add(
        CONFIG,
        Status::Ok,
        format!("Config: {shown} ({})", plural(n, "agent", "agents")),
        vec![],
    );
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            report.add(
                CONFIG,
                Status::Warn,
                format!("Config is readable by other users (mode {mode:04o}): {shown}"),
                vec![format!("Fix: chmod 600 {}", quoted(path))],
            );
        }
    }
    Some(doc)
}

const REGISTRATION: &str = "MCP registration";

/// Reads Claude Code's user config: the user-scope entry and per-project (local scope) ones.
fn registration(report: &mut Report, options: &Options) {
    let claude_json = paths::claude_json(&options.home);
    let shown = claude_json.display();
    let not_registered = |report: &mut Report, why: String| {
        report.add(
            REGISTRATION,
            Status::Warn,
            "agent-dispatch is not registered with Claude Code".into(),
            vec![why, "Run: agent-dispatch init".into()],
        )
    };
    let text = match fs::read_to_string(&claude_json) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return not_registered(report, format!("{shown} does not exist"));
        }
        Err(e) => {
            report.add(
                REGISTRATION,
                Status::Warn,
                format!("Could not read {shown}: {e}"),
                vec!["Check with: claude mcp get agent-dispatch".into()],
            );
            return;
        }
    };
    let doc: Value = match serde_json::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => {
            report.add(
                REGISTRATION,
                Status::Warn,
                format!("Could not parse {shown}: {e}"),
                vec!["Check with: claude mcp get agent-dispatch".into()],
            );
            return;
        }
    };
    let exe = paths::this_exe().ok();
    let mut found = false;
    if let Some(entry) = doc.pointer("/mcpServers/agent-dispatch") {
        found = true;
        judge(report, "user scope", entry, exe.as_deref());
    }
    if let Some(projects) = doc.get("projects").and_then(Value::as_object) {
        for (project, settings) in projects {
            if let Some(entry) = settings.pointer("/mcpServers/agent-dispatch") {
                found = true;
                judge(
                    report,
                    &format!("local scope, project {project}"),
                    entry,
                    exe.as_deref(),
                );
            }
        }
    }
    if !found {
        not_registered(report, format!("{shown} has no '{SERVER_NAME}' server"));
    }
}

/// One registration: does it start this binary, or at least something that exists?
fn judge(report: &mut Report, scope: &str, entry: &Value, exe: Option<&Path>) {
    let Some(reg) = Registration::from_entry(entry) else {
        report.add(
            REGISTRATION,
            Status::Warn,
            format!("agent-dispatch is registered ({scope}) without a command: {entry}"),
            vec![format!("Re-register: {REREGISTER}")],
        );
        return;
    };
    let command = Path::new(&reg.command);
    let exists = paths::which(&reg.command).is_some() || command.is_file();
    match exe {
        Some(exe) if reg.is_this(exe) => report.add(
            REGISTRATION,
            Status::Ok,
            format!(
                "agent-dispatch is registered with Claude Code ({scope}): {}",
                reg.shown()
            ),
            vec![],
        ),
        _ if !exists => report.add(
            REGISTRATION,
            Status::Warn,
            format!(
                "agent-dispatch is registered ({scope}) with a command that does not exist: {}",
                reg.shown()
            ),
            vec![format!("Re-register this binary: {REREGISTER}")],
        ),
        _ => report.add(
            REGISTRATION,
            Status::Warn,
            format!(
                "agent-dispatch is registered ({scope}) for another program: {}",
                reg.shown()
            ),
            vec![
                format!(
                    "This binary is {}",
                    exe.map(|e| e.display().to_string()).unwrap_or_default()
                ),
                format!("To use this binary: {REREGISTER}"),
            ],
        ),
    }
}

const AGENTS: &str = "Agents";

/// Each agent's directory, through `list_agents` (the same probe the server uses).
fn agents(report: &mut Report, options: Options, doc: Option<&ConfigDoc>) {
    let Some(doc) = doc else {
        report.add(
            AGENTS,
            Status::Warn,
            "Skipped (the config could not be loaded)".into(),
            vec![],
        );
        return;
    };
    if doc.config.agents.is_empty() {
        report.add(
            AGENTS,
            Status::Warn,
            "No agents configured".into(),
            vec!["Add one: agent-dispatch add <name> <directory>".into()],
        );
        return;
    }
    let listed = match local::call_tool(options, "list_agents", json!({}), None) {
        Ok(outcome) if !outcome.is_error => outcome.value,
        Ok(outcome) => {
            report.add(
                AGENTS,
                Status::Warn,
                format!("list_agents failed: {}", text(&outcome.value["error"])),
                vec![],
            );
            return;
        }
        Err(e) => {
            report.add(
                AGENTS,
                Status::Warn,
                format!("list_agents failed: {e}"),
                vec![],
            );
            return;
        }
    };
    for agent in listed.as_array().into_iter().flatten() {
        let name = text(&agent["name"]);
        let dir = text(&agent["directory"]);
        match &agent["healthy"] {
            Value::Bool(true) => {
                let flags: Vec<&str> = [
                    ("has_claude_md", "CLAUDE.md"),
                    ("has_mcp_config", ".mcp.json"),
                ]
                .into_iter()
                .filter(|(key, _)| agent[*key] == json!(true))
                .map(|(_, file)| file)
                .collect();
                let flags = if flags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", flags.join(", "))
                };
                report.add(AGENTS, Status::Ok, format!("{name}: {dir}{flags}"), vec![]);
            }
            Value::Bool(false) => report.add(
                AGENTS,
                Status::Warn,
                format!("{name}: directory missing - {dir}"),
                vec![format!(
                    "Restore the directory, or unregister the agent: agent-dispatch remove {name}"
                )],
            ),
            _ => report.add(
                AGENTS,
                Status::Warn,
                format!("{name}: directory unreadable - {dir}"),
                vec![format!(
                    "Fix its permissions: chmod u+rx {}",
                    ui::shell_quote(&dir)
                )],
            ),
        }
    }
}

const JOBS: &str = "Jobs folder";

/// The async jobs folder: private (0700) when it exists.
fn jobs_folder(report: &mut Report, config_path: &Path) {
    let dir = paths::jobs_dir(config_path);
    let shown = dir.display();
    match fs::metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => report.add(
            JOBS,
            Status::Ok,
            format!("Jobs folder: {shown} (not created yet)"),
            vec![],
        ),
        Err(e) => report.add(
            JOBS,
            Status::Warn,
            format!("Jobs folder {shown} cannot be examined: {e}"),
            vec![format!("Fix its permissions: chmod 700 {}", quoted(&dir))],
        ),
        Ok(meta) if !meta.is_dir() => report.add(
            JOBS,
            Status::Warn,
            format!("Jobs folder {shown} is not a folder"),
            vec![format!(
                "Move it away: mv {} {}",
                quoted(&dir),
                ui::shell_quote(&format!("{shown}.bak"))
            )],
        ),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                report.add(
                    JOBS,
                    Status::Ok,
                    format!("Jobs folder: {shown} (mode {mode:04o})"),
                    vec![],
                );
            } else {
                report.add(
                    JOBS,
                    Status::Warn,
                    format!("Jobs folder is open to other users (mode {mode:04o}): {shown}"),
                    vec![format!("Fix: chmod 700 {}", quoted(&dir))],
                );
            }
            job_records(report, &dir);
        }
    }
}

/// A running job whose record has not been written for this long has lost its server (a
/// running job's record is rewritten at least every 5 minutes). The same threshold as a
/// server's start-up recovery.
const STALE_RUNNING: Duration = Duration::from_secs(3600);
/// A pending job this old never got a slot: its server is gone.
const STALE_PENDING_SECS: f64 = 24.0 * 3600.0;
/// A temp file younger than this may be a write in progress in another process.
const TEMP_GRACE: Duration = jobs::STALE_TEMP_AGE;

/// What is in the jobs folder: the records by status, stale running and pending jobs,
/// records that cannot be read, and temp files left by interrupted writes.
///
/// Reads the files directly (no server: a server would recover the stale jobs first).
fn job_records(report: &mut Report, dir: &Path) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            report.add(
                JOBS,
                Status::Warn,
                format!("Jobs folder {} cannot be listed: {e}", dir.display()),
                vec![format!("Fix its permissions: chmod 700 {}", quoted(dir))],
            );
            return;
        }
    };
    let now = SystemTime::now();
    let now_unix = jobs_cmd::now();
    let mut records: Vec<(String, JobRecord, SystemTime)> = Vec::new();
    let mut damaged: Vec<(PathBuf, String)> = Vec::new();
    let mut temps: Vec<PathBuf> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        // Follows a symlinked record, as the server does.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(now);
        if let Some(id) = name.strip_suffix(".json") {
            // Other names are not records: every tool ignores them.
            if !valid_job_id(id) {
                continue;
            }
            match read_record(&path, id, meta.len()) {
                Ok(record) => records.push((id.to_owned(), record, modified)),
                Err(why) => damaged.push((path, why)),
            }
        } else if is_temp_name(name)
            && now.duration_since(modified).unwrap_or_default() > TEMP_GRACE
        {
            temps.push(path);
        }
    }
    records.sort_by(|a, b| a.0.cmp(&b.0));
    damaged.sort();
    temps.sort();

    let count = |status: JobStatus| records.iter().filter(|r| r.1.status == status).count();
    report.add(
        JOBS,
        Status::Ok,
        format!(
            "Job records: {} ({} running, {} pending)",
            records.len(),
            count(JobStatus::Running),
            count(JobStatus::Pending)
        ),
        vec![],
    );

    let stale_running: Vec<String> = records
        .iter()
        .filter(|(_, r, _)| r.status == JobStatus::Running)
        .filter_map(|(id, r, modified)| {
            let idle = now.duration_since(*modified).unwrap_or_default();
            (idle > STALE_RUNNING).then(|| {
                format!(
                    "{id}  {}  record last written {}",
                    r.agent,
                    jobs_cmd::ago(idle.as_secs_f64())
                )
            })
        })
        .collect();
    if !stale_running.is_empty() {
        let n = stale_running.len();
        let mut details = stale_running;
        details.push(format!(
            "{} lost {} server. Fix: {} marked failed the next time a server starts (most agent-dispatch commands start one, e.g.: agent-dispatch jobs)",
            pick(n, "It has", "They have"),
            pick(n, "its", "their"),
            pick(n, "it is", "they are"),
        ));
        report.add(
            JOBS,
            Status::Warn,
            format!(
                "{} not updated for over an hour",
                plural(n, "running job", "running jobs")
            ),
            details,
        );
    }

    let stale_pending: Vec<(String, String)> = records
        .iter()
        .filter(|(_, r, _)| r.status == JobStatus::Pending)
        .filter(|(_, r, _)| now_unix - r.created_at > STALE_PENDING_SECS)
        .map(|(id, r, _)| {
            (
                id.clone(),
                format!(
                    "{id}  {}  created {}",
                    r.agent,
                    jobs_cmd::ago(now_unix - r.created_at)
                ),
            )
        })
        .collect();
    if !stale_pending.is_empty() {
        let n = stale_pending.len();
        let first = stale_pending[0].0.clone();
        let mut details: Vec<String> = stale_pending.into_iter().map(|(_, line)| line).collect();
        details.push(format!(
            "Fix: {} marked failed the next time a server starts; or: agent-dispatch cancel {}",
            pick(n, "it is", "they are"),
            if n == 1 { first.as_str() } else { "<id>" }
        ));
        report.add(
            JOBS,
            Status::Warn,
            format!(
                "{} waiting for over 24 hours",
                plural(n, "pending job", "pending jobs")
            ),
            details,
        );
    }

    if !damaged.is_empty() {
        let paths: Vec<String> = damaged.iter().map(|(p, _)| quoted(p)).collect();
        let mut details: Vec<String> = damaged
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.display()))
            .collect();
        details.push(format!(
            "Every tool skips {0}. Look at {0}, then delete {0}:",
            pick(damaged.len(), "it", "them")
        ));
        details.push(format!("rm {}", paths.join(" ")));
        report.add(
            JOBS,
            Status::Warn,
            format!(
                "{} cannot be read",
                plural(damaged.len(), "job record", "job records")
            ),
            details,
        );
    }

    if !temps.is_empty() {
        let paths: Vec<String> = temps.iter().map(|p| quoted(p)).collect();
        let mut details: Vec<String> = temps.iter().map(|p| p.display().to_string()).collect();
        details.push(format!(
            "Fix: {} removed the next time a server starts; or: rm {}",
            pick(temps.len(), "it is", "they are"),
            paths.join(" ")
        ));
        report.add(
            JOBS,
            Status::Warn,
            format!(
                "{} left by interrupted writes",
                plural(temps.len(), "temp file", "temp files")
            ),
            details,
        );
    }
}

/// `one` for a single thing, else `many`.
fn pick(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// One record file, parsed as the server parses it.
fn read_record(path: &Path, id: &str, size: u64) -> Result<JobRecord, String> {
    if size > jobs::MAX_JOB_BYTES {
        return Err(format!(
            "{size} bytes, more than the {}-byte limit",
            jobs::MAX_JOB_BYTES
        ));
    }
    let bytes = fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_owned())?;
    JobRecord::parse(id, &text)
}

/// A path as a shell word, for the fix commands we print.
fn quoted(path: &Path) -> String {
    ui::shell_quote(&path.display().to_string())
}
