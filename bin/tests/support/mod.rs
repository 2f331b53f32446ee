//! Helpers for the end-to-end tests: scratch directories, the mock Anthropic API
//! (`fixtures/mock-anthropic/mock_anthropic.py`), the real `claude` CLI, and a raw JSON-RPC client
//! of `agent-dispatch serve`.
//!
//! Only the standard library and serde_json. Every wait has a limit, and every process started
//! here is killed when its handle drops, so a failing test never leaves a server or mock behind.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_agent-dispatch");
/// The Claude Code version CI pins (`.ci/run`).
pub const CLAUDE_VERSION: &str = "2.1.330";
/// The fake API key the mock accepts (it accepts anything).
pub const FAKE_API_KEY: &str = "sk-ant-test";

/// `<workspace>/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bin/ has a parent")
        .join("fixtures")
}

/// `fixtures/mock-anthropic/scripts/<name>`.
pub fn mock_script(name: &str) -> PathBuf {
    fixtures_dir().join("mock-anthropic/scripts").join(name)
}

// ---------------------------------------------------------------------------------------------
// scratch directories

/// A scratch directory under the system temp dir, unique per process and test, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "agent-dispatch-e2e-{}-{n}-{tag}",
            std::process::id()
        ));
        if path.exists() {
            fs::remove_dir_all(&path).expect("remove stale scratch dir");
        }
        fs::create_dir_all(&path).expect("create scratch dir");
        // Canonical, so paths the server or the CLI resolve compare equal to ours.
        let path = path.canonicalize().expect("canonicalize scratch dir");
        Scratch { path }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// `join(rel)`, created.
    pub fn dir(&self, rel: &str) -> PathBuf {
        let dir = self.join(rel);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// skipping

pub fn real_clients_required() -> bool {
    std::env::var("AGENT_DISPATCH_REQUIRE_REAL_CLIENTS").is_ok_and(|v| v == "1")
}

/// Report a missing external program: a skip locally, a failure when it is required.
pub fn skip_or_fail(test: &str, why: &str) {
    if real_clients_required() {
        panic!("{test}: AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1 but {why}");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests, and a
    // skip should be seen.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: {why} (set AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1 to make this a failure)"
    );
}

/// Finds `name` in `PATH` (or takes it as a path when it contains a `/`).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.is_file().then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The real Claude Code CLI (`CLAUDE_BIN`, else `claude` on `PATH`) and its version, or `None`
/// after reporting why it is not usable (see [`skip_or_fail`]). Needs `python3` too, for the mock.
pub fn require_claude(test: &str) -> Option<(PathBuf, String)> {
    let python = python();
    if which(&python).is_none() {
        skip_or_fail(
            test,
            &format!("`{python}` (for the mock API) is not on PATH"),
        );
        return None;
    }
    let name = std::env::var("CLAUDE_BIN").unwrap_or_else(|_| "claude".to_owned());
    let Some(claude) = which(&name) else {
        skip_or_fail(
            test,
            &format!(
                "the Claude Code CLI `{name}` was not found (CLAUDE_BIN, else claude on PATH; npm i -g @anthropic-ai/claude-code)"
            ),
        );
        return None;
    };
    let out = Command::new(&claude)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    let version = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => {
            skip_or_fail(
                test,
                &format!(
                    "`{} --version` failed ({}): {}",
                    claude.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
            return None;
        }
        Err(e) => {
            skip_or_fail(
                test,
                &format!("`{}` is not runnable: {e}", claude.display()),
            );
            return None;
        }
    };
    if !version.contains("(Claude Code)") {
        skip_or_fail(
            test,
            &format!(
                "`{} --version` printed {version:?}, not a Claude Code CLI",
                claude.display()
            ),
        );
        return None;
    }
    if real_clients_required() {
        assert!(
            version.starts_with(CLAUDE_VERSION),
            "{test}: CI pins Claude Code {CLAUDE_VERSION}, found {version:?}"
        );
    }
    Some((claude, version))
}

pub fn python() -> String {
    "python3".to_owned()
}

/// A `bin/` folder in `scratch` holding `claude` (a symlink to the given CLI), to put first on
/// the `PATH` of whatever should find this CLI as plain `claude`.
pub fn claude_path_dir(scratch: &Scratch, claude: &Path) -> PathBuf {
    let dir = scratch.dir("bin");
    let link = dir.join("claude");
    if !link.exists() {
        let target = claude.canonicalize().unwrap_or_else(|_| claude.to_owned());
        std::os::unix::fs::symlink(&target, &link).expect("symlink claude");
    }
    dir
}

/// A scratch directory for `test`, or `None` (after a skip message) without `python3`.
pub fn scratch_for(test: &str) -> Option<Scratch> {
    if which(&python()).is_none() {
        skip_or_fail(test, "python3 (for the fake claude) is not on PATH");
        return None;
    }
    Some(Scratch::new(test))
}

/// Where the fake appends one JSON line per run (`FAKE_CLAUDE_LOG`).
pub fn fake_log(scratch: &Scratch) -> PathBuf {
    scratch.join("fake-claude.log")
}

/// `dir` first, then the current `PATH`.
pub fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_owned()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).expect("PATH entries")
}

