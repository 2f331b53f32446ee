//! The dispatch tools: dispatch (cached), dispatch_session, dispatch_stream,
//! dispatch_parallel, dispatch_dialogue, cache_stats and cache_clear.
//!
//! Every dispatch re-reads the config, then hands runs to `dispatch::run`, which answers
//! with `Event::RunDone`. Tool-level failures (unknown agent, bad `dispatches`) are error
//! envelopes; a run that failed is a normal `DispatchResult` with `success: false`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::background::JobKey;
use crate::config::{AgentConfig, ConfigDoc, Settings};
use crate::dispatch::argv;
use crate::dispatch::cache::{self, Limits};
use crate::dispatch::outcome::{self, DispatchResult};
use crate::dispatch::prompt::{self, Request};
use crate::dispatch::run::{Owner, Plan};
use crate::engine::{CallId, Core, Event, Next, Step};
use crate::io::{IoRequest, IoResult};
use crate::jobs::{JobRecord, JobStatus};
use crate::tools::agents::{error, unknown_agent};
use crate::tools::args::Args;
use crate::tools::Tool;

const RESOLVED: &str = "[RESOLVED]";
const AGGREGATE_TASK: &str = "Synthesize the results below into a single coherent answer. Highlight key findings, note any conflicts between agents, and provide actionable conclusions.";

/// Where a dispatch tool call is.
#[derive(Debug)]
pub(crate) enum DispatchStep {
    Start,
    /// Waiting for the config.
    Reading {
        items: Option<Vec<Value>>,
    },
    /// One run (dispatch, dispatch_session, dispatch_stream); a clean success is cached
    /// under this key, with these limits.
    Single {
        cache: Option<(String, Limits)>,
    },
    /// dispatch_parallel: the items' runs, then maybe the aggregator's.
    Fanout(Box<Fanout>),
    /// dispatch_dialogue: one turn at a time.
    Dialogue(Box<Dialogue>),
    /// dispatch with return_ref: the ref's record is being written; then this reply.
    SavingRef {
        reply: Value,
        full: Value,
        is_error: bool,
    },
}

/// One validated item of dispatch_parallel.
#[derive(Debug, Clone)]
struct Item {
    /// With return_ref: the summary length.
    summary_chars: Option<i64>,
    agent: String,
    task: String,
    context: String,
    caller: String,
    goal: String,
    response_format: String,
    timeout_seconds: i64,
}

#[derive(Debug)]
pub(crate) struct Fanout {
    items: Vec<Item>,
    results: Vec<Option<Value>>,
    /// Refs being written: the job, its item, and the full result to fall back on.
    saving: Vec<(JobKey, usize, Value)>,
    keys: Vec<Option<String>>,
    pending: usize,
    limits: Option<Limits>,
    aggregate: Option<(String, AgentConfig, Settings)>,
}

#[derive(Debug)]
pub(crate) struct Dialogue {
    names: [String; 2],
    agents: [AgentConfig; 2],
    settings: Settings,
    topic: String,
    max_rounds: u32,
    round: u32,
    sessions: [Option<String>; 2],
    conversation: Vec<Value>,
    cost: f64,
    duration_ms: u64,
    last_text: String,
}

const RESPONDER: usize = 1;
const REQUESTER: usize = 0;

