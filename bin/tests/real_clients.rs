//! Real clients against the built `agent-dispatch` binary (design.md §7, layer 3).
//!
//! * `raw_protocol_*`: plain JSON-RPC lines over the binary's stdio. Always runs.
//! * `python_sdk_client`: the official MCP Python SDK (`pip install 'mcp<2'`) drives the
//!   agent-management tools through `tests/clients/sdk_client.py`.
//! * `claude_mcp_list_connects`: the real Claude Code CLI registers the binary with
//!   `claude mcp add-json` and health-checks it with `claude mcp list`.
//!
//! A missing Python `mcp` package or `claude` CLI skips its test with a `skipped: <why>` line
//! on stderr, unless `AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1` (set by `.ci/run`), where it is a
//! failure. `AGENT_DISPATCH_PYTHON` picks the Python interpreter (default `python3`),
//! `CLAUDE_BIN` the Claude Code CLI (default `claude`).

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::{self};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{
    real_clients_required, run_limited, skip_or_fail, wait_limited, Finished, Scratch, BIN,
};

const MANAGEMENT_TOOLS: [&str; 5] = [
    "list_agents",
    "inspect_agent",
    "add_agent",
    "update_agent",
    "remove_agent",
];
const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const CLAUDE_VERSION: &str = "2.1.330";

// ---------------------------------------------------------------------------------------------
// helpers

/// Start `agent-dispatch serve` with an isolated config, feed it `input` and close its stdin.
fn serve_raw(scratch: &Scratch, input: &str) -> Finished {
    let home = scratch.join("home");
    fs::create_dir_all(&home).expect("create home");
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(&scratch.path)
        .env("HOME", &home)
        .env("AGENT_DISPATCH_CONFIG", scratch.join("agents.yaml"))
        .env("AGENT_DISPATCH_JOBS_DIR", scratch.join("jobs"))
        .env_remove("AGENT_DISPATCH_DEPTH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agent-dispatch serve");
    let started = Instant::now();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    // Written from a thread so a server that answers before reading everything cannot deadlock us.
    let writer = thread::spawn(move || {
        let result = stdin.write_all(input.as_bytes());
        drop(stdin); // EOF: the server must answer everything, then exit 0.
        result
    });
    let finished = wait_limited(
        child,
        started,
        Duration::from_secs(20),
        "agent-dispatch serve",
    );
    writer
        .join()
        .expect("stdin writer thread")
        .expect("write requests to the server's stdin");
    finished
}

/// Every stdout line must be one JSON-RPC 2.0 message; returns them in order.
fn parse_stdout_lines(stdout: &str) -> Vec<Value> {
    assert!(
        stdout.is_empty() || stdout.ends_with('\n'),
        "stdout must end with a newline: {stdout:?}"
    );
    stdout
        .lines()
        .map(|line| {
            let msg: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            assert_eq!(msg["jsonrpc"], "2.0", "not JSON-RPC 2.0: {line}");
            msg
        })
        .collect()
}

/// Responses (messages with an `id` and no `method`), in arrival order.
fn responses(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m.get("id").is_some() && m.get("method").is_none())
        .collect()
}

fn reply_for<'a>(replies: &[&'a Value], id: &Value) -> &'a Value {
    let matching: Vec<&&Value> = replies.iter().filter(|r| &r["id"] == id).collect();
    assert_eq!(
        matching.len(),
        1,
        "expected exactly one reply with id {id}, got {matching:?}"
    );
    matching[0]
}

fn error_code(reply: &Value) -> i64 {
    reply["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error reply, got {reply}"))
}

// ---------------------------------------------------------------------------------------------
// c. raw protocol, no external client

