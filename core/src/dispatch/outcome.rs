//! The `DispatchResult` and how a finished run becomes one (spec §3.4–§3.8 with every §8 fix).
//!
//! Precedence: a spawn failure, then the `result` line (it wins even over our own timeout),
//! then the timeout, then a run that ended without a result line (plain stdout, stderr and
//! the exit status tell what happened).

use serde_json::{Map, Number, Value};

use crate::dispatch::argv::plausible_session_id;
use crate::io::{ExitStatus, SpawnError, SpawnErrorKind};

const CLI_NOT_FOUND: &str =
    "Claude CLI not found in PATH. Install: npm install -g @anthropic-ai/claude-code";

const KILLED_AFTER_RESULT: &str = "The agent produced its final result but the process had not \
exited by the timeout and was killed. The result is complete — only cleanup was cut short.";

/// How many `errors` items make up the details of a failure, and how long each may be.
const MAX_ERROR_ITEMS: usize = 5;
const MAX_ERROR_ITEM_CHARS: usize = 300;

/// Caps on `denied_tools`.
const MAX_DENIED_TOOLS: usize = 10;
const MAX_TOOL_NAME_CHARS: usize = 100;

/// How much stderr (or plain stdout) an error message quotes.
const MAX_QUOTED_CHARS: usize = 4000;

/// Substrings (lower-case) that mark the Claude account's usage limit (checked first).
const USAGE_LIMIT_NEEDLES: &[&str] = &[
    "session limit",
    "usage limit",
    "rate limit",
    "rate_limit",
    "too many requests",
    "quota exceeded",
];

/// Substrings (lower-case) that mark a permission problem.
const PERMISSION_NEEDLES: &[&str] = &[
    "permission denied",
    "not allowed",
    "not permitted",
    "disallowed tool",
    "permission mode",
    "not have permission",
    "tool is not available",
    "tool_use is not allowed",
    "unauthorized",
];

/// Why a dispatch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorType {
    Permission,
    Timeout,
    Recursion,
    NotFound,
    CliError,
    Budget,
    UsageLimit,
}

impl ErrorType {
    /// The wire name (`error_type`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorType::Permission => "permission",
            ErrorType::Timeout => "timeout",
            ErrorType::Recursion => "recursion",
            ErrorType::NotFound => "not_found",
            ErrorType::CliError => "cli_error",
            ErrorType::Budget => "budget",
            ErrorType::UsageLimit => "usage_limit",
        }
    }
}

/// What the agent itself says about its work: the verdict of its final `STATUS:` line
/// (dispatch protocol, spec §8 0.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    Partial,
    Blocked,
}

impl Outcome {
    /// The wire name (`outcome`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Partial => "partial",
            Outcome::Blocked => "blocked",
        }
    }

    /// What to do about a partial or blocked run; `None` for done.
    fn hint(self, agent: &str, session_id: &str) -> Option<String> {
        let resume = format!(
            "dispatch_session(agent='{agent}', task='Continue where you left off', \
             session_id='{session_id}')"
        );
        match self {
            Outcome::Done => None,
            Outcome::Partial => Some(format!(
                "The agent reports its work is PARTIAL — read the result for what is missing, \
                 then continue in the same session via {resume} or re-dispatch with what it \
                 needed."
            )),
            Outcome::Blocked => Some(format!(
                "The agent reports it is BLOCKED — the result names what it needs (context, \
                 access, a tool, a running service). Supply it and re-dispatch, or resume via \
                 {resume}."
            )),
        }
    }
}

/// The outcome of one dispatch, as callers see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DispatchResult {
    pub agent: String,
    pub success: bool,
    pub result: String,
    pub session_id: Option<String>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<u64>,
    pub num_turns: Option<u64>,
    pub error: Option<String>,
    pub error_type: Option<ErrorType>,
    /// The agent's own verdict (its `STATUS:` line), when the protocol asked for one.
    pub outcome: Option<Outcome>,
    pub hint: Option<String>,
    pub denied_tools: Vec<String>,
    pub parsed_result: Option<Value>,
    pub budget_exceeded: bool,
}

impl DispatchResult {
    /// JSON in spec field order: agent, success, result, session_id, cost_usd, duration_ms, num_turns, error, error_type, outcome, hint, denied_tools, parsed_result, budget_exceeded; nulls / empty denied_tools / false budget_exceeded omitted.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("agent".into(), Value::from(self.agent.as_str()));
        m.insert("success".into(), Value::Bool(self.success));
        m.insert("result".into(), Value::from(self.result.as_str()));
        if let Some(id) = &self.session_id {
            m.insert("session_id".into(), Value::from(id.as_str()));
        }
        if let Some(cost) = self.cost_usd.and_then(Number::from_f64) {
            m.insert("cost_usd".into(), Value::Number(cost));
        }
        if let Some(ms) = self.duration_ms {
            m.insert("duration_ms".into(), Value::from(ms));
        }
        if let Some(turns) = self.num_turns {
            m.insert("num_turns".into(), Value::from(turns));
        }
        if let Some(error) = &self.error {
            m.insert("error".into(), Value::from(error.as_str()));
        }
        if let Some(t) = self.error_type {
            m.insert("error_type".into(), Value::from(t.as_str()));
        }
        if let Some(o) = self.outcome {
            m.insert("outcome".into(), Value::from(o.as_str()));
        }
        if let Some(hint) = &self.hint {
            m.insert("hint".into(), Value::from(hint.as_str()));
        }
        if !self.denied_tools.is_empty() {
            m.insert(
                "denied_tools".into(),
                Value::from(self.denied_tools.clone()),
            );
        }
        if let Some(parsed) = self.parsed_result.as_ref().filter(|v| !v.is_null()) {
            m.insert("parsed_result".into(), parsed.clone());
        }
        if self.budget_exceeded {
            m.insert("budget_exceeded".into(), Value::Bool(true));
        }
        Value::Object(m)
    }

    /// A failure before anything ran (not_found, recursion, cli_error for a refused flag): success false, result "", just error + error_type (+session_id None).
    pub(crate) fn preflight(agent: &str, error: String, error_type: ErrorType) -> Self {
        DispatchResult {
            error: Some(error),
            error_type: Some(error_type),
            ..DispatchResult::empty(agent, false)
        }
    }

    /// Clean success for the cache: success && no denied tools && !budget_exceeded && the
    /// agent did not report its work partial or blocked.
    pub(crate) fn is_clean_success(&self) -> bool {
        self.success
            && self.denied_tools.is_empty()
            && !self.budget_exceeded
            && matches!(self.outcome, None | Some(Outcome::Done))
    }

    fn empty(agent: &str, success: bool) -> Self {
        DispatchResult {
            agent: agent.to_owned(),
            success,
            result: String::new(),
            session_id: None,
            cost_usd: None,
            duration_ms: None,
            num_turns: None,
            error: None,
            error_type: None,
            outcome: None,
            hint: None,
            denied_tools: Vec::new(),
            parsed_result: None,
            budget_exceeded: false,
        }
    }
}

/// Recursion guard text (spec §3.1.1).
pub(crate) fn recursion_error(agent: &str, depth: u32, max: u32) -> DispatchResult {
    DispatchResult::preflight(
        agent,
        format!(
            "Dispatch depth {depth} >= max {max}. An agent is trying to dispatch to another \
             agent that dispatches back. Increase settings.max_dispatch_depth if this is \
             intentional."
        ),
        ErrorType::Recursion,
    )
}

/// Everything the run state machine collected about one finished child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub agent: &'a str,
    /// The id we pre-assigned, or the one being resumed.
    pub session_id: &'a str,
    /// The last `result` line.
    pub result: Option<&'a Map<String, Value>>,
    /// None: killed before exit was seen / never ran.
    pub exit: Option<ExitStatus>,
    /// Bounded tail (head kept, e.g. first 64 KiB).
    pub stderr: &'a str,
    /// Non-JSON stdout text (bounded), for the plain-text tier.
    pub plain_stdout: &'a str,
    /// Whether stdout carried any stream-json events (a run can be killed after its init).
    pub events_seen: bool,
    /// Our deadline fired.
    pub timed_out: bool,
    pub timeout_secs: u64,
    pub spawn_error: Option<&'a SpawnError>,
    pub json_mode: bool,
    /// Effective --max-budget-usd.
    pub budget: Option<f64>,
    /// The run carried the dispatch protocol, which asks for a final `STATUS:` line.
    pub protocol: bool,
}

/// The result of a finished run (spec §3.4/§3.5 with every §8 fix), in this precedence:
/// spawn error → a `result` line (wins even when timed out; then the kill-after-result hint)
/// → timed out → no result line (plain stdout tier, then a failure carrying the exit status
/// and the stderr). `session_id` is present on everything but spawn failures.
pub(crate) fn outcome(f: &Facts<'_>) -> DispatchResult {
    if let Some(error) = f.spawn_error {
        return spawn_failure(f.agent, error);
    }
    if let Some(result) = f.result {
        return from_result_line(f, result);
    }
    if f.timed_out {
        return DispatchResult {
            session_id: Some(f.session_id.to_owned()),
            ..DispatchResult::preflight(
                f.agent,
                timeout_text(f.agent, f.timeout_secs, f.session_id),
                ErrorType::Timeout,
            )
        };
    }
    without_result_line(f)
}

fn spawn_failure(agent: &str, error: &SpawnError) -> DispatchResult {
    let (text, error_type) = match error.kind {
        SpawnErrorKind::NotFound => {
            // The driver reports a missing working directory as
            // `working directory <dir> does not exist`.
            let dir = error
                .message
                .strip_prefix("working directory ")
                .and_then(|rest| rest.strip_suffix(" does not exist"));
            match dir {
                Some(dir) => (
                    format!("Directory does not exist: {dir}"),
                    ErrorType::NotFound,
                ),
                None => (CLI_NOT_FOUND.to_owned(), ErrorType::NotFound),
            }
        }
        SpawnErrorKind::PermissionDenied => (error.message.clone(), ErrorType::Permission),
        SpawnErrorKind::Other => (error.message.clone(), ErrorType::CliError),
    };
    DispatchResult::preflight(agent, text, error_type)
}

