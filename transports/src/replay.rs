//! The deterministic replay driver: runs a scripted scenario through the core on a virtual
//! clock, answering file-system requests from an in-memory tree, and renders a readable
//! timeline for snapshot tests. No threads, no sleeps, no real I/O.
//!
//! A scenario (YAML, under `fixtures/scenarios/`):
//!
//! ```yaml
//! config: |            # optional: contents of the config file at start
//!   agents: {}
//! dirs:                # directories that exist, with the files in them ("name/" = a folder)
//!   /work/web:
//!     CLAUDE.md: "Web front end."
//!     prisma/: ""
//! steps:               # each step happens `at` ms after start
//!   - {at: 0, send: {jsonrpc: "2.0", id: 1, method: ping}}
//!   - {at: 5, line: "not json"}
//!   - {at: 9, close: true}
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use agent_dispatch_core::{
    ClientId, Core, DirProbe, DirState, Effect, EntryKind, ExitStatus, Input, IoRequest, IoResult,
    JobFile, Options, ProcId, Signal, SpawnError, SpawnErrorKind, TimerKey, Timestamp,
};
use serde::Deserialize;
use serde_json::Value;

/// Where the virtual config file lives.
pub const CONFIG_PATH: &str = "/home/user/.config/agent-dispatch/agents.yaml";
/// Where the virtual job records live.
pub const JOBS_DIR: &str = "/home/user/.config/agent-dispatch/jobs";
/// Unix time at the replay's start.
const UNIX_AT_START: f64 = 1_800_000_000.0;

/// A scripted scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Contents of the config file at start (absent = no file).
    #[serde(default)]
    pub config: Option<String>,
    /// Directories that exist, each with its files (`name/` marks a sub-folder).
    #[serde(default)]
    pub dirs: BTreeMap<PathBuf, BTreeMap<String, String>>,
    /// Job records present at start: id → (record text, age in seconds at start).
    #[serde(default)]
    pub jobs: BTreeMap<String, (String, f64)>,
    /// Paths that exist but are not directories.
    #[serde(default)]
    pub not_dirs: BTreeSet<PathBuf>,
    /// Paths whose examination fails with "Permission denied".
    #[serde(default)]
    pub unreadable: BTreeSet<PathBuf>,
    /// How each child (by proc id) behaves when it is signalled.
    #[serde(default)]
    pub procs: BTreeMap<u64, ProcBehaviour>,
    /// Our dispatch depth (`AGENT_DISPATCH_DEPTH`), for the recursion guard.
    #[serde(default)]
    pub depth: u32,
    /// Never more than this many children alive at once (checked).
    #[serde(default)]
    pub max_live: Option<usize>,
    /// What happens, in time order.
    pub steps: Vec<Step>,
}

/// How a scripted child reacts to signals. By default it dies at once on SIGTERM, closing
/// its pipes.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcBehaviour {
    /// SIGTERM is ignored; only SIGKILL ends it.
    #[serde(default)]
    pub ignores_term: bool,
    /// A descendant keeps stdout and stderr open after the leader exits, until the whole
    /// group is SIGKILLed.
    #[serde(default)]
    pub descendant_holds_pipes: bool,
}

/// One scripted happening.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Milliseconds since start.
    pub at: u64,
    /// Which client (default 0).
    #[serde(default)]
    pub client: u64,
    /// A JSON-RPC message the client sends (serialized compactly as one line).
    #[serde(default)]
    pub send: Option<Value>,
    /// A raw line the client sends.
    #[serde(default)]
    pub line: Option<String>,
    /// The client connects (client 0 connects implicitly at start).
    #[serde(default)]
    pub connect: bool,
    /// The client sends a line longer than the driver's limit of this many bytes.
    #[serde(default)]
    pub line_too_long: Option<usize>,
    /// The client closes its input.
    #[serde(default)]
    pub close: bool,
    /// The driver is told to shut down.
    #[serde(default)]
    pub shutdown: bool,
    /// Which child the following fields are about.
    #[serde(default)]
    pub proc: Option<u64>,
    /// Lines the child writes to stdout.
    #[serde(default)]
    pub stdout: Vec<String>,
    /// A recorded stdout transcript (relative to the fixtures folder), one line per input.
    #[serde(default)]
    pub stdout_file: Option<String>,
    /// Text the child writes to stderr.
    #[serde(default)]
    pub stderr: Option<String>,
    /// The child's spawn fails with this kind (`not_found`, `permission_denied`, `other`).
    #[serde(default)]
    pub spawn_failed: Option<String>,
    /// The child exits with this code, closing its pipes (unless a descendant holds them).
    #[serde(default)]
    pub exit: Option<i32>,
}