/// Removes what a test process may inherit from a Claude Code session (or a CI job) it runs
/// in and which must not leak into the servers and CLIs started here: every `CLAUDE*`,
/// `ANTHROPIC_*` and `AGENT_DISPATCH_*` variable, and `IS_SANDBOX`.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let Some(name) = key.to_str() else { continue };
        if name.starts_with("CLAUDE")
            || name.starts_with("ANTHROPIC_")
            || name.starts_with("AGENT_DISPATCH_")
            || name == "IS_SANDBOX"
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// What a `claude` needs to talk to the mock at `port` only, quietly, without retries.
pub fn mock_env(port: u16) -> Vec<(String, String)> {
    [
        ("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{port}")),
        ("ANTHROPIC_API_KEY", FAKE_API_KEY.to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("DISABLE_TELEMETRY", "1".to_owned()),
        ("DISABLE_AUTOUPDATER", "1".to_owned()),
        ("DISABLE_ERROR_REPORTING", "1".to_owned()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

// ---------------------------------------------------------------------------------------------
// the mock Anthropic API

/// A running `mock_anthropic.py` on a free port, killed on drop.
#[derive(Debug)]
pub struct MockAnthropic {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl MockAnthropic {
    /// Starts the mock with `script` (a JSON file), its port file and log in `scratch`.
    pub fn start(scratch: &Scratch, script: &Path) -> MockAnthropic {
        let dir = scratch.dir("mock");
        let port_file = dir.join("port");
        let log = dir.join("requests.jsonl");
        let mut child = Command::new(python())
            .arg(fixtures_dir().join("mock-anthropic/mock_anthropic.py"))
            .arg("--script")
            .arg(script)
            .arg("--port")
            .arg("0")
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mock_anthropic.py");
        let started = Instant::now();
        let port = loop {
            if let Ok(text) = fs::read_to_string(&port_file) {
                break text.trim().parse().expect("port file holds a number");
            }
            if let Some(status) = child.try_wait().expect("try_wait mock") {
                panic!("mock_anthropic.py exited at start ({status}); see its stderr above");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "mock_anthropic.py wrote no port file in 20 s"
            );
            thread::sleep(Duration::from_millis(10));
        };
        MockAnthropic { child, port, log }
    }

    /// The requests answered so far: one JSON object per POST /v1/messages
    /// (`n`, `matched`, `num_messages`, `last_user`, `reply`, …).
    pub fn requests(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("mock log line is JSON"))
            .collect()
    }

    /// Which rule or turn answered each request, in order (`rule:inner`, `turn:0`, `default`).
    pub fn matched(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r["matched"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        mock_env(self.port)
    }
}

impl Drop for MockAnthropic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// running processes

#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Reads a pipe to its end on a thread; the bytes so far can be taken at any time, so a
/// grandchild holding the pipe open cannot hang the test.
#[derive(Debug, Clone)]
pub struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
}

impl Collector {
    pub fn spawn<R: Read + Send + 'static>(mut pipe: R) -> Collector {
        let collector = Collector {
            buf: Arc::new(Mutex::new(Vec::new())),
            done: Arc::new(AtomicBool::new(false)),
        };
        let sink = collector.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 65536];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.buf
                    .lock()
                    .expect("collector")
                    .extend_from_slice(&chunk[..n]);
            }
            sink.done.store(true, Ordering::SeqCst);
        });
        collector
    }

    /// Waits up to `limit` for the end of the pipe, then returns what was read (lossy UTF-8).
    pub fn text_within(&self, limit: Duration) -> String {
        let started = Instant::now();
        while !self.done.load(Ordering::SeqCst) && started.elapsed() < limit {
            thread::sleep(Duration::from_millis(5));
        }
        String::from_utf8_lossy(&self.buf.lock().expect("collector")).into_owned()
    }
}

