//! `agent-dispatch test NAME [TASK]`: one real dispatch, through the MCP tool
//! `dispatch_stream` on an in-process server, with its progress shown as it happens.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use agent_dispatch_core::Options;
use agent_dispatch_transports::local::LocalClient;
use serde_json::{json, Map, Value};

use crate::init::INSTALL_CLAUDE;
use crate::registry::{checked, server_error, text, tool_error};
use crate::ui::{self, note, say, CliError, Outcome};

pub const DEFAULT_TASK: &str = "What project is this? Describe in one sentence.";
/// The tool `test` runs.
pub const TOOL: &str = "dispatch_stream";

pub fn test(
    options: Options,
    name: &str,
    task: Option<&str>,
    stream: bool,
    timeout: Option<i64>,
    json: bool,
) -> Outcome {
    if let Some(t) = timeout.filter(|t| *t < 1) {
        return Err(CliError::usage(format!(
            "--timeout must be a positive number of seconds (got {t})"
        )));
    }
    let task = task.unwrap_or(DEFAULT_TASK);
    let mut client = LocalClient::start(options).map_err(server_error)?;
    let agent = client
        .call_tool(
            "inspect_agent",
            json!({"name": name, "preview_lines": 0}),
            None,
        )
        .map_err(server_error)?;
    let agent = checked(agent)?;
    if !client.has_tool(TOOL).map_err(server_error)? {
        return Err(no_engine());
    }
    note!("Dispatching to '{name}' ({})...", text(&agent["directory"]));
    note!("Task: {task}");
    note!("---");

    let mut args = Map::new();
    args.insert("agent".into(), json!(name));
    args.insert("task".into(), json!(task));
    if let Some(t) = timeout {
        args.insert("timeout_seconds".into(), json!(t));
    }
    let started = Instant::now();
    let spinner = Spinner::start(started);
    let mut show = |message: &str| {
        let line = format!(
            "  [{:.1}s] {}",
            started.elapsed().as_secs_f64(),
            message.replace('\n', " ")
        );
        spinner.line(&line);
    };
    let progress: Option<&mut dyn FnMut(&str)> = if stream { Some(&mut show) } else { None };
    let called = client.call_tool(TOOL, Value::Object(args), progress);
    spinner.stop();
    client.shutdown();
    let outcome = match called {
        Err(e) if e.is_unknown_tool() => return Err(no_engine()),
        other => other.map_err(server_error)?,
    };
    if json {
        ui::print_json(&outcome.value);
    }
    let result = outcome.value;
    // A dispatch that ran and failed has `success: false` (and `isError`); any other error
    // (unknown agent, bad arguments) is the plain `{"error"}` envelope.
    if result["success"] == json!(false) {
        return Err(failed(name, &agent, &result, json));
    }
    if outcome.is_error {
        return Err(tool_error(&result));
    }
    if !json {
        say!("{}", text(&result["result"]));
        if let Some(cost) = result["cost_usd"].as_f64() {
            let turns = match &result["num_turns"] {
                Value::Null => "?".to_owned(),
                other => text(other),
            };
            say!();
            say!("--- Cost: ${cost:.4} | Turns: {turns}");
        }
    }
    if let Some(hint) = result["hint"].as_str().filter(|h| !h.trim().is_empty()) {
        note!("Note: {hint}");
    }
    Ok(())
}

fn no_engine() -> CliError {
    CliError::fail(format!(
        "this build has no dispatch engine: the MCP tool '{TOOL}' is not available, so 'agent-dispatch test' cannot run an agent yet"
    ))
}

/// A failed dispatch: `Error: <error>` and, for permission and timeout failures, what to do.
fn failed(name: &str, agent: &Value, result: &Value, json: bool) -> CliError {
    let error = match text(&result["error"]) {
        e if e.trim().is_empty() => "the dispatch failed without an error message".to_owned(),
        e => e,
    };
    if json {
        return CliError::fail(error);
    }
    let mut lines = vec![error];
    match result["error_type"].as_str() {
        Some("permission") => lines.extend([
            String::new(),
            "Diagnosis: permission error".into(),
            "The agent was denied a tool or action. To fix:".into(),
            format!("  agent-dispatch update {name} --permission-mode bypassPermissions"),
            format!("  agent-dispatch update {name} --allowed-tools Bash,Read,Edit,Write"),
        ]),
        Some("timeout") => {
            let longer = agent["timeout"]
                .as_u64()
                .unwrap_or(300)
                .saturating_mul(2)
                .max(600);
            lines.extend([
                String::new(),
                "Diagnosis: timeout".into(),
                format!("  agent-dispatch update {name} --timeout {longer}"),
            ]);
        }
        Some("not_found") => lines.extend([
            String::new(),
            "Diagnosis: the claude CLI was not found".into(),
            format!("  Install it: {INSTALL_CLAUDE}"),
            "  Then check the setup: agent-dispatch doctor".into(),
        ]),
        _ => {}
    }
    CliError::fail(lines.join("\n"))
}

/// A spinner on stderr while the dispatch runs — only when stderr is a terminal. Progress
/// lines are printed through it so the two never interleave mid-line.
struct Spinner {
    tty: bool,
    lock: Arc<Mutex<()>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Spinner {
    fn start(started: Instant) -> Spinner {
        let tty = std::io::stderr().is_terminal();
        let lock = Arc::new(Mutex::new(()));
        let done = Arc::new(AtomicBool::new(false));
        let thread = tty.then(|| {
            let (lock, done) = (lock.clone(), done.clone());
            thread::spawn(move || {
                const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                let mut frame = 0;
                while !done.load(Ordering::Relaxed) {
                    {
                        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                        let _ = write!(
                            std::io::stderr().lock(),
                            "\r{} working… {:.1}s\x1b[K",
                            FRAMES[frame % FRAMES.len()],
                            started.elapsed().as_secs_f64()
                        );
                    }
                    frame += 1;
                    thread::sleep(Duration::from_millis(100));
                }
            })
        });
        Spinner {
            tty,
            lock,
            done,
            thread,
        }
    }

    fn line(&self, line: &str) {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let clear = if self.tty { "\r\x1b[K" } else { "" };
        let _ = writeln!(std::io::stderr().lock(), "{clear}{line}");
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}