/// The outcome of a replay: the rendered timeline and the facts invariants are checked on.
#[derive(Debug)]
pub struct Replay {
    /// Human-readable record of every input, effect and deadline.
    pub timeline: String,
    /// Contents of the config file at the end.
    pub final_config: Option<String>,
}

/// Runs a scenario and checks the core's invariants, panicking with a clear message when one
/// is broken: every request answered exactly once, nothing after exit, no I/O left unanswered,
/// the config lock never held twice.
pub fn run(scenario: &Scenario, fixtures: &Path) -> Replay {
    let mut driver = Driver::new(scenario);
    driver.feed(
        Timestamp::ZERO,
        Input::ClientConnected {
            client: ClientId(0),
        },
    );
    for step in &scenario.steps {
        let at = Timestamp::from_millis(step.at);
        driver.advance_to(at);
        driver.apply(step, at, fixtures);
    }
    driver.advance_to(Timestamp::from_millis(u64::MAX / 2_000));
    driver.finish()
}

struct Driver {
    core: Core,
    fs: Fs,
    timeline: String,
    /// Answers the "world" gives at the current instant: I/O results, spawn reports, the
    /// consequences of signals.
    answers: VecDeque<Input>,
    /// Each request's replies, and whether it was excused from getting one (cancelled, or
    /// its client went away).
    requests: BTreeMap<(u64, String), (usize, bool)>,
    behaviours: BTreeMap<u64, ProcBehaviour>,
    live: BTreeMap<ProcId, Child>,
    max_live_allowed: Option<usize>,
    max_live_seen: usize,
    spawned: usize,
    last_deadline: Option<(Timestamp, TimerKey)>,
    exited: bool,
    now: Timestamp,
}

/// A scripted child the core believes is running.
#[derive(Debug, Default)]
struct Child {
    leader_exited: bool,
    pipes_open: bool,
}

impl Driver {
    fn new(scenario: &Scenario) -> Self {
        let options = Options {
            config_path: PathBuf::from(CONFIG_PATH),
            jobs_dir: PathBuf::from(JOBS_DIR),
            home: PathBuf::from("/home/user"),
            cwd: PathBuf::from("/home/user"),
            seed: 7,
            unix_time_at_epoch: UNIX_AT_START,
            depth: scenario.depth,
            ..Options::default()
        };
        Driver {
            core: Core::new(options, Timestamp::ZERO),
            fs: Fs::new(scenario),
            timeline: String::new(),
            answers: VecDeque::new(),
            requests: BTreeMap::new(),
            behaviours: scenario.procs.clone(),
            live: BTreeMap::new(),
            max_live_allowed: scenario.max_live,
            max_live_seen: 0,
            spawned: 0,
            last_deadline: None,
            exited: false,
            now: Timestamp::ZERO,
        }
    }

    /// Feeds one input and drains its effects. I/O requests are answered later, when time
    /// moves on (`flush`), so inputs that arrive at the same instant overlap.
    fn feed(&mut self, at: Timestamp, input: Input) {
        self.now = at;
        self.record_request(&input);
        self.note(at, "->", &describe_input(&input));
        assert!(!self.exited, "input after Exit: {input:?}");
        self.core
            .handle(at, input)
            .unwrap_or_else(|e| panic!("driver misuse: {e}"));
        self.drain();
    }

    /// Answers everything pending at the current instant (and what those answers cause).
    fn flush(&mut self) {
        let at = self.now;
        while let Some(input) = self.answers.pop_front() {
            if self.exited {
                break;
            }
            self.feed(at, input);
        }
    }