impl Core {
    /// Advances a dispatch tool call by one event.
    pub(crate) fn dispatch_tool(
        &mut self,
        id: CallId,
        call: &crate::engine::Call,
        step: DispatchStep,
        event: Event,
    ) -> Next {
        match (step, event) {
            (DispatchStep::Start, Event::Start) => {
                let items = if call.tool == Tool::DispatchParallel {
                    match parse_dispatches(call.args.str("dispatches")) {
                        Ok(items) => Some(items),
                        Err(e) => return Next::Done(error(&e), true),
                    }
                } else {
                    None
                };
                let path = self.options.config_path.clone();
                self.io(id, IoRequest::ReadConfig { path, lock: false });
                wait(DispatchStep::Reading { items })
            }
            (DispatchStep::Reading { items }, Event::Io(IoResult::Config { result })) => {
                let doc = match self.load(result) {
                    Ok(doc) => doc,
                    Err(e) => return Next::Done(e, true),
                };
                if call.cancelled {
                    return Next::Done(Value::Null, true);
                }
                self.resize_limit(doc.config.settings.max_concurrency as usize);
                match call.tool {
                    Tool::CacheStats | Tool::CacheClear => {
                        self.cache_tool(call.tool, &doc.config.settings)
                    }
                    Tool::DispatchParallel => {
                        self.start_fanout(id, call, &doc, items.unwrap_or_default())
                    }
                    Tool::DispatchDialogue => self.start_dialogue(id, &call.args, &doc),
                    _ => self.start_single(id, call, &doc),
                }
            }
            (DispatchStep::Single { cache }, Event::RunDone { result, .. }) => {
                if let Some((key, limits)) = cache {
                    self.cache
                        .put(key, &result.agent, &result, self.now(), limits);
                }
                self.finish_single(id, call, &result, false)
            }
            (
                DispatchStep::SavingRef {
                    reply,
                    full,
                    is_error,
                },
                Event::JobSaved { result, .. },
            ) => match result {
                Ok(()) => Next::Done(reply, is_error),
                Err(e) => Next::Done(with_warning(full, &e), is_error),
            },
            (DispatchStep::Fanout(mut fanout), Event::JobSaved { key, result }) => {
                if let Some(i) = fanout.saving.iter().position(|(k, _, _)| *k == key) {
                    let (_, slot, full) = fanout.saving.remove(i);
                    if let Err(e) = result {
                        fanout.results[slot] = Some(with_warning(full, &e));
                    }
                }
                self.fanout_progress(id, *fanout)
            }
            (DispatchStep::Fanout(fanout), Event::RunDone { slot, result }) => {
                self.fanout_done(id, *fanout, slot, *result)
            }
            (DispatchStep::Dialogue(d), Event::RunDone { slot, result }) => {
                self.dialogue_turn_done(id, *d, slot, *result)
            }
            (step, event) => Next::Done(
                error(&format!("internal error: {step:?} got {event:?}")),
                true,
            ),
        }
    }

    // ---- dispatch, dispatch_session, dispatch_stream ----

    fn start_single(&mut self, id: CallId, call: &crate::engine::Call, doc: &ConfigDoc) -> Next {
        let args = &call.args;
        let name = args.str("agent");
        let Some(agent) = doc.config.agent(name) else {
            return Next::Done(unknown_agent(doc, name), true);
        };
        let settings = &doc.config.settings;
        let request = request_of(args);
        let cache = (call.tool == Tool::Dispatch)
            .then(|| cache_limits(settings))
            .flatten();
        let cache_key = cache.map(|limits| {
            let key = cache_key(name, &request, agent, settings);
            (key, limits)
        });
        if let Some((key, limits)) = &cache_key {
            if let Some(hit) = self.cache.get(key, self.now(), *limits) {
                self.log(
                    crate::io::LogLevel::Info,
                    format!("Cache hit for {name} — returning cached result"),
                );
                return self.finish_single(id, call, &hit, true);
            }
        }
        let resume = match call.tool {
            Tool::DispatchSession => {
                Some(args.str("session_id").to_string()).filter(|s| !s.is_empty())
            }
            _ => None,
        };
        let owner = Owner::Call { call: id, slot: 0 };
        match self.plan_run(
            owner,
            name,
            agent,
            settings,
            &request,
            args.int("timeout_seconds"),
            resume,
        ) {
            Ok(()) => wait(DispatchStep::Single { cache: cache_key }),
            Err(result) => Next::Done(result.to_json(), true),
        }
    }

