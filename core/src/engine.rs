//! The `Core` state machine: owns sessions, in-flight tool calls, pending I/O, runs and
//! timers, and queues effects. Protocol handling lives in `mcp`, tool logic in `tools`,
//! the life of one child in `dispatch::run`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::background::{JobKey, Jobs, Recovery};
use crate::dispatch::cache::Cache;
use crate::dispatch::limiter::Limiter;
use crate::dispatch::outcome::DispatchResult;
use crate::dispatch::run::{ProcInput, Run};
use crate::ids::{ClientId, OpId, ProcId};
use crate::io::{Effect, Input, IoRequest, IoResult, LogLevel};
use crate::jsonrpc;
use crate::mcp::Session;
use crate::time::Timestamp;
use crate::timer::{TimerKey, Timers};
use crate::tools::{self, args::Args, AgentStep, DispatchStep, JobStep, Tool};

/// How often at most a call sends progress notifications.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// How many progress messages wait for the next notification before old ones are dropped.
const PROGRESS_BUFFER: usize = 100;

/// Facts about the host the core needs but may not look up itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The `agents.yaml` path (from `AGENT_DISPATCH_CONFIG` or the default).
    pub config_path: PathBuf,
    /// The jobs folder (`AGENT_DISPATCH_JOBS_DIR`, else `jobs` beside the config).
    pub jobs_dir: PathBuf,
    /// The user's home directory, for `~` in configured paths.
    pub home: PathBuf,
    /// The server's working directory, for relative configured paths.
    pub cwd: PathBuf,
    /// Seed for ids the core generates (session ids, job ids).
    pub seed: u64,
    /// Unix time in seconds at the driver's epoch (`Timestamp::ZERO`).
    pub unix_time_at_epoch: f64,
    /// Our own dispatch depth (`AGENT_DISPATCH_DEPTH`; 0 at the top). Children get one more.
    pub depth: u32,
    /// The `claude` program to run (looked up on `PATH` by the driver).
    pub claude_program: String,
    /// Exit after this long with no clients, no calls, no children and no running jobs
    /// (the daemon's optional idle exit). `None`: never.
    pub idle_exit: Option<Duration>,
    /// The longest line a driver accepts from a client (`settings.limits.max_line_bytes`,
    /// read when the server starts); a longer one is answered as a parse error.
    pub max_line_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config_path: PathBuf::new(),
            jobs_dir: PathBuf::new(),
            home: PathBuf::new(),
            cwd: PathBuf::new(),
            seed: 0,
            unix_time_at_epoch: 0.0,
            depth: 0,
            claude_program: "claude".to_string(),
            idle_exit: None,
            max_line_bytes: crate::config::Limits::default().max_line_bytes as usize,
        }
    }
}

impl Options {
    /// Builds the options the way the `agent-dispatch` binary does, from environment
    /// variables looked up through `var` (so the core itself never reads the environment):
    /// `HOME`; `AGENT_DISPATCH_CONFIG` (else `~/.config/agent-dispatch/agents.yaml`);
    /// `AGENT_DISPATCH_JOBS_DIR` (else `jobs` beside the config); `AGENT_DISPATCH_DEPTH`
    /// (missing or malformed: 0); `AGENT_DISPATCH_CLAUDE` (else `claude`). Empty values
    /// count as unset. Also returns warnings for the host to log (a malformed depth).
    pub fn from_env(
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
        cwd: PathBuf,
        seed: u64,
        unix_time_at_epoch: f64,
    ) -> (Options, Vec<String>) {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let home = var("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        let config_path = var("AGENT_DISPATCH_CONFIG").map_or_else(
            || {
                home.join(".config")
                    .join("agent-dispatch")
                    .join("agents.yaml")
            },
            PathBuf::from,
        );
        let jobs_dir = var("AGENT_DISPATCH_JOBS_DIR")
            .map_or_else(|| config_path.with_file_name("jobs"), PathBuf::from);
        let mut warnings = Vec::new();
        let depth =
            match var("AGENT_DISPATCH_DEPTH").map(|v| v.to_string_lossy().trim().to_string()) {
                Some(v) => v.parse().unwrap_or_else(|_| {
                    warnings.push(format!(
                        "ignoring AGENT_DISPATCH_DEPTH={v:?} (not a number)"
                    ));
                    0
                }),
                None => 0,
            };
        let claude_program = var("AGENT_DISPATCH_CLAUDE").map_or_else(
            || "claude".to_string(),
            |p| p.to_string_lossy().into_owned(),
        );
        let options = Options {
            config_path,
            jobs_dir,
            home,
            cwd,
            seed,
            unix_time_at_epoch,
            depth,
            claude_program,
            idle_exit: None,
            max_line_bytes: crate::config::Limits::default().max_line_bytes as usize,
        };
        (options, warnings)
    }
}