    /// Moves the virtual clock to `at`: first the world answers what is pending now, then
    /// every deadline up to `at` fires in order.
    fn advance_to(&mut self, at: Timestamp) {
        if at > self.now {
            self.flush();
        }
        let mut fired = 0;
        while let Some((deadline, _)) = self.core.poll_timeout() {
            if deadline > at || self.exited || fired == 1000 {
                break;
            }
            fired += 1;
            self.feed(deadline.max(self.now), Input::Timeout);
            self.flush();
        }
        if at > self.now && at < Timestamp::from_millis(u64::MAX / 2_000) {
            self.now = at;
        }
    }

    /// Applies one scripted step.
    fn apply(&mut self, step: &Step, at: Timestamp, fixtures: &Path) {
        let client = ClientId(step.client);
        if step.connect {
            self.feed(at, Input::ClientConnected { client });
        }
        if let Some(message) = &step.send {
            self.feed(
                at,
                Input::ClientLine {
                    client,
                    line: message.to_string(),
                },
            );
        }
        if let Some(line) = &step.line {
            self.feed(
                at,
                Input::ClientLine {
                    client,
                    line: line.clone(),
                },
            );
        }
        if let Some(limit) = step.line_too_long {
            self.feed(at, Input::ClientLineTooLong { client, limit });
        }
        if step.close {
            self.feed(at, Input::ClientClosed { client });
        }
        if step.shutdown {
            self.feed(at, Input::Shutdown);
        }
        let Some(proc) = step.proc.map(ProcId) else {
            return;
        };
        assert!(
            self.live.contains_key(&proc),
            "the scenario scripts {proc}, which is not running"
        );
        if let Some(kind) = &step.spawn_failed {
            let kind = match kind.as_str() {
                "not_found" => SpawnErrorKind::NotFound,
                "permission_denied" => SpawnErrorKind::PermissionDenied,
                _ => SpawnErrorKind::Other,
            };
            self.live.remove(&proc);
            let error = SpawnError {
                message: "No such file or directory (os error 2)".into(),
                kind,
            };
            self.feed(at, Input::SpawnFailed { proc, error });
            return;
        }
        let mut lines = step.stdout.clone();
        if let Some(file) = &step.stdout_file {
            let text = std::fs::read_to_string(fixtures.join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            lines.extend(text.lines().map(str::to_string));
        }
        for line in lines {
            self.feed(at, Input::StdoutLine { proc, line });
        }
        if let Some(text) = &step.stderr {
            self.feed(
                at,
                Input::StderrChunk {
                    proc,
                    text: text.clone(),
                },
            );
        }
        if let Some(code) = step.exit {
            self.leader_exits(proc, ExitStatus::Code(code));
        }
    }

    /// The leader of `proc` exits; its pipes close with it unless a descendant holds them.
    fn leader_exits(&mut self, proc: ProcId, status: ExitStatus) {
        let holds = self
            .behaviours
            .get(&proc.0)
            .is_some_and(|b| b.descendant_holds_pipes);
        let Some(child) = self.live.get_mut(&proc) else {
            return;
        };
        if !child.leader_exited {
            child.leader_exited = true;
            if !holds && child.pipes_open {
                child.pipes_open = false;
                self.answers.push_back(Input::StdoutClosed { proc });
                self.answers.push_back(Input::StderrClosed { proc });
            }
            self.answers.push_back(Input::Exited { proc, status });
        }
        self.forget_if_gone(proc);
    }

    /// A signal reaches the group of `proc`.
    fn signal(&mut self, proc: ProcId, signal: Signal) {
        let behaviour = self.behaviours.get(&proc.0).copied().unwrap_or_default();
        let Some(child) = self.live.get_mut(&proc) else {
            return;
        };
        match signal {
            Signal::Term if behaviour.ignores_term => {}
            Signal::Term if child.leader_exited => {}
            Signal::Term => self.leader_exits(proc, ExitStatus::Signal(15)),
            Signal::Kill => {
                if child.pipes_open {
                    child.pipes_open = false;
                    self.answers.push_back(Input::StdoutClosed { proc });
                    self.answers.push_back(Input::StderrClosed { proc });
                }
                self.leader_exits(proc, ExitStatus::Signal(9));
            }
        }
    }

    fn forget_if_gone(&mut self, proc: ProcId) {
        if self
            .live
            .get(&proc)
            .is_some_and(|c| c.leader_exited && !c.pipes_open)
        {
            self.live.remove(&proc);
        }
    }

    fn drain(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            assert!(!self.exited, "effect after Exit: {effect:?}");
            let now = self.now;
            match effect {
                Effect::Send { client, line } => {
                    self.count_reply(client, &line);
                    self.note(now, "<-", &format!("send {client} {}", render_send(&line)));
                }
                Effect::Io { op, request } => {
                    self.note(
                        now,
                        "<-",
                        &format!("io {op} {}", describe_request(&request)),
                    );
                    if let IoRequest::WriteConfig { contents, .. } = &request {
                        for line in contents.lines() {
                            let _ = writeln!(self.timeline, "          | {line}");
                        }
                    }
                    let unix_now = UNIX_AT_START + now.as_duration().as_secs_f64();
                    let result = self.fs.apply(&request, unix_now);
                    self.answers.push_back(Input::IoDone { op, result });
                }
                Effect::Spawn { proc, spec } => {
                    let args = serde_json::to_string(&spec.args).unwrap_or_default();
                    let stdin = spec
                        .stdin
                        .as_ref()
                        .map(|s| format!(" stdin={} bytes", s.len()))
                        .unwrap_or_default();
                    let env: Vec<String> =
                        spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let line = format!(
                        "spawn {proc} {} {args} cwd={} env=[{}]{stdin}",
                        spec.program,
                        spec.cwd.display(),
                        env.join(" ")
                    );
                    self.note(now, "<-", &line);
                    assert!(!self.live.contains_key(&proc), "{proc} spawned twice");
                    self.live.insert(
                        proc,
                        Child {
                            leader_exited: false,
                            pipes_open: true,
                        },
                    );
                    self.spawned += 1;
                    let alive = self.live.values().filter(|c| !c.leader_exited).count();
                    self.max_live_seen = self.max_live_seen.max(alive);
                    if let Some(max) = self.max_live_allowed {
                        assert!(
                            alive <= max,
                            "{alive} children alive at once, more than {max}"
                        );
                    }
                    self.answers.push_back(Input::Spawned { proc, pid: None });
                }
                Effect::Kill { proc, signal } => {
                    self.note(now, "<-", &format!("kill {proc} {signal:?}"));
                    self.signal(proc, signal);
                }
                Effect::Log { level, message } => {
                    self.note(now, "<-", &format!("log {level:?}: {message}"))
                }
                Effect::Exit { code } => {
                    self.note(now, "<-", &format!("exit {code}"));
                    self.exited = true;
                }
            }
        }
        let deadline = self.core.poll_timeout();
        if let Some((at, _)) = deadline {
            assert!(
                at >= self.now,
                "deadline {at} is in the past (now {})",
                self.now
            );
        }
        if deadline != self.last_deadline {
            if let Some((at, why)) = deadline {
                let _ = writeln!(self.timeline, "          next deadline {at} ({why:?})");
            }
            self.last_deadline = deadline;
        }
    }

