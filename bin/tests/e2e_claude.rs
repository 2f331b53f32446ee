//! End to end with the real Claude Code CLI against our mock of the Anthropic API
//! (design.md §7, layer 4). Nothing here touches the network or needs an account.
//!
//! * `dispatch_*`: `agent-dispatch serve` is driven with raw JSON-RPC lines; the `claude` it
//!   spawns for the agent inherits the server's environment, which points it at
//!   `fixtures/mock-anthropic/mock_anthropic.py` (one mock per test, on a free port).
//! * `claude_session_dispatches_to_agent`: a real Claude Code session with our server in its
//!   `--mcp-config` calls `mcp__agent-dispatch__dispatch`; the dispatched `claude` hits the same
//!   mock, whose script tells the two sessions apart by their prompts (OUTER-PROMPT / INNER-TASK).
//! * `mock_answers_the_real_cli`, `recorded_fixtures_are_consistent`, `fake_claude_scenarios`:
//!   the harness itself (mock, `fixtures/claude/`, `fixtures/bin/fake-claude-scenarios`).
//!
//! A missing `claude` (or `python3`) skips with a `skipped: <why>` line on stderr, unless
//! `AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1` (set by `.ci/run`), where it is a failure. `CLAUDE_BIN`
//! picks the CLI (default `claude` on PATH).

mod support;

use std::fs;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use support::*;

const AGENT: &str = "helper";

/// A server with one agent (`helper`, an empty directory) whose `claude` talks to a fresh mock.
/// Fields drop in order: the server first, then the mock, then the scratch directory.
struct Harness {
    server: McpServer,
    mock: MockAnthropic,
    agent_dir: std::path::PathBuf,
    _scratch: Scratch,
}

impl Harness {
    /// `None` (after a skip message) when the real CLI is not available.
    fn start(test: &str, script: &str, agent_extra: &[&str]) -> Option<Harness> {
        let (claude, version) = require_claude(test)?;
        eprintln!("{test}: {} {version}", claude.display());
        let scratch = Scratch::new(test);
        let mock = MockAnthropic::start(&scratch, &mock_script(script));
        let agent_dir = scratch.dir("agent");
        let config = write_agents_yaml(
            &scratch,
            &[TestAgent {
                name: AGENT,
                directory: &agent_dir,
                extra: agent_extra,
            }],
        );
        let mut env = mock.env();
        let path = path_with(&claude_path_dir(&scratch, &claude));
        env.push(("PATH".to_owned(), path.to_string_lossy().into_owned()));
        let mut server = McpServer::start(&scratch, &config, &env);
        server.initialize();
        Some(Harness {
            server,
            mock,
            agent_dir,
            _scratch: scratch,
        })
    }

    /// Calls a dispatch tool and returns its JSON payload.
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let result = self.server.call_tool(tool, arguments);
        tool_payload(&result)
    }

    /// Context for a failed assertion: the payload, what the mock answered, the server's log.
    fn explain(&self, payload: &Value) -> String {
        format!(
            "payload: {payload:#}\nmock requests: {:#?}\nserver stderr:\n{}",
            self.mock.matched(),
            self.server.stderr_so_far()
        )
    }
}

fn session_id_of(payload: &Value) -> String {
    let sid = payload["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session_id in {payload:#}"));
    assert!(is_uuid(sid), "session_id is a UUID: {sid:?}");
    sid.to_owned()
}

// ---------------------------------------------------------------------------------------------
// the dispatch tools, through the real CLI

#[test]
fn dispatch_success() {
    let Some(mut h) = Harness::start("dispatch_success", "say-hi.json", &[]) else {
        return;
    };
    let payload = h.call("dispatch", json!({"agent": AGENT, "task": "say hi"}));
    let why = h.explain(&payload);
    assert_eq!(payload["agent"], AGENT, "{why}");
    assert_eq!(payload["success"], true, "{why}");
    assert_eq!(payload["result"], "hi", "{why}");
    assert!(payload.get("error_type").is_none(), "{why}");
    session_id_of(&payload);
    assert!(
        h.mock.matched().iter().any(|m| m == "default"),
        "the agent's claude reached the mock: {why}"
    );
}