/// Why the core wants to be woken (for logs and replay timelines).
pub type TimeoutReason = TimerKey;

/// Driver misuse: the driver broke the run-loop contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// An input arrived after `Effect::Exit`.
    AfterExit,
    /// `IoDone` for an op that is not pending.
    UnknownOp(OpId),
    /// A line or close for a client that never connected (or already closed).
    UnknownClient(ClientId),
    /// `ClientConnected` for a client id already in use.
    DuplicateClient(ClientId),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::AfterExit => f.write_str("input after the core exited"),
            CoreError::UnknownOp(op) => write!(f, "IoDone for unknown {op}"),
            CoreError::UnknownClient(c) => write!(f, "input for unknown {c}"),
            CoreError::DuplicateClient(c) => write!(f, "{c} connected twice"),
        }
    }
}

impl std::error::Error for CoreError {}

/// Identifies one in-flight tool call inside the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CallId(pub u64);

/// One `tools/call` request being worked on.
#[derive(Debug)]
pub(crate) struct Call {
    pub client: ClientId,
    pub request: Value,
    pub tool: Tool,
    pub args: Args,
    /// The client cancelled it or went away: finish the work, send nothing.
    pub cancelled: bool,
    /// Where the call is; `None` only while its handler runs.
    pub step: Option<Step>,
    /// Progress notifications, when the request carried `_meta.progressToken`.
    pub progress: Option<Progress>,
}

/// A call's progress notifications: throttled, bounded, in order.
#[derive(Debug)]
pub(crate) struct Progress {
    token: Value,
    sent: u64,
    last_sent: Option<Timestamp>,
    buffer: VecDeque<String>,
    skipped: usize,
}

/// Where a call is in its tool's sequence.
#[derive(Debug)]
pub(crate) enum Step {
    Agent(AgentStep),
    Dispatch(DispatchStep),
    Job(JobStep),
}

/// What wakes a call up.
#[derive(Debug)]
pub(crate) enum Event {
    Start,
    Io(IoResult),
    RunDone {
        slot: usize,
        result: Box<DispatchResult>,
    },
    /// The first write of a job this call created finished.
    JobSaved {
        key: JobKey,
        result: Result<(), String>,
    },
    /// The job this call waits for ended.
    JobDone,
    /// A timer this call set fired.
    Tick,
}

/// What a tool handler decided after an event.
#[derive(Debug)]
pub(crate) enum Next {
    /// Keep waiting in this step.
    Wait(Step),
    /// Reply with this value (`true`: a tool error).
    Done(Value, bool),
}

/// An `Effect::Io` awaiting its `IoDone`.
#[derive(Debug)]
struct PendingOp {
    owner: OpOwner,
    releases_config_lock: bool,
}

/// Who gets an I/O result.
#[derive(Debug, PartialEq)]
enum OpOwner {
    Call(CallId),
    JobWrite(String),
    Recovery,
    Nobody,
}

#[derive(Debug, PartialEq)]
enum Phase {
    Serving,
    Draining,
    Exited,
}

/// The agent-dispatch state machine. See the crate docs for the run loop.
#[derive(Debug)]
pub struct Core {
    pub(crate) options: Options,
    pub(crate) clients: BTreeMap<ClientId, Session>,
    pub(crate) tools_list: String,
    pub(crate) runs: BTreeMap<ProcId, Run>,
    pub(crate) limiter: Limiter,
    pub(crate) timers: Timers,
    pub(crate) cache: Cache,
    pub(crate) jobs: Jobs,
    pub(crate) recovery: Option<Recovery>,
    recovery_waiters: Vec<CallId>,
    effects: VecDeque<Effect>,
    now: Timestamp,
    phase: Phase,
    calls: BTreeMap<CallId, Call>,
    ops: BTreeMap<OpId, PendingOp>,
    next_id: u64,
    next_proc: u64,
    /// The call holding the cross-process config lock, and the calls queued for it:
    /// one load→edit→save at a time, so the driver never waits on its own lock.
    config_holder: Option<CallId>,
    config_waiters: VecDeque<CallId>,
    pub(crate) config_parses: crate::config::ParseCache,
}