#[test]
fn raw_protocol_smoke() {
    let scratch = Scratch::new("raw");
    let input = [
        r#"{"jsonrpc":"2.0","id":"server-discover-probe-1","method":"server/discover","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw-test","version":"0"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#,
        r#"this is not json"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"nope"}"#,
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}"#,
    ]
    .join("\n")
        + "\n";
    let done = serve_raw(&scratch, &input);
    eprintln!(
        "raw_protocol_smoke: server exited with {} after {:?}",
        done.status, done.elapsed
    );
    assert_eq!(
        done.status.code(),
        Some(0),
        "serve must exit 0 on stdin EOF; stderr:\n{}",
        done.stderr
    );

    let messages = parse_stdout_lines(&done.stdout);
    let replies = responses(&messages);
    assert_eq!(
        replies.len(),
        6,
        "one reply per request (6), none for the notification; got:\n{}\nstderr:\n{}",
        done.stdout,
        done.stderr
    );

    // server/discover: answered at once (result or error), the string id echoed.
    let discover = reply_for(&replies, &json!("server-discover-probe-1"));
    assert!(
        discover.get("result").is_some() != discover.get("error").is_some(),
        "discover reply needs exactly one of result/error: {discover}"
    );

    let init = reply_for(&replies, &json!(1));
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(
        init["result"]["serverInfo"]["name"], "agent-dispatch",
        "{init}"
    );
    assert!(
        init["result"]["serverInfo"]["version"].is_string(),
        "serverInfo.version: {init}"
    );
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "tools capability: {init}"
    );

    let list = reply_for(&replies, &json!(2));
    let tools = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list result.tools: {list}"));
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in MANAGEMENT_TOOLS {
        assert!(names.contains(&name), "tools/list lacks {name}: {names:?}");
    }

    let parse_error = replies
        .iter()
        .find(|r| r["id"].is_null())
        .unwrap_or_else(|| {
            panic!(
                "no reply with id null for the non-JSON line:\n{}",
                done.stdout
            )
        });
    assert_eq!(error_code(parse_error), -32700, "{parse_error}");

    let nope = reply_for(&replies, &json!(7));
    assert_eq!(error_code(nope), -32601, "{nope}");

    let unknown_tool = reply_for(&replies, &json!(8));
    assert_eq!(error_code(unknown_tool), -32602, "{unknown_tool}");
    assert!(
        unknown_tool["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no_such_tool")),
        "the error should name the unknown tool: {unknown_tool}"
    );
}