#[test]
fn dispatch_denied_tool() {
    // Default permission mode: `touch hi.txt` needs approval, which `-p` denies.
    let Some(mut h) = Harness::start("dispatch_denied_tool", "bash-touch.json", &[]) else {
        return;
    };
    let payload = h.call("dispatch", json!({"agent": AGENT, "task": "create hi.txt"}));
    let why = h.explain(&payload);
    assert_eq!(
        payload["success"], true,
        "a denial does not fail the run: {why}"
    );
    assert_eq!(
        payload["result"], "I was not allowed to create hi.txt.",
        "{why}"
    );
    assert_eq!(payload["denied_tools"], json!(["Bash"]), "{why}");
    assert!(payload.get("error_type").is_none(), "{why}");
    let hint = payload["hint"]
        .as_str()
        .unwrap_or_else(|| panic!("a hint about the denial: {why}"));
    assert!(hint.contains("Bash"), "the hint names the tool: {hint}");
    assert!(
        !h.agent_dir.join("hi.txt").exists(),
        "the denied command did not run"
    );
}

#[test]
fn dispatch_budget_stop() {
    // The mock reports 1M input tokens; the agent's cap is $0.0001.
    let Some(mut h) = Harness::start(
        "dispatch_budget_stop",
        "budget.json",
        &["    max_budget_usd: 0.0001"],
    ) else {
        return;
    };
    let payload = h.call("dispatch", json!({"agent": AGENT, "task": "say something"}));
    let why = h.explain(&payload);
    assert_eq!(payload["success"], false, "{why}");
    assert_eq!(payload["error_type"], "budget", "{why}");
    assert_eq!(payload["budget_exceeded"], true, "{why}");
    session_id_of(&payload);
}

#[test]
fn dispatch_session_resume() {
    let Some(mut h) = Harness::start("dispatch_session_resume", "session.json", &[]) else {
        return;
    };
    let first = h.call(
        "dispatch_session",
        json!({"agent": AGENT, "task": "remember the word BANANA"}),
    );
    let why = h.explain(&first);
    assert_eq!(first["success"], true, "{why}");
    assert_eq!(
        first["result"], "OK, I will remember the word BANANA.",
        "{why}"
    );
    let sid = session_id_of(&first);

    let second = h.call(
        "dispatch_session",
        json!({
            "agent": AGENT,
            "task": "what word did I ask you to remember?",
            "session_id": sid,
        }),
    );
    let why = h.explain(&second);
    assert_eq!(second["success"], true, "{why}");
    // The mock's rule `remembers` needs the first exchange in the request's history.
    assert_eq!(second["result"], "Resumed: the word was BANANA.", "{why}");
    assert_eq!(
        second["session_id"],
        sid.as_str(),
        "the same session: {why}"
    );
    assert_eq!(h.mock.matched(), ["rule:first", "rule:remembers"], "{why}");
}

// ---------------------------------------------------------------------------------------------
// a real Claude Code session calling our dispatch tool