    /// Answers dispatch, dispatch_session and dispatch_stream; with return_ref (dispatch),
    /// first stores the result as a ref the caller can fetch later.
    fn finish_single(
        &mut self,
        id: CallId,
        call: &crate::engine::Call,
        result: &DispatchResult,
        cached: bool,
    ) -> Next {
        let mut full = result.to_json();
        if cached {
            full["cached"] = json!(true);
        }
        if call.tool != Tool::Dispatch || !call.args.bool("return_ref") {
            return Next::Done(full, !result.success);
        }
        let (_, reply) = self.save_ref(
            id,
            &request_of(&call.args),
            result,
            call.args.int("summary_chars"),
            cached,
        );
        wait(DispatchStep::SavingRef {
            reply,
            full,
            is_error: !result.success,
        })
    }

    /// Persists a result as a finished job (its id is the ref) and returns the ref payload
    /// (spec: ref, agent, success, size, summary_chars, summary, then the metadata; no text).
    fn save_ref(
        &mut self,
        id: CallId,
        r: &Request<'_>,
        result: &DispatchResult,
        summary_chars: i64,
        cached: bool,
    ) -> (JobKey, Value) {
        let now = self.unix_now();
        let job = self.fresh_job_id();
        let opt = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        let record = JobRecord {
            context: opt(r.context),
            caller: opt(r.caller),
            goal: opt(r.goal),
            status: if result.success {
                JobStatus::Done
            } else {
                JobStatus::Failed
            },
            started_at: Some(now),
            completed_at: Some(now),
            result: Some(result.to_json()),
            error: if result.success {
                None
            } else {
                result.error.clone()
            },
            ..JobRecord::new(job.clone(), result.agent.clone(), r.task.to_string(), now)
        };
        // A ref is finished when it is stored: it never gets progress.
        let key = self.own_job(record, Some(id), 0);
        (key, ref_payload(&job, result, summary_chars, cached))
    }

