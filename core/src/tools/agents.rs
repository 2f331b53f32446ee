//! The agent registry tools: list_agents, inspect_agent, add_agent, update_agent, remove_agent.
//!
//! Each tool is a short sequence of I/O round trips. Reads take the config as it is now
//! (re-read on every call); edits take it under the cross-process lock, change it and save it.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::config::{self, AddArgs, AgentConfig, AgentUpdate, ConfigDoc, UpdateArgs};
use crate::describe;
use crate::engine::{Call, CallId, Core, Event, Next, Step};
use crate::io::{DirProbe, DirState, IoRequest, IoResult, LogLevel};
use crate::tools::Tool;

/// Cap on each file read for a probe: enough for the largest preview (200 lines × 200 chars).
const PROBE_READ_CAP: usize = 256 * 1024;
const CONFIG_HINT: &str =
    "Fix the YAML (or restore a backup), then retry. 'agent-dispatch doctor' points at the offending section.";

/// Where an agent tool call is.
#[derive(Debug)]
pub(crate) enum AgentStep {
    Start,
    /// Waiting for the config (read without the lock).
    Reading,
    /// Waiting for directory probes of these agents.
    Probing {
        doc: Box<ConfigDoc>,
    },
    /// add_agent: waiting for the probe of the new directory.
    ProbingNew,
    /// Waiting for the config under the lock, to apply this edit.
    Locked {
        edit: Edit,
    },
    /// Waiting for the save; this is the reply on success.
    Saving {
        reply: Value,
    },
}

/// A change to the registry, decided before the lock is taken.
#[derive(Debug)]
pub(crate) enum Edit {
    Add {
        agent: Box<AgentConfig>,
        warnings: Vec<String>,
    },
    Update {
        update: Box<AgentUpdate>,
        warnings: Vec<String>,
    },
    Remove,
}

impl Core {
    /// Advances an agent tool call by one event.
    pub(crate) fn agent_tool(
        &mut self,
        id: CallId,
        call: &Call,
        step: AgentStep,
        event: Event,
    ) -> Next {
        match (step, event) {
            (AgentStep::Start, Event::Start) => self.agent_start(id, call),
            (AgentStep::Reading, Event::Io(IoResult::Config { result })) => {
                self.agent_read(id, call, result)
            }
            (AgentStep::Probing { doc }, Event::Io(IoResult::Probes { probes })) => {
                self.agent_report(call, &doc, &probes)
            }
            (AgentStep::ProbingNew, Event::Io(IoResult::Probes { probes })) => {
                self.agent_new_dir(id, call, probes)
            }
            (AgentStep::Locked { edit }, Event::Io(IoResult::Config { result })) => {
                self.agent_edit(id, call, edit, result)
            }
            (AgentStep::Saving { reply }, Event::Io(IoResult::Written { result })) => {
                match result {
                    Ok(()) => Next::Done(reply, false),
                    Err(e) => Next::Done(self.save_error(&e), true),
                }
            }
            (step, event) => Next::Done(internal(&format!("{step:?} got {event:?}")), true),
        }
    }

    fn agent_start(&mut self, id: CallId, call: &Call) -> Next {
        let args = &call.args;
        match call.tool {
            Tool::ListAgents | Tool::InspectAgent => {
                let path = self.options.config_path.clone();
                self.io(id, IoRequest::ReadConfig { path, lock: false });
                wait(AgentStep::Reading)
            }
            Tool::AddAgent => {
                if let Err(e) = config::validate_agent_name(args.str("name")) {
                    return Next::Done(error(&e), true);
                }
                let dir = config::expand_path(
                    args.str("directory"),
                    &self.options.home,
                    &self.options.cwd,
                );
                self.io(id, probe(vec![dir], describe::DOC_FILES));
                wait(AgentStep::ProbingNew)
            }
            Tool::UpdateAgent => match AgentUpdate::from_args(&update_args(args)) {
                Err(e) => Next::Done(error(&e), true),
                Ok((update, _)) if update.is_empty() => Next::Done(
                    error("Nothing to update. Pass at least one non-empty field."),
                    true,
                ),
                Ok((update, warnings)) => self.lock(
                    id,
                    Edit::Update {
                        update: Box::new(update),
                        warnings,
                    },
                ),
            },
            Tool::RemoveAgent => self.lock(id, Edit::Remove),
            other => Next::Done(internal(&format!("{other:?} is not an agent tool")), true),
        }
    }

    fn lock(&mut self, id: CallId, edit: Edit) -> Next {
        self.lock_config(id);
        wait(AgentStep::Locked { edit })
    }