#[test]
fn raw_protocol_version_negotiation() {
    let scratch = Scratch::new("versions");
    for (id, version) in [(1, "2024-11-05"), (2, "2025-06-18"), (3, "1999-01-01")] {
        // One server per version: a session has exactly one initialize.
        let input = format!(
            "{}\n",
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "method": "initialize",
                "params": {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "0"},
                },
            })
        );
        let done = serve_raw(&scratch, &input);
        assert_eq!(done.status.code(), Some(0), "stderr:\n{}", done.stderr);
        let messages = parse_stdout_lines(&done.stdout);
        let replies = responses(&messages);
        let init = reply_for(&replies, &json!(id));
        let answered = init["result"]["protocolVersion"]
            .as_str()
            .unwrap_or_else(|| panic!("initialize result.protocolVersion: {init}"));
        if SUPPORTED_PROTOCOL_VERSIONS.contains(&version) {
            assert_eq!(answered, version, "a supported version is echoed");
        } else {
            assert_eq!(
                answered, SUPPORTED_PROTOCOL_VERSIONS[0],
                "an unknown version gets our latest"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// a. the MCP Python SDK

fn python() -> String {
    std::env::var("AGENT_DISPATCH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// `Ok(version)` of the importable `mcp` package, or why it is not usable.
fn python_mcp_version(python: &str) -> Result<String, String> {
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import importlib.metadata as m, mcp.client.stdio; print(m.version('mcp'))",
    ]);
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => return Err(format!("cannot run {python}: {e}")),
    };
    if !out.status.success() {
        return Err(format!(
            "the Python MCP SDK is not importable by {python} (pip install 'mcp<2'): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn step<'a>(summary: &'a Value, label: &str) -> &'a Value {
    let steps = summary["steps"].as_array().expect("summary.steps");
    let found = steps
        .iter()
        .find(|s| s["label"] == label)
        .unwrap_or_else(|| panic!("no step {label} in summary: {summary:#}"));
    assert!(
        found["exception"].is_null(),
        "{label}: the SDK raised: {}",
        found["exception"]
    );
    found
}

/// A successful tool result: JSON text in content[0], mirrored by structuredContent.
fn ok_payload<'a>(summary: &'a Value, label: &str) -> &'a Value {
    let s = step(summary, label);
    assert_eq!(s["is_error"], false, "{label} should succeed: {s:#}");
    assert_eq!(
        s["content_types"],
        json!(["text"]),
        "{label}: one text item"
    );
    assert_eq!(
        s["text_is_json"], true,
        "{label}: content[0].text is JSON: {s:#}"
    );
    let payload = &s["text_json"];
    let expected_structured = if payload.is_object() {
        payload.clone()
    } else {
        json!({ "result": payload })
    };
    assert_eq!(
        s["structured"], expected_structured,
        "{label}: structuredContent mirrors the text"
    );
    payload
}

/// A failed tool result: isError, a JSON `{"error": ...}` text that contains `needle`.
fn error_text(summary: &Value, label: &str, needle: &str) -> String {
    let s = step(summary, label);
    assert_eq!(s["is_error"], true, "{label} should fail: {s:#}");
    assert_eq!(
        s["text_is_json"], true,
        "{label}: content[0].text is JSON: {s:#}"
    );
    let message = s["text_json"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{label}: error text has an \"error\" string: {s:#}"))
        .to_owned();
    assert!(
        message.contains(needle),
        "{label}: error {message:?} should contain {needle:?}"
    );
    if !s["structured"].is_null() {
        assert_eq!(
            s["structured"], s["text_json"],
            "{label}: structuredContent mirrors the text"
        );
    }
    message
}

#[test]
fn python_sdk_client() {
    const TEST: &str = "python_sdk_client";
    let python = python();
    let sdk_version = match python_mcp_version(&python) {
        Ok(v) => v,
        Err(why) => return skip_or_fail(TEST, &why),
    };
    eprintln!("{TEST}: {python} with mcp {sdk_version}");

    let scratch = Scratch::new("sdk");
    let web = scratch.join("web");
    fs::create_dir_all(&web).expect("create web project");
    fs::create_dir_all(scratch.join("home")).expect("create home");
    fs::write(
        web.join("CLAUDE.md"),
        "# Web\n\nStorefront web app for the shop.\n",
    )
    .expect("write CLAUDE.md");
    fs::write(
        web.join("package.json"),
        r#"{"name": "web", "description": "A storefront in React"}"#,
    )
    .expect("write package.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sdk_client.py");

    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg(BIN).arg(&scratch.path);
    let done = run_limited(cmd, Duration::from_secs(120), "sdk_client.py");
    let server_stderr = fs::read_to_string(scratch.join("server-stderr.log")).unwrap_or_default();
    assert!(
        done.status.success(),
        "sdk_client.py failed ({}):\n{}\n{}\nserver stderr:\n{server_stderr}",
        done.status,
        done.stdout,
        done.stderr
    );
    let summary: Value = serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "sdk_client.py printed no JSON summary ({e}):\n{}\n{}",
            done.stdout, done.stderr
        )
    });
    assert_eq!(
        summary["completed"],
        true,
        "the SDK session did not complete: {}\nserver stderr:\n{server_stderr}",
        summary["fatal"].as_str().unwrap_or("")
    );

    // initialize
    assert_eq!(summary["server_info"]["name"], "agent-dispatch");
    let client_version = summary["client_protocol_version"]
        .as_str()
        .expect("client_protocol_version");
    if SUPPORTED_PROTOCOL_VERSIONS.contains(&client_version) {
        assert_eq!(summary["protocol_version"], client_version);
    } else {
        assert_eq!(summary["protocol_version"], SUPPORTED_PROTOCOL_VERSIONS[0]);
    }
    assert!(summary["capabilities"]["tools"].is_object());

    // tools/list
    let tools = summary["tools"].as_array().expect("summary.tools");
    for name in MANAGEMENT_TOOLS {
        let tool = tools
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("tools/list lacks {name}"));
        assert!(
            tool["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}: description"
        );
        assert_eq!(tool["inputSchema"]["type"], "object", "{name}: inputSchema");
        let annotations = &tool["annotations"];
        assert!(annotations.is_object(), "{name}: annotations: {tool:#}");
        let read_only = matches!(name, "list_agents" | "inspect_agent");
        assert_eq!(
            annotations["readOnlyHint"], read_only,
            "{name}: readOnlyHint"
        );
        if name == "remove_agent" {
            assert_eq!(
                annotations["destructiveHint"], true,
                "{name}: destructiveHint"
            );
        }
    }
    let add_props = &tools
        .iter()
        .find(|t| t["name"] == "add_agent")
        .expect("add_agent")["inputSchema"]["properties"];
    for prop in [
        "name",
        "directory",
        "description",
        "timeout",
        "max_budget_usd",
        "model",
        "permission_mode",
        "allowed_tools",
        "disallowed_tools",
    ] {
        assert!(
            add_props.get(prop).is_some(),
            "add_agent takes {prop}: {add_props:#}"
        );
    }

    let web_dir = web.to_str().expect("utf-8 path");
    let config = scratch.join("agents.yaml");

    // an empty registry lists as []
    assert_eq!(summary["config_before"]["exists"], false);
    assert_eq!(*ok_payload(&summary, "list_empty"), json!([]));

    // add_agent with an auto description
    let added = ok_payload(&summary, "add_web");
    assert_eq!(added["added"], "web", "{added:#}");
    assert_eq!(added["directory"], web_dir, "{added:#}");
    assert_eq!(
        added["description"],
        "Storefront web app for the shop. | A storefront in React | Stack: Node.js",
        "auto description from CLAUDE.md, package.json and stack markers"
    );
    let on_disk = &summary["config_after_add"];
    assert_eq!(on_disk["exists"], true, "{} written", config.display());
    assert_eq!(on_disk["mode"], 0o600, "agents.yaml is 0600");
    assert_eq!(on_disk["dir_mode"], 0o700, "in a 0700 folder");
    let text = on_disk["text"].as_str().expect("config text");
    assert!(text.contains("web:"), "config names the agent:\n{text}");
    assert!(
        text.contains(web_dir),
        "config holds the directory:\n{text}"
    );

    // list_agents with one agent
    let listed = ok_payload(&summary, "list_one");
    let entries = listed.as_array().expect("list_agents array");
    assert_eq!(entries.len(), 1, "{listed:#}");
    let entry = &entries[0];
    assert_eq!(entry["name"], "web");
    assert_eq!(entry["directory"], web_dir);
    assert_eq!(entry["healthy"], true);
    assert_eq!(entry["has_claude_md"], true);
    assert_eq!(entry["has_mcp_config"], false);
    assert_eq!(entry["stacks"], json!(["Node.js"]));
    assert_eq!(entry["description"], added["description"]);

    // inspect_agent
    let inspected = ok_payload(&summary, "inspect_web");
    assert_eq!(inspected["name"], "web");
    assert_eq!(inspected["directory"], web_dir);
    assert_eq!(inspected["timeout"], 300);
    assert!(
        inspected.get("model").is_none(),
        "no model yet: {inspected:#}"
    );
    assert_eq!(inspected["healthy"], true);
    assert_eq!(inspected["has_claude_md"], true);
    assert_eq!(inspected["has_readme"], false);
    assert_eq!(inspected["stacks"], json!(["Node.js"]));
    assert!(
        inspected["claude_md_preview"]
            .as_str()
            .is_some_and(|p| p.contains("Storefront web app for the shop.")),
        "CLAUDE.md preview: {inspected:#}"
    );

    // update_agent, then inspect again
    let updated = ok_payload(&summary, "update_web");
    assert_eq!(updated["updated"], "web", "{updated:#}");
    assert_eq!(
        updated["fields"],
        json!(["timeout", "model"]),
        "{updated:#}"
    );
    let reinspected = ok_payload(&summary, "inspect_updated");
    assert_eq!(reinspected["timeout"], 600, "{reinspected:#}");
    assert_eq!(reinspected["model"], "sonnet", "{reinspected:#}");

    // refused calls change nothing
    error_text(&summary, "add_bad_name", "Invalid agent name");
    error_text(&summary, "add_newline_name", "Invalid agent name");
    error_text(&summary, "update_negative_timeout", "timeout");
    error_text(&summary, "add_missing_dir", "Directory does not exist");
    let after_errors = summary["config_after_errors"]["text"]
        .as_str()
        .expect("config text after errors");
    assert!(!after_errors.contains("ghost"), "{after_errors}");
    assert!(!after_errors.contains("bad name"), "{after_errors}");
    assert!(after_errors.contains("timeout: 600"), "{after_errors}");

    // remove_agent, then the registry is empty again
    assert_eq!(
        *ok_payload(&summary, "remove_web"),
        json!({"removed": "web"})
    );
    assert_eq!(*ok_payload(&summary, "list_after_remove"), json!([]));
    let after_remove = &summary["config_after_remove"];
    assert_eq!(after_remove["mode"], 0o600, "still 0600 after a rewrite");
    assert!(
        !after_remove["text"]
            .as_str()
            .expect("config text after remove")
            .contains("web:"),
        "web removed from the file"
    );
    let mode = fs::metadata(&config)
        .expect("config still exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

// ---------------------------------------------------------------------------------------------
// b. Claude Code's own health check

fn claude_bin() -> String {
    std::env::var("CLAUDE_BIN").unwrap_or_else(|_| "claude".to_owned())
}

/// A `claude` command isolated in `home`, with the CLI's telemetry and updater off.
fn claude_command(claude: &str, home: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(claude);
    cmd.current_dir(cwd)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1");
    // Don't inherit the state of a Claude Code session the tests may run inside.
    for var in [
        "CLAUDECODE",
        "CLAUDE_CONFIG_DIR",
        "CLAUDE_CODE_ENTRYPOINT",
        "CLAUDE_CODE_SESSION_ID",
        "CLAUDE_CODE_SSE_PORT",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "AGENT_DISPATCH_DEPTH",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn claude_mcp_list_connects() {
    const TEST: &str = "claude_mcp_list_connects";
    let claude = claude_bin();
    let scratch = Scratch::new("claude");
    let home = scratch.join("home");
    fs::create_dir_all(&home).expect("create home");

    let mut version = claude_command(&claude, &home, &scratch.path);
    version.arg("--version");
    let version = match version.stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => {
            return skip_or_fail(
                TEST,
                &format!(
                    "`{claude} --version` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )
        }
        Err(e) => {
            return skip_or_fail(
                TEST,
                &format!("the Claude Code CLI `{claude}` is not runnable: {e}"),
            )
        }
    };
    eprintln!("{TEST}: {claude} {version}");
    if !version.contains("(Claude Code)") {
        return skip_or_fail(
            TEST,
            &format!("`{claude} --version` printed {version:?}, not a Claude Code CLI"),
        );
    }
    if real_clients_required() {
        assert!(
            version.starts_with(CLAUDE_VERSION),
            "CI pins Claude Code {CLAUDE_VERSION}, found {version:?}"
        );
    }

    let entry = json!({
        "type": "stdio",
        "command": BIN,
        "args": ["serve"],
        "env": {
            "AGENT_DISPATCH_CONFIG": scratch.join("agents.yaml"),
            "AGENT_DISPATCH_JOBS_DIR": scratch.join("jobs"),
        },
    });
    let mut add = claude_command(&claude, &home, &scratch.path);
    add.args([
        "mcp",
        "add-json",
        "agent-dispatch",
        &entry.to_string(),
        "--scope",
        "user",
    ]);
    let added = run_limited(add, Duration::from_secs(60), "claude mcp add-json");
    assert!(
        added.status.success(),
        "claude mcp add-json failed ({}):\n{}\n{}",
        added.status,
        added.stdout,
        added.stderr
    );
    assert!(
        added
            .stdout
            .contains("Added stdio MCP server agent-dispatch to user config"),
        "add-json output:\n{}",
        added.stdout
    );
    let claude_json: Value = serde_json::from_str(
        &fs::read_to_string(home.join(".claude.json")).expect("~/.claude.json written"),
    )
    .expect("~/.claude.json is JSON");
    assert_eq!(
        claude_json["mcpServers"]["agent-dispatch"]["command"], BIN,
        "user-scope entry: {claude_json:#}"
    );

    let mut list = claude_command(&claude, &home, &scratch.path);
    list.args(["mcp", "list"]);
    let listed = run_limited(list, Duration::from_secs(60), "claude mcp list");
    // Not a timed assertion, but shown even when the test passes: a figure near 3 s means the
    // CLI fell back after its `server/discover` probe went unanswered.
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: `claude mcp list` took {:.2} s",
        listed.elapsed.as_secs_f64()
    );
    assert!(
        listed.status.success(),
        "claude mcp list failed ({}):\n{}\n{}",
        listed.status,
        listed.stdout,
        listed.stderr
    );
    let line = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("agent-dispatch:"))
        .unwrap_or_else(|| {
            panic!(
                "no agent-dispatch line in `claude mcp list`:\n{}\n{}",
                listed.stdout, listed.stderr
            )
        });
    assert!(
        line.contains("Connected") && !line.contains("Failed"),
        "Claude Code could not connect: {line}"
    );
    assert!(line.contains(BIN), "the line shows our command: {line}");
}