/// Runs `cmd` with a null stdin, capturing stdout and stderr, for at most `limit` (then kills it
/// and panics with what it printed).
pub fn run_limited(mut cmd: Command, limit: Duration, what: &str) -> Finished {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot spawn: {e}"));
    wait_limited(child, started, limit, what)
}

/// Waits for `child` (stdout and stderr piped), started at `started`, for at most `limit`
/// (then kills it and panics with what it printed).
pub fn wait_limited(mut child: Child, started: Instant, limit: Duration, what: &str) -> Finished {
    let out = Collector::spawn(child.stdout.take().expect("stdout is piped"));
    let err = Collector::spawn(child.stderr.take().expect("stderr is piped"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {limit:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                out.text_within(Duration::ZERO),
                err.text_within(Duration::ZERO)
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    Finished {
        status,
        stdout: out.text_within(Duration::from_secs(5)),
        stderr: err.text_within(Duration::from_secs(5)),
        elapsed,
    }
}

/// Parses stream-json output: one JSON value per non-empty line.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// agents.yaml

/// One agent of a test `agents.yaml`: its name, directory and extra YAML lines (already
/// indented by four spaces, e.g. `"    max_budget_usd: 0.0001"`).
#[derive(Debug)]
pub struct TestAgent<'a> {
    pub name: &'a str,
    pub directory: &'a Path,
    pub extra: &'a [&'a str],
}

/// Writes `scratch/agents.yaml` with these agents (60 s timeout each, cache off) and returns its
/// path.
pub fn write_agents_yaml(scratch: &Scratch, agents: &[TestAgent<'_>]) -> PathBuf {
    let mut yaml = String::from("agents:\n");
    for agent in agents {
        // A JSON string is a valid YAML scalar, quoting and all.
        let dir = Value::from(agent.directory.to_str().expect("utf-8 path")).to_string();
        yaml.push_str(&format!(
            "  {}:\n    directory: {dir}\n    description: end-to-end test agent\n    timeout: 60\n",
            agent.name
        ));
        for line in agent.extra {
            yaml.push_str(line);
            yaml.push('\n');
        }
    }
    yaml.push_str("settings:\n  max_concurrency: 4\n  cache:\n    enabled: false\n");
    let path = scratch.join("agents.yaml");
    fs::write(&path, yaml).expect("write agents.yaml");
    path
}

// ---------------------------------------------------------------------------------------------
// a raw JSON-RPC client of `agent-dispatch serve`

/// Per-request limit: the mock answers at once, so anything near this is a hang.
pub const CALL_LIMIT: Duration = Duration::from_secs(60);

/// `agent-dispatch serve` over stdio, driven line by line. Its stdin is closed and the process
/// killed (if still running after a grace period) on drop.
#[derive(Debug)]
pub struct McpServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Collector,
    next_id: i64,
    /// Every message received that was not the reply to a request (notifications, …).
    pub other: Vec<Value>,
}

impl McpServer {
    /// Starts `agent-dispatch serve` in `scratch` with `AGENT_DISPATCH_CONFIG=config`, HOME and
    /// the jobs folder inside `scratch`, and `env` on top (the children it spawns inherit all of
    /// it).
    pub fn start(scratch: &Scratch, config: &Path, env: &[(String, String)]) -> McpServer {
        McpServer::start_args(scratch, &["serve"], config, env)
    }

    /// [`McpServer::start`] with other arguments (e.g. `serve --connect`, a proxy to the daemon).
    pub fn start_args(
        scratch: &Scratch,
        args: &[&str],
        config: &Path,
        env: &[(String, String)],
    ) -> McpServer {
        let mut cmd = command_in(scratch, config, env);
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent-dispatch serve");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = Collector::spawn(child.stderr.take().expect("stderr is piped"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        McpServer {
            child,
            stdin,
            lines,
            stderr,
            next_id: 1,
            other: Vec::new(),
        }
    }

    /// Writes one message as a line.
    pub fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        let mut line = message.to_string();
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .expect("write to the server's stdin");
    }

    /// Sends a request and waits (at most `limit`) for the reply with its id; returns the whole
    /// reply (`result` or `error`). What arrived before it goes to [`McpServer::other`].
    pub fn request_within(&mut self, method: &str, params: Value, limit: Duration) -> Value {
        let id = self.send_request(method, params);
        self.reply_within(id, limit)
    }

    /// Sends a request without waiting; returns its id (see [`McpServer::lines_until`]).
    pub fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a notification (a message without an id).
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Waits (at most `limit`, else kills the server and panics) for the reply to request `id`;
    /// what arrived before it goes to [`McpServer::other`].
    pub fn reply_within(&mut self, id: i64, limit: Duration) -> Value {
        let mut lines = self.lines_until(id, limit);
        let reply = lines.pop().expect("lines_until ends with the reply");
        self.other.extend(lines);
        reply
    }

    /// Every message received until the reply to request `id`, in order, the reply last.
    /// Waits at most `limit`; then kills the server and panics with its log.
    pub fn lines_until(&mut self, id: i64, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let message: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("server stdout line is not JSON ({e}): {line:?}")
                    });
                    let is_reply = message["id"] == json!(id) && message.get("method").is_none();
                    seen.push(message);
                    if is_reply {
                        return seen;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "request id {id}: no reply within {limit:?}; server killed\nreceived meanwhile: {seen:#?}\nserver stderr:\n{}",
                        self.stderr_so_far()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "request id {id}: the server closed stdout\nserver stderr:\n{}",
                        self.stderr_so_far()
                    )
                }
            }
        }
    }

    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.request_within(method, params, CALL_LIMIT)
    }

    /// `initialize` + `notifications/initialized`; returns the initialize result.
    pub fn initialize(&mut self) -> Value {
        let reply = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "e2e-claude-test", "version": "0"},
            }),
        );
        let result = reply
            .get("result")
            .unwrap_or_else(|| panic!("initialize failed: {reply}"))
            .clone();
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        result
    }

    /// `tools/call` of `name`; returns the tool result (`content`, `structuredContent`,
    /// `isError`). A JSON-RPC error (e.g. an unknown tool) panics with the server's message.
    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        let reply = self.request("tools/call", json!({"name": name, "arguments": arguments}));
        match reply.get("result") {
            Some(result) => result.clone(),
            None => panic!("tools/call {name} was refused: {reply}"),
        }
    }

    /// `tools/call` of `name` within `limit`; returns the tool's JSON payload (see
    /// [`tool_payload`]) and its `isError`.
    pub fn call_within(&mut self, name: &str, arguments: Value, limit: Duration) -> (Value, bool) {
        let reply = self.request_within(
            "tools/call",
            json!({"name": name, "arguments": arguments}),
            limit,
        );
        let result = reply
            .get("result")
            .unwrap_or_else(|| panic!("tools/call {name} was refused: {reply}"));
        (tool_payload(result), result["isError"] == true)
    }

    /// `tools/call` of `name`; returns the tool's JSON payload (see [`tool_payload`]).
    pub fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.call_within(name, arguments, CALL_LIMIT).0
    }

    /// Writes `bytes` to the server's stdin exactly as given (no newline is added), so a test
    /// can send what no JSON encoder would: invalid UTF-8, a BOM, half a line, or one huge
    /// line in chunks.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .expect("write to the server's stdin");
    }

    /// The next message the server writes, waiting at most `limit`. Unlike
    /// [`McpServer::reply_within`] it neither panics nor kills the server: `Err` says what
    /// happened (nothing within the limit, stdout closed, a line that is not JSON).
    pub fn try_next_message(&mut self, limit: Duration) -> Result<Value, String> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => serde_json::from_str(&line)
                .map_err(|e| format!("server stdout line is not JSON ({e}): {line:?}")),
            Err(RecvTimeoutError::Timeout) => Err(format!("no message within {limit:?}")),
            Err(RecvTimeoutError::Disconnected) => Err("the server closed stdout".to_owned()),
        }
    }

    /// Waits at most `limit` for the reply whose `id` is `id` (any JSON value, `null` for a
    /// line the server could not read an id from); what arrives before it goes to
    /// [`McpServer::other`]. `Err` (the server keeps running) when none came.
    pub fn try_reply_to(&mut self, id: &Value, limit: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .try_next_message(left)
                .map_err(|e| format!("waiting for the reply to id {}: {e}", short_json(id)))?;
            if message.get("method").is_none() && message.get("id") == Some(id) {
                return Ok(message);
            }
            self.other.push(message);
        }
    }

    /// Whether the server process is still running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's memory now (see [`Memory::of`]).
    pub fn memory(&self) -> Memory {
        Memory::of(self.pid()).expect("the server is running")
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9` of the server (nothing of it runs any more: no shutdown, no cleanup), reaped.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the server wrote on stderr so far (its log).
    pub fn stderr_so_far(&self) -> String {
        self.stderr.text_within(Duration::ZERO)
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary under test as [`McpServer::start`] runs it, without arguments yet: in `scratch`,
/// with HOME and the jobs folder inside it, `AGENT_DISPATCH_CONFIG=config`, and `env` on top
/// (which may override the jobs folder). A command-line process built this way shares the
/// server's config and jobs folder.
pub fn command_in(scratch: &Scratch, config: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&scratch.path)
        .env("HOME", scratch.dir("home"))
        .env("XDG_CONFIG_HOME", scratch.join("home/.config"));
    scrub_env(&mut cmd)
        .env("AGENT_DISPATCH_JOBS_DIR", jobs_dir(scratch))
        .env("AGENT_DISPATCH_CONFIG", config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The JSON object a tool returned: `structuredContent` when it is an object, else the JSON
/// text of `content[0]`.
pub fn tool_payload(result: &Value) -> Value {
    if result["structuredContent"].is_object() {
        return result["structuredContent"].clone();
    }
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("tool result has no text content: {result}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("tool text is not JSON ({e}): {text}"))
}

/// Looks like `8-4-4-4-12` hex.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------------------------
// dispatching to a fake `claude`

/// `fixtures/bin/fake-claude-scenarios`, the fake `claude` (see its docstring for the modes).
pub fn fake_claude() -> PathBuf {
    fixtures_dir().join("bin/fake-claude-scenarios")
}

/// The jobs folder [`McpServer::start`] gives the server (`AGENT_DISPATCH_JOBS_DIR`).
pub fn jobs_dir(scratch: &Scratch) -> PathBuf {
    scratch.join("jobs")
}

/// The environment of a server whose `claude` is `claude` (`AGENT_DISPATCH_CLAUDE`), plus
/// `vars` (e.g. the `FAKE_CLAUDE_*` settings its children inherit).
pub fn claude_env(claude: &Path, vars: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![(
        "AGENT_DISPATCH_CLAUDE".to_owned(),
        claude.to_str().expect("utf-8 path").to_owned(),
    )];
    env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// Writes `scratch/agents.yaml`: each agent with its directory, a description and its
/// `extra` lines (so the timeout is the default 300 unless they set one), then `settings`
/// lines (indented by two spaces, e.g. `"  max_concurrency: 3"`); the cache is always off.
pub fn write_config(scratch: &Scratch, agents: &[TestAgent<'_>], settings: &[&str]) -> PathBuf {
    let mut yaml = String::from("agents:\n");
    for agent in agents {
        let dir = Value::from(agent.directory.to_str().expect("utf-8 path")).to_string();
        yaml.push_str(&format!(
            "  {}:\n    directory: {dir}\n    description: process test agent\n",
            agent.name
        ));
        for line in agent.extra {
            yaml.push_str(line);
            yaml.push('\n');
        }
    }
    yaml.push_str("settings:\n  cache:\n    enabled: false\n");
    for line in settings {
        yaml.push_str(line);
        yaml.push('\n');
    }
    let path = scratch.join("agents.yaml");
    fs::write(&path, yaml).expect("write agents.yaml");
    path
}

/// `s` as one single-quoted `sh` word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes the executable script `dir/name`: `#!/bin/sh` and `body`.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

/// The JSON lines of a file appended to line by line (`FAKE_CLAUDE_LOG`): a missing file is
/// empty, and a last line still being written is left out.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l:?}", path.display()))
        })
        .collect()
}

