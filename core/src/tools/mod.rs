//! The MCP tools: their declarations (what `tools/list` shows) and their handlers.

mod agents;
pub(crate) mod args;

use serde_json::{json, Value};

use args::{opt_int, opt_num, opt_str, req, Param};

pub(crate) use agents::AgentStep;

/// Every tool this server offers. Each variant has one row in [`TOOLS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tool {
    ListAgents,
    InspectAgent,
    AddAgent,
    UpdateAgent,
    RemoveAgent,
}

/// Behaviour hints a client may show or use (MCP tool annotations).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

/// One row of the tool table.
#[derive(Debug)]
pub(crate) struct ToolSpec {
    pub tool: Tool,
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
    pub hints: Hints,
}

const READ: Hints = Hints {
    read_only: true,
    destructive: false,
    idempotent: true,
    open_world: false,
};
const ADD: Hints = Hints {
    read_only: false,
    destructive: false,
    idempotent: false,
    open_world: false,
};
const EDIT: Hints = Hints {
    read_only: false,
    destructive: true,
    idempotent: true,
    open_world: false,
};

const AGENT: Param = req("name", "Agent name");
const TIMEOUT_DOC: &str = "Seconds per run (0 = default)";
const BUDGET_DOC: &str = "Spend cap in USD per run";
const CSV_DOC: &str = "Comma-separated tool names; \",\" = none";

/// The tool table, in `tools/list` order.
pub(crate) const TOOLS: &[ToolSpec] = &[
    ToolSpec {
        tool: Tool::ListAgents,
        name: "list_agents",
        title: "List agents",
        description: "List configured agents with health, MCP servers, stack and permissions.",
        params: &[],
        hints: READ,
    },
    ToolSpec {
        tool: Tool::InspectAgent,
        name: "inspect_agent",
        title: "Inspect agent",
        description: "One agent's config, MCP servers, stack, and CLAUDE.md/README previews.",
        params: &[AGENT, opt_int("preview_lines", 40, "Preview lines (0-200)")],
        hints: READ,
    },
    ToolSpec {
        tool: Tool::AddAgent,
        name: "add_agent",
        title: "Add agent",
        description:
            "Register a project directory as an agent; the description is generated when omitted.",
        params: &[
            AGENT,
            req("directory", "Project directory"),
            opt_str("description", ""),
            opt_int("timeout", 0, TIMEOUT_DOC),
            opt_num("max_budget_usd", 0.0, BUDGET_DOC),
            opt_str("model", ""),
            opt_str(
                "permission_mode",
                "e.g. default, plan, acceptEdits, bypassPermissions",
            ),
            opt_str("allowed_tools", CSV_DOC),
            opt_str("disallowed_tools", CSV_DOC),
            opt_str("instructions", "Standing instructions for every run"),
            opt_str("capabilities", "Comma-separated"),
            opt_str("risky_capabilities", "Comma-separated"),
        ],
        hints: ADD,
    },
    ToolSpec {
        tool: Tool::UpdateAgent,
        name: "update_agent",
        title: "Update agent",
        description: "Change an agent's settings. Empty/0 keeps a field; \"none\" clears it.",
        params: &[
            AGENT,
            opt_str("description", ""),
            opt_int("timeout", 0, TIMEOUT_DOC),
            opt_num("max_budget_usd", 0.0, "Spend cap in USD; negative clears"),
            opt_str("model", ""),
            opt_str("permission_mode", ""),
            opt_str("allowed_tools", CSV_DOC),
            opt_str("disallowed_tools", CSV_DOC),
            opt_str("instructions", ""),
            opt_str("capabilities", ""),
            opt_str("risky_capabilities", ""),
        ],
        hints: EDIT,
    },
    ToolSpec {
        tool: Tool::RemoveAgent,
        name: "remove_agent",
        title: "Remove agent",
        description: "Unregister an agent (its directory is not touched).",
        params: &[AGENT],
        hints: EDIT,
    },
];

/// Finds a tool by its MCP name.
pub(crate) fn find(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The `tools/list` result, serialized once.
pub(crate) fn list_json() -> String {
    let tools: Vec<Value> = TOOLS
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "title": t.title,
                "description": t.description,
                "inputSchema": args::schema(t.params),
                "annotations": {
                    "readOnlyHint": t.hints.read_only,
                    "destructiveHint": t.hints.destructive,
                    "idempotentHint": t.hints.idempotent,
                    "openWorldHint": t.hints.open_world,
                },
            })
        })
        .collect();
    json!({ "tools": tools }).to_string()
}

/// The `instructions` of the `initialize` result: how a model should use the tools above.
pub(crate) const INSTRUCTIONS: &str = "\
Delegate work to agents: Claude Code projects in other directories, each with its own CLAUDE.md, MCP servers and tools.

FIND AGENTS: list_agents() shows who is available; inspect_agent(name) gives details and CLAUDE.md/README previews.

MANAGE AGENTS: add_agent(name, directory) registers a project (description generated when omitted); update_agent(name, ...) changes permissions, timeout, model (\"none\" clears a field); remove_agent(name) unregisters.";

/// A tool result: JSON text in `content` and the same value in `structuredContent`
/// (wrapped as `{"result": ...}` when it is not an object, as MCP requires an object).
pub(crate) fn result_json(value: &Value, is_error: bool) -> Value {
    let structured = match value {
        Value::Object(_) => value.clone(),
        other => json!({ "result": other }),
    };
    json!({
        "content": [{"type": "text", "text": value.to_string()}],
        "structuredContent": structured,
        "isError": is_error,
    })
}