    fn finish(mut self) -> Replay {
        assert!(self.answers.is_empty(), "answers left undelivered");
        assert!(
            self.live.is_empty(),
            "children never reaped: {:?}",
            self.live.keys().collect::<Vec<_>>()
        );
        for ((client, id), (replies, excused)) in &self.requests {
            let ok = *replies == 1 || (*excused && *replies == 0);
            assert!(ok, "request {id} of client#{client} got {replies} replies");
        }
        assert!(
            self.fs.lock_holders == 0,
            "config lock still held at the end"
        );
        let _ = writeln!(
            self.timeline,
            "\n## Summary\nrequests={} spawned={} max_alive={} exited={}",
            self.requests.len(),
            self.spawned,
            self.max_live_seen,
            self.exited
        );
        let _ = writeln!(self.timeline, "\n## Config at the end");
        match &self.fs.config {
            Some(c) => self.timeline.push_str(c),
            None => self.timeline.push_str("(no file)\n"),
        }
        Replay {
            timeline: self.timeline,
            final_config: self.fs.config,
        }
    }

    fn note(&mut self, at: Timestamp, arrow: &str, text: &str) {
        let _ = writeln!(self.timeline, "{at}  {arrow} {text}");
    }

    fn record_request(&mut self, input: &Input) {
        if let Input::ClientClosed { client } = input {
            for ((c, _), (_, excused)) in self.requests.iter_mut() {
                *excused |= *c == client.0;
            }
        }
        let Input::ClientLine { client, line } = input else {
            return;
        };
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(line) else {
            return;
        };
        if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
            if let Some(id) = msg.get("params").and_then(|p| p.get("requestId")) {
                if let Some((_, excused)) = self.requests.get_mut(&(client.0, id.to_string())) {
                    *excused = true;
                }
            }
            return;
        }
        let is_response = msg.get("method").is_none()
            && (msg.contains_key("result") || msg.contains_key("error"));
        if let (Some(id), false) = (msg.get("id"), is_response) {
            if id.is_string() || id.is_i64() || id.is_u64() {
                let previous = self.requests.insert((client.0, id.to_string()), (0, false));
                assert!(previous.is_none(), "scenario reuses request id {id}");
            }
        }
    }

    fn count_reply(&mut self, client: ClientId, line: &str) {
        let msg: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("core sent invalid JSON ({e}): {line}"));
        assert!(
            !line.contains('\n'),
            "a protocol line must not contain a newline"
        );
        if msg.get("method").is_some() {
            return; // a notification
        }
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        if id.is_null() {
            return; // an error for a line whose id could not be read
        }
        let count = self.requests.get_mut(&(client.0, id.to_string()));
        let (count, _) = count.unwrap_or_else(|| panic!("reply to unknown request {id}: {line}"));
        *count += 1;
        assert_eq!(*count, 1, "second reply to request {id}: {line}");
    }
}

