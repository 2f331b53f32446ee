//! `add`, `update`, `remove`, `list`, `describe`: the agent registry commands.
//!
//! Each one is the MCP tool of the same job (`add_agent`, `update_agent`, `remove_agent`,
//! `list_agents`, `inspect_agent`) called on an in-process server: the CLI only maps its
//! options to tool arguments and formats the answer for people (or prints it with `--json`).

use agent_dispatch_core::config::py_float;
use agent_dispatch_core::Options;
use agent_dispatch_transports::local::{LocalClient, LocalError, ToolOutcome};
use serde_json::{json, Map, Value};

use crate::ui::{self, say, CliError, Outcome, Paint};

/// The options `add` and `update` share, as given on the command line.
#[derive(Debug, Default)]
pub struct AgentOptions {
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub model: Option<String>,
    pub max_budget_usd: Option<String>,
    /// `--max-budget`, the older spelling.
    pub max_budget: Option<String>,
    pub permission_mode: Option<String>,
    pub allowed_tools: Option<String>,
    pub disallowed_tools: Option<String>,
    pub instructions: Option<String>,
    pub capabilities: Option<String>,
    pub risky_capabilities: Option<String>,
}

impl AgentOptions {
    /// `--timeout`, which must be at least one second when given.
    fn timeout(&self) -> Result<Option<i64>, CliError> {
        match self.timeout {
            Some(t) if t < 1 => Err(CliError::usage(format!(
                "--timeout must be a positive number of seconds (got {t})"
            ))),
            t => Ok(t),
        }
    }

    /// `--max-budget-usd` / `--max-budget`: `None` when not given, `Some(None)` to clear
    /// (`0`, `none` or empty), `Some(Some(dollars))` to set. Negative is refused.
    fn budget(&self) -> Result<Option<Option<f64>>, CliError> {
        let raw = match (&self.max_budget_usd, &self.max_budget) {
            (Some(a), Some(b)) if a != b => {
                return Err(CliError::usage(
                    "--max-budget is another name for --max-budget-usd; give one of them",
                ))
            }
            (Some(a), _) | (None, Some(a)) => a.trim(),
            (None, None) => return Ok(None),
        };
        if raw.is_empty() || raw.eq_ignore_ascii_case("none") {
            return Ok(Some(None));
        }
        let dollars: f64 = raw.trim_start_matches('$').parse().map_err(|_| {
            CliError::usage(format!(
                "--max-budget-usd must be a number of US dollars (got '{raw}')"
            ))
        })?;
        if !dollars.is_finite() || dollars < 0.0 {
            return Err(CliError::usage(format!(
                "--max-budget-usd must be a number >= 0 (got {raw})"
            )));
        }
        Ok(Some((dollars > 0.0).then_some(dollars)))
    }

    fn is_empty(&self) -> bool {
        let AgentOptions {
            description,
            timeout,
            model,
            max_budget_usd,
            max_budget,
            permission_mode,
            allowed_tools,
            disallowed_tools,
            instructions,
            capabilities,
            risky_capabilities,
        } = self;
        description.is_none()
            && timeout.is_none()
            && model.is_none()
            && max_budget_usd.is_none()
            && max_budget.is_none()
            && permission_mode.is_none()
            && allowed_tools.is_none()
            && disallowed_tools.is_none()
            && instructions.is_none()
            && capabilities.is_none()
            && risky_capabilities.is_none()
    }