impl Core {
    /// Creates a core at `now` (usually `Timestamp::ZERO`). Its first effects recover job
    /// records an earlier server abandoned.
    pub fn new(options: Options, now: Timestamp) -> Self {
        let mut core = Core {
            options,
            clients: BTreeMap::new(),
            tools_list: tools::list_json(),
            runs: BTreeMap::new(),
            limiter: Limiter::new(5),
            timers: Timers::default(),
            cache: Cache::default(),
            jobs: Jobs::default(),
            recovery: None,
            recovery_waiters: Vec::new(),
            effects: VecDeque::new(),
            now,
            phase: Phase::Serving,
            calls: BTreeMap::new(),
            ops: BTreeMap::new(),
            next_id: 0,
            next_proc: 0,
            config_holder: None,
            config_waiters: VecDeque::new(),
            config_parses: Default::default(),
        };
        core.start_recovery();
        core
    }

    /// Feeds one fact. `Err` only when the driver broke the contract.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<(), CoreError> {
        if self.phase == Phase::Exited {
            return Err(CoreError::AfterExit);
        }
        self.now = self.now.max(now);
        match input {
            Input::ClientConnected { client } => {
                if self.clients.insert(client, Session::default()).is_some() {
                    return Err(CoreError::DuplicateClient(client));
                }
            }
            Input::ClientLine { client, line } => {
                if !self.clients.contains_key(&client) {
                    return Err(CoreError::UnknownClient(client));
                }
                self.on_line(client, &line);
            }
            Input::ClientLineTooLong { client, limit } => {
                if !self.clients.contains_key(&client) {
                    return Err(CoreError::UnknownClient(client));
                }
                let message = format!(
                    "Parse error: line longer than {limit} bytes (settings.limits.max_line_bytes); it was discarded"
                );
                self.send(
                    client,
                    jsonrpc::error_line(&Value::Null, jsonrpc::PARSE_ERROR, &message),
                );
            }
            Input::ClientClosed { client } => {
                if self.clients.remove(&client).is_none() {
                    return Err(CoreError::UnknownClient(client));
                }
                let calls: Vec<CallId> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| c.client == client)
                    .map(|(id, _)| *id)
                    .collect();
                for id in calls {
                    self.cancel_call(id);
                }
            }
            Input::IoDone { op, result } => {
                let pending = self.ops.remove(&op).ok_or(CoreError::UnknownOp(op))?;
                match pending.owner {
                    OpOwner::Call(call) => self.advance_call(call, Event::Io(result)),
                    OpOwner::JobWrite(id) => match result {
                        IoResult::Written { result } => self.job_written(&id, result),
                        other => {
                            self.log(LogLevel::Warn, format!("job write answered with {other:?}"))
                        }
                    },
                    OpOwner::Recovery => {
                        if !matches!(result, IoResult::Written { .. } | IoResult::Deleted { .. }) {
                            self.recovery_step(result);
                        }
                        self.maybe_end_recovery();
                    }
                    OpOwner::Nobody => {}
                }
                if pending.releases_config_lock {
                    self.release_config_lock();
                }
            }
            Input::Shutdown => {
                if self.phase == Phase::Serving {
                    self.phase = Phase::Draining;
                    self.fail_owned_jobs("The server shut down while this job was running. Re-dispatch it if still needed.");
                    self.stop_all_runs();
                }
            }
            Input::Timeout => {
                while let Some(key) = self.timers.pop_due(self.now) {
                    match key {
                        TimerKey::Progress(call) => self.flush_progress(CallId(call)),
                        TimerKey::Wait(call) => self.advance_call(CallId(call), Event::Tick),
                        TimerKey::JobWrite(job) => self.job_timer(crate::background::JobKey(job)),
                        TimerKey::IdleExit => {
                            if self.is_idle() {
                                self.log(
                                    LogLevel::Info,
                                    "Idle: no clients and no work; exiting".into(),
                                );
                                self.phase = Phase::Draining;
                            }
                        }
                        other => self.on_run_timer(other),
                    }
                }
            }
            Input::Spawned { proc, .. } => self.on_process(ProcInput::Spawned(proc)),
            Input::SpawnFailed { proc, error } => {
                self.on_process(ProcInput::SpawnFailed(proc, error))
            }
            Input::StdoutLine { proc, line } => self.on_process(ProcInput::Stdout(proc, line)),
            Input::StderrChunk { proc, text } => self.on_process(ProcInput::Stderr(proc, text)),
            Input::StdoutClosed { proc } => self.on_process(ProcInput::StdoutClosed(proc)),
            Input::StderrClosed { proc } => self.on_process(ProcInput::StderrClosed(proc)),
            Input::Exited { proc, status } => self.on_process(ProcInput::Exited(proc, status)),
        }
        self.maybe_exit();
        Ok(())
    }

    /// Returns the next queued effect. Drain to `None` after every `handle`.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Returns the one deadline the driver should sleep until, and why.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Timestamp, TimeoutReason)> {
        self.timers.next()
    }

    /// Returns true once `Effect::Exit` has been emitted.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Exited
    }

    // ---- used by `mcp`, `tools` and `dispatch` ----

    /// Whether new requests are still accepted.
    pub(crate) fn is_serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// The current time (as of the last input).
    pub(crate) fn now(&self) -> Timestamp {
        self.now
    }

    /// Queues an effect.
    pub(crate) fn effects_push(&mut self, effect: Effect) {
        self.effects.push_back(effect);
    }

    /// Queues one line to a client that is still connected.
    pub(crate) fn send(&mut self, client: ClientId, line: String) {
        if self.clients.contains_key(&client) {
            self.effects.push_back(Effect::Send { client, line });
        }
    }

    /// Queues a log line for the operator.
    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        self.effects.push_back(Effect::Log { level, message });
    }

    /// Starts a tool call. `progress_token` comes from the request's `_meta`.
    pub(crate) fn start_call(
        &mut self,
        client: ClientId,
        request: Value,
        tool: Tool,
        args: Args,
        progress_token: Option<Value>,
    ) {
        let id = CallId(self.fresh_id());
        let progress = progress_token.map(|token| Progress {
            token,
            sent: 0,
            last_sent: None,
            buffer: VecDeque::new(),
            skipped: 0,
        });
        let step = Some(tools::initial_step(tool));
        self.calls.insert(
            id,
            Call {
                client,
                request,
                tool,
                args,
                cancelled: false,
                step,
                progress,
            },
        );
        self.advance_call(id, Event::Start);
    }

    /// Feeds an event to a call's handler and acts on what it decides.
    pub(crate) fn advance_call(&mut self, id: CallId, event: Event) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        let Some(step) = call.step.take() else { return };
        let next = match step {
            Step::Agent(step) => self.agent_tool(id, &call, step, event),
            Step::Dispatch(step) => self.dispatch_tool(id, &call, step, event),
            Step::Job(step) => self.job_tool(id, &call, step, event),
        };
        match next {
            Next::Wait(step) => {
                call.step = Some(step);
                self.calls.insert(id, call);
            }
            Next::Done(value, is_error) => {
                self.calls.insert(id, call);
                self.flush_progress(id);
                self.timers.cancel(TimerKey::Progress(id.0));
                if let Some(call) = self.calls.remove(&id) {
                    self.reply_tool(&call, &value, is_error);
                }
            }
        }
    }

    /// Whether a call is still in progress (not cancelled, its client still there).
    pub(crate) fn has_call(&self, id: CallId) -> bool {
        self.calls.get(&id).is_some_and(|c| !c.cancelled)
    }

    /// Cancels the call with this JSON-RPC id (`notifications/cancelled`).
    pub(crate) fn cancel_request(&mut self, client: ClientId, request: &Value) {
        let found = self
            .calls
            .iter()
            .find(|(_, c)| c.client == client && &c.request == request)
            .map(|(id, _)| *id);
        if let Some(id) = found {
            self.cancel_call(id);
        }
    }

    /// Requests I/O on behalf of a call; the result comes back as `Event::Io`.
    pub(crate) fn io(&mut self, call: CallId, request: IoRequest) {
        self.push_io(OpOwner::Call(call), request, false);
    }

    /// Writes an owned job's record; the result goes to `job_written`.
    pub(crate) fn push_job_write(&mut self, id: String, contents: String) {
        let request = IoRequest::WriteJob {
            dir: self.options.jobs_dir.clone(),
            id: id.clone(),
            contents,
        };
        self.push_io(OpOwner::JobWrite(id), request, false);
    }

    /// I/O for start-up recovery; reads go on to `recovery_step`, and job tools wait until
    /// every recovery op (writes and deletes too) is done.
    pub(crate) fn push_recovery_io(&mut self, request: IoRequest) {
        self.push_io(OpOwner::Recovery, request, false);
    }

    /// Whether start-up recovery (including its writes and deletes) is still under way.
    pub(crate) fn recovering(&self) -> bool {
        self.recovery.is_some() || self.ops.values().any(|op| op.owner == OpOwner::Recovery)
    }

    /// Holds a job-tool call until recovery has finished, so nobody sees a record that is
    /// about to be marked abandoned; it is restarted with `Event::Start` then.
    pub(crate) fn after_recovery(&mut self, call: CallId) {
        self.recovery_waiters.push(call);
    }

    fn maybe_end_recovery(&mut self) {
        if self.recovering() {
            return;
        }
        for call in std::mem::take(&mut self.recovery_waiters) {
            self.advance_call(call, Event::Start);
        }
    }

    /// Asks for the config under the cross-process lock; queued while another call holds it.
    pub(crate) fn lock_config(&mut self, call: CallId) {
        if self.config_holder.is_some() {
            self.config_waiters.push_back(call);
        } else {
            self.grant_config_lock(call);
        }
    }

    /// Writes the config (or just unlocks when `contents` is `None`) and releases the lock
    /// once the driver is done. With `notify`, the call gets the write's result.
    pub(crate) fn finish_config(&mut self, call: CallId, contents: Option<String>, notify: bool) {
        let path = self.options.config_path.clone();
        let request = match contents {
            Some(contents) => IoRequest::WriteConfig { path, contents },
            None => IoRequest::UnlockConfig { path },
        };
        let owner = if notify {
            OpOwner::Call(call)
        } else {
            OpOwner::Nobody
        };
        self.push_io(owner, request, true);
    }

    /// Sends a tool result for a finished call (unless it was cancelled).
    pub(crate) fn reply_tool(&mut self, call: &Call, value: &Value, is_error: bool) {
        if call.cancelled {
            return;
        }
        let result = tools::result_json(value, is_error);
        let line = jsonrpc::result_line(&call.request, &result);
        self.send(call.client, line);
    }

    /// Queues a progress message for a call that asked for progress. Notifications go out
    /// at most every `PROGRESS_INTERVAL`; a burst is buffered (bounded) and sent in order.
    pub(crate) fn progress(&mut self, id: CallId, agent: &str, message: &str) {
        let now = self.now;
        let Some(progress) = self.calls.get_mut(&id).and_then(|c| c.progress.as_mut()) else {
            return;
        };
        if progress.buffer.len() == PROGRESS_BUFFER {
            progress.buffer.pop_front();
            progress.skipped += 1;
        }
        progress
            .buffer
            .push_back(format!("[{agent}] {}", truncate_chars(message, 300)));
        let due = progress
            .last_sent
            .map_or(now, |t| t.plus(PROGRESS_INTERVAL));
        if due <= now {
            self.flush_progress(id);
        } else {
            self.timers.set(TimerKey::Progress(id.0), due);
        }
    }

    /// A fresh internal id (calls and ops share one counter, so ids never collide).
    pub(crate) fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A fresh process id (its own counter, so the first child is always `proc#1`).
    pub(crate) fn fresh_proc(&mut self) -> ProcId {
        self.next_proc += 1;
        ProcId(self.next_proc)
    }

    /// A fresh random-looking UUID v4, derived from the seed the driver gave us.
    pub(crate) fn fresh_uuid(&mut self) -> String {
        let n = self.fresh_id();
        let mut hasher = Sha256::new();
        hasher.update(self.options.seed.to_le_bytes());
        hasher.update(n.to_le_bytes());
        let digest = hasher.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    // ---- internals ----

    /// Stops a call: its runs are stopped (slots come back once they have exited) and no
    /// reply is sent. A call that must see I/O through (a config edit under the lock)
    /// finishes silently; anything else is dropped at once.
    fn cancel_call(&mut self, id: CallId) {
        self.cancel_runs(id);
        let waits_for_io = self.ops.values().any(|op| op.owner == OpOwner::Call(id))
            || self.config_holder == Some(id);
        if waits_for_io {
            if let Some(call) = self.calls.get_mut(&id) {
                call.cancelled = true;
            }
        } else {
            self.calls.remove(&id);
            self.config_waiters.retain(|w| *w != id);
            self.timers.cancel(TimerKey::Progress(id.0));
            self.timers.cancel(TimerKey::Wait(id.0));
        }
    }

    fn flush_progress(&mut self, id: CallId) {
        let now = self.now;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let (client, cancelled) = (call.client, call.cancelled);
        let Some(progress) = call.progress.as_mut() else {
            return;
        };
        let mut messages: Vec<String> = Vec::new();
        if progress.skipped > 0 {
            messages.push(format!(
                "Skipped {} older progress messages; showing latest.",
                progress.skipped
            ));
            progress.skipped = 0;
        }
        messages.extend(progress.buffer.drain(..));
        if messages.is_empty() || cancelled {
            return;
        }
        progress.last_sent = Some(now);
        let mut lines = Vec::with_capacity(messages.len());
        for message in messages {
            progress.sent += 1;
            let params = serde_json::json!({
                "progressToken": progress.token,
                "progress": progress.sent,
                "message": message,
            });
            lines.push(jsonrpc::notification_line("notifications/progress", params));
        }
        for line in lines {
            self.send(client, line);
        }
    }

    fn push_io(&mut self, owner: OpOwner, request: IoRequest, releases_config_lock: bool) {
        let op = OpId(self.fresh_id());
        self.ops.insert(
            op,
            PendingOp {
                owner,
                releases_config_lock,
            },
        );
        self.effects.push_back(Effect::Io { op, request });
    }

    fn grant_config_lock(&mut self, call: CallId) {
        self.config_holder = Some(call);
        let path = self.options.config_path.clone();
        self.io(call, IoRequest::ReadConfig { path, lock: true });
    }

    fn release_config_lock(&mut self) {
        self.config_holder = None;
        if let Some(next) = self.config_waiters.pop_front() {
            self.grant_config_lock(next);
        }
    }

    /// Shutdown: every job still running here is marked failed with `why`.
    fn fail_owned_jobs(&mut self, why: &str) {
        let keys: Vec<_> = self
            .jobs
            .owned
            .values()
            .filter(|j| !j.record.status.is_terminal())
            .map(|j| j.key)
            .collect();
        for key in keys {
            let mut result = DispatchResult::preflight(
                "",
                why.to_string(),
                crate::dispatch::outcome::ErrorType::CliError,
            );
            if let Some(id) = self.jobs.id(key) {
                result.agent = self.jobs.owned[id].record.agent.clone();
            }
            self.job_finished(key, result);
        }
    }

    fn maybe_exit(&mut self) {
        let idle = self.calls.is_empty() && self.ops.is_empty() && self.run_count() == 0;
        if self.phase == Phase::Draining && idle {
            let unsaved: Vec<String> = (self.jobs.owned.values())
                .filter(|j| j.unsaved)
                .map(|j| format!("Job {} ended ({}) but its record could not be written; the file still shows its last saved state", j.record.id, j.record.status))
                .collect();
            for message in unsaved {
                self.log(LogLevel::Warn, message);
            }
            self.phase = Phase::Exited;
            self.effects.push_back(Effect::Exit { code: 0 });
            return;
        }
        // The idle clock runs only while nothing at all is going on.
        match self.options.idle_exit {
            Some(after) if self.phase == Phase::Serving && self.is_idle() => {
                if !self.timers.is_set(TimerKey::IdleExit) {
                    self.timers.set(TimerKey::IdleExit, self.now.plus(after));
                }
            }
            _ => self.timers.cancel(TimerKey::IdleExit),
        }
    }

    /// No clients, calls, I/O, children or unfinished jobs.
    fn is_idle(&self) -> bool {
        self.clients.is_empty()
            && self.calls.is_empty()
            && self.ops.is_empty()
            && self.run_count() == 0
            && self
                .jobs
                .owned
                .values()
                .all(|j| j.record.status.is_terminal() && !j.unsaved)
    }
}

/// The first `max` characters of `s`.
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}