    /// Checks the recursion guard, builds the prompt and starts the run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan_run(
        &mut self,
        owner: Owner,
        name: &str,
        agent: &AgentConfig,
        settings: &Settings,
        request: &Request<'_>,
        timeout_override: i64,
        resume: Option<String>,
    ) -> Result<(), Box<DispatchResult>> {
        if self.options.depth >= settings.max_dispatch_depth {
            return Err(Box::new(outcome::recursion_error(
                name,
                self.options.depth,
                settings.max_dispatch_depth,
            )));
        }
        let effective = argv::effective(agent, settings, timeout_override);
        let json_mode = prompt::is_json_mode(request.response_format);
        let system_prompt = prompt::system_prompt(&prompt::SystemPrompt {
            protocol: settings.dispatch_protocol,
            agent: name,
            caller: request.caller,
            timeout_secs: effective.timeout_secs,
            budget: effective.max_budget_usd,
            json_mode,
            instructions: &agent.instructions,
        });
        let plan = Plan {
            owner,
            agent: name.to_string(),
            directory: agent.directory.clone(),
            effective,
            prompt: prompt::build_prompt(request),
            resume,
            json_mode,
            protocol: settings.dispatch_protocol,
            system_prompt,
            limits: settings.limits.clone(),
        };
        self.log(
            crate::io::LogLevel::Info,
            format!(
                "Dispatching to {name}: {}",
                crate::engine::truncate_chars(request.task, 80)
            ),
        );
        self.start_run(plan).map(|_| ())
    }

    // ---- dispatch_parallel ----

    fn start_fanout(
        &mut self,
        id: CallId,
        call: &crate::engine::Call,
        doc: &ConfigDoc,
        raw: Vec<Value>,
    ) -> Next {
        let settings = &doc.config.settings;
        let cap = settings.limits.parallel_cap(settings.max_concurrency);
        if raw.len() > cap {
            let e = format!("Too many dispatches: {} > {cap}. Split into multiple calls, or raise settings.limits.max_parallel_items (or settings.max_concurrency).", raw.len());
            return Next::Done(error(&e), true);
        }
        let mut items = Vec::with_capacity(raw.len());
        for (i, value) in raw.iter().enumerate() {
            match validate_item(i, value) {
                Ok(item) if doc.config.agent(&item.agent).is_none() => {
                    return Next::Done(unknown_agent(doc, &item.agent), true)
                }
                Ok(item) => items.push(item),
                Err(e) => return Next::Done(error(&e), true),
            }
        }
        let aggregate = call.args.str("aggregate");
        let aggregate = match aggregate {
            "" => None,
            name => match doc.config.agent(name) {
                Some(agent) => Some((name.to_string(), agent.clone(), settings.clone())),
                None => return Next::Done(unknown_agent(doc, name), true),
            },
        };
        let names: Vec<&str> = items.iter().map(|i| i.agent.as_str()).collect();
        self.log(
            crate::io::LogLevel::Info,
            format!("Dispatching in parallel to: {}", names.join(", ")),
        );
        let limits = cache_limits(settings);
        let mut fanout = Fanout {
            items: items.clone(),
            results: vec![None; items.len()],
            saving: Vec::new(),
            keys: vec![None; items.len()],
            pending: 0,
            limits,
            aggregate,
        };
        for (slot, item) in items.iter().enumerate() {
            let Some(agent) = doc.config.agent(&item.agent) else {
                continue;
            };
            let request = item.request();
            if let Some(limits) = limits {
                let key = cache_key(&item.agent, &request, agent, settings);
                if let Some(hit) = self.cache.get(&key, self.now(), limits) {
                    self.fanout_result(id, &mut fanout, slot, &hit, true);
                    continue;
                }
                fanout.keys[slot] = Some(key);
            }
            let owner = Owner::Call { call: id, slot };
            match self.plan_run(
                owner,
                &item.agent,
                agent,
                settings,
                &request,
                item.timeout_seconds,
                None,
            ) {
                Ok(()) => fanout.pending += 1,
                Err(result) => self.fanout_result(id, &mut fanout, slot, &result, false),
            }
        }
        self.fanout_progress(id, fanout)
    }

    fn fanout_done(
        &mut self,
        id: CallId,
        mut fanout: Fanout,
        slot: usize,
        result: DispatchResult,
    ) -> Next {
        if slot == usize::MAX {
            let individual: Vec<Value> = fanout
                .results
                .into_iter()
                .map(|r| r.unwrap_or(Value::Null))
                .collect();
            return Next::Done(
                json!({"individual_results": individual, "aggregated": result.to_json()}),
                false,
            );
        }
        if let (Some(key), Some(limits)) = (
            fanout.keys.get_mut(slot).and_then(Option::take),
            fanout.limits,
        ) {
            self.cache
                .put(key, &result.agent, &result, self.now(), limits);
        }
        self.fanout_result(id, &mut fanout, slot, &result, false);
        fanout.pending = fanout.pending.saturating_sub(1);
        self.fanout_progress(id, fanout)
    }

    /// Records one item's result: the result object, or a ref payload for return_ref items.
    fn fanout_result(
        &mut self,
        id: CallId,
        fanout: &mut Fanout,
        slot: usize,
        result: &DispatchResult,
        cached: bool,
    ) {
        let mut full = result.to_json();
        if cached {
            full["cached"] = json!(true);
        }
        let Some(item) = fanout.items.get(slot) else {
            return;
        };
        let Some(chars) = item.summary_chars else {
            fanout.results[slot] = Some(full);
            return;
        };
        let item = item.clone();
        let (key, payload) = self.save_ref(id, &item.request(), result, chars, cached);
        fanout.saving.push((key, slot, full));
        fanout.results[slot] = Some(payload);
    }

    /// Waits for the items; when all are in, replies or starts the aggregator.
    fn fanout_progress(&mut self, id: CallId, fanout: Fanout) -> Next {
        if fanout.pending > 0 || !fanout.saving.is_empty() {
            return wait(DispatchStep::Fanout(Box::new(fanout)));
        }
        let individual: Vec<Value> = fanout
            .results
            .iter()
            .map(|r| r.clone().unwrap_or(Value::Null))
            .collect();
        let Some((name, agent, settings)) = &fanout.aggregate else {
            return Next::Done(Value::Array(individual), false);
        };
        let summary = individual
            .iter()
            .map(summary_section)
            .collect::<Vec<_>>()
            .join("\n\n");
        self.log(
            crate::io::LogLevel::Info,
            format!("Aggregating results via {name}..."),
        );
        let request = Request {
            task: AGGREGATE_TASK,
            context: &summary,
            caller: "dispatch_parallel",
            goal: "aggregate parallel dispatch results",
            response_format: "",
        };
        let owner = Owner::Call {
            call: id,
            slot: usize::MAX,
        };
        let (name, agent, settings) = (name.clone(), agent.clone(), settings.clone());
        match self.plan_run(owner, &name, &agent, &settings, &request, 0, None) {
            Ok(()) => wait(DispatchStep::Fanout(Box::new(fanout))),
            Err(result) => Next::Done(
                json!({"individual_results": individual, "aggregated": result.to_json()}),
                false,
            ),
        }
    }

    // ---- dispatch_dialogue ----

    fn start_dialogue(&mut self, id: CallId, args: &Args, doc: &ConfigDoc) -> Next {
        let mut agents = Vec::with_capacity(2);
        for key in ["requester", "responder"] {
            let name = args.str(key);
            match doc.config.agent(name) {
                Some(agent) => agents.push((name.to_string(), agent.clone())),
                None => return Next::Done(unknown_agent(doc, name), true),
            }
        }
        let (responder, requester) = (agents.remove(1), agents.remove(0));
        let max_rounds = args.int("max_rounds").clamp(1, 10) as u32;
        self.log(
            crate::io::LogLevel::Info,
            format!(
                "Starting dialogue: {} <-> {} (max {max_rounds} rounds)",
                requester.0, responder.0
            ),
        );
        let d = Dialogue {
            names: [requester.0, responder.0],
            agents: [requester.1, responder.1],
            settings: doc.config.settings.clone(),
            topic: args.str("topic").to_string(),
            max_rounds,
            round: 1,
            sessions: [None, None],
            conversation: Vec::new(),
            cost: 0.0,
            duration_ms: 0,
            last_text: String::new(),
        };
        self.dialogue_turn(id, d, RESPONDER)
    }

    /// Starts the next turn: `who` speaks (responder first in every round).
    fn dialogue_turn(&mut self, id: CallId, d: Dialogue, who: usize) -> Next {
        let other = 1 - who;
        let task = if who == RESPONDER && d.round == 1 {
            format!(
                "You are starting a collaborative dialogue with agent '{}'.\nProvide your analysis or ask questions. When you have a complete answer and no further questions, end your response with [RESOLVED].\n\nTopic:\n{}",
                d.names[REQUESTER], d.topic
            )
        } else {
            format!(
                "Agent '{}' responds:\n\n{}\n\nContinue the discussion. If you have a complete answer and no further questions, end your response with [RESOLVED].",
                d.names[other], d.last_text
            )
        };
        // The requester's first turn also sees the topic itself, not only the 200-char goal.
        let context = if who == REQUESTER && d.round == 1 {
            format!("Topic:\n{}", d.topic)
        } else {
            String::new()
        };
        let goal = crate::engine::truncate_chars(&d.topic, 200).to_string();
        let request = Request {
            task: &task,
            context: &context,
            caller: &d.names[other],
            goal: &goal,
            response_format: "",
        };
        let owner = Owner::Call {
            call: id,
            slot: who,
        };
        let (name, agent, settings) = (
            d.names[who].clone(),
            d.agents[who].clone(),
            d.settings.clone(),
        );
        match self.plan_run(
            owner,
            &name,
            &agent,
            &settings,
            &request,
            0,
            d.sessions[who].clone(),
        ) {
            Ok(()) => wait(DispatchStep::Dialogue(Box::new(d))),
            Err(result) => self.dialogue_turn_done(id, d, who, *result),
        }
    }

    fn dialogue_turn_done(
        &mut self,
        id: CallId,
        mut d: Dialogue,
        who: usize,
        result: DispatchResult,
    ) -> Next {
        if let Some(sid) = &result.session_id {
            d.sessions[who] = Some(sid.clone());
        }
        d.cost += result.cost_usd.unwrap_or(0.0);
        d.duration_ms += result.duration_ms.unwrap_or(0);
        let mut entry = json!({
            "agent": d.names[who],
            "role": if who == RESPONDER { "responder" } else { "requester" },
            "round": d.round,
            "message": result.result,
            "cost_usd": result.cost_usd,
        });
        if !result.success {
            entry["error"] = json!(result.error);
            entry["error_type"] = json!(result.error_type.map(|t| t.as_str()));
        }
        d.conversation.push(entry);
        self.log(
            crate::io::LogLevel::Info,
            // Results never go to the log (see SECURITY.md): only their size.
            format!(
                "[round {}] {} replied ({} chars)",
                d.round,
                d.names[who],
                result.result.chars().count()
            ),
        );
        let resolved = result.result.contains(RESOLVED);
        d.last_text = result.result.clone();
        let last_turn = who == REQUESTER && d.round >= d.max_rounds;
        if resolved || !result.success || last_turn {
            let mut final_answer = result.result.replace(RESOLVED, "").trim().to_string();
            if !result.success {
                if let Some(e) = &result.error {
                    final_answer = e.clone();
                }
            }
            if final_answer.is_empty() {
                final_answer = result.result.clone();
            }
            return Next::Done(
                json!({
                    "resolved": resolved,
                    "rounds": d.round,
                    "total_cost_usd": (d.cost * 10_000.0).round() / 10_000.0,
                    "total_duration_ms": d.duration_ms,
                    "final_answer": final_answer,
                    "conversation": d.conversation,
                }),
                false,
            );
        }
        if who == REQUESTER {
            d.round += 1;
            return self.dialogue_turn(id, d, RESPONDER);
        }
        self.dialogue_turn(id, d, REQUESTER)
    }

    // ---- cache ----

    fn cache_tool(&mut self, tool: Tool, settings: &Settings) -> Next {
        let Some(limits) = cache_limits(settings) else {
            return Next::Done(
                json!({"enabled": false, "message": "Cache is disabled in settings"}),
                false,
            );
        };
        if tool == Tool::CacheClear {
            let cleared = self.cache.clear();
            self.log(
                crate::io::LogLevel::Info,
                format!("Cleared {cleared} cached entries"),
            );
            return Next::Done(json!({ "cleared": cleared }), false);
        }
        Next::Done(self.cache.stats(self.now(), limits), false)
    }
}