fn from_result_line(f: &Facts<'_>, line: &Map<String, Value>) -> DispatchResult {
    let agent = f.agent;
    let session_id = match line.get("session_id").and_then(Value::as_str) {
        Some(id) if plausible_session_id(id) => id.to_owned(),
        _ => f.session_id.to_owned(),
    };
    let (denied_tools, denied_calls) = denied_tools(line.get("permission_denials"));
    let subtype = line.get("subtype").and_then(Value::as_str).unwrap_or("");
    let failed = match line.get("is_error") {
        None | Some(Value::Null) => subtype.starts_with("error"),
        Some(flag) => truthy(flag),
    };
    let mut r = DispatchResult {
        result: coerce_text(line.get("result")),
        session_id: Some(session_id.clone()),
        cost_usd: cost(line.get("total_cost_usd")),
        duration_ms: count(line.get("duration_ms")),
        num_turns: count(line.get("num_turns")),
        denied_tools,
        ..DispatchResult::empty(agent, !failed)
    };
    let mut hints = Vec::new();
    if failed {
        let budget_stop = subtype == "error_max_budget_usd"
            || line.get("terminal_reason").and_then(Value::as_str) == Some("budget_exhausted");
        let text = r.result.trim();
        let message = if !text.is_empty() {
            text.to_owned()
        } else if let Some(details) = error_details(line.get("errors"), subtype) {
            format!("Agent '{agent}' failed: {details}")
        } else {
            no_details(agent, f.exit)
        };
        // The budget stop explains everything; an account limit beats the denials (granting
        // tools would not help); denials make it a permission failure; else the text decides.
        let error_type = match classify(&message) {
            _ if budget_stop => ErrorType::Budget,
            ErrorType::UsageLimit => ErrorType::UsageLimit,
            _ if !r.denied_tools.is_empty() => ErrorType::Permission,
            by_text => by_text,
        };
        let hint = match error_type {
            ErrorType::Budget => {
                r.budget_exceeded = true;
                budget_stop_hint(agent, f.budget, &session_id)
            }
            ErrorType::UsageLimit => usage_limit_hint(&message),
            ErrorType::Permission => permission_hint(agent),
            _ => String::new(),
        };
        r.error = Some(message + &hint);
        r.error_type = Some(error_type);
    } else {
        if !r.denied_tools.is_empty() {
            hints.push(denial_hint(agent, denied_calls, &r.denied_tools));
        }
        if f.protocol {
            (r.result, r.outcome) = take_status(&r.result);
        }
        if f.json_mode {
            r.parsed_result = parse_json_answer(&r.result);
        }
    }
    if f.timed_out {
        hints.push(KILLED_AFTER_RESULT.to_owned());
    }
    if let Some(hint) = r.outcome.and_then(|o| o.hint(agent, &session_id)) {
        hints.push(hint);
    }
    if !r.budget_exceeded {
        if let (Some(cost), Some(budget)) = (r.cost_usd, f.budget) {
            if cost > budget {
                r.budget_exceeded = true;
                // The cap is shown with its real precision: a $0.0001 cap is not "$0.00".
                hints.push(format!(
                    "Cost ${cost:.4} exceeded the configured budget ${} for this \
                     agent. Consider a cheaper model, a tighter task, or raising max_budget_usd.",
                    py_g(budget)
                ));
            }
        }
    }
    if !hints.is_empty() {
        r.hint = Some(hints.join(" "));
    }
    r
}

/// No result line and no timeout: the plain-text tier, or a failure that quotes the exit
/// status and what the child wrote.
fn without_result_line(f: &Facts<'_>) -> DispatchResult {
    let plain = f.plain_stdout.trim();
    let stderr = f.stderr.trim();
    let base = DispatchResult {
        session_id: Some(f.session_id.to_owned()),
        ..DispatchResult::empty(f.agent, false)
    };
    if f.exit == Some(ExitStatus::Code(0)) && !plain.is_empty() {
        // A CLI that printed plain text and exited cleanly answered.
        let (result, outcome) = if f.protocol {
            take_status(plain)
        } else {
            (plain.to_owned(), None)
        };
        return DispatchResult {
            success: true,
            parsed_result: if f.json_mode {
                parse_json_answer(&result)
            } else {
                None
            },
            hint: outcome.and_then(|o| o.hint(f.agent, f.session_id)),
            outcome,
            result,
            ..base
        };
    }
    let status = match f.exit {
        Some(ExitStatus::Code(code @ (130 | 137 | 143))) => {
            let name = match code {
                130 => "SIGINT",
                137 => "SIGKILL",
                _ => "SIGTERM",
            };
            format!("claude exited with code {code} (stopped by {name})")
        }
        Some(ExitStatus::Code(code)) => format!("claude exited with code {code}"),
        Some(ExitStatus::Signal(signal)) => format!("claude was killed by signal {signal}"),
        None => "claude ended before its exit status was known".to_owned(),
    };
    let detail = [stderr, plain].into_iter().find(|s| !s.is_empty());
    let message = match detail {
        Some(detail) => format!("{status}: {}", quote(detail)),
        None if f.events_seen => format!("{status} before it sent a result"),
        None => format!("{status} and produced no output"),
    };
    let error_type = detail.map_or(ErrorType::CliError, classify);
    let hint = match error_type {
        ErrorType::UsageLimit => usage_limit_hint(&message),
        ErrorType::Permission => permission_hint(f.agent),
        _ => String::new(),
    };
    DispatchResult {
        result: plain.to_owned(),
        error: Some(message + &hint),
        error_type: Some(error_type),
        ..base
    }
}

/// The agent's verdict from its final `STATUS:` line (spec §8 0.14), and the answer text
/// without that line.
///
/// Only the last non-empty line counts. It must match, case-insensitively,
/// ``^\s*[*_`]*\s*STATUS\s*:\s*[*_`]*\s*(done|partial|blocked)\b(.*)$``; it is removed (and
/// the text's trailing whitespace with it) only when the rest of the line is nothing but
/// whitespace, Markdown emphasis and `.`/`!` — a line that goes on with a reason stays.
pub(crate) fn take_status(text: &str) -> (String, Option<Outcome>) {
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(at) = lines.iter().rposition(|l| !l.trim().is_empty()) else {
        return (text.to_owned(), None);
    };
    let Some((outcome, rest)) = status_line(lines[at]) else {
        return (text.to_owned(), None);
    };
    let decoration = |c: char| c.is_whitespace() || matches!(c, '*' | '_' | '`' | '.' | '!');
    if !rest.chars().all(decoration) {
        return (text.to_owned(), Some(outcome));
    }
    (lines[..at].join("\n").trim_end().to_owned(), Some(outcome))
}

/// Matches one line against the `STATUS:` pattern: the verdict and the rest of the line.
fn status_line(line: &str) -> Option<(Outcome, &str)> {
    let markup = |c: char| matches!(c, '*' | '_' | '`');
    let rest = line.trim_start();
    let rest = rest.trim_start_matches(markup).trim_start();
    let rest = strip_prefix_ci(rest, "status")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let rest = rest.trim_start_matches(markup).trim_start();
    let (outcome, rest) = [
        (Outcome::Done, "done"),
        (Outcome::Partial, "partial"),
        (Outcome::Blocked, "blocked"),
    ]
    .into_iter()
    .find_map(|(o, word)| strip_prefix_ci(rest, word).map(|rest| (o, rest)))?;
    // `\b`: the verdict must not run on into a word character (Unicode `\w`).
    if rest
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
    {
        return None;
    }
    Some((outcome, rest))
}

/// `s` without an ASCII `prefix` matched case-insensitively.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Lower-cased substring classification (spec §3.6, usage limit first).
pub(crate) fn classify(text: &str) -> ErrorType {
    let text = text.to_lowercase();
    if USAGE_LIMIT_NEEDLES.iter().any(|n| text.contains(n)) {
        ErrorType::UsageLimit
    } else if PERMISSION_NEEDLES.iter().any(|n| text.contains(n)) {
        ErrorType::Permission
    } else {
        ErrorType::CliError
    }
}

/// The soft JSON-mode parse of an answer (spec §3.8): empty → none; a Markdown fence is
/// unwrapped; any JSON value parses, except that JSON `null` counts as none; anything else
/// is none (never a failure).
pub(crate) fn parse_json_answer(text: &str) -> Option<Value> {
    let mut text = text.trim().to_owned();
    if text.is_empty() {
        return None;
    }
    if text.starts_with("```") {
        let mut lines: Vec<&str> = text.split('\n').skip(1).collect();
        if lines.last().is_some_and(|l| l.trim().starts_with("```")) {
            lines.pop();
        }
        text = lines.join("\n").trim().to_owned();
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Null) | Err(_) => None,
        Ok(value) => Some(value),
    }
}

fn timeout_text(agent: &str, secs: u64, session_id: &str) -> String {
    format!(
        "Agent '{agent}' timed out after {secs}s. Options: pass timeout_seconds= for a longer \
         one-off run, use dispatch_async for fire-and-forget, or raise the agent default \
         (agent-dispatch update {agent} --timeout {}).{}",
        secs.saturating_mul(2),
        resumable(agent, session_id)
    )
}

fn resumable(agent: &str, session_id: &str) -> String {
    format!(
        " Partial work may be resumable: dispatch_session(agent='{agent}', task='Continue \
         where you left off', session_id='{session_id}')."
    )
}

fn permission_hint(agent: &str) -> String {
    format!(
        "\n\nHint: Agent '{agent}' was denied a tool or action. To fix, configure permissions \
         in agents.yaml:\n  agent-dispatch update {agent} --permission-mode \
         bypassPermissions\n  agent-dispatch update {agent} --allowed-tools \
         Bash,Read,Edit,Write,Glob,Grep"
    )
}

fn budget_stop_hint(agent: &str, budget: Option<f64>, session_id: &str) -> String {
    let cap = match budget {
        Some(b) => format!("the spend cap ${}", py_g(b)),
        None => "the configured cap".to_owned(),
    };
    format!(
        "\n\nHint: the dispatch was stopped by {cap} (passed to claude as --max-budget-usd), \
         so this answer is incomplete. Raise it (agent-dispatch update {agent} \
         --max-budget-usd <amount>), use a cheaper model, or split the task into smaller \
         dispatches.{}",
        resumable(agent, session_id)
    )
}

fn usage_limit_hint(text: &str) -> String {
    let resets = reset_time(text)
        .map(|when| format!(" It resets {when}."))
        .unwrap_or_default();
    format!(
        "\n\nHint: this is the Claude ACCOUNT's usage limit, not this agent's.{resets} Every \
         agent shares it, so dispatching a different agent (or retrying now) fails the same \
         way — wait for the reset, or reduce concurrent dispatches \
         (settings.max_concurrency). Nothing was billed for this call."
    )
}

fn denial_hint(agent: &str, calls: usize, tools: &[String]) -> String {
    format!(
        "{calls} tool call(s) were denied by permissions: {}. The result may be incomplete — \
         the agent could not use these tools. To grant access: update_agent(name='{agent}', \
         allowed_tools='{}') or permission_mode='bypassPermissions' (CLI: agent-dispatch \
         update {agent} --allowed-tools ...).",
        tools.join(", "),
        tools.join(",")
    )
}