/// The in-memory file system the replay driver serves I/O from (also used by the model-based
/// test, `transports/tests/model.rs`). It panics when the core breaks the I/O contract: the
/// config lock taken while held or released without being held, a write of an invalid job id.
#[derive(Debug)]
pub struct Fs {
    config: Option<String>,
    dirs: BTreeMap<PathBuf, BTreeMap<String, String>>,
    not_dirs: BTreeSet<PathBuf>,
    unreadable: BTreeSet<PathBuf>,
    lock_holders: usize,
    /// id → (record text, modification time in Unix seconds).
    jobs: BTreeMap<String, (String, f64)>,
}

impl Fs {
    /// The tree a scenario starts with: its config, directories and job records.
    pub fn new(scenario: &Scenario) -> Self {
        Fs {
            config: scenario.config.clone(),
            dirs: scenario.dirs.clone(),
            not_dirs: scenario.not_dirs.clone(),
            unreadable: scenario.unreadable.clone(),
            lock_holders: 0,
            jobs: scenario
                .jobs
                .iter()
                .map(|(id, (text, age))| (id.clone(), (text.clone(), UNIX_AT_START - age)))
                .collect(),
        }
    }

    /// Performs one request at Unix time `unix_now` (the modification time of what it writes).
    pub fn apply(&mut self, request: &IoRequest, unix_now: f64) -> IoResult {
        match request {
            IoRequest::ReadConfig { lock, .. } => {
                if *lock {
                    assert_eq!(
                        self.lock_holders, 0,
                        "config lock taken while held: the core must queue"
                    );
                    self.lock_holders += 1;
                }
                IoResult::Config {
                    result: Ok(self.config.as_ref().map(|c| c.as_bytes().to_vec())),
                }
            }
            IoRequest::WriteConfig { contents, .. } => {
                assert_eq!(self.lock_holders, 1, "config written without the lock");
                self.lock_holders -= 1;
                self.config = Some(contents.clone());
                IoResult::Written { result: Ok(()) }
            }
            IoRequest::UnlockConfig { .. } => {
                assert_eq!(self.lock_holders, 1, "config unlocked without the lock");
                self.lock_holders -= 1;
                IoResult::Written { result: Ok(()) }
            }
            IoRequest::ProbeDirs {
                dirs,
                markers,
                read,
                max_bytes,
            } => {
                let probes = dirs
                    .iter()
                    .map(|d| self.probe(d, markers, read, *max_bytes))
                    .collect();
                IoResult::Probes { probes }
            }
            IoRequest::WriteJob { id, contents, .. } => {
                assert!(
                    agent_dispatch_core::jobs::valid_job_id(id),
                    "core asked to write job {id:?}"
                );
                let status = |text: &str| {
                    serde_json::from_str::<Value>(text)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_string))
                };
                let terminal = self
                    .jobs
                    .get(id)
                    .and_then(|(old, _)| status(old))
                    .filter(|s| ["done", "failed", "cancelled"].contains(&s.as_str()));
                if let Some(old) = terminal {
                    return IoResult::Written {
                        result: Err(format!(
                            "job {id} is already {old}; a finished job is never overwritten"
                        )),
                    };
                }
                self.jobs.insert(id.clone(), (contents.clone(), unix_now));
                IoResult::Written { result: Ok(()) }
            }
            IoRequest::ListJobs { .. } => {
                let files = self
                    .jobs
                    .iter()
                    .map(|(id, (text, modified))| JobFile {
                        id: id.clone(),
                        modified: *modified,
                        size: text.len() as u64,
                    })
                    .collect();
                IoResult::JobList { result: Ok(files) }
            }
            IoRequest::ReadJobs { ids, .. } => {
                let records = ids
                    .iter()
                    .map(|id| Ok(self.jobs.get(id).map(|(text, _)| text.clone())))
                    .collect();
                IoResult::Jobs { records }
            }
            IoRequest::DeleteJobs { ids, .. } => {
                let n = ids
                    .iter()
                    .filter(|id| self.jobs.remove(*id).is_some())
                    .count();
                IoResult::Deleted { result: Ok(n) }
            }
        }
    }

    /// Whether the config lock is held.
    pub fn config_locked(&self) -> bool {
        self.lock_holders > 0
    }

    fn probe(&self, dir: &Path, markers: &[String], read: &[String], max_bytes: usize) -> DirProbe {
        let mut probe = DirProbe {
            dir: dir.to_path_buf(),
            ..DirProbe::default()
        };
        if self.unreadable.contains(dir) {
            probe.state = DirState::Unreadable("Permission denied (os error 13)".into());
            return probe;
        }
        let Some(files) = self.dirs.get(dir) else {
            probe.state = if self.not_dirs.contains(dir) {
                DirState::NotADir
            } else {
                DirState::Missing
            };
            return probe;
        };
        probe.state = DirState::Dir;
        probe.resolved = Some(dir.to_path_buf());
        let folders: BTreeSet<&str> = files.keys().filter_map(|k| k.strip_suffix('/')).collect();
        for m in markers {
            if folders.contains(m.as_str()) {
                probe.markers.insert(m.clone(), EntryKind::Dir);
            } else if files.contains_key(m) {
                probe.markers.insert(m.clone(), EntryKind::File);
            }
        }
        for r in read {
            if let Some(text) = files.get(r) {
                let cut = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .take_while(|i| *i <= max_bytes)
                    .last()
                    .unwrap_or(0);
                let text = if text.len() > max_bytes {
                    &text[..cut]
                } else {
                    text.as_str()
                };
                probe.files.insert(r.clone(), text.to_string());
            }
        }
        probe
    }
}