fn wait(step: DispatchStep) -> Next {
    Next::Wait(Step::Dispatch(step))
}

fn request_of(args: &Args) -> Request<'_> {
    Request {
        task: args.str("task"),
        context: args.str("context"),
        caller: args.str("caller"),
        goal: args.str("goal"),
        response_format: args.str("response_format"),
    }
}

impl Item {
    fn request(&self) -> Request<'_> {
        Request {
            task: &self.task,
            context: &self.context,
            caller: &self.caller,
            goal: &self.goal,
            response_format: &self.response_format,
        }
    }
}

/// The cache's TTL and size, or `None` when it is disabled.
fn cache_limits(settings: &Settings) -> Option<Limits> {
    settings.cache.enabled.then(|| Limits {
        ttl: Duration::from_secs(settings.cache.ttl),
        max_size: settings.cache.max_size as usize,
    })
}

/// The key of a request: its fields and everything in the config that shapes the run (not
/// the per-call timeout, not the cache or concurrency settings).
fn cache_key(
    agent_name: &str,
    r: &Request<'_>,
    agent: &AgentConfig,
    settings: &Settings,
) -> String {
    let e = argv::effective(agent, settings, 0);
    let snapshot = json!({
        "directory": agent.directory,
        "timeout": e.timeout_secs,
        "model": e.model,
        "permission_mode": e.permission_mode,
        "allowed_tools": e.allowed_tools,
        "disallowed_tools": e.disallowed_tools,
        "max_budget_usd": e.max_budget_usd,
        "instructions": agent.instructions,
        "dispatch_protocol": settings.dispatch_protocol,
        "max_dispatch_depth": settings.max_dispatch_depth,
    });
    cache::key(
        &[
            agent_name,
            r.task,
            r.context,
            r.caller,
            r.goal,
            r.response_format,
        ],
        &snapshot,
    )
}

