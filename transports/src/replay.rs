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
    ClientId, Core, DirProbe, DirState, Effect, EntryKind, Input, IoRequest, IoResult, OpId,
    Options, Timestamp,
};
use serde::Deserialize;
use serde_json::Value;

/// Where the virtual config file lives.
pub const CONFIG_PATH: &str = "/home/user/.config/agent-dispatch/agents.yaml";

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
    /// Paths that exist but are not directories.
    #[serde(default)]
    pub not_dirs: BTreeSet<PathBuf>,
    /// Paths whose examination fails with "Permission denied".
    #[serde(default)]
    pub unreadable: BTreeSet<PathBuf>,
    /// What happens, in time order.
    pub steps: Vec<Step>,
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
    /// The client closes its input.
    #[serde(default)]
    pub close: bool,
    /// The driver is told to shut down.
    #[serde(default)]
    pub shutdown: bool,
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
pub fn run(scenario: &Scenario) -> Replay {
    let mut driver = Driver::new(scenario);
    driver.feed(
        Timestamp::ZERO,
        Input::ClientConnected {
            client: ClientId(0),
        },
    );
    for step in &scenario.steps {
        let at = Timestamp::from_millis(step.at);
        if at > driver.now {
            driver.flush_io();
        }
        let client = ClientId(step.client);
        if step.connect {
            driver.feed(at, Input::ClientConnected { client });
        }
        if let Some(message) = &step.send {
            driver.feed(
                at,
                Input::ClientLine {
                    client,
                    line: message.to_string(),
                },
            );
        }
        if let Some(line) = &step.line {
            driver.feed(
                at,
                Input::ClientLine {
                    client,
                    line: line.clone(),
                },
            );
        }
        if step.close {
            driver.feed(at, Input::ClientClosed { client });
        }
        if step.shutdown {
            driver.feed(at, Input::Shutdown);
        }
    }
    driver.flush_io();
    driver.finish()
}

struct Driver {
    core: Core,
    fs: Fs,
    timeline: String,
    io_queue: VecDeque<(OpId, IoResult)>,
    requests: BTreeMap<(u64, String), usize>,
    exited: bool,
    now: Timestamp,
}

impl Driver {
    fn new(scenario: &Scenario) -> Self {
        let options = Options {
            config_path: PathBuf::from(CONFIG_PATH),
            home: PathBuf::from("/home/user"),
            cwd: PathBuf::from("/home/user"),
            seed: 7,
            unix_time_at_epoch: 1_800_000_000.0,
        };
        Driver {
            core: Core::new(options, Timestamp::ZERO),
            fs: Fs::new(scenario),
            timeline: String::new(),
            io_queue: VecDeque::new(),
            requests: BTreeMap::new(),
            exited: false,
            now: Timestamp::ZERO,
        }
    }

    /// Feeds one input and drains its effects. I/O requests are answered later, when time
    /// moves on (`flush_io`), so inputs that arrive at the same instant overlap.
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

    /// Answers every pending I/O request, and the ones those cause, as a fast disk would.
    fn flush_io(&mut self) {
        let at = self.now;
        while let Some((op, result)) = self.io_queue.pop_front() {
            self.note(
                at,
                "->",
                &format!("io {op} done: {}", describe_result(&result)),
            );
            self.core
                .handle(at, Input::IoDone { op, result })
                .unwrap_or_else(|e| panic!("driver misuse: {e}"));
            self.drain();
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
                    let result = self.fs.apply(&request);
                    self.io_queue.push_back((op, result));
                }
                Effect::Log { level, message } => {
                    self.note(now, "<-", &format!("log {level:?}: {message}"))
                }
                Effect::Exit { code } => {
                    self.note(now, "<-", &format!("exit {code}"));
                    self.exited = true;
                }
                other => panic!("the replay driver cannot execute {other:?} yet"),
            }
        }
        if let Some((at, why)) = self.core.poll_timeout() {
            assert!(
                at >= self.now,
                "deadline {at} is in the past (now {})",
                self.now
            );
            let _ = writeln!(self.timeline, "          wait until {at} ({why:?})");
        }
    }

    fn finish(mut self) -> Replay {
        assert!(self.io_queue.is_empty(), "I/O left unanswered");
        for ((client, id), replies) in &self.requests {
            assert_eq!(
                *replies, 1,
                "request {id} of client#{client} got {replies} replies"
            );
        }
        assert!(
            self.fs.lock_holders == 0,
            "config lock still held at the end"
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
        let Input::ClientLine { client, line } = input else {
            return;
        };
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let is_response = msg.get("method").is_none()
            && (msg.contains_key("result") || msg.contains_key("error"));
        if let (Some(id), false) = (msg.get("id"), is_response) {
            if id.is_string() || id.is_i64() || id.is_u64() {
                let previous = self.requests.insert((client.0, id.to_string()), 0);
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
        let count = count.unwrap_or_else(|| panic!("reply to unknown request {id}: {line}"));
        *count += 1;
    }
}

/// The in-memory file system the replay driver serves I/O from.
struct Fs {
    config: Option<String>,
    dirs: BTreeMap<PathBuf, BTreeMap<String, String>>,
    not_dirs: BTreeSet<PathBuf>,
    unreadable: BTreeSet<PathBuf>,
    lock_holders: usize,
}

impl Fs {
    fn new(scenario: &Scenario) -> Self {
        Fs {
            config: scenario.config.clone(),
            dirs: scenario.dirs.clone(),
            not_dirs: scenario.not_dirs.clone(),
            unreadable: scenario.unreadable.clone(),
            lock_holders: 0,
        }
    }

    fn apply(&mut self, request: &IoRequest) -> IoResult {
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
        }
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
        Input::Shutdown => "shutdown".into(),
        other => format!("{other:?}"),
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
        IoResult::Probes { probes } => {
            let states: Vec<String> = probes
                .iter()
                .map(|p| format!("{}={:?}", p.dir.display(), p.state))
                .collect();
            format!("probes {}", states.join(", "))
        }
    }
}