    /// list_agents / inspect_agent: the config is here; probe the directories we report on.
    fn agent_read(
        &mut self,
        id: CallId,
        call: &Call,
        result: Result<Option<Vec<u8>>, String>,
    ) -> Next {
        let doc = match self.load(result) {
            Ok(doc) => doc,
            Err(e) => return Next::Done(e, true),
        };
        let files = match call.tool {
            Tool::InspectAgent => {
                let name = call.args.str("name");
                let Some(agent) = doc.config.agent(name) else {
                    return Next::Done(unknown_agent(&doc, name), true);
                };
                self.io(
                    id,
                    probe(vec![agent.directory.clone()], describe::DOC_FILES),
                );
                return wait(AgentStep::Probing { doc: Box::new(doc) });
            }
            _ => describe::SUMMARY_FILES,
        };
        if doc.config.agents.is_empty() {
            return Next::Done(json!([]), false);
        }
        let dirs = doc
            .config
            .agents
            .iter()
            .map(|(_, a)| a.directory.clone())
            .collect();
        self.io(id, probe(dirs, files));
        wait(AgentStep::Probing { doc: Box::new(doc) })
    }

    fn agent_report(&mut self, call: &Call, doc: &ConfigDoc, probes: &[DirProbe]) -> Next {
        if call.tool == Tool::InspectAgent {
            let name = call.args.str("name");
            let (Some(agent), Some(p)) = (doc.config.agent(name), probes.first()) else {
                return Next::Done(unknown_agent(doc, name), true);
            };
            return Next::Done(
                inspect_entry(name, agent, p, call.args.int("preview_lines")),
                false,
            );
        }
        let list = doc
            .config
            .agents
            .iter()
            .zip(probes)
            .map(|((name, agent), p)| list_entry(name, agent, p))
            .collect();
        Next::Done(Value::Array(list), false)
    }

    /// add_agent: the directory is probed; build the agent, then edit under the lock.
    fn agent_new_dir(&mut self, id: CallId, call: &Call, probes: Vec<DirProbe>) -> Next {
        let Some(p) = probes.into_iter().next() else {
            return Next::Done(internal("no probe result"), true);
        };
        let shown = p.dir.display().to_string();
        let directory = match &p.state {
            DirState::Dir => p.resolved.clone().unwrap_or_else(|| p.dir.clone()),
            DirState::Missing | DirState::NotADir => {
                return Next::Done(error(&format!("Directory does not exist: {shown}")), true)
            }
            DirState::Unreadable(e) => {
                return Next::Done(
                    error(&format!(
                        "Invalid directory {}: {e}",
                        config::py_repr(&shown)
                    )),
                    true,
                )
            }
        };
        match config::build_agent(&add_args(&call.args), directory, || {
            describe::auto_describe(&p)
        }) {
            Ok((agent, warnings)) => self.lock(
                id,
                Edit::Add {
                    agent: Box::new(agent),
                    warnings,
                },
            ),
            Err(e) => Next::Done(error(&e), true),
        }
    }

    /// add/update/remove: the locked config is here; apply the edit and save, or unlock.
    fn agent_edit(
        &mut self,
        id: CallId,
        call: &Call,
        edit: Edit,
        result: Result<Option<Vec<u8>>, String>,
    ) -> Next {
        let mut doc = match self.load(result) {
            Ok(doc) => doc,
            Err(e) => return self.unlock_with(id, e),
        };
        let name = call.args.str("name");
        let (reply, message) = match edit {
            Edit::Add { agent, warnings } => {
                if doc.config.agent(name).is_some() {
                    let e = format!("Agent '{name}' already exists. Remove it first.");
                    return self.unlock_with(id, error(&e));
                }
                doc.insert_agent(name, &agent);
                let message = format!("Added agent '{name}' -> {}", agent.directory.display());
                (added_reply(name, &agent, warnings), message)
            }
            Edit::Update { update, warnings } => match doc.update_agent(name, &update) {
                Ok(fields) => {
                    let mut reply = json!({"updated": name, "fields": fields});
                    with_warnings(&mut reply, warnings);
                    (
                        reply,
                        format!("Updated agent '{name}': {}", fields.join(", ")),
                    )
                }
                Err(_) => return self.unlock_with(id, unknown_agent(&doc, name)),
            },
            Edit::Remove => {
                if !doc.remove_agent(name) {
                    return self.unlock_with(id, unknown_agent(&doc, name));
                }
                (json!({"removed": name}), format!("Removed agent '{name}'"))
            }
        };
        self.log(LogLevel::Info, message);
        self.cache.forget_agent(name);
        let text = match doc.to_yaml() {
            Ok(text) => text,
            Err(e) => return self.unlock_with(id, self.save_error(&e)),
        };
        self.finish_config(id, Some(text), true);
        wait(AgentStep::Saving { reply })
    }

