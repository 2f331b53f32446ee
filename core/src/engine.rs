//! The `Core` state machine: owns sessions, in-flight tool calls and pending I/O, and
//! queues effects. Protocol handling lives in `mcp`, tool logic in `tools`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::ids::{ClientId, OpId};
use crate::io::{Effect, Input, IoRequest, IoResult, LogLevel};
use crate::mcp::Session;
use crate::time::Timestamp;
use crate::tools::{self, args::Args, AgentStep, Tool};

/// Facts about the host the core needs but may not look up itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    /// The `agents.yaml` path (from `AGENT_DISPATCH_CONFIG` or the default).
    pub config_path: PathBuf,
    /// The user's home directory, for `~` in configured paths.
    pub home: PathBuf,
    /// The server's working directory, for relative configured paths.
    pub cwd: PathBuf,
    /// Seed for ids the core generates (session ids, job ids).
    pub seed: u64,
    /// Unix time in seconds at the driver's epoch (`Timestamp::ZERO`).
    pub unix_time_at_epoch: f64,
}

/// Why the core wants to be woken (for logs and replay timelines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeoutReason {
    /// A run reached its deadline.
    RunDeadline,
}

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
pub(crate) struct CallId(u64);

/// One `tools/call` request being worked on.
#[derive(Debug)]
pub(crate) struct Call {
    pub client: ClientId,
    pub request: Value,
    pub tool: Tool,
    pub args: Args,
    /// The client cancelled it or went away: finish the work, send nothing.
    pub cancelled: bool,
    pub step: Step,
}

/// Where a call is in its tool's sequence.
#[derive(Debug)]
pub(crate) enum Step {
    Agent(AgentStep),
}

/// What wakes a call up.
#[derive(Debug)]
pub(crate) enum Event {
    Start,
    Io(IoResult),
}

/// An `Effect::Io` awaiting its `IoDone`.
#[derive(Debug)]
struct PendingOp {
    call: Option<CallId>,
    releases_config_lock: bool,
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
    effects: VecDeque<Effect>,
    now: Timestamp,
    phase: Phase,
    calls: BTreeMap<CallId, Call>,
    ops: BTreeMap<OpId, PendingOp>,
    next_id: u64,
    /// The call holding the cross-process config lock, and the calls queued for it:
    /// one load→edit→save at a time, so the driver never waits on its own lock.
    config_holder: Option<CallId>,
    config_waiters: VecDeque<CallId>,
}

impl Core {
    /// Creates a core at `now` (usually `Timestamp::ZERO`).
    pub fn new(options: Options, now: Timestamp) -> Self {
        Core {
            options,
            clients: BTreeMap::new(),
            tools_list: tools::list_json(),
            effects: VecDeque::new(),
            now,
            phase: Phase::Serving,
            calls: BTreeMap::new(),
            ops: BTreeMap::new(),
            next_id: 0,
            config_holder: None,
            config_waiters: VecDeque::new(),
        }
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
            Input::ClientClosed { client } => {
                if self.clients.remove(&client).is_none() {
                    return Err(CoreError::UnknownClient(client));
                }
                for call in self.calls.values_mut().filter(|c| c.client == client) {
                    call.cancelled = true;
                }
            }
            Input::IoDone { op, result } => {
                let pending = self.ops.remove(&op).ok_or(CoreError::UnknownOp(op))?;
                if let Some(call) = pending.call {
                    self.advance(call, Event::Io(result));
                }
                if pending.releases_config_lock {
                    self.release_config_lock();
                }
            }
            Input::Shutdown => {
                if self.phase == Phase::Serving {
                    self.phase = Phase::Draining;
                }
            }
            Input::Timeout => {}
            // Children arrive with the dispatch engine; none are spawned yet.
            Input::Spawned { .. }
            | Input::SpawnFailed { .. }
            | Input::StdoutLine { .. }
            | Input::StderrChunk { .. }
            | Input::StdoutClosed { .. }
            | Input::Exited { .. } => {}
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
        None
    }

    /// Returns true once `Effect::Exit` has been emitted.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Exited
    }

    // ---- used by `mcp` and `tools` ----

    /// Whether new requests are still accepted.
    pub(crate) fn is_serving(&self) -> bool {
        self.phase == Phase::Serving
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

    /// Starts a tool call.
    pub(crate) fn start_call(&mut self, client: ClientId, request: Value, tool: Tool, args: Args) {
        let id = CallId(self.fresh_id());
        let step = Step::Agent(AgentStep::Start);
        self.calls.insert(
            id,
            Call {
                client,
                request,
                tool,
                args,
                cancelled: false,
                step,
            },
        );
        self.advance(id, Event::Start);
    }

    /// Marks the call with this JSON-RPC id as cancelled (its reply is suppressed).
    pub(crate) fn cancel_request(&mut self, client: ClientId, request: &Value) {
        for call in self.calls.values_mut() {
            if call.client == client && &call.request == request {
                call.cancelled = true;
            }
        }
    }

    /// Requests I/O on behalf of a call; the result comes back as `Event::Io`.
    pub(crate) fn io(&mut self, call: CallId, request: IoRequest) {
        self.push_io(Some(call), request, false);
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
        self.push_io(notify.then_some(call), request, true);
    }

    /// Sends a tool result for a finished call (unless it was cancelled).
    pub(crate) fn reply_tool(&mut self, call: &Call, value: &Value, is_error: bool) {
        if call.cancelled {
            return;
        }
        let result = tools::result_json(value, is_error);
        let line = crate::jsonrpc::result_line(&call.request, &result);
        self.send(call.client, line);
    }

    // ---- internals ----

    fn advance(&mut self, id: CallId, event: Event) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let next = match call.step {
            Step::Agent(_) => self.agent_tool(id, call, event),
        };
        if let Some(call) = next {
            self.calls.insert(id, call);
        }
    }

    fn push_io(&mut self, call: Option<CallId>, request: IoRequest, releases_config_lock: bool) {
        let op = OpId(self.fresh_id());
        self.ops.insert(
            op,
            PendingOp {
                call,
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

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn maybe_exit(&mut self) {
        if self.phase == Phase::Draining && self.calls.is_empty() && self.ops.is_empty() {
            self.phase = Phase::Exited;
            self.effects.push_back(Effect::Exit { code: 0 });
        }
    }
}