    /// The text options, by tool argument name.
    fn texts(&self) -> [(&'static str, &Option<String>); 7] {
        [
            ("model", &self.model),
            ("permission_mode", &self.permission_mode),
            ("allowed_tools", &self.allowed_tools),
            ("disallowed_tools", &self.disallowed_tools),
            ("instructions", &self.instructions),
            ("capabilities", &self.capabilities),
            ("risky_capabilities", &self.risky_capabilities),
        ]
    }
}

/// `agent-dispatch add NAME DIRECTORY [options]` → `add_agent`.
pub fn add(
    options: Options,
    name: &str,
    directory: &str,
    opts: &AgentOptions,
    json: bool,
) -> Outcome {
    let mut args = Map::new();
    args.insert("name".into(), json!(name));
    args.insert("directory".into(), json!(directory));
    if let Some(description) = &opts.description {
        args.insert("description".into(), json!(description));
    }
    if let Some(timeout) = opts.timeout()? {
        args.insert("timeout".into(), json!(timeout));
    }
    if let Some(Some(dollars)) = opts.budget()? {
        args.insert("max_budget_usd".into(), json!(dollars));
    }
    for (key, value) in opts.texts() {
        if let Some(value) = value {
            args.insert(key.into(), json!(value));
        }
    }
    let outcome = call(options, "add_agent", Value::Object(args))?;
    if json {
        return print_json_outcome(&outcome);
    }
    let value = checked(outcome)?;
    print_warnings(&value);
    let described = opts
        .description
        .as_deref()
        .is_some_and(|d| !d.trim().is_empty());
    if !described {
        say!(
            "Auto-generated description: {}",
            text(&value["description"])
        );
    }
    say!("Added agent '{name}' -> {}", text(&value["directory"]));
    Ok(())
}

/// `agent-dispatch update NAME [options]` → `update_agent`. Absent options keep the field;
/// `none` (or an empty value) clears it.
pub fn update(options: Options, name: &str, opts: &AgentOptions, json: bool) -> Outcome {
    if opts.is_empty() {
        return Err(CliError::fail(
            "Nothing to update. Pass at least one option (see --help).",
        ));
    }
    let mut args = Map::new();
    args.insert("name".into(), json!(name));
    if let Some(description) = &opts.description {
        args.insert("description".into(), json!(clearing(description)));
    }
    if let Some(timeout) = opts.timeout()? {
        args.insert("timeout".into(), json!(timeout));
    }
    match opts.budget()? {
        // update_agent: a negative budget clears it.
        Some(None) => drop(args.insert("max_budget_usd".into(), json!(-1))),
        Some(Some(dollars)) => drop(args.insert("max_budget_usd".into(), json!(dollars))),
        None => {}
    }
    for (key, value) in opts.texts() {
        if let Some(value) = value {
            args.insert(key.into(), json!(clearing(value)));
        }
    }
    let outcome = call(options, "update_agent", Value::Object(args))?;
    if json {
        return print_json_outcome(&outcome);
    }
    let value = checked(outcome)?;
    print_warnings(&value);
    let fields: Vec<&str> = value["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    say!("Updated agent '{name}': {}", fields.join(", "));
    Ok(())
}

/// `update_agent` keeps a field for `""`; on the command line an explicitly empty value
/// clears it, like `none`.
fn clearing(value: &str) -> &str {
    if value.trim().is_empty() {
        "none"
    } else {
        value
    }
}

/// `agent-dispatch remove NAME` → `remove_agent`.
pub fn remove(options: Options, name: &str, json: bool) -> Outcome {
    let outcome = call(options, "remove_agent", json!({ "name": name }))?;
    if json {
        return print_json_outcome(&outcome);
    }
    checked(outcome)?;
    say!("Removed agent '{name}'.");
    Ok(())
}

/// `agent-dispatch list` → `list_agents` (and `inspect_agent` per agent for its settings).
pub fn list(options: Options, json: bool) -> Outcome {
    let mut client = LocalClient::start(options).map_err(server_error)?;
    let listed = client
        .call_tool("list_agents", json!({}), None)
        .map_err(server_error)?;
    if json {
        return print_json_outcome(&listed);
    }
    let listed = checked(listed)?;
    let agents = listed.as_array().cloned().unwrap_or_default();
    if agents.is_empty() {
        say!("No agents configured. Run: agent-dispatch add <name> <directory>");
        return Ok(());
    }
    let paint = Paint::stdout();
    for agent in &agents {
        let name = text(&agent["name"]);
        // The settings list_agents leaves out (timeout, model, budget) come from inspect_agent.
        let details = client
            .call_tool(
                "inspect_agent",
                json!({"name": name, "preview_lines": 0}),
                None,
            )
            .ok()
            .filter(|o| !o.is_error)
            .map(|o| o.value)
            .unwrap_or(Value::Null);
        say!("  {name} {}", health_label(&agent["healthy"], paint));
        say!("    dir:  {}", text(&agent["directory"]));
        say!("    desc: {}", text(&agent["description"]));
        let mut config = Vec::new();
        if let Some(t) = details["timeout"].as_u64().filter(|t| *t != 300) {
            config.push(format!("timeout={t}s"));
        }
        if let Some(model) = details["model"].as_str() {
            config.push(format!("model={model}"));
        }
        if let Some(budget) = details["max_budget_usd"].as_f64() {
            config.push(format!("budget=${}", py_float(budget)));
        }
        if !config.is_empty() {
            say!("    config: {}", config.join(", "));
        }
        if let Some(mode) = agent["permission_mode"].as_str() {
            say!("    permission_mode: {mode}");
        }
        for key in ["allowed_tools", "disallowed_tools"] {
            if let Some(tools) = agent[key].as_array() {
                let shown = join(tools);
                let shown = if shown.is_empty() {
                    "(none)".into()
                } else {
                    shown
                };
                say!("    {key}: {shown}");
            }
        }
        for key in ["capabilities", "risky_capabilities"] {
            if let Some(items) = agent[key].as_array().filter(|a| !a.is_empty()) {
                say!("    {key}: {}", join(items));
            }
        }
        say!();
    }
    Ok(())
}

/// `agent-dispatch describe NAME` → `inspect_agent`.
pub fn describe(options: Options, name: &str, json: bool) -> Outcome {
    // People get the settings; `--json` gets the whole answer, previews included.
    let args = if json {
        json!({ "name": name })
    } else {
        json!({"name": name, "preview_lines": 0})
    };
    let outcome = call(options, "inspect_agent", args)?;
    if json {
        return print_json_outcome(&outcome);
    }
    let a = checked(outcome)?;
    let paint = Paint::stdout();
    say!(
        "{} {}",
        paint.bold(name),
        health_label(&a["healthy"], paint)
    );
    let row = |label: &str, value: &str| say!("  {:<17} {value}", format!("{label}:"));
    row("directory", &text(&a["directory"]));
    row("description", &text(&a["description"]));
    match a["timeout"].as_u64() {
        Some(0) => row("timeout", "0 (settings.default_timeout)"),
        Some(t) => row("timeout", &format!("{t}s")),
        None => {}
    }
    if let Some(model) = a["model"].as_str() {
        row("model", model);
    }
    if let Some(budget) = a["max_budget_usd"].as_f64() {
        row("max_budget_usd", &format!("${}", py_float(budget)));
    }
    if let Some(mode) = a["permission_mode"].as_str() {
        row("permission_mode", mode);
    }
    row("allowed_tools", &tri_state(&a["allowed_tools"]));
    row("disallowed_tools", &tri_state(&a["disallowed_tools"]));
    if let Some(instructions) = a["instructions"].as_str() {
        row(
            "instructions",
            &instructions.replace('\n', "\n                    "),
        );
    }
    for key in ["capabilities", "risky_capabilities"] {
        if let Some(items) = a[key].as_array().filter(|i| !i.is_empty()) {
            row(key, &join(items));
        }
    }
    if a["healthy"] != json!(true) {
        return Ok(());
    }
    for (key, label) in [
        ("mcp_servers", "mcp servers"),
        ("stacks", "stack"),
        ("dbs", "databases"),
    ] {
        if let Some(items) = a[key].as_array().filter(|i| !i.is_empty()) {
            row(label, &join(items));
        }
    }
    let files: Vec<&str> = [
        ("has_claude_md", "CLAUDE.md"),
        ("has_mcp_config", ".mcp.json"),
        ("has_readme", "README.md"),
    ]
    .into_iter()
    .filter(|(key, _)| a[*key] == json!(true))
    .map(|(_, file)| file)
    .collect();
    row(
        "project files",
        &if files.is_empty() {
            "(none)".to_owned()
        } else {
            files.join(", ")
        },
    );
    Ok(())
}

/// `allowed_tools` / `disallowed_tools` as people read the tri-state.
fn tri_state(value: &Value) -> String {
    match value.as_array() {
        None => "(inherit defaults)".to_owned(),
        Some(items) if items.is_empty() => "(none — explicit override)".to_owned(),
        Some(items) => join(items),
    }
}

fn health_label(healthy: &Value, paint: Paint) -> String {
    match healthy {
        Value::Bool(true) => format!("[{}]", paint.green("OK")),
        Value::Bool(false) => format!("[{}]", paint.red("NOT FOUND")),
        _ => format!("[{}]", paint.yellow("UNREADABLE")),
    }
}

/// One tool call on a fresh in-process server.
pub fn call(options: Options, tool: &str, args: Value) -> Result<ToolOutcome, CliError> {
    agent_dispatch_transports::local::call_tool(options, tool, args, None).map_err(server_error)
}

/// A protocol-level failure of the in-process server (never expected from valid arguments).
pub fn server_error(err: LocalError) -> CliError {
    CliError::fail(err.to_string())
}

/// The tool's answer, or its `{"error", "hint"}` as a failure.
pub fn checked(outcome: ToolOutcome) -> Result<Value, CliError> {
    if !outcome.is_error {
        return Ok(outcome.value);
    }
    Err(tool_error(&outcome.value))
}

/// A tool's error envelope as a failure.
pub fn tool_error(value: &Value) -> CliError {
    let message = match value.get("error") {
        Some(Value::String(e)) => e.clone(),
        Some(other) => other.to_string(),
        None => value.to_string(),
    };
    CliError::fail(message).with_hint(text(&value["hint"]))
}

/// `--json`: the tool's answer as it is on stdout; when the tool refused, also the error on
/// stderr and exit 1.
pub fn print_json_outcome(outcome: &ToolOutcome) -> Outcome {
    ui::print_json(&outcome.value);
    if outcome.is_error {
        return Err(tool_error(&outcome.value));
    }
    Ok(())
}

fn print_warnings(value: &Value) {
    for warning in value["warnings"].as_array().into_iter().flatten() {
        ui::warn(&text(warning));
    }
}

/// A string value as text; other values as JSON; `null` as nothing.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn join(items: &[Value]) -> String {
    items.iter().map(text).collect::<Vec<_>>().join(", ")
}