    fn unlock_with(&mut self, id: CallId, reply: Value) -> Next {
        self.finish_config(id, None, false);
        Next::Done(reply, true)
    }

    /// Parses a config read, or renders the error a tool returns for it.
    pub(crate) fn load(
        &mut self,
        result: Result<Option<Vec<u8>>, String>,
    ) -> Result<ConfigDoc, Value> {
        let path = self.options.config_path.display();
        let bytes = result.map_err(|e| json!({"error": format!("Config at {path} could not be read: {e}"), "hint": CONFIG_HINT}))?;
        self.config_parses
            .parse(bytes.as_deref(), &self.options.home, &self.options.cwd)
            .map_err(|e| json!({"error": format!("Config at {path} could not be loaded: {e}"), "hint": CONFIG_HINT}))
    }

    fn save_error(&self, e: &str) -> Value {
        json!({"error": format!("Could not save config at {}: {e}", self.options.config_path.display()), "hint": "Nothing was changed. Check free disk space and the folder's permissions, then retry."})
    }
}

fn wait(step: AgentStep) -> Next {
    Next::Wait(Step::Agent(step))
}

fn probe(dirs: Vec<PathBuf>, read: &[&str]) -> IoRequest {
    IoRequest::ProbeDirs {
        dirs,
        markers: describe::MARKERS.iter().map(|s| s.to_string()).collect(),
        read: read.iter().map(|s| s.to_string()).collect(),
        max_bytes: PROBE_READ_CAP,
    }
}

fn add_args(a: &crate::tools::args::Args) -> AddArgs<'_> {
    AddArgs {
        name: a.str("name"),
        description: a.str("description"),
        timeout: a.int("timeout"),
        max_budget_usd: a.num("max_budget_usd"),
        model: a.str("model"),
        permission_mode: a.str("permission_mode"),
        allowed_tools: a.str("allowed_tools"),
        disallowed_tools: a.str("disallowed_tools"),
        instructions: a.str("instructions"),
        capabilities: a.str("capabilities"),
        risky_capabilities: a.str("risky_capabilities"),
    }
}

fn update_args(a: &crate::tools::args::Args) -> UpdateArgs<'_> {
    UpdateArgs {
        description: a.str("description"),
        timeout: a.int("timeout"),
        max_budget_usd: a.num("max_budget_usd"),
        model: a.str("model"),
        permission_mode: a.str("permission_mode"),
        allowed_tools: a.str("allowed_tools"),
        disallowed_tools: a.str("disallowed_tools"),
        instructions: a.str("instructions"),
        capabilities: a.str("capabilities"),
        risky_capabilities: a.str("risky_capabilities"),
    }
}

/// One row of list_agents (spec §6.4 field order).
fn list_entry(name: &str, agent: &AgentConfig, p: &DirProbe) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(name));
    o.insert("directory".into(), json!(agent.directory));
    o.insert("description".into(), json!(agent.description));
    o.insert("healthy".into(), health(p));
    let healthy = p.state == DirState::Dir;
    o.insert(
        "has_claude_md".into(),
        json!(healthy && p.markers.contains_key("CLAUDE.md")),
    );
    o.insert(
        "has_mcp_config".into(),
        json!(healthy && p.markers.contains_key(".mcp.json")),
    );
    if healthy {
        non_empty(
            &mut o,
            "mcp_servers",
            json!(describe::collect_mcp_servers(p)),
        );
        non_empty(&mut o, "stacks", json!(describe::detect_stacks(p)));
        non_empty(&mut o, "dbs", json!(describe::detect_dbs(p)));
    }
    if let Some(mode) = agent.permission_mode.as_deref().filter(|m| !m.is_empty()) {
        o.insert("permission_mode".into(), json!(mode));
    }
    tool_lists(&mut o, agent);
    non_empty(&mut o, "capabilities", json!(agent.capabilities));
    non_empty(
        &mut o,
        "risky_capabilities",
        json!(agent.risky_capabilities),
    );
    Value::Object(o)
}

