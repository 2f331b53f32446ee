//! The std-only host in `examples/blocking_host.rs`, run as a real MCP server: initialize,
//! tools/list, add_agent, and dispatches against a fake `claude` (a sh script written here).

// A test drives real files and processes, which `core/clippy.toml` forbids inside the core;
// and in a test a panic is a failure with a backtrace, helpers included.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long any one reply may take (a dispatch of the fake takes milliseconds).
const REPLY_LIMIT: Duration = Duration::from_secs(20);

/// The example's binary, built fresh (once per test run). Tests run from
/// `target/<profile>/deps/`; examples land in `target/<profile>/examples/`. A full `cargo test`
/// builds examples anyway, but `cargo test --test blocking_host` does not, so ask Cargo (a
/// no-op when up to date).
fn example_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = (exe.parent().and_then(Path::parent)).expect("target/<profile>/deps");
        let profile = profile_dir.file_name().and_then(|name| name.to_str());
        // `target/debug` holds the dev profile; other folders are named after theirs.
        let profile = match profile.expect("a profile folder") {
            "debug" => "dev",
            other => other,
        };
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--example",
                "blocking_host",
                "--profile",
                profile,
            ])
            .args(["--package", env!("CARGO_PKG_NAME")])
            .status()
            .expect("run cargo");
        assert!(
            status.success(),
            "cargo build --example blocking_host failed"
        );
        let binary = profile_dir.join("examples").join("blocking_host");
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "agent-dispatch-blocking-host-{}-{tag}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir.canonicalize().unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes an executable sh script.
fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The example running as an MCP server over pipes; killed on drop if still running.
struct Server {
    child: Child,
    /// The example's stderr (its logs), shown when a test fails.
    log: PathBuf,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
}

impl Server {
    fn start(scratch: &Path, claude: &Path) -> Server {
        let log = scratch.join("server.log");
        let mut child = Command::new(example_binary())
            .env("HOME", scratch)
            .env("AGENT_DISPATCH_CONFIG", scratch.join("config/agents.yaml"))
            .env("AGENT_DISPATCH_CLAUDE", claude)
            .env("AGENT_DISPATCH_DEPTH", "0")
            .env_remove("AGENT_DISPATCH_JOBS_DIR")
            .current_dir(scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Server {
            child,
            log,
            stdin,
            lines,
            next_id: 1,
        }
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a request and returns its reply, skipping notifications.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + REPLY_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = (self.lines.recv_timeout(left))
                .unwrap_or_else(|err| panic!("no reply to {method} ({err})"));
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("stdout line is not JSON ({err}): {line}"));
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    /// Calls a tool; returns its `structuredContent` and `isError`.
    fn call(&mut self, tool: &str, arguments: Value) -> (Value, bool) {
        let reply = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        let result = &reply["result"];
        assert!(result.is_object(), "{tool}: no result in {reply}");
        let text = result["content"][0]["text"].as_str().expect("text content");
        let parsed: Value = serde_json::from_str(text).expect("text content is JSON");
        assert_eq!(
            parsed, result["structuredContent"],
            "{tool}: text and structure differ"
        );
        (parsed, result["isError"] == json!(true))
    }

    /// Closes stdin (EOF: the client left) and returns the exit code.
    fn finish(mut self) -> Option<i32> {
        drop(self.stdin.take());
        let deadline = Instant::now() + REPLY_LIMIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("the example did not exit after stdin closed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- blocking_host stderr ---\n{log}");
        }
    }
}

/// Starts a server with an initialized session and one agent, `proj`, timing out after
/// `timeout` seconds.
fn session(scratch: &Scratch, claude_body: &str, timeout: u64) -> Server {
    let claude = scratch.0.join("fake-claude");
    script(&claude, claude_body);
    let project = scratch.0.join("proj");
    fs::create_dir_all(&project).unwrap();
    fs::write(project.join("CLAUDE.md"), "# proj\nA project for tests.\n").unwrap();

    let mut server = Server::start(&scratch.0, &claude);
    let init = server.request(
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "blocking-host-test", "version": "0"},
        }),
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let (added, is_error) = server.call(
        "add_agent",
        json!({"name": "proj", "directory": project.to_str().unwrap(), "timeout": timeout}),
    );
    assert!(!is_error, "add_agent: {added}");
    assert_eq!(added["added"], "proj");
    // Written atomically by the example, 0600.
    let config = scratch.0.join("config/agents.yaml");
    let mode = fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", config.display());
    server
}

#[test]
fn serves_mcp_and_dispatches_to_a_fake_claude() {
    let scratch = Scratch::new("dispatch");
    // One stream-json result line on stdout, a word on stderr, and proof of the cwd and depth.
    let mut server = session(
        &scratch,
        r#"echo "fake claude in $PWD at depth $AGENT_DISPATCH_DEPTH" >&2
echo "$PWD $AGENT_DISPATCH_DEPTH" > ../ran
echo '{"type":"result","subtype":"success","is_error":false,"result":"hello from fake","session_id":"6f1c1b5e-2f4a-4c1e-9a43-0c6d2b7e8f10","total_cost_usd":0,"num_turns":1,"duration_ms":1}'
"#,
        60,
    );

    let list = server.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().expect("tools array");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for expected in ["list_agents", "add_agent", "dispatch", "dispatch_async"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    let (result, is_error) = server.call("dispatch", json!({"agent": "proj", "task": "say hi"}));
    assert!(!is_error, "dispatch: {result}");
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["result"], "hello from fake", "{result}");
    assert_eq!(result["session_id"], "6f1c1b5e-2f4a-4c1e-9a43-0c6d2b7e8f10");
    let ran = fs::read_to_string(scratch.0.join("ran")).unwrap();
    let proj = scratch.0.join("proj");
    assert_eq!(ran.trim(), format!("{} 1", proj.display()), "cwd and depth");

    // A background job: its record goes through the example's job-file code.
    let (job, is_error) = server.call("dispatch_async", json!({"agent": "proj", "task": "bg"}));
    assert!(!is_error, "dispatch_async: {job}");
    let job_id = job["job_id"].as_str().expect("job_id").to_owned();
    let (done, _) = server.call(
        "dispatch_wait",
        json!({"job_id": job_id, "timeout_seconds": 10}),
    );
    assert_eq!(done["status"], "done", "{done}");
    let record = scratch.0.join(format!("config/jobs/{job_id}.json"));
    assert_eq!(
        fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let record: Value = serde_json::from_str(&fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(record["status"], "done", "{record}");

    assert_eq!(server.finish(), Some(0));
}

#[test]
fn a_timed_out_run_loses_its_whole_process_group() {
    let scratch = Scratch::new("timeout");
    // The fake leaves a grandchild in its group, records its pid, then hangs.
    let mut server = session(
        &scratch,
        "sleep 30 &\necho $! > ../grandchild\nsleep 30\n",
        1,
    );
    let started = Instant::now();
    let (result, _) = server.call("dispatch", json!({"agent": "proj", "task": "hang"}));
    assert_eq!(result["success"], false, "{result}");
    assert_eq!(result["error_type"], "timeout", "{result}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "TERM did not stop it"
    );
    // The grandchild got the group's SIGTERM too (it may linger a moment as a zombie).
    let grandchild = fs::read_to_string(scratch.0.join("grandchild")).unwrap();
    let state = fs::read_to_string(format!("/proc/{}/stat", grandchild.trim()));
    let gone = state.map_or(true, |stat| stat.contains(") Z "));
    assert!(gone, "grandchild {} still running", grandchild.trim());

    assert_eq!(server.finish(), Some(0));
}