/// Renders a reply line. A tool result's text and `structuredContent` must carry the same
/// value (checked here); it is shown once, as `tool result #id [error] <value>`.
fn render_send(line: &str) -> String {
    let Ok(msg) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let result = &msg["result"];
    let (Some(content), Some(structured)) = (
        result["content"].as_array(),
        result.get("structuredContent"),
    ) else {
        return line.to_string();
    };
    let text = content
        .first()
        .and_then(|c| c["text"].as_str())
        .unwrap_or_else(|| panic!("no text content: {line}"));
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("content text is not JSON ({e}): {line}"));
    let expected = if value.is_object() {
        value.clone()
    } else {
        serde_json::json!({ "result": value })
    };
    assert_eq!(
        &expected, structured,
        "structuredContent differs from the text content: {line}"
    );
    let flag = if result["isError"] == Value::Bool(true) {
        " [error]"
    } else {
        ""
    };
    format!("tool result {}{flag} {text}", msg["id"])
}

fn describe_input(input: &Input) -> String {
    match input {
        Input::ClientConnected { client } => format!("{client} connected"),
        Input::ClientLine { client, line } => format!("{client} {line}"),
        Input::ClientClosed { client } => format!("{client} closed"),
        Input::ClientLineTooLong { client, limit } => {
            format!("{client} line longer than {limit} bytes (discarded)")
        }
        Input::Shutdown => "shutdown".into(),
        Input::Timeout => "timeout".into(),
        Input::IoDone { op, result } => format!("io {op} done: {}", describe_result(result)),
        Input::Spawned { proc, .. } => format!("{proc} spawned"),
        Input::SpawnFailed { proc, error } => {
            format!("{proc} spawn failed: {:?} {}", error.kind, error.message)
        }
        Input::StdoutLine { proc, line } => format!("{proc} stdout {}", clip(line)),
        Input::StderrChunk { proc, text } => {
            format!("{proc} stderr {}", clip(&format!("{text:?}")))
        }
        Input::StdoutClosed { proc } => format!("{proc} stdout closed"),
        Input::StderrClosed { proc } => format!("{proc} stderr closed"),
        Input::Exited { proc, status } => format!("{proc} exited {status:?}"),
    }
}