#[test]
fn claude_session_dispatches_to_agent() {
    const TEST: &str = "claude_session_dispatches_to_agent";
    const TOOL: &str = "mcp__agent-dispatch__dispatch";
    let Some((claude, version)) = require_claude(TEST) else {
        return;
    };
    eprintln!("{TEST}: {} {version}", claude.display());
    let scratch = Scratch::new("outer");
    let mock = MockAnthropic::start(&scratch, &mock_script("mcp-dispatch.json"));
    let agent_dir = scratch.dir("agent");
    let outer_dir = scratch.dir("outer");
    let home = scratch.dir("home");
    let config = write_agents_yaml(
        &scratch,
        &[TestAgent {
            name: AGENT,
            directory: &agent_dir,
            extra: &[],
        }],
    );

    // The server gets the mock's variables both ways: inherited from the session and in its
    // entry's env, so the dispatched claude reaches the mock whatever Claude Code passes on.
    let mut server_env = serde_json::Map::new();
    server_env.insert("AGENT_DISPATCH_CONFIG".into(), json!(config));
    server_env.insert(
        "AGENT_DISPATCH_JOBS_DIR".into(),
        json!(scratch.join("jobs")),
    );
    for (k, v) in mock.env() {
        server_env.insert(k, json!(v));
    }
    let mcp_config = json!({"mcpServers": {"agent-dispatch": {
        "type": "stdio",
        "command": BIN,
        "args": ["serve"],
        "env": server_env,
    }}});
    let mcp_config_path = scratch.join("mcp.json");
    fs::write(&mcp_config_path, mcp_config.to_string()).expect("write mcp.json");

    let mut cmd = Command::new(&claude);
    cmd.current_dir(&outer_dir)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("PATH", path_with(&claude_path_dir(&scratch, &claude)));
    scrub_env(&mut cmd);
    cmd.envs(mock.env());
    cmd.arg("-p")
        .arg("OUTER-PROMPT: use the dispatch tool to ask the helper agent for the secret fruit.")
        .arg("--mcp-config")
        .arg(&mcp_config_path)
        .arg("--strict-mcp-config")
        .args(["--allowedTools", TOOL])
        .args(["--output-format", "stream-json", "--verbose"]);
    let done = run_limited(cmd, Duration::from_secs(60), "outer claude session");
    let why = format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}\nmock requests: {:#?}",
        done.status,
        done.stdout,
        done.stderr,
        mock.requests()
    );
    let lines = json_lines(&done.stdout);

    let init = lines
        .iter()
        .find(|l| l["type"] == "system" && l["subtype"] == "init")
        .unwrap_or_else(|| panic!("no system/init line: {why}"));
    assert!(
        init["mcp_servers"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "agent-dispatch")),
        "the session knows our server: {why}"
    );

    let tool_use_id = lines
        .iter()
        .filter(|l| l["type"] == "assistant")
        .flat_map(|l| {
            l["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|b| b["type"] == "tool_use" && b["name"] == TOOL)
        .and_then(|b| b["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("the outer model called no {TOOL}: {why}"));
    let tool_result = lines
        .iter()
        .filter(|l| l["type"] == "user")
        .flat_map(|l| {
            l["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == tool_use_id.as_str())
        .unwrap_or_else(|| panic!("no tool_result for {tool_use_id}: {why}"));
    assert_ne!(tool_result["is_error"], true, "{why}");
    let content = match &tool_result["content"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert!(
        content.contains("PAPAYA-42"),
        "the tool_result carries the dispatched agent's answer: {content}\n{why}"
    );

    let result = lines
        .iter()
        .rfind(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("no result line: {why}"));
    assert_eq!(result["is_error"], false, "{why}");
    assert_eq!(
        result["result"], "The helper agent answered: PAPAYA-42.",
        "{why}"
    );
    assert_eq!(done.status.code(), Some(0), "{why}");
    let matched = mock.matched();
    for rule in ["rule:outer-first", "rule:inner", "rule:outer-final"] {
        assert!(
            matched.iter().any(|m| m == rule),
            "the mock answered with {rule}: {why}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// the harness itself

/// The mock speaks the streaming Messages API well enough for the real CLI (no dispatch
/// engine needed), and a `--session-id` is kept.
#[test]
fn mock_answers_the_real_cli() {
    const TEST: &str = "mock_answers_the_real_cli";
    let Some((claude, version)) = require_claude(TEST) else {
        return;
    };
    eprintln!("{TEST}: {} {version}", claude.display());
    let scratch = Scratch::new("mock-cli");
    let mock = MockAnthropic::start(&scratch, &mock_script("bash-echo.json"));
    let home = scratch.dir("home");
    let sid = "5e551000-0000-4000-8000-0000000000e2";
    let mut cmd = Command::new(&claude);
    cmd.current_dir(scratch.dir("work")).env("HOME", &home);
    scrub_env(&mut cmd);
    cmd.envs(mock.env())
        .env("IS_SANDBOX", "1")
        .args(["-p", "run echo hi", "--output-format", "stream-json"])
        .args(["--verbose", "--permission-mode", "bypassPermissions"])
        .args(["--session-id", sid]);
    let done = run_limited(cmd, Duration::from_secs(60), "claude against the mock");
    let why = format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}\nmock requests: {:#?}",
        done.status,
        done.stdout,
        done.stderr,
        mock.requests()
    );
    let lines = json_lines(&done.stdout);
    let result = lines
        .last()
        .filter(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("the last line is the result: {why}"));
    assert_eq!(result["is_error"], false, "{why}");
    assert_eq!(result["result"], "The command printed: hi", "{why}");
    assert_eq!(result["session_id"], sid, "{why}");
    assert_eq!(result["num_turns"], 2, "{why}");
    assert_eq!(done.status.code(), Some(0), "{why}");
    assert_eq!(
        mock.matched(),
        ["turn:0", "rule:after-tool-result"],
        "{why}"
    );
    let tool_result = mock.requests()[1]["last_user"].clone();
    assert!(
        tool_result.as_str().is_some_and(|t| t.contains("hi")),
        "the Bash output went back to the model: {tool_result}"
    );
}

/// Every recorded case in `fixtures/claude/` is complete and scrubbed: stdout is stream-json
/// with at most one `result` line (the last), whose `is_error` agrees with the exit code and
/// whose `session_id` is the fixed one from the command line.
#[test]
fn recorded_fixtures_are_consistent() {
    let dir = fixtures_dir().join("claude");
    let mut cases = 0;
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .expect("fixtures/claude exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for meta_path in entries {
        let Some(name) = meta_path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".meta.json"))
        else {
            continue;
        };
        cases += 1;
        let meta: Value = serde_json::from_str(&fs::read_to_string(&meta_path).expect("read meta"))
            .expect("meta is JSON");
        let stdout = fs::read_to_string(dir.join(format!("{name}.stdout.jsonl")))
            .unwrap_or_else(|e| panic!("{name}.stdout.jsonl: {e}"));
        let stderr = fs::read_to_string(dir.join(format!("{name}.stderr")))
            .unwrap_or_else(|e| panic!("{name}.stderr: {e}"));
        for text in [&stdout, &stderr] {
            assert!(
                !text.contains("ad-rec.") && !text.contains("ad-rec-session."),
                "{name}: a temp path survived the scrub"
            );
        }
        let argv: Vec<&str> = meta["argv"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: meta.argv"))
            .iter()
            .map(|a| a.as_str().expect("argv strings"))
            .collect();
        assert_eq!(argv[..2], ["claude", "-p"], "{name}: argv");
        assert!(
            argv.windows(3)
                .any(|w| w == ["--output-format", "stream-json", "--verbose"]),
            "{name}: stream-json argv"
        );
        let sid = argv
            .windows(2)
            .find(|w| w[0] == "--session-id" || w[0] == "--resume")
            .map(|w| w[1])
            .unwrap_or_else(|| panic!("{name}: a fixed session id in argv"));
        let exit = meta["exit"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: meta.exit"));
        assert!(
            meta["notes"].as_str().is_some_and(|n| !n.is_empty()),
            "{name}: notes"
        );

        let lines = json_lines(&stdout);
        assert_eq!(
            lines[0]["type"], "system",
            "{name}: starts with system/init"
        );
        assert_eq!(
            lines[0]["subtype"], "init",
            "{name}: starts with system/init"
        );
        let results: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l["type"] == "result")
            .map(|(i, _)| i)
            .collect();
        if exit == 143 {
            assert!(results.is_empty(), "{name}: killed, so no result line");
            continue;
        }
        assert_eq!(results, [lines.len() - 1], "{name}: one result, last");
        let result = &lines[lines.len() - 1];
        assert_eq!(
            result["is_error"],
            exit != 0,
            "{name}: is_error agrees with exit {exit}"
        );
        assert_eq!(result["session_id"], sid, "{name}: the fixed session id");
    }
    assert!(cases >= 11, "expected the recorded cases, found {cases}");
}

fn fake_claude(mode: &str, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut cmd = Command::new(fixtures_dir().join("bin/fake-claude-scenarios"));
    cmd.args(args).env("FAKE_CLAUDE_MODE", mode);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_limited(
        cmd,
        Duration::from_secs(30),
        &format!("fake-claude-scenarios {mode}"),
    )
}

/// The last stdout line of a fake run, which must be its result.
fn fake_result(done: &Finished) -> Value {
    let last = done
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {done:?}"));
    let result: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(result["type"], "result", "{last}");
    result
}

/// The quick modes of `fixtures/bin/fake-claude-scenarios` do what its header says.
#[test]
fn fake_claude_scenarios() {
    if which(&python()).is_none() {
        return skip_or_fail("fake_claude_scenarios", "python3 is not on PATH");
    }
    let sid = "5e551000-0000-4000-8000-0000000000fc";

    let done = fake_claude("success", &["-p", "x", "--session-id", sid], &[]);
    assert_eq!(done.status.code(), Some(0));
    let result = fake_result(&done);
    assert_eq!(result["result"], "fake success");
    assert_eq!(result["session_id"], sid);

    let scratch = Scratch::new("fake");
    let cwd = scratch.dir("cwd");
    let mut cmd = Command::new(fixtures_dir().join("bin/fake-claude-scenarios"));
    cmd.args(["-p", "what reached me", "--resume", sid])
        .current_dir(&cwd)
        .env("FAKE_CLAUDE_MODE", "echo")
        .env("FAKE_E2E_MARKER", "42");
    let done = run_limited(cmd, Duration::from_secs(30), "fake echo");
    let result = fake_result(&done);
    assert_eq!(result["session_id"], sid, "--resume gives the session id");
    let echoed: Value =
        serde_json::from_str(result["result"].as_str().expect("result text")).expect("echo JSON");
    assert_eq!(
        echoed["argv"],
        json!(["-p", "what reached me", "--resume", sid])
    );
    assert_eq!(echoed["cwd"], cwd.to_str().expect("utf-8"));
    assert_eq!(echoed["env"]["FAKE_E2E_MARKER"], "42");
    assert_eq!(
        echoed["stdin"]["kind"], "devnull",
        "run_limited gives a null stdin"
    );

    let done = fake_claude("crash", &[], &[]);
    assert_eq!(done.status.code(), Some(1));
    assert!(!done.stdout.ends_with('\n'), "stops mid-line");
    assert!(!done.stdout.contains("\"result\""), "no result line");
    assert_eq!(done.stderr, "fake-claude: crashed\n");

    let done = fake_claude("garbage", &[], &[]);
    assert_eq!(done.status.code(), Some(0));
    assert!(done.stdout.contains('\u{FFFD}'), "invalid UTF-8 on stdout");
    assert_eq!(fake_result(&done)["result"], "fake success after garbage");

    let done = fake_claude("stderr-flood", &[], &[("FAKE_CLAUDE_BYTES", "1048576")]);
    assert_eq!(done.stderr.len(), 1 << 20);
    assert_eq!(fake_result(&done)["is_error"], false);

    let done = fake_claude("error", &[], &[]);
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(fake_result(&done)["is_error"], true);

    let fixture = fixtures_dir().join("claude/budget");
    let done = fake_claude(
        "replay",
        &[],
        &[("FAKE_CLAUDE_FIXTURE", fixture.to_str().expect("utf-8"))],
    );
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(fake_result(&done)["subtype"], "error_max_budget_usd");

    let done = fake_claude("no-such-mode", &[], &[]);
    assert_eq!(done.status.code(), Some(64));
    assert!(done.stderr.contains("unknown mode"), "{}", done.stderr);
}