/// `dispatches` must be a JSON array (as a string) with at least one item.
fn parse_dispatches(text: &str) -> Result<Vec<Value>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("Invalid JSON in dispatches: {e}"))?;
    match value {
        Value::Array(items) if !items.is_empty() => Ok(items),
        _ => Err("dispatches must be a non-empty JSON array".into()),
    }
}

fn validate_item(i: usize, value: &Value) -> Result<Item, String> {
    let Value::Object(o) = value else {
        return Err(format!(
            "dispatches[{i}] must be an object, got {}",
            py_type(value)
        ));
    };
    let (Some(agent), Some(task)) = (o.get("agent"), o.get("task")) else {
        return Err(format!("dispatches[{i}] must have 'agent' and 'task' keys"));
    };
    let (Some(agent), Some(task)) = (agent.as_str(), task.as_str()) else {
        return Err(format!("dispatches[{i}].agent and .task must be strings"));
    };
    let text = |field: &str| -> Result<String, String> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!(
                "dispatches[{i}].{field} must be a string, got {other}"
            )),
        }
    };
    let timeout_seconds = match o.get("timeout_seconds") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_f64().map(|f| f as i64).unwrap_or(0),
        Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
            s.trim().parse::<f64>().map(|f| f as i64).unwrap_or(0)
        }
        Some(other) => {
            return Err(format!(
                "dispatches[{i}].timeout_seconds must be a number, got {other}"
            ))
        }
    };
    let summary_chars = match o.get("summary_chars") {
        None | Some(Value::Null) => 500,
        Some(Value::Number(n)) => n.as_f64().map(|f| f as i64).unwrap_or(500),
        Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
            s.trim().parse::<f64>().map(|f| f as i64).unwrap_or(500)
        }
        Some(other) => {
            return Err(format!(
                "dispatches[{i}].summary_chars must be a number, got {other}"
            ))
        }
    };
    let return_ref = o.get("return_ref").is_some_and(outcome::truthy);
    Ok(Item {
        summary_chars: return_ref.then_some(summary_chars),
        agent: agent.to_string(),
        task: task.to_string(),
        context: text("context")?,
        caller: text("caller")?,
        goal: text("goal")?,
        response_format: text("response_format")?,
        timeout_seconds,
    })
}