/// Long lines (a CLI's init message is kilobytes) are cut for the timeline, with their size.
fn clip(text: &str) -> String {
    const KEEP: usize = 160;
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text.to_string(),
    }
}

fn describe_request(request: &IoRequest) -> String {
    match request {
        IoRequest::ReadConfig { path, lock } => {
            format!(
                "read config {}{}",
                path.display(),
                if *lock { " (locked)" } else { "" }
            )
        }
        IoRequest::WriteConfig { path, contents } => {
            format!(
                "write config {} ({} bytes) and unlock",
                path.display(),
                contents.len()
            )
        }
        IoRequest::UnlockConfig { path } => format!("unlock config {}", path.display()),
        IoRequest::WriteJob { id, contents, .. } => {
            format!("write job {id} ({} bytes)", contents.len())
        }
        IoRequest::ListJobs { clean_temps, .. } => format!(
            "list jobs{}",
            if *clean_temps { " (clean temps)" } else { "" }
        ),
        IoRequest::ReadJobs { ids, .. } => format!("read jobs [{}]", ids.join(", ")),
        IoRequest::DeleteJobs { ids, .. } => format!("delete jobs [{}]", ids.join(", ")),
        IoRequest::ProbeDirs { dirs, read, .. } => {
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            format!("probe {} reading [{}]", dirs.join(", "), read.join(", "))
        }
    }
}

fn describe_result(result: &IoResult) -> String {
    match result {
        IoResult::Config {
            result: Ok(Some(bytes)),
        } => format!("config, {} bytes", bytes.len()),
        IoResult::Config { result: Ok(None) } => "no config file".into(),
        IoResult::Config { result: Err(e) } => format!("config error: {e}"),
        IoResult::Written { result } => format!("{result:?}"),
        IoResult::JobList { result: Ok(files) } => format!("{} job files", files.len()),
        IoResult::JobList { result: Err(e) } => format!("job list error: {e}"),
        IoResult::Jobs { records } => format!("{} records", records.len()),
        IoResult::Deleted { result } => format!("deleted {result:?}"),
        IoResult::Probes { probes } => {
            let states: Vec<String> = probes
                .iter()
                .map(|p| format!("{}={:?}", p.dir.display(), p.state))
                .collect();
            format!("probes {}", states.join(", "))
        }
    }
}