/// `Agent '<name>' reported an error with no details`, with the exit status when known.
fn no_details(agent: &str, exit: Option<ExitStatus>) -> String {
    let suffix = match exit {
        Some(ExitStatus::Code(code)) => format!(" (exit code {code})"),
        Some(ExitStatus::Signal(signal)) => format!(" (killed by signal {signal})"),
        None => String::new(),
    };
    format!("Agent '{agent}' reported an error with no details{suffix}")
}

/// The details of an error result: the first 5 non-empty `errors` items (stringified,
/// stripped, ≤ 300 chars each) joined by `; `, else `claude CLI reported '<subtype>'` for a
/// telling subtype.
fn error_details(errors: Option<&Value>, subtype: &str) -> Option<String> {
    let items: Vec<String> = match errors {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::Null => None,
                Value::String(s) => Some(s.trim().to_owned()),
                other => Some(other.to_string()),
            })
            .filter(|s| !s.is_empty())
            .take(MAX_ERROR_ITEMS)
            .map(|s| cut_chars(&s, MAX_ERROR_ITEM_CHARS))
            .collect(),
        _ => Vec::new(),
    };
    if !items.is_empty() {
        Some(items.join("; "))
    } else if !subtype.trim().is_empty() && subtype != "success" {
        Some(format!("claude CLI reported '{subtype}'"))
    } else {
        None
    }
}