/// The ref payload of a stored result (spec §6.3), in its field order.
fn ref_payload(job: &str, result: &DispatchResult, summary_chars: i64, cached: bool) -> Value {
    let full = result.to_json();
    let chars = summary_chars.clamp(0, 100_000) as usize;
    let size = result.result.chars().count();
    let mut o = serde_json::Map::new();
    o.insert("ref".into(), json!(job));
    o.insert("agent".into(), json!(result.agent));
    o.insert("success".into(), json!(result.success));
    o.insert("size".into(), json!(size));
    o.insert("summary_chars".into(), json!(size.min(chars)));
    o.insert(
        "summary".into(),
        json!(crate::engine::truncate_chars(&result.result, chars)),
    );
    for key in [
        "session_id",
        "cost_usd",
        "duration_ms",
        "num_turns",
        "error",
        "error_type",
        "denied_tools",
        "outcome",
        "hint",
        "parsed_result",
        "budget_exceeded",
    ] {
        if let Some(v) = full.get(key) {
            o.insert(key.into(), v.clone());
        }
    }
    if cached {
        o.insert("cached".into(), json!(true));
    }
    Value::Object(o)
}

/// A result whose ref could not be stored: the full result, with a note why.
fn with_warning(mut full: Value, e: &str) -> Value {
    full["warning"] = json!(format!(
        "return_ref: the result could not be stored ({e}); here it is in full"
    ));
    full
}