/// inspect_agent's answer (spec §6.4 field order).
fn inspect_entry(name: &str, agent: &AgentConfig, p: &DirProbe, preview_lines: i64) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(name));
    o.insert("directory".into(), json!(agent.directory));
    o.insert("description".into(), json!(agent.description));
    o.insert("timeout".into(), json!(agent.timeout));
    if let Some(model) = agent.model.as_deref().filter(|m| !m.is_empty()) {
        o.insert("model".into(), json!(model));
    }
    if let Some(budget) = agent.max_budget_usd {
        o.insert("max_budget_usd".into(), json!(budget));
    }
    if let Some(mode) = agent.permission_mode.as_deref().filter(|m| !m.is_empty()) {
        o.insert("permission_mode".into(), json!(mode));
    }
    tool_lists(&mut o, agent);
    if !agent.instructions.is_empty() {
        o.insert("instructions".into(), json!(agent.instructions));
    }
    non_empty(&mut o, "capabilities", json!(agent.capabilities));
    non_empty(
        &mut o,
        "risky_capabilities",
        json!(agent.risky_capabilities),
    );
    o.insert("healthy".into(), health(p));
    if p.state != DirState::Dir {
        return Value::Object(o);
    }
    o.insert(
        "mcp_servers".into(),
        json!(describe::collect_mcp_servers(p)),
    );
    o.insert("stacks".into(), json!(describe::detect_stacks(p)));
    o.insert("dbs".into(), json!(describe::detect_dbs(p)));
    o.insert(
        "has_claude_md".into(),
        json!(p.markers.contains_key("CLAUDE.md")),
    );
    o.insert(
        "has_readme".into(),
        json!(p.markers.contains_key("README.md")),
    );
    o.insert(
        "has_mcp_config".into(),
        json!(p.markers.contains_key(".mcp.json")),
    );
    let lines = preview_lines.clamp(0, 200) as usize;
    if lines > 0 {
        let cap = (lines * 200).max(200);
        for (file, key) in [("CLAUDE.md", "claude_md"), ("README.md", "readme")] {
            if !p.markers.contains_key(file) {
                continue;
            }
            let text = p.files.get(file).map(String::as_str).unwrap_or("");
            let (preview, truncated) = describe::preview(text, lines, cap);
            o.insert(format!("{key}_preview"), json!(preview));
            if truncated {
                o.insert(format!("{key}_truncated"), json!(true));
            }
        }
    }
    Value::Object(o)
}

fn added_reply(name: &str, agent: &AgentConfig, warnings: Vec<String>) -> Value {
    let mut o = Map::new();
    o.insert("added".into(), json!(name));
    o.insert("directory".into(), json!(agent.directory));
    o.insert("description".into(), json!(agent.description));
    if let Some(model) = &agent.model {
        o.insert("model".into(), json!(model));
    }
    if let Some(mode) = &agent.permission_mode {
        o.insert("permission_mode".into(), json!(mode));
    }
    non_empty(
        &mut o,
        "allowed_tools",
        json!(agent.allowed_tools.clone().unwrap_or_default()),
    );
    non_empty(
        &mut o,
        "disallowed_tools",
        json!(agent.disallowed_tools.clone().unwrap_or_default()),
    );
    let mut reply = Value::Object(o);
    with_warnings(&mut reply, warnings);
    reply
}

fn health(p: &DirProbe) -> Value {
    match p.state {
        DirState::Dir => json!(true),
        DirState::Unreadable(_) => json!("UNREADABLE"),
        DirState::Missing | DirState::NotADir => json!(false),
    }
}

fn tool_lists(o: &mut Map<String, Value>, agent: &AgentConfig) {
    if let Some(tools) = &agent.allowed_tools {
        o.insert("allowed_tools".into(), json!(tools));
    }
    if let Some(tools) = &agent.disallowed_tools {
        o.insert("disallowed_tools".into(), json!(tools));
    }
}

fn non_empty(o: &mut Map<String, Value>, key: &str, value: Value) {
    if value.as_array().is_some_and(|a| !a.is_empty()) {
        o.insert(key.into(), value);
    }
}

fn with_warnings(reply: &mut Value, warnings: Vec<String>) {
    if !warnings.is_empty() {
        reply["warnings"] = json!(warnings);
    }
}

/// The error envelope every tool uses.
pub(crate) fn error(message: &str) -> Value {
    json!({ "error": message })
}

pub(crate) fn unknown_agent(doc: &ConfigDoc, name: &str) -> Value {
    let names = doc.config.names();
    let available = if names.is_empty() {
        "(none configured)".to_string()
    } else {
        names.join(", ")
    };
    error(&format!(
        "Unknown agent: {}. Available: {available}",
        config::py_repr(name)
    ))
}

fn internal(what: &str) -> Value {
    error(&format!("internal error: {what}"))
}