/// Polls `done` every 10 ms for at most `limit`; returns how long it took to become true,
/// or `None`.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if done() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= limit {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A process as `/proc/<pid>/stat` shows it: its state letter and process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub state: char,
    pub pgrp: u32,
}

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` when there is no such process.
    pub fn of(pid: u32) -> Option<ProcStat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let _ppid = fields.next()?;
        let pgrp = fields.next()?.parse().ok()?;
        Some(ProcStat { pid, state, pgrp })
    }

    /// Still running: a zombie (`Z`) or dead (`X`) entry has exited and only awaits reaping.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Whether `pid` is a live process (see [`ProcStat::is_live`]).
pub fn is_alive(pid: u32) -> bool {
    ProcStat::of(pid).is_some_and(|p| p.is_live())
}

/// The live members of process group `pgid`, found by scanning `/proc`.
pub fn group_members(pgid: u32) -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(ProcStat::of)
        .filter(|p| p.pgrp == pgid && p.is_live())
        .collect()
}

/// A JSON value for a message: cut after 200 characters.
pub fn short_json(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------
// memory

/// A process's resident memory from `/proc/<pid>/status`: now (`VmRSS`) and the peak since it
/// started (`VmHWM`, the high-water mark), in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    /// `None` when there is no such process (or no `/proc`).
    pub fn of(pid: u32) -> Option<Memory> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        };
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// The peak in MB (10^6 bytes), the unit of the issue's bounds.
    pub fn peak_mb(&self) -> f64 {
        self.peak_kib as f64 * 1024.0 / 1e6
    }

    /// The current resident size in MB (10^6 bytes).
    pub fn rss_mb(&self) -> f64 {
        self.rss_kib as f64 * 1024.0 / 1e6
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peak RSS {:.1} MB, RSS now {:.1} MB",
            self.peak_mb(),
            self.rss_mb()
        )
    }
}

/// Writes a line to the real stderr (libtest captures `eprintln!` of passing tests, and the
/// measured figures should be seen).
pub fn report_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