/// Python's name for a JSON value's type, as the Python server's messages say it.
fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// One agent's section in the aggregator's context: `## Agent: <a> [OK|FAILED]` (a ref
/// item adds `, preview of <size> chars`; a partial or blocked run adds
/// `, agent reports PARTIAL|BLOCKED`), then the text.
fn summary_section(result: &Value) -> String {
    let ok = result["success"].as_bool().unwrap_or(false);
    let agent = result["agent"].as_str().unwrap_or("?");
    let mut status = if ok { "OK" } else { "FAILED" }.to_owned();
    let reports = match result["outcome"].as_str() {
        Some(o) if o != "done" => format!(", agent reports {}", o.to_uppercase()),
        _ => String::new(),
    };
    if let (Some(summary), Some(size)) = (result["summary"].as_str(), result["size"].as_u64()) {
        return format!(
            "## Agent: {agent} [{status}, preview of {size} chars{reports}]\n{summary}"
        );
    }
    status.push_str(&reports);
    let body = [&result["result"], &result["error"]]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|s| !s.is_empty())
        .unwrap_or("");
    format!("## Agent: {agent} [{status}]\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::outcome::Outcome;

    fn result(outcome: Option<Outcome>) -> DispatchResult {
        let line: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"is_error": false, "result": "Half of it.", "session_id": "s-1", "total_cost_usd": 0.5, "num_turns": 2, "permission_denials": [{"tool_name": "Bash"}]}"#,
        )
        .unwrap();
        let facts = outcome::Facts {
            agent: "web",
            session_id: "s-1",
            result: Some(&line),
            exit: Some(crate::io::ExitStatus::Code(0)),
            stderr: "",
            plain_stdout: "",
            events_seen: true,
            timed_out: false,
            timeout_secs: 300,
            spawn_error: None,
            json_mode: false,
            budget: None,
            protocol: false,
        };
        DispatchResult {
            outcome,
            ..outcome::outcome(&facts)
        }
    }

    #[test]
    fn ref_payload_field_order() {
        let payload = ref_payload("abc", &result(Some(Outcome::Partial)), 4, true);
        let keys: Vec<&str> = payload
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "ref",
                "agent",
                "success",
                "size",
                "summary_chars",
                "summary",
                "session_id",
                "cost_usd",
                "num_turns",
                "denied_tools",
                "outcome",
                "hint",
                "cached"
            ]
        );
        assert_eq!(payload["outcome"], "partial");
        assert_eq!(payload["summary"], "Half");
        assert!(ref_payload("abc", &result(None), 4, false)
            .get("outcome")
            .is_none());
    }

    #[test]
    fn summary_sections_report_partial_and_blocked() {
        let plain = |o| summary_section(&result(o).to_json());
        assert_eq!(plain(None), "## Agent: web [OK]\nHalf of it.");
        assert_eq!(
            plain(Some(Outcome::Done)),
            "## Agent: web [OK]\nHalf of it."
        );
        assert_eq!(
            plain(Some(Outcome::Partial)),
            "## Agent: web [OK, agent reports PARTIAL]\nHalf of it."
        );
        assert_eq!(
            plain(Some(Outcome::Blocked)),
            "## Agent: web [OK, agent reports BLOCKED]\nHalf of it."
        );
        let by_ref = |o| summary_section(&ref_payload("abc", &result(o), 4, false));
        assert_eq!(
            by_ref(Some(Outcome::Done)),
            "## Agent: web [OK, preview of 11 chars]\nHalf"
        );
        assert_eq!(
            by_ref(Some(Outcome::Blocked)),
            "## Agent: web [OK, preview of 11 chars, agent reports BLOCKED]\nHalf"
        );
        let failed = json!({"agent": "api", "success": false, "result": "", "error": "boom"});
        assert_eq!(summary_section(&failed), "## Agent: api [FAILED]\nboom");
    }
}