/// `denied_tools` from `permission_denials` (spec §8 0.6): per entry its `tool_name` or
/// `tool`, else "unknown", or the entry itself when it is not an object; ≤ 100 chars each,
/// deduplicated in order, at most 10. Also the number of denied calls.
fn denied_tools(denials: Option<&Value>) -> (Vec<String>, usize) {
    let Some(Value::Array(entries)) = denials else {
        return (Vec::new(), 0);
    };
    let mut tools: Vec<String> = Vec::new();
    for entry in entries {
        let name = match entry {
            Value::Object(m) => ["tool_name", "tool"]
                .iter()
                .find_map(|k| match m.get(*k) {
                    Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                    Some(v @ Value::Number(_)) => Some(v.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| "unknown".to_owned()),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let name = cut_chars(&name, MAX_TOOL_NAME_CHARS);
        if tools.len() < MAX_DENIED_TOOLS && !tools.contains(&name) {
            tools.push(name);
        }
    }
    (tools, entries.len())
}

/// The `result` field as text: a string as it is, absent or null as "", anything else as
/// its JSON text.
fn coerce_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A cost: a finite, non-negative number; anything else is dropped.
fn cost(value: Option<&Value>) -> Option<f64> {
    value
        .and_then(Value::as_f64)
        .filter(|c| c.is_finite() && *c >= 0.0)
}

/// A count or duration: a non-negative number, floats truncated; anything else is dropped.
fn count(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    // `u64::MAX as f64` rounds up to 2^64, so `<` keeps the cast in range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.trunc() as u64)
}

/// Python truthiness of a JSON value (how the Python server read flags like `is_error`
/// and `return_ref`).
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// When the account limit resets, as the message says it: Python's
/// `resets?\s+(?:at\s+)?([^\n.]{1,40})` searched case-insensitively, stripped.
fn reset_time(text: &str) -> Option<String> {
    fn starts_with_ci(s: &str, prefix: &str) -> bool {
        s.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    }
    fn capture(s: &str) -> &str {
        let end = s
            .char_indices()
            .take_while(|(_, c)| *c != '\n' && *c != '.')
            .take(40)
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
        &s[..end]
    }
    for (start, _) in text.char_indices() {
        let rest = &text[start..];
        if !starts_with_ci(rest, "reset") {
            continue;
        }
        let mut rest = &rest["reset".len()..];
        if starts_with_ci(rest, "s") {
            rest = &rest[1..];
        }
        let value = rest.trim_start_matches(char::is_whitespace);
        if value.len() == rest.len() {
            continue; // `\s+` needs at least one
        }
        let mut when = capture(value);
        if starts_with_ci(value, "at") {
            let tail = &value[2..];
            let after_at = tail.trim_start_matches(char::is_whitespace);
            if after_at.len() < tail.len() && !capture(after_at).is_empty() {
                when = capture(after_at);
            }
        }
        let when = when.trim();
        if !when.is_empty() {
            return Some(when.to_owned());
        }
    }
    None
}

/// Python's `format(x, 'g')`: 6 significant digits, trailing zeros dropped, scientific
/// notation below 1e-4 and from 1e6 on.
pub(crate) fn py_g(x: f64) -> String {
    if !x.is_finite() {
        return crate::config::py_float(x);
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    fn strip(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    let sci = format!("{x:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa), exp.unsigned_abs())
    } else {
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        strip(&format!("{x:.decimals$}")).to_owned()
    }
}

/// At most `n` characters of `s`.
fn cut_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Text quoted in an error message, cut to a readable size.
fn quote(text: &str) -> String {
    let total = text.chars().count();
    if total <= MAX_QUOTED_CHARS {
        return text.to_owned();
    }
    format!(
        "{} … ({} more characters)",
        cut_chars(text, MAX_QUOTED_CHARS),
        total - MAX_QUOTED_CHARS
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OURS: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";

    fn line(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).unwrap()
    }

    fn facts(result: Option<&Map<String, Value>>) -> Facts<'_> {
        Facts {
            agent: "web",
            session_id: OURS,
            result,
            exit: Some(ExitStatus::Code(0)),
            stderr: "",
            plain_stdout: "",
            events_seen: false,
            timed_out: false,
            timeout_secs: 300,
            spawn_error: None,
            json_mode: false,
            budget: None,
            protocol: false,
        }
    }

    fn run(text: &str) -> DispatchResult {
        let l = line(text);
        outcome(&facts(Some(&l)))
    }

    /// Runs a result line that came with exit code 1 (as every `is_error` run does).
    fn failed_run(text: &str) -> DispatchResult {
        let l = line(text);
        outcome(&Facts {
            exit: Some(ExitStatus::Code(1)),
            ..facts(Some(&l))
        })
    }

    fn no_result(exit: Option<ExitStatus>, stderr: &str, plain: &str) -> DispatchResult {
        outcome(&Facts {
            exit,
            stderr,
            plain_stdout: plain,
            events_seen: false,
            ..facts(None)
        })
    }

    fn permission_hint_text() -> &'static str {
        "\n\nHint: Agent 'web' was denied a tool or action. To fix, configure permissions in agents.yaml:\n  agent-dispatch update web --permission-mode bypassPermissions\n  agent-dispatch update web --allowed-tools Bash,Read,Edit,Write,Glob,Grep"
    }

    fn resumable_text(sid: &str) -> String {
        format!(" Partial work may be resumable: dispatch_session(agent='web', task='Continue where you left off', session_id='{sid}').")
    }

    fn compact(r: &DispatchResult) -> String {
        r.to_json().to_string()
    }

    /// The result line of 2.1.330 mock-say-hi, exactly as recorded.
    const SAY_HI_330: &str = r##"{"duration_api_ms":32,"stop_reason":"end_turn","session_id":"80c19239-c66a-4007-822e-265f1dd269f1","total_cost_usd":0.0008,"usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":20,"output_tokens_details":{"thinking_tokens":0},"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard","fallback_credit":null},"modelUsage":{"claude-opus-5-5":{"inputTokens":100,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0008,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}},"permission_denials":[],"terminal_reason":"completed","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required","subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"is_error":false,"num_turns":1,"subtype":"success","api_error_status":null,"result":"hi","ttft_ms":134,"type":"result","duration_ms":147,"uuid":"974dbe20-1492-48f1-87fc-6ae3afb06199","ttft_stream_ms":133,"time_to_request_ms":116,"first_content_frame_ms":133,"queued_turn_count":0,"result_index":0,"model_usage_since_last_result":{"claude-opus-5-5":{"inputTokens":100,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0008,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}}}"##;

    /// The result line of 2.1.330 mock-bash-write-denied, exactly as recorded.
    const DENIED_330: &str = r##"{"duration_api_ms":76,"stop_reason":"end_turn","session_id":"a50771bc-8b54-4a15-8d1a-27ba1038cab8","total_cost_usd":0.0016,"usage":{"input_tokens":200,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":40,"output_tokens_details":{"thinking_tokens":0},"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard","fallback_credit":null},"modelUsage":{"claude-opus-5-5":{"inputTokens":200,"outputTokens":40,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0016,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}},"permission_denials":[{"tool_name":"Bash","tool_use_id":"toolu_mock_0001_e6ca25c0","tool_input":{"command":"touch hi.txt","description":"Create hi.txt"}}],"terminal_reason":"completed","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required","subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"is_error":false,"num_turns":2,"subtype":"success","api_error_status":null,"result":"I was not allowed to run the command.","ttft_ms":119,"type":"result","duration_ms":196,"uuid":"e94c88f3-86f0-4c4f-ad9a-2e791c7d2711","ttft_stream_ms":118,"time_to_request_ms":105,"first_content_frame_ms":118,"queued_turn_count":0,"result_index":0,"model_usage_since_last_result":{"claude-opus-5-5":{"inputTokens":200,"outputTokens":40,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0016,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}}}"##;

    /// The result line of 2.1.330 mock-max-budget-usd, exactly as recorded.
    const BUDGET_330: &str = r##"{"duration_api_ms":0,"stop_reason":"tool_use","session_id":"189a9aef-5c0e-4f2a-ac9b-715440f761b0","total_cost_usd":6,"usage":{"output_tokens_details":{"thinking_tokens":0},"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard","fallback_credit":null},"modelUsage":{"claude-opus-5-5":{"inputTokens":1000000,"outputTokens":100000,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":6,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}},"permission_denials":[],"terminal_reason":"budget_exhausted","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required","subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"is_error":true,"num_turns":1,"subtype":"error_max_budget_usd","errors":["Reached maximum budget ($0.0001)"],"type":"result","duration_ms":124,"uuid":"8027b491-4c80-4d30-b535-aef4ecc2e892","queued_turn_count":0,"result_index":0,"model_usage_since_last_result":{"claude-opus-5-5":{"inputTokens":1000000,"outputTokens":100000,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":6,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}}}"##;

    /// The result line of 2.1.330 mock-max-turns, exactly as recorded.
    const MAX_TURNS_330: &str = r##"{"duration_api_ms":78,"stop_reason":"tool_use","session_id":"292ca60a-4cf1-4adf-8919-18b054b7b314","total_cost_usd":0.0008,"usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":20,"output_tokens_details":{"thinking_tokens":0},"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard","fallback_credit":null},"modelUsage":{"claude-opus-5-5":{"inputTokens":100,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0008,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}},"permission_denials":[],"terminal_reason":"max_turns","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required","subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"is_error":true,"num_turns":2,"subtype":"error_max_turns","errors":["Reached maximum number of turns (1)"],"type":"result","duration_ms":263,"uuid":"69c4b34e-f649-40dd-a9c9-45af8d34118a","queued_turn_count":0,"result_index":0,"model_usage_since_last_result":{"claude-opus-5-5":{"inputTokens":100,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0008,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}}}"##;

    /// The result line of 2.1.330 offline-not-logged-in, exactly as recorded.
    const NOT_LOGGED_IN_330: &str = r##"{"duration_api_ms":0,"stop_reason":"stop_sequence","session_id":"d75c7fcb-e106-4b74-8371-87fb2384a0a5","total_cost_usd":0,"usage":{"output_tokens_details":{"thinking_tokens":0},"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard","fallback_credit":null},"modelUsage":{},"permission_denials":[],"terminal_reason":"api_error","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required","subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"is_error":true,"num_turns":1,"subtype":"success","api_error_status":null,"result":"Not logged in · Please run /login","type":"result","duration_ms":138,"uuid":"1fe0b680-d4c9-4698-ac8b-3075152f2eac","queued_turn_count":0,"result_index":0,"model_usage_since_last_result":{}}"##;

    /// The result line of 2.1.330 offline-api-key-conn-refused-no-retries, exactly as recorded.
    const CONN_REFUSED_330: &str = r##"{"duration_api_ms":0,"stop_reason":"stop_sequence","session_id":"f41156f7-03f7-4f9f-ac1e-fa9866244017","total_cost_usd":0,"usage":{"output_tokens_details":{"thinking_tokens":0},"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard","fallback_credit":null},"modelUsage":{},"permission_denials":[],"terminal_reason":"api_error","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required","subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"is_error":true,"num_turns":1,"subtype":"success","api_error_status":null,"api_error":"connection_failed","result":"API Error: Connection refused — a firewall or proxy may be blocking it (ECONNREFUSED)","type":"result","duration_ms":272,"uuid":"544afad7-12e1-4c15-8596-ebbe8118602a","queued_turn_count":0,"result_index":0,"model_usage_since_last_result":{}}"##;

    /// The result line of 2.1.197 b-stream-json, exactly as recorded.
    const SAY_HI_197: &str = r##"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":185,"duration_api_ms":34,"ttft_ms":178,"ttft_stream_ms":177,"time_to_request_ms":155,"num_turns":1,"result":"hi","stop_reason":"end_turn","session_id":"214a55f2-8318-46e1-8e8d-eb29333dd2b4","total_cost_usd":0.001,"usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":20,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard"},"modelUsage":{"claude-opus-4-8[1m]":{"inputTokens":100,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.001,"contextWindow":1000000,"maxOutputTokens":64000}},"permission_denials":[],"terminal_reason":"completed","fast_mode_state":"off","uuid":"37641595-b474-4c96-bc02-b927ffb89848"}"##;

    /// The result line of 2.1.197 d-tool-denied, exactly as recorded.
    const DENIED_197: &str = r##"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":212,"duration_api_ms":68,"ttft_ms":151,"ttft_stream_ms":150,"time_to_request_ms":137,"num_turns":2,"result":"I was not allowed to run the command.","stop_reason":"end_turn","session_id":"426db435-9d08-406c-a309-c896175c0cab","total_cost_usd":0.002,"usage":{"input_tokens":200,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":40,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard"},"modelUsage":{"claude-opus-4-8[1m]":{"inputTokens":200,"outputTokens":40,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.002,"contextWindow":1000000,"maxOutputTokens":64000}},"permission_denials":[{"tool_name":"Bash","tool_use_id":"toolu_mock_0001_c7c84786","tool_input":{"command":"touch hi.txt","description":"Create hi.txt"}}],"terminal_reason":"completed","fast_mode_state":"off","uuid":"26e24205-9c65-4360-ad64-e3b245217134"}"##;

    /// The result line of 2.1.197 f-budget, exactly as recorded.
    const BUDGET_197: &str = r##"{"type":"result","subtype":"error_max_budget_usd","duration_ms":145,"duration_api_ms":0,"is_error":true,"num_turns":1,"stop_reason":"tool_use","session_id":"e61f25ae-2f0e-4336-95e7-a231dd449340","total_cost_usd":7.5,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard"},"modelUsage":{"claude-opus-4-8[1m]":{"inputTokens":1000000,"outputTokens":100000,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":7.5,"contextWindow":1000000,"maxOutputTokens":64000}},"permission_denials":[],"fast_mode_state":"off","uuid":"de9330fc-af84-4cb4-9764-3c0731b853ea","errors":["Reached maximum budget ($0.0001)"]}"##;

    /// The result line of 2.1.197 g-max-turns, exactly as recorded.
    const MAX_TURNS_197: &str = r##"{"type":"result","subtype":"error_max_turns","duration_ms":256,"duration_api_ms":75,"is_error":true,"num_turns":2,"stop_reason":"tool_use","session_id":"0413febd-4c32-4653-bbee-e095b04e7b4b","total_cost_usd":0.001,"usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":20,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard"},"modelUsage":{"claude-opus-4-8[1m]":{"inputTokens":100,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.001,"contextWindow":1000000,"maxOutputTokens":64000}},"permission_denials":[],"terminal_reason":"max_turns","fast_mode_state":"off","uuid":"4a3220c0-cfa6-483a-8b0b-ea5a8a0b0286","errors":["Reached maximum number of turns (1)"]}"##;

    /// The result line of 2.1.197 k2-no-credentials (json mode; the same object), exactly as recorded.
    const NOT_LOGGED_IN_197: &str = r##"{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"duration_ms":191,"duration_api_ms":0,"num_turns":1,"result":"Not logged in · Please run /login","stop_reason":"stop_sequence","session_id":"b6ef8b56-e646-44c2-8690-7b12743398ca","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard"},"modelUsage":{},"permission_denials":[],"terminal_reason":"completed","fast_mode_state":"off","uuid":"1a44b23f-3a5f-465b-9720-64a9a3e9850b"}"##;

    // ---- real result lines -------------------------------------------------------------

    #[test]
    fn say_hi_both_versions() {
        let r = run(SAY_HI_330);
        assert_eq!(
            compact(&r),
            r#"{"agent":"web","success":true,"result":"hi","session_id":"80c19239-c66a-4007-822e-265f1dd269f1","cost_usd":0.0008,"duration_ms":147,"num_turns":1}"#
        );
        assert!(r.is_clean_success());
        let r = run(SAY_HI_197);
        assert_eq!(
            compact(&r),
            r#"{"agent":"web","success":true,"result":"hi","session_id":"214a55f2-8318-46e1-8e8d-eb29333dd2b4","cost_usd":0.001,"duration_ms":185,"num_turns":1}"#
        );
        assert!(r.is_clean_success());
    }

    #[test]
    fn denied_tools_on_success_both_versions() {
        let hint = "1 tool call(s) were denied by permissions: Bash. The result may be incomplete — the agent could not use these tools. To grant access: update_agent(name='web', allowed_tools='Bash') or permission_mode='bypassPermissions' (CLI: agent-dispatch update web --allowed-tools ...).";
        for (text, sid, cost, ms) in [
            (
                DENIED_330,
                "a50771bc-8b54-4a15-8d1a-27ba1038cab8",
                0.0016,
                196,
            ),
            (
                DENIED_197,
                "426db435-9d08-406c-a309-c896175c0cab",
                0.002,
                212,
            ),
        ] {
            let r = run(text);
            assert!(r.success);
            assert_eq!(r.result, "I was not allowed to run the command.");
            assert_eq!(r.session_id.as_deref(), Some(sid));
            assert_eq!(r.cost_usd, Some(cost));
            assert_eq!(r.duration_ms, Some(ms));
            assert_eq!(r.num_turns, Some(2));
            assert_eq!(r.denied_tools, vec!["Bash".to_owned()]);
            assert_eq!(r.hint.as_deref(), Some(hint));
            assert_eq!(r.error, None);
            assert!(!r.is_clean_success());
            let json = r.to_json();
            let keys: Vec<&str> = json
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                [
                    "agent",
                    "success",
                    "result",
                    "session_id",
                    "cost_usd",
                    "duration_ms",
                    "num_turns",
                    "hint",
                    "denied_tools"
                ]
            );
            assert_eq!(json["denied_tools"], json!(["Bash"]));
        }
    }

    #[test]
    fn budget_stop_both_versions() {
        let sid = "189a9aef-5c0e-4f2a-ac9b-715440f761b0";
        let l = line(BUDGET_330);
        let r = outcome(&Facts {
            exit: Some(ExitStatus::Code(1)),
            budget: Some(0.0001),
            ..facts(Some(&l))
        });
        let want = format!(
            "Agent 'web' failed: Reached maximum budget ($0.0001)\n\nHint: the dispatch was stopped by the spend cap $0.0001 (passed to claude as --max-budget-usd), so this answer is incomplete. Raise it (agent-dispatch update web --max-budget-usd <amount>), use a cheaper model, or split the task into smaller dispatches.{}",
            resumable_text(sid)
        );
        assert_eq!(r.error.as_deref(), Some(want.as_str()));
        assert_eq!(r.error_type, Some(ErrorType::Budget));
        assert!(r.budget_exceeded && !r.success);
        assert_eq!(r.result, "");
        assert_eq!(r.cost_usd, Some(6.0));
        assert_eq!(r.num_turns, Some(1));
        // No post-hoc note on top of the stop.
        assert_eq!(r.hint, None);
        assert_eq!(r.to_json()["budget_exceeded"], json!(true));

        // 2.1.197 has no terminal_reason: the subtype alone marks the stop. Budget unknown.
        let r = failed_run(BUDGET_197);
        assert_eq!(r.error_type, Some(ErrorType::Budget));
        assert!(r.budget_exceeded);
        assert_eq!(r.cost_usd, Some(7.5));
        let error = r.error.unwrap();
        assert!(error.starts_with("Agent 'web' failed: Reached maximum budget ($0.0001)\n\nHint: the dispatch was stopped by the configured cap (passed to claude as --max-budget-usd)"), "{error}");
        assert!(error.ends_with(&resumable_text("e61f25ae-2f0e-4336-95e7-a231dd449340")));
    }

    #[test]
    fn max_turns_both_versions() {
        for (text, sid) in [
            (MAX_TURNS_330, "292ca60a-4cf1-4adf-8919-18b054b7b314"),
            (MAX_TURNS_197, "0413febd-4c32-4653-bbee-e095b04e7b4b"),
        ] {
            let r = failed_run(text);
            assert!(!r.success);
            assert_eq!(r.result, "");
            assert_eq!(
                r.error.as_deref(),
                Some("Agent 'web' failed: Reached maximum number of turns (1)")
            );
            assert_eq!(r.error_type, Some(ErrorType::CliError));
            assert_eq!(r.session_id.as_deref(), Some(sid));
            assert_eq!(r.num_turns, Some(2));
            assert_eq!(r.hint, None);
            assert!(!r.budget_exceeded);
        }
    }

    #[test]
    fn api_failures_with_subtype_success() {
        for (text, sid) in [
            (NOT_LOGGED_IN_330, "d75c7fcb-e106-4b74-8371-87fb2384a0a5"),
            (NOT_LOGGED_IN_197, "b6ef8b56-e646-44c2-8690-7b12743398ca"),
        ] {
            let r = failed_run(text);
            assert_eq!(
                compact(&r),
                format!(
                    r#"{{"agent":"web","success":false,"result":"Not logged in · Please run /login","session_id":"{sid}","cost_usd":0.0,"duration_ms":{},"num_turns":1,"error":"Not logged in · Please run /login","error_type":"cli_error"}}"#,
                    if sid.starts_with("d75c") { 138 } else { 191 }
                )
            );
        }
        let r = failed_run(CONN_REFUSED_330);
        let text =
            "API Error: Connection refused — a firewall or proxy may be blocking it (ECONNREFUSED)";
        assert_eq!(r.result, text);
        assert_eq!(r.error.as_deref(), Some(text));
        assert_eq!(r.error_type, Some(ErrorType::CliError));
    }

    #[test]
    fn result_line_wins_over_the_timeout() {
        let l = line(SAY_HI_330);
        let r = outcome(&Facts {
            timed_out: true,
            exit: Some(ExitStatus::Signal(15)),
            ..facts(Some(&l))
        });
        assert!(r.success);
        assert_eq!(r.result, "hi");
        assert_eq!(r.hint.as_deref(), Some("The agent produced its final result but the process had not exited by the timeout and was killed. The result is complete — only cleanup was cut short."));
        // Hints join in order: denials, kill-after-result, budget note.
        let l = line(DENIED_330);
        let r = outcome(&Facts {
            timed_out: true,
            budget: Some(0.001),
            ..facts(Some(&l))
        });
        let hint = r.hint.unwrap();
        assert!(
            hint.starts_with("1 tool call(s) were denied by permissions: Bash."),
            "{hint}"
        );
        assert!(
            hint.contains("--allowed-tools ...). The agent produced its final result"),
            "{hint}"
        );
        assert!(hint.ends_with("only cleanup was cut short. Cost $0.0016 exceeded the configured budget $0.001 for this agent. Consider a cheaper model, a tighter task, or raising max_budget_usd."), "{hint}");
        assert!(r.budget_exceeded);
    }

    // ---- spec §9.1 shapes -------------------------------------------------------------

    #[test]
    fn spec_success_shapes() {
        let r = run(
            r#"{"result": "Found 3 errors in logs", "session_id": "sess-abc", "total_cost_usd": 0.02, "duration_ms": 5000, "num_turns": 2, "is_error": false}"#,
        );
        assert_eq!(
            compact(&r),
            r#"{"agent":"web","success":true,"result":"Found 3 errors in logs","session_id":"sess-abc","cost_usd":0.02,"duration_ms":5000,"num_turns":2}"#
        );
        let r = run(
            r#"{"type": "result", "subtype": "success", "result": "Found 3 errors", "session_id": "sess-stream", "total_cost_usd": 0.03, "duration_ms": 8000, "num_turns": 4, "is_error": false}"#,
        );
        assert_eq!(r.result, "Found 3 errors");
        assert_eq!(r.session_id.as_deref(), Some("sess-stream"));
        // Minimal: our pre-assigned id fills in.
        let r = run(r#"{"result": "ok", "is_error": false}"#);
        assert_eq!(
            compact(&r),
            format!(r#"{{"agent":"web","success":true,"result":"ok","session_id":"{OURS}"}}"#)
        );
        // Null and non-string results are coerced.
        assert_eq!(run(r#"{"result": null, "is_error": false}"#).result, "");
        assert_eq!(run(r#"{"is_error": false}"#).result, "");
        assert_eq!(run(r#"{"result": 42, "is_error": false}"#).result, "42");
        assert_eq!(
            run(r#"{"result": {"a": [1, "x"]}, "is_error": false}"#).result,
            r#"{"a":[1,"x"]}"#
        );
        assert_eq!(
            run(r#"{"result": false, "is_error": false}"#).result,
            "false"
        );
    }

    #[test]
    fn spec_error_shapes() {
        let r = failed_run(
            r#"{"result": "Tool_use is not allowed in this permission mode", "is_error": true}"#,
        );
        assert_eq!(r.error_type, Some(ErrorType::Permission));
        assert_eq!(
            r.error.unwrap(),
            format!(
                "Tool_use is not allowed in this permission mode{}",
                permission_hint_text()
            )
        );
        let r = failed_run(r#"{"is_error": true, "result": ""}"#);
        assert_eq!(r.error_type, Some(ErrorType::CliError));
        assert_eq!(
            r.error.as_deref(),
            Some("Agent 'web' reported an error with no details (exit code 1)")
        );
        assert_eq!(r.session_id.as_deref(), Some(OURS));
        let r = failed_run(r#"{"is_error": true, "result": null}"#);
        assert_eq!(r.result, "");
        let r = failed_run(r#"{"is_error": true, "errors": ["Reached maximum turns (5)"]}"#);
        assert_eq!(
            r.error.as_deref(),
            Some("Agent 'web' failed: Reached maximum turns (5)")
        );
        let r = failed_run(r#"{"is_error": true, "subtype": "error_during_execution"}"#);
        assert_eq!(
            r.error.as_deref(),
            Some("Agent 'web' failed: claude CLI reported 'error_during_execution'")
        );
        // A "success" subtype is no detail.
        let r = failed_run(r#"{"is_error": true, "subtype": "success", "result": "  "}"#);
        assert_eq!(
            r.error.as_deref(),
            Some("Agent 'web' reported an error with no details (exit code 1)")
        );
        let l = line(r#"{"is_error": true}"#);
        let r = outcome(&Facts {
            exit: Some(ExitStatus::Signal(9)),
            ..facts(Some(&l))
        });
        assert_eq!(
            r.error.as_deref(),
            Some("Agent 'web' reported an error with no details (killed by signal 9)")
        );
        let r = outcome(&Facts {
            exit: None,
            ..facts(Some(&l))
        });
        assert_eq!(
            r.error.as_deref(),
            Some("Agent 'web' reported an error with no details")
        );
    }

    #[test]
    fn captured_budget_stop_without_result_key() {
        let l = line(
            r#"{"type": "result", "is_error": true, "subtype": "error_max_budget_usd", "terminal_reason": "budget_exhausted", "errors": ["Reached maximum budget ($0.0001)"], "session_id": "sess-budget", "total_cost_usd": 0.000583, "num_turns": 1}"#,
        );
        let r = outcome(&Facts {
            exit: Some(ExitStatus::Code(1)),
            budget: Some(0.0001),
            ..facts(Some(&l))
        });
        assert_eq!(r.error_type, Some(ErrorType::Budget));
        assert!(r.budget_exceeded);
        assert_eq!(r.session_id.as_deref(), Some("sess-budget"));
        assert_eq!(r.cost_usd, Some(0.000583));
        assert!(r.error.unwrap().ends_with(&resumable_text("sess-budget")));
        // terminal_reason alone is a budget stop too.
        let r = failed_run(r#"{"is_error": true, "terminal_reason": "budget_exhausted"}"#);
        assert_eq!(r.error_type, Some(ErrorType::Budget));
    }

    #[test]
    fn permission_denials_shapes() {
        let r = run(
            r#"{"is_error": false, "result": "partly", "permission_denials": [{"tool_name": "Bash", "tool_input": {}}, {"tool_name": "WebFetch"}, {"tool_name": "Bash"}]}"#,
        );
        assert_eq!(r.denied_tools, vec!["Bash", "WebFetch"]);
        assert_eq!(
            r.hint.as_deref(),
            Some("3 tool call(s) were denied by permissions: Bash, WebFetch. The result may be incomplete — the agent could not use these tools. To grant access: update_agent(name='web', allowed_tools='Bash,WebFetch') or permission_mode='bypassPermissions' (CLI: agent-dispatch update web --allowed-tools ...).")
        );
        let r = run(
            r#"{"is_error": false, "permission_denials": ["Bash", {"tool": "Read"}, {"junk": 1}]}"#,
        );
        assert_eq!(r.denied_tools, vec!["Bash", "Read", "unknown"]);
        let r = run(
            r#"{"is_error": false, "permission_denials": [42, null, {"tool_name": ""}, {"tool_name": 7}]}"#,
        );
        assert_eq!(r.denied_tools, vec!["42", "null", "unknown", "7"]);
        // Not a list: no denials.
        assert!(
            run(r#"{"is_error": false, "permission_denials": {"tool_name": "Bash"}}"#)
                .denied_tools
                .is_empty()
        );
        // Caps: 100 chars per name, 10 names.
        let many: Vec<Value> = (0..12)
            .map(|i| json!({"tool_name": format!("T{i}")}))
            .collect();
        let long = "x".repeat(150);
        let mut entries = vec![json!({"tool_name": long})];
        entries.extend(many);
        let l = json!({"is_error": false, "permission_denials": entries});
        let r = run(&l.to_string());
        assert_eq!(r.denied_tools.len(), 10);
        assert_eq!(r.denied_tools[0], "x".repeat(100));
        assert_eq!(r.denied_tools[9], "T8");
        assert!(r.hint.unwrap().starts_with("13 tool call(s) were denied"));
    }

    #[test]
    fn denials_on_failure_force_permission() {
        let r = failed_run(
            r#"{"is_error": true, "result": "API Error: 500", "permission_denials": [{"tool_name": "Bash"}]}"#,
        );
        assert_eq!(r.error_type, Some(ErrorType::Permission));
        assert_eq!(
            r.error.unwrap(),
            format!("API Error: 500{}", permission_hint_text())
        );
        assert_eq!(r.denied_tools, vec!["Bash"]);
        assert_eq!(r.hint, None);
        // The budget stop beats denials.
        let r = failed_run(
            r#"{"is_error": true, "subtype": "error_max_budget_usd", "errors": ["Reached maximum budget ($1)"], "permission_denials": [{"tool_name": "Bash"}]}"#,
        );
        assert_eq!(r.error_type, Some(ErrorType::Budget));
        // An account limit beats denials too.
        let r = failed_run(
            r#"{"is_error": true, "result": "Usage limit reached", "permission_denials": [{"tool_name": "Bash"}]}"#,
        );
        assert_eq!(r.error_type, Some(ErrorType::UsageLimit));
    }

    #[test]
    fn usage_limit_in_stderr_and_in_the_result() {
        let r = no_result(
            Some(ExitStatus::Code(1)),
            "You've hit your session limit · resets 6pm (Asia/Almaty)\n",
            "",
        );
        assert_eq!(r.error_type, Some(ErrorType::UsageLimit));
        assert_eq!(
            r.error.as_deref(),
            Some("claude exited with code 1: You've hit your session limit · resets 6pm (Asia/Almaty)\n\nHint: this is the Claude ACCOUNT's usage limit, not this agent's. It resets 6pm (Asia/Almaty). Every agent shares it, so dispatching a different agent (or retrying now) fails the same way — wait for the reset, or reduce concurrent dispatches (settings.max_concurrency). Nothing was billed for this call.")
        );
        assert_eq!(r.session_id.as_deref(), Some(OURS));
        let r = failed_run(
            r#"{"type":"result","is_error":true,"result":"Claude AI usage limit reached"}"#,
        );
        assert_eq!(r.error_type, Some(ErrorType::UsageLimit));
        assert_eq!(
            r.error.as_deref(),
            Some("Claude AI usage limit reached\n\nHint: this is the Claude ACCOUNT's usage limit, not this agent's. Every agent shares it, so dispatching a different agent (or retrying now) fails the same way — wait for the reset, or reduce concurrent dispatches (settings.max_concurrency). Nothing was billed for this call.")
        );
    }

    #[test]
    fn malformed_telemetry_keeps_the_answer() {
        let r = run(
            r#"{"type":"result","is_error":false,"result":"kept","duration_ms":1234.5,"num_turns":"n/a","total_cost_usd":"0.5","session_id":123}"#,
        );
        assert!(r.success);
        assert_eq!(r.result, "kept");
        assert_eq!(r.duration_ms, Some(1234));
        assert_eq!(r.num_turns, None);
        assert_eq!(r.cost_usd, None);
        assert_eq!(r.session_id.as_deref(), Some(OURS));
        for (field, bad) in [
            ("duration_ms", json!("inf")),
            ("duration_ms", json!(-5)),
            ("duration_ms", json!(-0.5)),
            ("duration_ms", json!(true)),
            ("duration_ms", json!(1e300)),
            ("num_turns", json!(-1)),
            ("num_turns", json!(null)),
            ("num_turns", json!([3])),
        ] {
            let l = json!({"is_error": false, "result": "ok", field: bad});
            let r = run(&l.to_string());
            assert_eq!((r.duration_ms, r.num_turns), (None, None), "{field}: {bad}");
            assert_eq!(r.result, "ok");
        }
        assert_eq!(
            run(r#"{"is_error":false,"num_turns":3.99}"#).num_turns,
            Some(3)
        );
        for bad in [json!(-1), json!("0.5"), json!(true), json!({})] {
            let l = json!({"is_error": false, "total_cost_usd": bad});
            assert_eq!(run(&l.to_string()).cost_usd, None, "{bad}");
        }
        assert_eq!(
            run(r#"{"is_error":false,"total_cost_usd":3}"#).cost_usd,
            Some(3.0)
        );
        for bad in [
            json!(123),
            json!(""),
            json!("   "),
            json!({}),
            json!("has space"),
            json!("-flag"),
        ] {
            let l = json!({"is_error": false, "session_id": bad});
            assert_eq!(
                run(&l.to_string()).session_id.as_deref(),
                Some(OURS),
                "{bad}"
            );
        }
    }

    #[test]
    fn is_error_truthiness() {
        assert!(!failed_run(r#"{"is_error": "yes", "result": "x"}"#).success);
        assert!(!failed_run(r#"{"is_error": 1}"#).success);
        assert!(run(r#"{"is_error": 0, "result": "x"}"#).success);
        assert!(run(r#"{"is_error": "", "result": "x"}"#).success);
        // `is_error` is the flag: errors alone do not fail a run…
        assert!(run(r#"{"is_error": false, "errors": ["x"], "result": "x"}"#).success);
        // …but a missing flag with an error subtype does.
        let r = failed_run(
            r#"{"subtype": "error_max_turns", "errors": ["Reached maximum number of turns (1)"]}"#,
        );
        assert!(!r.success);
        assert_eq!(
            r.error.as_deref(),
            Some("Agent 'web' failed: Reached maximum number of turns (1)")
        );
        assert!(run(r#"{"subtype": "success", "result": "x"}"#).success);
    }

    #[test]
    fn error_details_rules() {
        let long = "e".repeat(301);
        let l = json!({"is_error": true, "errors": ["  ", null, " first ", {"code": 1}, 7, long, "five", "six"]});
        let r = failed_run(&l.to_string());
        assert_eq!(
            r.error.unwrap(),
            format!(
                "Agent 'web' failed: first; {{\"code\":1}}; 7; {}; five",
                "e".repeat(300)
            )
        );
        let r = failed_run(
            r#"{"is_error": true, "errors": [], "subtype": "error_max_structured_output_retries"}"#,
        );
        assert_eq!(
            r.error.as_deref(),
            Some("Agent 'web' failed: claude CLI reported 'error_max_structured_output_retries'")
        );
    }

    // ---- post-hoc budget ---------------------------------------------------------------

    #[test]
    fn post_hoc_budget() {
        let l = line(SAY_HI_330);
        let r = outcome(&Facts {
            budget: Some(0.0005),
            ..facts(Some(&l))
        });
        assert!(r.success && r.budget_exceeded);
        assert!(!r.is_clean_success());
        assert_eq!(r.hint.as_deref(), Some("Cost $0.0008 exceeded the configured budget $0.0005 for this agent. Consider a cheaper model, a tighter task, or raising max_budget_usd."));
        assert_eq!(r.error, None);
        // Equal is not over; no budget, no note.
        let r = outcome(&Facts {
            budget: Some(0.0008),
            ..facts(Some(&l))
        });
        assert!(!r.budget_exceeded && r.hint.is_none());
        assert!(!outcome(&facts(Some(&l))).budget_exceeded);
        // Also on failures, which stay failures of their own type.
        let l = line(MAX_TURNS_197);
        let r = outcome(&Facts {
            exit: Some(ExitStatus::Code(1)),
            budget: Some(0.0005),
            ..facts(Some(&l))
        });
        assert!(r.budget_exceeded && !r.success);
        assert_eq!(r.error_type, Some(ErrorType::CliError));
        assert_eq!(r.hint.as_deref(), Some("Cost $0.0010 exceeded the configured budget $0.0005 for this agent. Consider a cheaper model, a tighter task, or raising max_budget_usd."));
        let l = line(r#"{"is_error": false, "result": "big", "total_cost_usd": 1.23456}"#);
        let r = outcome(&Facts {
            budget: Some(1.0),
            ..facts(Some(&l))
        });
        assert_eq!(r.hint.as_deref(), Some("Cost $1.2346 exceeded the configured budget $1 for this agent. Consider a cheaper model, a tighter task, or raising max_budget_usd."));
    }

    // ---- no result line ----------------------------------------------------------------

    #[test]
    fn timeout_without_result() {
        let r = outcome(&Facts {
            timed_out: true,
            exit: Some(ExitStatus::Signal(15)),
            stderr: "noise",
            ..facts(None)
        });
        assert_eq!(
            compact(&r),
            format!(
                r#"{{"agent":"web","success":false,"result":"","session_id":"{OURS}","error":"Agent 'web' timed out after 300s. Options: pass timeout_seconds= for a longer one-off run, use dispatch_async for fire-and-forget, or raise the agent default (agent-dispatch update web --timeout 600). Partial work may be resumable: dispatch_session(agent='web', task='Continue where you left off', session_id='{OURS}').","error_type":"timeout"}}"#
            )
        );
        let r = outcome(&Facts {
            timed_out: true,
            exit: None,
            timeout_secs: 45,
            session_id: "resumed-id",
            ..facts(None)
        });
        assert!(r
            .error
            .unwrap()
            .starts_with("Agent 'web' timed out after 45s. "));
        assert_eq!(r.session_id.as_deref(), Some("resumed-id"));
    }

    #[test]
    fn exit_without_result() {
        let r = no_result(
            Some(ExitStatus::Code(1)),
            "Error: permission denied for tool Bash\n",
            "",
        );
        assert_eq!(r.error_type, Some(ErrorType::Permission));
        assert_eq!(
            r.error.unwrap(),
            format!(
                "claude exited with code 1: Error: permission denied for tool Bash{}",
                permission_hint_text()
            )
        );
        let r = no_result(Some(ExitStatus::Code(1)), "connection refused", "");
        assert_eq!(
            compact(&r),
            format!(
                r#"{{"agent":"web","success":false,"result":"","session_id":"{OURS}","error":"claude exited with code 1: connection refused","error_type":"cli_error"}}"#
            )
        );
        // Old CLI (after the retry is used up).
        let r = no_result(
            Some(ExitStatus::Code(1)),
            "error: unknown option '--session-id'\n",
            "",
        );
        assert_eq!(
            r.error.as_deref(),
            Some("claude exited with code 1: error: unknown option '--session-id'")
        );
        // Assistant lines only, then exit 1 (no stderr): nothing to quote.
        let r = no_result(Some(ExitStatus::Code(1)), "", "");
        assert_eq!(
            r.error.as_deref(),
            Some("claude exited with code 1 and produced no output")
        );
        assert_eq!(r.error_type, Some(ErrorType::CliError));
        let r = no_result(Some(ExitStatus::Code(143)), "", "");
        assert_eq!(
            r.error.as_deref(),
            Some("claude exited with code 143 (stopped by SIGTERM) and produced no output")
        );
        let r = no_result(Some(ExitStatus::Signal(9)), "", "");
        assert_eq!(
            r.error.as_deref(),
            Some("claude was killed by signal 9 and produced no output")
        );
        let r = no_result(None, "", "");
        assert_eq!(
            r.error.as_deref(),
            Some("claude ended before its exit status was known and produced no output")
        );
        assert_eq!(r.session_id.as_deref(), Some(OURS));
    }

    #[test]
    fn exit_zero_without_output_is_a_failure() {
        let r = no_result(Some(ExitStatus::Code(0)), "", "");
        assert!(!r.success);
        assert_eq!(
            r.error.as_deref(),
            Some("claude exited with code 0 and produced no output")
        );
        assert_eq!(r.error_type, Some(ErrorType::CliError));
        assert_eq!(r.session_id.as_deref(), Some(OURS));
        let r = no_result(
            Some(ExitStatus::Code(0)),
            "  warning: something odd\n",
            "  \n",
        );
        assert_eq!(
            r.error.as_deref(),
            Some("claude exited with code 0: warning: something odd")
        );
    }

    #[test]
    fn plain_text_tier() {
        let r = no_result(Some(ExitStatus::Code(0)), "", "Just plain text\n");
        assert_eq!(
            compact(&r),
            format!(
                r#"{{"agent":"web","success":true,"result":"Just plain text","session_id":"{OURS}"}}"#
            )
        );
        let r = no_result(Some(ExitStatus::Code(1)), "", "something broke\n");
        assert!(!r.success);
        assert_eq!(r.result, "something broke");
        assert_eq!(
            r.error.as_deref(),
            Some("claude exited with code 1: something broke")
        );
        assert_eq!(r.error_type, Some(ErrorType::CliError));
        // stderr is preferred as the detail; the text stays the result.
        let r = no_result(Some(ExitStatus::Code(2)), "Error: not permitted", "out");
        assert_eq!(r.result, "out");
        assert_eq!(r.error_type, Some(ErrorType::Permission));
        assert!(r
            .error
            .unwrap()
            .starts_with("claude exited with code 2: Error: not permitted\n\nHint: "));
        // JSON mode parses plain successes.
        let r = outcome(&Facts {
            plain_stdout: "```json\n{\"n\": 1}\n```\n",
            events_seen: false,
            json_mode: true,
            ..facts(None)
        });
        assert_eq!(r.parsed_result, Some(json!({"n": 1})));
    }

    #[test]
    fn quoted_stderr_is_capped() {
        let flood = "x".repeat(5000);
        let r = no_result(Some(ExitStatus::Code(1)), &flood, "");
        assert_eq!(
            r.error.unwrap(),
            format!(
                "claude exited with code 1: {} … (1000 more characters)",
                "x".repeat(4000)
            )
        );
    }

    // ---- spawn failures ----------------------------------------------------------------

    #[test]
    fn spawn_failures() {
        let fail = |kind, message: &str| {
            let error = SpawnError {
                message: message.to_owned(),
                kind,
            };
            outcome(&Facts {
                spawn_error: Some(&error),
                exit: None,
                ..facts(None)
            })
        };
        let r = fail(SpawnErrorKind::NotFound, "`claude` was not found on PATH");
        assert_eq!(
            compact(&r),
            r#"{"agent":"web","success":false,"result":"","error":"Claude CLI not found in PATH. Install: npm install -g @anthropic-ai/claude-code","error_type":"not_found"}"#
        );
        let r = fail(
            SpawnErrorKind::NotFound,
            "working directory /srv/gone does not exist",
        );
        assert_eq!(
            r.error.as_deref(),
            Some("Directory does not exist: /srv/gone")
        );
        assert_eq!(r.error_type, Some(ErrorType::NotFound));
        let r = fail(
            SpawnErrorKind::PermissionDenied,
            "/usr/bin/claude is not an executable file",
        );
        assert_eq!(
            r.error.as_deref(),
            Some("/usr/bin/claude is not an executable file")
        );
        assert_eq!(r.error_type, Some(ErrorType::Permission));
        let r = fail(
            SpawnErrorKind::Other,
            "cannot start /usr/bin/claude: Argument list too long (os error 7)",
        );
        assert_eq!(r.error_type, Some(ErrorType::CliError));
        assert_eq!(r.session_id, None);
        // A spawn failure beats everything else.
        let l = line(SAY_HI_330);
        let error = SpawnError {
            message: "boom".into(),
            kind: SpawnErrorKind::Other,
        };
        let r = outcome(&Facts {
            spawn_error: Some(&error),
            timed_out: true,
            ..facts(Some(&l))
        });
        assert_eq!(r.error.as_deref(), Some("boom"));
    }

    // ---- JSON mode ---------------------------------------------------------------------

    #[test]
    fn json_mode_parses_successes_only() {
        let parsed = |text: &str| {
            let l = json!({"type": "result", "is_error": false, "result": text});
            let r = outcome(&Facts {
                json_mode: true,
                ..facts(Some(&line(&l.to_string())))
            });
            assert!(r.success);
            r.parsed_result
        };
        assert_eq!(
            parsed(r#"{"count": 3, "errors": ["a", "b"]}"#),
            Some(json!({"count": 3, "errors": ["a", "b"]}))
        );
        assert_eq!(parsed("```json\n[1, 2, 3]\n```"), Some(json!([1, 2, 3])));
        assert_eq!(parsed("```\n[\"a\"]\n```"), Some(json!(["a"])));
        assert_eq!(
            parsed("  ```json\n{\"a\": 1}\n  ```  \n"),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            parsed("```json\n{\"unclosed\": true}"),
            Some(json!({"unclosed": true}))
        );
        assert_eq!(parsed("42"), Some(json!(42)));
        assert_eq!(parsed("\"text\""), Some(json!("text")));
        assert_eq!(parsed("Here are the results: 3 errors."), None);
        assert_eq!(parsed("```python\nprint(1)\n```"), None);
        assert_eq!(parsed("null"), None);
        assert_eq!(parsed(""), None);
        // Not in JSON mode, or on a failure: never parsed.
        assert_eq!(
            run(r#"{"is_error": false, "result": "[1]"}"#).parsed_result,
            None
        );
        let l = line(r#"{"is_error": true, "result": "{\"error\": \"no access\"}"}"#);
        let r = outcome(&Facts {
            json_mode: true,
            ..facts(Some(&l))
        });
        assert_eq!(r.parsed_result, None);
        // The parsed value sits before budget_exceeded in the JSON.
        let l = line(r#"{"is_error": false, "result": "{\"a\": 1}", "total_cost_usd": 2}"#);
        let r = outcome(&Facts {
            json_mode: true,
            budget: Some(1.0),
            ..facts(Some(&l))
        });
        assert!(
            compact(&r).ends_with(r#","parsed_result":{"a":1},"budget_exceeded":true}"#),
            "{}",
            compact(&r)
        );
    }

    // ---- the result object -------------------------------------------------------------

    #[test]
    fn to_json_field_order_and_omissions() {
        let full = DispatchResult {
            agent: "web".into(),
            success: false,
            result: "r".into(),
            session_id: Some("s".into()),
            cost_usd: Some(0.5),
            duration_ms: Some(10),
            num_turns: Some(2),
            error: Some("e".into()),
            error_type: Some(ErrorType::UsageLimit),
            outcome: Some(Outcome::Blocked),
            hint: Some("h".into()),
            denied_tools: vec!["Bash".into()],
            parsed_result: Some(json!({"k": [1]})),
            budget_exceeded: true,
        };
        assert_eq!(
            compact(&full),
            r#"{"agent":"web","success":false,"result":"r","session_id":"s","cost_usd":0.5,"duration_ms":10,"num_turns":2,"error":"e","error_type":"usage_limit","outcome":"blocked","hint":"h","denied_tools":["Bash"],"parsed_result":{"k":[1]},"budget_exceeded":true}"#
        );
        let bare = DispatchResult {
            cost_usd: Some(f64::NAN),
            parsed_result: Some(Value::Null),
            ..DispatchResult::empty("web", true)
        };
        assert_eq!(
            compact(&bare),
            r#"{"agent":"web","success":true,"result":""}"#
        );
    }

    #[test]
    fn preflight_and_recursion() {
        let r = DispatchResult::preflight(
            "web",
            "Refusing to dispatch: model '-x' …".into(),
            ErrorType::CliError,
        );
        assert_eq!(
            compact(&r),
            r#"{"agent":"web","success":false,"result":"","error":"Refusing to dispatch: model '-x' …","error_type":"cli_error"}"#
        );
        assert!(!r.is_clean_success());
        let r = recursion_error("web", 3, 3);
        assert_eq!(
            compact(&r),
            r#"{"agent":"web","success":false,"result":"","error":"Dispatch depth 3 >= max 3. An agent is trying to dispatch to another agent that dispatches back. Increase settings.max_dispatch_depth if this is intentional.","error_type":"recursion"}"#
        );
    }

    #[test]
    fn error_type_names() {
        let all = [
            (ErrorType::Permission, "permission"),
            (ErrorType::Timeout, "timeout"),
            (ErrorType::Recursion, "recursion"),
            (ErrorType::NotFound, "not_found"),
            (ErrorType::CliError, "cli_error"),
            (ErrorType::Budget, "budget"),
            (ErrorType::UsageLimit, "usage_limit"),
        ];
        for (t, name) in all {
            assert_eq!(t.as_str(), name);
        }
    }

    // ---- helpers -----------------------------------------------------------------------

    #[test]
    fn classification() {
        for (text, want) in [
            ("Error: Permission denied", ErrorType::Permission),
            ("tool is NOT ALLOWED here", ErrorType::Permission),
            ("Disallowed tool: Bash", ErrorType::Permission),
            ("401 Unauthorized", ErrorType::Permission),
            ("You do not have permission", ErrorType::Permission),
            ("You don't have permission", ErrorType::CliError),
            ("API Error: 429 Too Many Requests", ErrorType::UsageLimit),
            ("rate_limit_error", ErrorType::UsageLimit),
            (
                "Quota exceeded; also permission denied",
                ErrorType::UsageLimit,
            ),
            ("connection refused", ErrorType::CliError),
            ("", ErrorType::CliError),
        ] {
            assert_eq!(classify(text), want, "{text}");
        }
    }

    #[test]
    fn reset_times() {
        for (text, want) in [
            (
                "You've hit your session limit · resets 6pm (Asia/Almaty)",
                Some("6pm (Asia/Almaty)"),
            ),
            (
                "Usage limit reached. Resets at 5:30pm PT.",
                Some("5:30pm PT"),
            ),
            ("limit will reset at\t09:00 UTC\nmore", Some("09:00 UTC")),
            ("resets atlantic time", Some("atlantic time")),
            ("Usage limit reached|1750000000", None),
            ("resetting soon", None),
            ("resets .", None),
            ("presets x reset now", Some("x reset now")),
        ] {
            assert_eq!(reset_time(text).as_deref(), want, "{text}");
        }
        let long = format!("resets {}", "y".repeat(60));
        assert_eq!(reset_time(&long), Some("y".repeat(40)));
    }

    #[test]
    fn python_g_format() {
        for (x, want) in [
            (0.0001, "0.0001"),
            (0.5, "0.5"),
            (1.0, "1"),
            (2.0, "2"),
            (10.0, "10"),
            (0.00001, "1e-05"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (999999.5, "1e+06"),
            (0.1 + 0.2, "0.3"),
            (0.0, "0"),
        ] {
            assert_eq!(py_g(x), want, "{x}");
        }
    }
    // ---- the STATUS line (spec §8 0.14) ------------------------------------------------

    fn status(text: &str) -> (String, Option<Outcome>) {
        take_status(text)
    }

    #[test]
    fn status_line_spec_examples() {
        assert_eq!(
            status("All good.\n\nSTATUS: done"),
            ("All good.".to_owned(), Some(Outcome::Done))
        );
        assert_eq!(
            status("Half of it.\n**Status: Partial**"),
            ("Half of it.".to_owned(), Some(Outcome::Partial))
        );
        // A reason after the verdict keeps the line.
        let text = "Tried.\nSTATUS: blocked — need DB credentials";
        assert_eq!(status(text), (text.to_owned(), Some(Outcome::Blocked)));
        // Only the last non-empty line counts.
        let text = "STATUS: done\nthen more text";
        assert_eq!(status(text), (text.to_owned(), None));
        let text = "STATUS: blocked\nSTATUS: partial\n\n  \n";
        assert_eq!(
            status(text),
            ("STATUS: blocked".to_owned(), Some(Outcome::Partial))
        );
        // An unknown verdict is no verdict.
        let text = "Hmm.\nSTATUS: maybe";
        assert_eq!(status(text), (text.to_owned(), None));
    }

    #[test]
    fn status_line_shapes() {
        for (line, want) in [
            ("STATUS: done", Outcome::Done),
            ("status:done", Outcome::Done),
            ("  Status :  DONE.", Outcome::Done),
            ("`STATUS: partial`", Outcome::Partial),
            ("__STATUS:__ blocked", Outcome::Blocked),
            ("*** status: *Blocked*! ", Outcome::Blocked),
            ("_ STATUS: _ done _", Outcome::Done),
            ("STATUS: done\r", Outcome::Done),
            ("\tSTATUS:\tpartial.!.", Outcome::Partial),
        ] {
            assert_eq!(
                status(&format!("Body.\n{line}")),
                ("Body.".to_owned(), Some(want)),
                "{line:?}"
            );
        }
        // Matched, but the rest is more than decoration: the line stays.
        for (line, want) in [
            ("STATUS: done (all 3 files)", Outcome::Done),
            ("STATUS: partial - tests not run", Outcome::Partial),
            ("**STATUS: blocked**: need access", Outcome::Blocked),
            ("STATUS: done, mostly", Outcome::Done),
        ] {
            let text = format!("Body.\n{line}");
            assert_eq!(status(&text), (text.clone(), Some(want)), "{line:?}");
        }
        // Not a status line at all.
        for line in [
            "STATUS: donee",
            "STATUS: done_",
            "STATUS: doneé",
            "STATUS: partially",
            "STATUS done",
            "STATUS: - done",
            "My STATUS: done",
            "> STATUS: done",
            "- STATUS: done",
            "STATUSES: done",
            "* * STATUS: done",
            "STATUS: ** ** done",
            "STATUS: 'done'",
            // Emphasis may not close between the word and the colon.
            "**STATUS**: done",
            // `_` is a word character: `\b` fails right after the verdict (as in Python).
            "__STATUS: blocked__",
        ] {
            let text = format!("Body.\n{line}");
            assert_eq!(status(&text), (text.clone(), None), "{line:?}");
        }
    }

    #[test]
    fn status_line_edges() {
        assert_eq!(status(""), (String::new(), None));
        assert_eq!(status(" \n\n"), (" \n\n".to_owned(), None));
        assert_eq!(status("STATUS: done"), (String::new(), Some(Outcome::Done)));
        assert_eq!(
            status("  Lead.\r\n\r\nSTATUS: done\r\n"),
            ("  Lead.".to_owned(), Some(Outcome::Done))
        );
        // Text before the line keeps its own layout.
        assert_eq!(
            status("a\n\n  b  \nSTATUS: done"),
            ("a\n\n  b".to_owned(), Some(Outcome::Done))
        );
        // Multi-byte text around it.
        assert_eq!(
            status("Готово ✓\nSTATUS: done ✓"),
            ("Готово ✓\nSTATUS: done ✓".to_owned(), Some(Outcome::Done))
        );
        assert_eq!(status("ÄSTATUS: done").1, None);
    }

    fn with_protocol(text: &str) -> DispatchResult {
        let l =
            json!({"type": "result", "is_error": false, "result": text, "session_id": "sess-1"});
        let l = line(&l.to_string());
        outcome(&Facts {
            protocol: true,
            ..facts(Some(&l))
        })
    }

    const PARTIAL_HINT: &str = "The agent reports its work is PARTIAL — read the result for what is missing, then continue in the same session via dispatch_session(agent='web', task='Continue where you left off', session_id='sess-1') or re-dispatch with what it needed.";
    const BLOCKED_HINT: &str = "The agent reports it is BLOCKED — the result names what it needs (context, access, a tool, a running service). Supply it and re-dispatch, or resume via dispatch_session(agent='web', task='Continue where you left off', session_id='sess-1').";

    #[test]
    fn outcome_on_successes() {
        let r = with_protocol("All good.\n\nSTATUS: done");
        assert_eq!(
            compact(&r),
            r#"{"agent":"web","success":true,"result":"All good.","session_id":"sess-1","outcome":"done"}"#
        );
        assert!(r.is_clean_success());
        let r = with_protocol("Half.\n**Status: Partial**");
        assert_eq!(
            compact(&r),
            format!(
                r#"{{"agent":"web","success":true,"result":"Half.","session_id":"sess-1","outcome":"partial","hint":"{PARTIAL_HINT}"}}"#
            )
        );
        assert!(!r.is_clean_success());
        let r = with_protocol("Need the DB.\nSTATUS: blocked");
        assert_eq!(r.outcome, Some(Outcome::Blocked));
        assert_eq!(r.hint.as_deref(), Some(BLOCKED_HINT));
        assert!(r.success && !r.is_clean_success());
        // No STATUS line: no outcome, text untouched, still clean.
        let r = with_protocol("Just text.\n");
        assert_eq!(r.outcome, None);
        assert_eq!(r.result, "Just text.\n");
        assert!(r.is_clean_success());
        // Protocol off: the line is ordinary text.
        let l = line(r#"{"is_error": false, "result": "x\nSTATUS: partial"}"#);
        let r = outcome(&facts(Some(&l)));
        assert_eq!(r.result, "x\nSTATUS: partial");
        assert_eq!((r.outcome, r.hint), (None, None));
    }

    #[test]
    fn outcome_is_read_before_json_parsing() {
        let l = line(r#"{"is_error": false, "result": "```json\n{\"n\": 1}\n```\nSTATUS: done"}"#);
        let r = outcome(&Facts {
            protocol: true,
            json_mode: true,
            ..facts(Some(&l))
        });
        assert_eq!(r.result, "```json\n{\"n\": 1}\n```");
        assert_eq!(r.parsed_result, Some(json!({"n": 1})));
        assert_eq!(r.outcome, Some(Outcome::Done));
    }

    #[test]
    fn outcome_is_not_read_on_failures() {
        let l = line(r#"{"is_error": true, "result": "boom\nSTATUS: blocked"}"#);
        let r = outcome(&Facts {
            protocol: true,
            exit: Some(ExitStatus::Code(1)),
            ..facts(Some(&l))
        });
        assert!(!r.success);
        assert_eq!(r.outcome, None);
        assert_eq!(r.result, "boom\nSTATUS: blocked");
        assert_eq!(r.hint, None);
        let r = outcome(&Facts {
            protocol: true,
            exit: Some(ExitStatus::Code(1)),
            plain_stdout: "nope\nSTATUS: blocked\n",
            ..facts(None)
        });
        assert_eq!((r.success, r.outcome), (false, None));
    }

    #[test]
    fn outcome_on_the_plain_text_tier() {
        let r = outcome(&Facts {
            protocol: true,
            plain_stdout: "Did half.\nSTATUS: partial\n",
            ..facts(None)
        });
        assert!(r.success);
        assert_eq!(r.result, "Did half.");
        assert_eq!(r.outcome, Some(Outcome::Partial));
        assert_eq!(
            r.hint.unwrap(),
            format!("The agent reports its work is PARTIAL — read the result for what is missing, then continue in the same session via dispatch_session(agent='web', task='Continue where you left off', session_id='{OURS}') or re-dispatch with what it needed.")
        );
    }

    #[test]
    fn success_hints_join_in_order() {
        // denial, kill-after-result, outcome, then the budget note.
        let l = line(
            r#"{"is_error": false, "result": "Some.\nSTATUS: partial", "session_id": "sess-1", "total_cost_usd": 2, "permission_denials": [{"tool_name": "Bash"}]}"#,
        );
        let r = outcome(&Facts {
            protocol: true,
            timed_out: true,
            budget: Some(1.0),
            ..facts(Some(&l))
        });
        let denial = "1 tool call(s) were denied by permissions: Bash. The result may be incomplete — the agent could not use these tools. To grant access: update_agent(name='web', allowed_tools='Bash') or permission_mode='bypassPermissions' (CLI: agent-dispatch update web --allowed-tools ...).";
        let budget = "Cost $2.0000 exceeded the configured budget $1 for this agent. Consider a cheaper model, a tighter task, or raising max_budget_usd.";
        assert_eq!(
            r.hint.clone().unwrap(),
            format!("{denial} {KILLED_AFTER_RESULT} {PARTIAL_HINT} {budget}")
        );
        assert_eq!(r.result, "Some.");
        // The outcome sits between error_type and hint.
        let keys: Vec<String> = r.to_json().as_object().unwrap().keys().cloned().collect();
        let at = |k: &str| keys.iter().position(|x| x == k).unwrap();
        assert_eq!(at("outcome") + 1, at("hint"));
    }

    #[test]
    fn outcome_names() {
        assert_eq!(Outcome::Done.as_str(), "done");
        assert_eq!(Outcome::Partial.as_str(), "partial");
        assert_eq!(Outcome::Blocked.as_str(), "blocked");
        assert_eq!(Outcome::Done.hint("web", "s"), None);
    }
}
