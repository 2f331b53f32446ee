//! The MCP tools: their declarations (what `tools/list` shows) and their handlers.

pub(crate) mod agents;
pub(crate) mod args;
mod dispatch;
mod jobs;

use serde_json::{json, Value};

use args::{opt_bool, opt_int, opt_num, opt_str, req, Param};

pub(crate) use agents::AgentStep;
pub(crate) use dispatch::DispatchStep;
pub(crate) use jobs::JobStep;

use crate::engine::Step;

/// Every tool this server offers. Each variant has one row in [`TOOLS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tool {
    ListAgents,
    InspectAgent,
    Dispatch,
    DispatchSession,
    DispatchParallel,
    DispatchStream,
    DispatchDialogue,
    AddAgent,
    RemoveAgent,
    UpdateAgent,
    DispatchAsync,
    DispatchStatus,
    DispatchWait,
    DispatchCancel,
    DispatchJobs,
    FetchResult,
    DispatchGc,
    CacheStats,
    CacheClear,
}

/// Where a new call of `tool` starts.
pub(crate) fn initial_step(tool: Tool) -> Step {
    match tool {
        Tool::ListAgents
        | Tool::InspectAgent
        | Tool::AddAgent
        | Tool::RemoveAgent
        | Tool::UpdateAgent => Step::Agent(AgentStep::Start),
        Tool::Dispatch
        | Tool::DispatchSession
        | Tool::DispatchParallel
        | Tool::DispatchStream
        | Tool::DispatchDialogue
        | Tool::CacheStats
        | Tool::CacheClear => Step::Dispatch(DispatchStep::Start),
        Tool::DispatchAsync
        | Tool::DispatchStatus
        | Tool::DispatchWait
        | Tool::DispatchCancel
        | Tool::DispatchJobs
        | Tool::FetchResult
        | Tool::DispatchGc => Step::Job(JobStep::Start),
    }
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

/// A dispatched agent may do anything its permissions allow, outside this server.
const RUN: Hints = Hints {
    read_only: false,
    destructive: true,
    idempotent: false,
    open_world: true,
};
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

const TASK: Param = req("task", "What the agent should do");
const CONTEXT: Param = opt_str("context", "Background the agent needs");
const CALLER: Param = opt_str("caller", "Your project name");
const GOAL: Param = opt_str("goal", "Why you need this");
const FORMAT: Param = opt_str(
    "response_format",
    "\"json\" for a JSON answer (parsed_result)",
);
const RUN_TIMEOUT: Param = opt_int(
    "timeout_seconds",
    0,
    "This run only: 10-7200 (0 = agent default)",
);
const TARGET: Param = req("agent", "Agent name");
const JOB: Param = req("job_id", "Job id from dispatch_async");
const REF: Param = opt_bool(
    "return_ref",
    "Return a ref + summary instead of the full text",
);
const SUMMARY: Param = opt_int("summary_chars", 500, "Summary length with return_ref");

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
        tool: Tool::Dispatch,
        name: "dispatch",
        title: "Dispatch",
        description: "Run a task in an agent's project and return its answer (cached).",
        params: &[TARGET, TASK, CONTEXT, CALLER, GOAL, FORMAT, RUN_TIMEOUT, REF, SUMMARY],
        hints: RUN,
    },
    ToolSpec {
        tool: Tool::DispatchSession,
        name: "dispatch_session",
        title: "Dispatch in a session",
        description: "Like dispatch, uncached; pass a returned session_id to continue that conversation.",
        params: &[TARGET, TASK, opt_str("session_id", "Session to resume"), CONTEXT, CALLER, GOAL, FORMAT, RUN_TIMEOUT],
        hints: RUN,
    },
    ToolSpec {
        tool: Tool::DispatchParallel,
        name: "dispatch_parallel",
        title: "Dispatch in parallel",
        description: "Run several dispatches at once; optionally have an agent synthesize the results.",
        params: &[
            req(
                "dispatches",
                "JSON array of {agent, task, context?, caller?, goal?, response_format?, timeout_seconds?, return_ref?, summary_chars?}",
            ),
            opt_str("aggregate", "Agent that synthesizes the results"),
        ],
        hints: RUN,
    },
    ToolSpec {
        tool: Tool::DispatchStream,
        name: "dispatch_stream",
        title: "Dispatch with progress",
        description: "Like dispatch, uncached, with live progress notifications.",
        params: &[TARGET, TASK, CONTEXT, CALLER, GOAL, FORMAT, RUN_TIMEOUT],
        hints: RUN,
    },
    ToolSpec {
        tool: Tool::DispatchDialogue,
        name: "dispatch_dialogue",
        title: "Dialogue between agents",
        description: "Two agents discuss a topic in turns until one ends with [RESOLVED].",
        params: &[
            req("requester", "Agent that asks"),
            req("responder", "Agent that answers first"),
            req("topic", ""),
            opt_int("max_rounds", 3, "1-10"),
        ],
        hints: RUN,
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
        tool: Tool::RemoveAgent,
        name: "remove_agent",
        title: "Remove agent",
        description: "Unregister an agent (its directory is not touched).",
        params: &[AGENT],
        hints: EDIT,
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
        tool: Tool::DispatchAsync,
        name: "dispatch_async",
        title: "Dispatch in the background",
        description: "Start a dispatch as a background job and return its job_id at once.",
        params: &[TARGET, TASK, CONTEXT, CALLER, GOAL, FORMAT, RUN_TIMEOUT],
        hints: RUN,
    },
    ToolSpec {
        tool: Tool::DispatchStatus,
        name: "dispatch_status",
        title: "Job status",
        description: "A job's state, with the live progress tail while it runs. Does not block.",
        params: &[JOB],
        hints: READ,
    },
    ToolSpec {
        tool: Tool::DispatchWait,
        name: "dispatch_wait",
        title: "Wait for a job",
        description: "Wait until a job ends, or timeout_seconds pass (then timed_out_waiting).",
        params: &[JOB, opt_int("timeout_seconds", 60, "1-3600")],
        hints: READ,
    },
    ToolSpec {
        tool: Tool::DispatchCancel,
        name: "dispatch_cancel",
        title: "Cancel a job",
        description: "Cancel a pending job, or kill a running one this server started.",
        params: &[JOB],
        hints: Hints { read_only: false, destructive: true, idempotent: true, open_world: false },
    },
    ToolSpec {
        tool: Tool::DispatchJobs,
        name: "dispatch_jobs",
        title: "List jobs",
        description: "Recent jobs, newest first.",
        params: &[
            opt_str("status", "pending, running, done, failed or cancelled"),
            opt_int("limit", 50, "1-1000"),
            opt_str("agent", "Only this agent's jobs"),
        ],
        hints: READ,
    },
    ToolSpec {
        tool: Tool::FetchResult,
        name: "fetch_result",
        title: "Fetch a result",
        description: "The full result behind a ref (from return_ref or a job).",
        params: &[req("ref", "Ref or job id"), opt_int("max_chars", 0, "Cut the text here (0 = all)")],
        hints: READ,
    },
    ToolSpec {
        tool: Tool::DispatchGc,
        name: "dispatch_gc",
        title: "Delete old jobs",
        description: "Delete finished jobs older than max_age_days (never pending or running ones).",
        params: &[opt_num("max_age_days", 7.0, ""), opt_bool("dry_run", "Only report what would go")],
        hints: Hints { read_only: false, destructive: true, idempotent: true, open_world: false },
    },
    ToolSpec {
        tool: Tool::CacheStats,
        name: "cache_stats",
        title: "Cache statistics",
        description: "Size, hits, misses and hit rate of the dispatch result cache.",
        params: &[],
        hints: READ,
    },
    ToolSpec {
        tool: Tool::CacheClear,
        name: "cache_clear",
        title: "Clear cache",
        description: "Empty the dispatch result cache.",
        params: &[],
        hints: Hints { read_only: false, destructive: false, idempotent: true, open_world: false },
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
Delegate work to agents: Claude Code projects in other directories, each with its own CLAUDE.md, MCP servers and tools. Dispatch when a task needs another project's files, tools or context; don't dispatch what you can do yourself.

FIND AGENTS: list_agents() shows who is available; inspect_agent(name) gives details and CLAUDE.md/README previews.

DISPATCH: dispatch(agent, task) runs one task and returns the answer (cached). Always pass caller= (your project) and goal= (why). dispatch_session(agent, task, session_id?) continues a conversation; dispatch_parallel(dispatches, aggregate?) runs several at once; dispatch_stream reports live progress; dispatch_dialogue(requester, responder, topic) lets two agents talk it through.

READING A RESULT: check outcome (done, partial, blocked); for partial or blocked follow the hint. success=false comes with error, error_type and often a hint. A timed-out run returns session_id: continue with dispatch_session(agent, 'Continue where you left off', session_id=...) or pass a larger timeout_seconds. denied_tools lists tools the agent was refused: grant them with update_agent(allowed_tools=...) or permission_mode='bypassPermissions'.

BACKGROUND JOBS (don't block on long tasks): dispatch_async(agent, task) returns a job_id at once; dispatch_status(job_id) shows state and live progress; dispatch_wait(job_id, timeout_seconds?) blocks until it ends; dispatch_cancel(job_id); dispatch_jobs(status?) lists them; fetch_result(ref, max_chars?) loads a full result.

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
