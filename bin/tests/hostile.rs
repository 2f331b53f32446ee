//! Hostile input (issue #8, part 4), against the built `agent-dispatch serve` over stdio.
//!
//! `hostile_lines_in_one_session` is one server session that receives well over 300 hostile
//! lines in sequence and must answer each one precisely (the JSON-RPC code, the id, the
//! message) and keep serving: JSON nested 10 to 100 000 deep, a client line over the 64 MiB
//! cap (written in chunks, never held whole by the test), invalid UTF-8, byte-order marks, ids
//! of every JSON type, wrong `jsonrpc` versions, arguments of the wrong type for every
//! parameter of every tool (generated from `tools/list`), unknown tools, method names with
//! control characters, 10 000 pipelined pings (answered in order), a 1 MiB task, flag-looking
//! values in every structured field (refused, or reaching the fake `claude` only inside the
//! prompt: its logged argv is parsed flag by flag), path-looking job ids in every job tool
//! (refused, and the planted files they point at are neither changed nor read), and an
//! `agents.yaml` rewritten between calls with hostile values (huge numbers and strings,
//! 10 000 agents, deep nesting, an alias bomb). A line that needs no reply is followed by a
//! ping whose reply must come next. Every problem is collected and reported together at the
//! end, followed by the server's peak RSS (`VmHWM`), which must stay under 100 MB.
//!
//! The other tests each need their own server: a child printing one 64 MiB stdout line (with
//! `settings.limits.max_line_bytes` at 1 MiB the peak RSS must stay under 100 MB; with the
//! default it is only printed), the client line cap following `settings.limits.max_line_bytes`
//! (as `core/src/config/mod.rs` documents), and `agents.yaml` files that cost far more than
//! their size or never end: aliases amplifying an 8 KB file to a million nodes, a flow
//! sequence nested 100 000 deep, a FIFO. Each must be answered (refused) within 5 s and,
//! where memory is measured, under 100 MB. Measured figures go to stderr.
//!
//! The session's fake `claude` is `fixtures/bin/fake-claude-scenarios` (Python) in echo mode:
//! without `python3` that test prints `skipped: <why>` (a failure with
//! `AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1`). The other fakes are small `sh` scripts.

mod support;

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use agent_dispatch_core::config::{py_repr, validate_agent_name};
use agent_dispatch_core::jobs::job_id_error;
use serde_json::{json, Value};

use support::*;

const AGENT: &str = "helper";

/// The issue's bound on the server's peak RSS: 100 MB (10^6 bytes).
const PEAK_BOUND_KIB: u64 = 100_000_000 / 1024;

/// How long any one reply may take (generous for a loaded 2-core machine; most are instant).
const REPLY_LIMIT: Duration = Duration::from_secs(30);

/// The client line cap.
const CLIENT_CAP: usize = agent_dispatch_transports::MAX_LINE;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

// ---------------------------------------------------------------------------------------------
// the rig

/// The `helper` agent in `scratch/agent`, the cache off, plus `settings` lines.
fn helper_config(scratch: &Scratch, settings: &[&str]) -> PathBuf {
    let agent_dir = scratch.dir("agent");
    write_config(
        scratch,
        &[TestAgent {
            name: AGENT,
            directory: &agent_dir,
            extra: &[],
        }],
        settings,
    )
}

/// What a message should say: exactly this, or starting with or containing these pieces.
#[derive(Debug, Clone)]
enum Msg {
    Exact(String),
    Starts(String),
    Has(Vec<String>),
}

impl Msg {
    fn exact(s: impl Into<String>) -> Msg {
        Msg::Exact(s.into())
    }

    fn starts(s: impl Into<String>) -> Msg {
        Msg::Starts(s.into())
    }

    fn has(pieces: &[&str]) -> Msg {
        Msg::Has(pieces.iter().map(|p| (*p).to_owned()).collect())
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Msg::Exact(s) => text == s,
            Msg::Starts(s) => text.starts_with(s.as_str()),
            Msg::Has(pieces) => pieces.iter().all(|p| text.contains(p.as_str())),
        }
    }
}

/// One server session fed hostile lines; problems are collected, not raised at once, so one
/// run reports every line that was answered wrongly.
struct Session {
    server: McpServer,
    failures: Vec<String>,
    /// Hostile lines sent (the 10 000 pipelined pings are counted separately).
    lines: usize,
    next_id: u64,
    /// What each phase cost, for the report.
    phases: Vec<(String, Duration, Memory)>,
    phase_started: Instant,
}

impl Session {
    fn new(server: McpServer) -> Session {
        Session {
            server,
            failures: Vec::new(),
            lines: 0,
            next_id: 1,
            phases: Vec::new(),
            phase_started: Instant::now(),
        }
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(what());
        }
    }

    /// A fresh request id (a string, so it can never collide with the ids under test).
    fn id(&mut self) -> Value {
        self.next_id += 1;
        json!(format!("h{}", self.next_id))
    }

    /// Sends `bytes` and a newline as one hostile line.
    fn line(&mut self, bytes: &[u8]) {
        let mut line = Vec::with_capacity(bytes.len() + 1);
        line.extend_from_slice(bytes);
        line.push(b'\n');
        self.server.send_raw(&line);
        self.lines += 1;
    }

    /// The reply to `id`, or a recorded failure.
    fn reply(&mut self, what: &str, id: &Value) -> Option<Value> {
        match self.server.try_reply_to(id, REPLY_LIMIT) {
            Ok(reply) => Some(reply),
            Err(e) => {
                let log = self.server.stderr_so_far();
                let tail = &log[log.len().saturating_sub(2000)..];
                self.fail(format!("{what}: {e}\nserver stderr (tail):\n{tail}"));
                None
            }
        }
    }

    /// Sends a hostile line; its reply (to `id`, `null` when the server cannot know it) must
    /// be the JSON-RPC error `code` with a message matching `msg`.
    fn expect_error(&mut self, what: &str, bytes: &[u8], id: Value, code: i64, msg: &Msg) {
        self.line(bytes);
        let Some(reply) = self.reply(what, &id) else {
            return;
        };
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        let ok = reply["jsonrpc"] == "2.0"
            && reply["error"]["code"] == code
            && msg.matches(message)
            && reply.get("result").is_none();
        self.check(ok, || {
            format!(
                "{what}: expected error {code} with message {msg:?} (id {}), got {}",
                short_json(&id),
                short_json(&reply)
            )
        });
    }

    /// Sends a hostile line whose reply to `id` must be the result `result`.
    fn expect_result(&mut self, what: &str, bytes: &[u8], id: Value, result: &Value) {
        self.line(bytes);
        let Some(reply) = self.reply(what, &id) else {
            return;
        };
        let ok = reply["jsonrpc"] == "2.0" && &reply["result"] == result;
        self.check(ok, || {
            format!(
                "{what}: expected result {result} (id {}), got {}",
                short_json(&id),
                short_json(&reply)
            )
        });
    }

    /// Sends a hostile line that deserves no reply, then a ping: the ping's reply must be
    /// the next message.
    fn expect_silence(&mut self, what: &str, bytes: &[u8]) {
        self.line(bytes);
        let id = self.id();
        self.server
            .send(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
        match self.server.try_next_message(REPLY_LIMIT) {
            Ok(m) if m["id"] == id && m["result"] == json!({}) => {}
            Ok(m) => {
                self.fail(format!("{what}: no reply expected, got {}", short_json(&m)));
                // Resynchronise on the ping's reply.
                let _ = self.reply(what, &id);
            }
            Err(e) => self.fail(format!("{what}: the ping after it: {e}")),
        }
    }

    /// Sends `request` (with a fresh id) as one line; returns its reply.
    fn request(&mut self, what: &str, method: &str, params: Value) -> Option<Value> {
        let id = self.id();
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.line(line.to_string().as_bytes());
        self.reply(what, &id)
    }

    /// A tool call as one line: its JSON payload and `isError`, or a recorded failure.
    fn tool(&mut self, what: &str, name: &str, arguments: Value) -> Option<(Value, bool)> {
        let reply = self.request(
            what,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )?;
        let Some(result) = reply.get("result") else {
            self.fail(format!(
                "{what}: tools/call {name} was refused: {}",
                short_json(&reply)
            ));
            return None;
        };
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        match serde_json::from_str::<Value>(text) {
            // An array is wrapped the way `structuredContent` wraps it.
            Ok(payload @ Value::Object(_)) => Some((payload, result["isError"] == true)),
            Ok(other) => Some((json!({ "result": other }), result["isError"] == true)),
            Err(e) => {
                self.fail(format!(
                    "{what}: tool text is not JSON ({e}): {}",
                    short_json(result)
                ));
                None
            }
        }
    }

    /// A tool call that must be refused with `{"error": <msg>}` (and perhaps a hint).
    fn tool_refused(&mut self, what: &str, name: &str, arguments: Value, msg: &Msg) {
        let Some((payload, is_error)) = self.tool(what, name, arguments) else {
            return;
        };
        let error = payload["error"].as_str().unwrap_or_default();
        self.check(is_error && msg.matches(error), || {
            format!(
                "{what}: expected a refusal {msg:?}, got {}",
                short_json(&payload)
            )
        });
    }

    /// A tool call that must succeed; returns its payload.
    fn tool_ok(&mut self, what: &str, name: &str, arguments: Value) -> Option<Value> {
        let (payload, is_error) = self.tool(what, name, arguments)?;
        if is_error {
            self.fail(format!("{what}: failed: {}", short_json(&payload)));
            return None;
        }
        Some(payload)
    }

    /// Ends a phase: its time and the server's memory go into the report.
    fn phase(&mut self, name: &str) {
        let memory = self.server.memory();
        let took = self.phase_started.elapsed();
        report_line(&format!(
            "hostile: {name}: {took:.2?}, {memory} (lines so far: {})",
            self.lines
        ));
        self.phases.push((name.to_owned(), took, memory));
        self.phase_started = Instant::now();
    }
}

/// A ping request line with this raw id text.
fn ping_with_raw_id(raw_id: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{raw_id},"method":"ping"}}"#).into_bytes()
}

/// The value a raw JSON text parses to, as the server's serde_json sees it.
fn parsed(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("test bug: {raw:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// argv of the fake claude: nothing caller-supplied may be a flag

/// Flags the server puts on the command line with one value after each.
const VALUE_FLAGS: [&str; 9] = [
    "--output-format",
    "--session-id",
    "--resume",
    "--max-budget-usd",
    "--model",
    "--permission-mode",
    "--allowedTools",
    "--disallowedTools",
    "--append-system-prompt",
];

/// Walks an argv as commander.js would: `-p`, then the prompt unless it went on stdin, then
/// only known flags, each value-taking flag followed by a value that does not start with
/// `-`. `Err` names the first entry that could be read as a flag it was not meant to be, or
/// that is one of the `hostile` values.
fn check_argv(argv: &[String], hostile: &[&str]) -> Result<(), String> {
    if argv.first().map(String::as_str) != Some("-p") {
        return Err(format!("argv does not start with -p: {argv:?}"));
    }
    let mut i = 1;
    if argv.get(1).is_some_and(|a| !a.starts_with('-')) {
        i = 2; // the prompt, right after -p
    }
    while i < argv.len() {
        let a = argv[i].as_str();
        if a == "--verbose" {
            i += 1;
            continue;
        }
        if !VALUE_FLAGS.contains(&a) {
            return Err(format!(
                "argv[{i}] = {a:?} is not a flag the server sets: {argv:?}"
            ));
        }
        let Some(value) = argv.get(i + 1) else {
            return Err(format!("{a} has no value: {argv:?}"));
        };
        if value.starts_with('-') {
            return Err(format!(
                "the value of {a} starts with '-' ({value:?}): {argv:?}"
            ));
        }
        if hostile.contains(&value.as_str()) {
            return Err(format!(
                "a caller-supplied value is the value of {a}: {value:?}"
            ));
        }
        i += 2;
    }
    Ok(())
}

/// The argv of every run the fake logged.
fn logged_argvs(log: &Path) -> Vec<Vec<String>> {
    read_json_lines(log)
        .iter()
        .map(|run| {
            run["argv"]
                .as_array()
                .expect("argv array")
                .iter()
                .map(|a| a.as_str().expect("argv string").to_owned())
                .collect()
        })
        .collect()
}

/// The prompt an echo run received: the entry after `-p`, or its stdin.
fn echoed_prompt(facts: &Value) -> String {
    let argv = facts["argv"].as_array().cloned().unwrap_or_default();
    match argv.get(1).and_then(Value::as_str) {
        Some(p) if !p.starts_with('-') => p.to_owned(),
        _ => facts["stdin"]["data"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The facts of an echo run from a dispatch result's `result` text.
fn echo_facts(result: &Value) -> Option<Value> {
    serde_json::from_str(result["result"].as_str()?).ok()
}

// ---------------------------------------------------------------------------------------------
// files that must not be touched

/// A file's size, modification time and access time (nanoseconds).
fn stamp(path: &Path) -> Option<(u64, i64, i64)> {
    let meta = fs::metadata(path).ok()?;
    Some((
        meta.len(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.atime() * 1_000_000_000 + meta.atime_nsec(),
    ))
}

/// Sets both times of `path` to `age` ago. Reading the file afterwards moves its access time
/// forward (with `relatime`, an access time older than a day is always updated).
fn age_both_times(path: &Path, age: Duration) {
    let then = SystemTime::now() - age;
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_times(FileTimes::new().set_accessed(then).set_modified(then)))
        .unwrap_or_else(|e| panic!("set times of {}: {e}", path.display()));
}

/// Every file under `dir`, with its size and modification time (not the access time).
fn tree(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push((
                path,
                meta.len(),
                meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ));
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// the session

#[test]
fn hostile_lines_in_one_session() {
    const TEST: &str = "hostile_lines_in_one_session";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let config = helper_config(&scratch, &[]);
    let log = fake_log(&scratch);
    let vars = [
        ("FAKE_CLAUDE_MODE", "echo"),
        ("FAKE_CLAUDE_STDIN_WAIT", "30"),
        ("FAKE_CLAUDE_LOG", log.to_str().expect("utf-8 path")),
    ];
    let mut server = McpServer::start(&scratch, &config, &claude_env(&fake_claude(), &vars));
    server.initialize();
    let listed = server.request("tools/list", json!({}));
    let tools = listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list: {listed}"))
        .clone();
    assert_eq!(tools.len(), 19, "19 tools: {listed}");
    let started = Instant::now();
    let mut s = Session::new(server);
    s.phase("start");

    nesting(&mut s);
    s.phase("JSON nested 10 to 100 000 deep");
    oversized_line(&mut s, &log);
    s.phase("a line over the 64 MiB cap");
    invalid_utf8_and_boms(&mut s);
    s.phase("invalid UTF-8 and BOMs");
    ids_of_every_type(&mut s);
    s.phase("ids of every JSON type");
    envelopes(&mut s);
    s.phase("jsonrpc versions, methods, params, notifications");
    wrong_argument_types(&mut s, &tools);
    s.phase("arguments of the wrong type for every tool");
    unknown_tools_and_methods(&mut s);
    s.phase("unknown tools, methods with control characters");
    pipelined_pings(&mut s);
    s.phase("10 000 pipelined pings");
    big_task(&mut s);
    s.phase("a 1 MiB task");
    flag_looking_values(&mut s, &scratch, &log);
    s.phase("flag-looking values in every structured field");
    path_looking_ids(&mut s, &scratch);
    s.phase("path-looking ids in every job tool");
    hostile_configs(&mut s, &scratch, &config);
    s.phase("agents.yaml with hostile values");

    // Still serving.
    let id = s.id();
    s.expect_result(
        "the last ping",
        json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
            .to_string()
            .as_bytes(),
        id,
        &json!({}),
    );
    let running = s.server.is_running();
    s.check(running, || "the server is no longer running".to_owned());
    let stderr = s.server.stderr_so_far();
    s.check(!stderr.contains("panicked"), || {
        format!("the server panicked:\n{stderr}")
    });

    let memory = s.server.memory();
    report_line(&format!(
        "{TEST}: {} hostile lines + 10 000 pipelined pings in {:.2?}; server {memory} (bound: 100 MB)",
        s.lines,
        started.elapsed()
    ));
    let heaviest = s
        .phases
        .windows(2)
        .max_by_key(|w| w[1].2.peak_kib.saturating_sub(w[0].2.peak_kib))
        .map(|w| w[1].0.clone())
        .unwrap_or_default();
    let lines = s.lines;
    s.check(lines >= 300, || format!("only {lines} hostile lines"));
    s.check(memory.peak_kib < PEAK_BOUND_KIB, || {
        format!(
            "the server's peak RSS is {memory}, over 100 MB (the peak rose most in: {heaviest})"
        )
    });
    if !s.failures.is_empty() {
        panic!(
            "{} problem(s) in a session of {} hostile lines:\n\n{}",
            s.failures.len(),
            s.lines,
            s.failures.join("\n\n")
        );
    }
}

/// `[`, `{"a":` and `{` nested 10 to 100 000 deep, unclosed, closed and inside a ping's
/// params: up to 100 levels they are ordinary JSON (an array is not a message, the ping is
/// answered); from 1 000 on, the parser's recursion limit answers with a parse error.
fn nesting(s: &mut Session) {
    for depth in [10, 100, 1_000, 10_000, 100_000] {
        let deep = depth >= 1_000;
        let recursion = Msg::has(&["Parse error: ", "recursion limit exceeded"]);
        let eof = |what: &str| Msg::has(&["Parse error: ", "EOF while parsing", what]);

        let open = "[".repeat(depth);
        let what = format!("unclosed [ x {depth}");
        let msg = if deep { recursion.clone() } else { eof("list") };
        s.expect_error(&what, open.as_bytes(), Value::Null, PARSE_ERROR, &msg);

        let objects = r#"{"a":"#.repeat(depth);
        let what = format!("unclosed {{\"a\": x {depth}");
        let msg = if deep {
            recursion.clone()
        } else {
            eof("value")
        };
        s.expect_error(&what, objects.as_bytes(), Value::Null, PARSE_ERROR, &msg);

        let braces = "{".repeat(depth);
        let what = format!("{{ x {depth}");
        let msg = Msg::has(&["Parse error: ", "key must be a string"]);
        s.expect_error(&what, braces.as_bytes(), Value::Null, PARSE_ERROR, &msg);

        let closed = format!("{open}{}", "]".repeat(depth));
        let what = format!("closed [ x {depth}");
        if deep {
            s.expect_error(
                &what,
                closed.as_bytes(),
                Value::Null,
                PARSE_ERROR,
                &recursion,
            );
        } else {
            let msg = Msg::exact(
                "Invalid Request: a message must be a JSON object (batches are not supported)",
            );
            s.expect_error(&what, closed.as_bytes(), Value::Null, INVALID_REQUEST, &msg);
        }

        let id = s.id();
        let ping =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{{"x":{closed}}}}}"#);
        let what = format!("ping with params nested {depth} deep");
        if deep {
            s.expect_error(&what, ping.as_bytes(), Value::Null, PARSE_ERROR, &recursion);
        } else {
            s.expect_result(&what, ping.as_bytes(), id, &json!({}));
        }
    }
}

/// A dispatch request on one line just over 64 MiB (the default cap): answered as a parse
/// error that says why (its id cannot be known), nothing is dispatched, and the server's
/// peak RSS shows what it held.
fn oversized_line(s: &mut Session, log: &Path) {
    let runs_before = read_json_lines(log).len();
    let started = Instant::now();
    let head = format!(
        r#"{{"jsonrpc":"2.0","id":"huge","method":"tools/call","params":{{"name":"dispatch","arguments":{{"agent":"{AGENT}","task":""#
    );
    s.server.send_raw(head.as_bytes());
    let chunk = vec![b'A'; 64 << 10];
    let mut sent = head.len();
    while sent < CLIENT_CAP + 1024 {
        s.server.send_raw(&chunk);
        sent += chunk.len();
    }
    s.server.send_raw(b"\"}}}\n");
    s.lines += 1;
    let what = format!("a {sent}-byte dispatch line (over the 64 MiB cap)");
    match s.reply(&what, &Value::Null) {
        Some(reply) => {
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            let code_ok = reply["error"]["code"] == PARSE_ERROR;
            // A clear error names the cause: the line was longer than the limit.
            let says_why = [
                "64 MiB",
                "67108864",
                "max_line_bytes",
                "too long",
                "longer than",
            ]
            .iter()
            .any(|why| message.contains(why));
            s.check(code_ok && says_why, || {
                format!(
                    "{what}: expected a parse error (-32700) saying the line is over the limit, got {}",
                    short_json(&reply)
                )
            });
        }
        None => return,
    }
    report_line(&format!(
        "hostile: the over-cap line was answered {:.2?} after its first byte",
        started.elapsed()
    ));
    let runs = read_json_lines(log).len();
    s.check(runs == runs_before, || {
        format!(
            "the over-cap dispatch line started {} run(s)",
            runs - runs_before
        )
    });
}

/// Invalid UTF-8 becomes U+FFFD (so a method or id with it is still answered exactly), bytes
/// that are not JSON are a parse error, and byte-order marks are not JSON either.
fn invalid_utf8_and_boms(s: &mut Session) {
    let garbage: [&[u8]; 5] = [
        b"\xff\xfe\xfd",
        b"\x00",
        b"\x1b[2J\x1b[H",
        b"\xc3\x28{}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"\xff}",
    ];
    for bytes in garbage {
        let what = format!("garbage bytes {bytes:?}");
        s.expect_error(
            &what,
            bytes,
            Value::Null,
            PARSE_ERROR,
            &Msg::starts("Parse error: "),
        );
    }
    let bad_sequences: [&[u8]; 6] = [
        b"\xff",
        b"\xc0\xaf",         // overlong '/'
        b"\xed\xa0\x80",     // a UTF-16 surrogate
        b"\xe2\x98",         // a character cut short
        b"\xf4\x90\x80\x80", // beyond U+10FFFF
        b"\x80\x80",         // continuation bytes alone
    ];
    for (n, bad) in bad_sequences.iter().enumerate() {
        let mut method = b"ping".to_vec();
        method.extend_from_slice(bad);
        let mut line = format!(r#"{{"jsonrpc":"2.0","id":"u{n}","method":""#).into_bytes();
        line.extend_from_slice(&method);
        line.extend_from_slice(b"\"}");
        let expected = format!("Method not found: {}", String::from_utf8_lossy(&method));
        let what = format!("method with invalid UTF-8 {bad:?}");
        s.expect_error(
            &what,
            &line,
            json!(format!("u{n}")),
            METHOD_NOT_FOUND,
            &Msg::exact(expected),
        );

        // The same bytes in an id: the reply carries the decoded id.
        let mut line = br#"{"jsonrpc":"2.0","id":"id-"#.to_vec();
        line.extend_from_slice(bad);
        line.extend_from_slice(br#"","method":"ping"}"#);
        let id = json!(format!("id-{}", String::from_utf8_lossy(bad)));
        s.expect_result(
            &format!("id with invalid UTF-8 {bad:?}"),
            &line,
            id,
            &json!({}),
        );
    }
    // An agent name with invalid UTF-8 is refused with the decoded name.
    let mut line = br#"{"jsonrpc":"2.0","id":"u-add","method":"tools/call","params":{"name":"add_agent","arguments":{"name":"ab"#.to_vec();
    line.extend_from_slice(b"\xff\xfe");
    line.extend_from_slice(br#"","directory":"/"}}}"#);
    s.line(&line);
    if let Some(reply) = s.reply("add_agent with an invalid UTF-8 name", &json!("u-add")) {
        let expected = validate_agent_name("ab\u{FFFD}\u{FFFD}").expect_err("invalid name");
        let text = reply["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        let payload: Value = serde_json::from_str(text).unwrap_or_default();
        s.check(
            reply["result"]["isError"] == true && payload["error"] == expected.as_str(),
            || {
                format!(
                    "add_agent with an invalid UTF-8 name: expected {expected:?}, got {}",
                    short_json(&reply)
                )
            },
        );
    }
    // A lone CR is a blank line once the CR is stripped: no reply.
    s.expect_silence("a lone CR", b"\r");

    // Byte-order marks. A UTF-8 BOM before a request is not JSON: a parse error (answering
    // the ping would be as acceptable; both are checked exactly).
    let bom = b"\xef\xbb\xbf";
    let mut line = bom.to_vec();
    line.extend_from_slice(br#"{"jsonrpc":"2.0","id":"bom1","method":"ping"}"#);
    s.line(&line);
    let first = s.server.try_next_message(REPLY_LIMIT);
    match first {
        Ok(m) if m["id"] == "bom1" && m["result"] == json!({}) => {}
        Ok(m)
            if m["id"].is_null()
                && m["error"]["code"] == PARSE_ERROR
                && m["error"]["message"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Parse error: ")) => {}
        other => s.fail(format!(
            "a UTF-8 BOM before a ping: expected the ping's reply or a parse error, got {other:?}"
        )),
    }
    s.expect_error(
        "a BOM alone",
        bom,
        Value::Null,
        PARSE_ERROR,
        &Msg::starts("Parse error: "),
    );
    let mut between = br#"{"jsonrpc":"2.0","#.to_vec();
    between.extend_from_slice(bom);
    between.extend_from_slice(br#""id":"bom2","method":"ping"}"#);
    s.expect_error(
        "a BOM between tokens",
        &between,
        Value::Null,
        PARSE_ERROR,
        &Msg::starts("Parse error: "),
    );
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            r#"{"jsonrpc":"2.0","id":"bom3","method":"ping"}"#
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    s.expect_error(
        "UTF-16 with a BOM",
        &utf16,
        Value::Null,
        PARSE_ERROR,
        &Msg::starts("Parse error: "),
    );
    let mut in_method = br#"{"jsonrpc":"2.0","id":"bom4","method":"ping"#.to_vec();
    in_method.extend_from_slice(bom);
    in_method.extend_from_slice(br#""}"#);
    s.expect_error(
        "a BOM inside the method name",
        &in_method,
        json!("bom4"),
        METHOD_NOT_FOUND,
        &Msg::exact("Method not found: ping\u{FEFF}"),
    );
}

/// Strings and integers (up to u64::MAX) are ids and are echoed exactly; every other JSON type
/// is an invalid request answered with id null.
fn ids_of_every_type(s: &mut Session) {
    let ten_kb = format!("\"{}\"", "i".repeat(10 * 1024));
    let accepted = [
        "0",
        "-1",
        "-9223372036854775808",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "\"\"",
        "\"null\"",
        "\"1\"",
        r#""\u0000\n\t\u2603 ☃ \"quoted\" \\ back""#,
        ten_kb.as_str(),
    ];
    for raw in accepted {
        let what = format!("id {}", short_json(&json!(raw)));
        s.expect_result(&what, &ping_with_raw_id(raw), parsed(raw), &json!({}));
    }
    let rejected = [
        "null",
        "true",
        "false",
        "1.5",
        "-0.5",
        "1e3",
        "1.0",
        "18446744073709551616",
        "-9223372036854775809",
        r#"{"a":1}"#,
        "{}",
        "[1,2]",
        "[]",
        r#"[{"id":1}]"#,
    ];
    for raw in rejected {
        let expected = format!(
            "Invalid Request: id must be a string or an integer, got {}",
            parsed(raw)
        );
        s.expect_error(
            &format!("id {raw}"),
            &ping_with_raw_id(raw),
            Value::Null,
            INVALID_REQUEST,
            &Msg::exact(expected),
        );
    }
    s.expect_error(
        "id 1e400",
        &ping_with_raw_id("1e400"),
        Value::Null,
        PARSE_ERROR,
        &Msg::has(&["Parse error: ", "number out of range"]),
    );
    // A big id object of 10 KB: refused, and the message stays one line.
    let big = format!(r#"{{"k":{ten_kb}}}"#);
    s.expect_error(
        "a 10 KB object id",
        &ping_with_raw_id(&big),
        Value::Null,
        INVALID_REQUEST,
        &Msg::starts("Invalid Request: id must be a string or an integer, got {\"k\":"),
    );
    // Two ids: exactly one reply, with one of them.
    s.line(br#"{"jsonrpc":"2.0","id":"dup-1","id":"dup-2","method":"ping"}"#);
    match s.server.try_next_message(REPLY_LIMIT) {
        Ok(m) if (m["id"] == "dup-1" || m["id"] == "dup-2") && m["result"] == json!({}) => {}
        other => s.fail(format!("a message with two ids: {other:?}")),
    }
    // Responses (a result or an error, no method) are ignored.
    s.expect_silence(
        "a response with a result",
        br#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
    );
    s.expect_silence(
        "a response with an error",
        br#"{"jsonrpc":"2.0","id":"x","error":{"code":1,"message":"m"}}"#,
    );
    s.expect_silence(
        "a response with a null id",
        br#"{"jsonrpc":"2.0","id":"r","result":null}"#,
    );
}

/// The JSON-RPC envelope: versions, methods, params, non-objects, notifications, blanks.
fn envelopes(s: &mut Session) {
    let version_msg = Msg::exact("Invalid Request: \"jsonrpc\" must be \"2.0\"");
    let versions = [
        r#""jsonrpc":"1.0","#,
        r#""jsonrpc":"2","#,
        r#""jsonrpc":2.0,"#,
        r#""jsonrpc":2,"#,
        r#""jsonrpc":null,"#,
        r#""jsonrpc":true,"#,
        r#""jsonrpc":"2.0 ","#,
        r#""jsonrpc":" 2.0","#,
        r#""jsonrpc":"2.00","#,
        r#""jsonrpc":"","#,
        r#""jsonrpc":["2.0"],"#,
        r#""jsonrpc":{"v":"2.0"},"#,
        r#""jsonrpc":"2.0\u0000","#,
        "",
    ];
    for (n, version) in versions.iter().enumerate() {
        let id = 7000 + n;
        let line = format!(r#"{{{version}"id":{id},"method":"ping"}}"#);
        s.expect_error(
            &format!("jsonrpc {version:?}"),
            line.as_bytes(),
            json!(id),
            INVALID_REQUEST,
            &version_msg,
        );
    }
    let cases: [(&str, &[u8], i64, &str); 8] = [
        (
            "no method",
            br#"{"jsonrpc":"2.0","id":7100}"#,
            INVALID_REQUEST,
            "Invalid Request: missing \"method\"",
        ),
        (
            "a numeric method",
            br#"{"jsonrpc":"2.0","id":7101,"method":42}"#,
            INVALID_REQUEST,
            "Invalid Request: \"method\" must be a string",
        ),
        (
            "a null method",
            br#"{"jsonrpc":"2.0","id":7102,"method":null}"#,
            INVALID_REQUEST,
            "Invalid Request: \"method\" must be a string",
        ),
        (
            "an object method",
            br#"{"jsonrpc":"2.0","id":7103,"method":{"name":"ping"}}"#,
            INVALID_REQUEST,
            "Invalid Request: \"method\" must be a string",
        ),
        (
            "params as an array",
            br#"{"jsonrpc":"2.0","id":7104,"method":"ping","params":[1]}"#,
            INVALID_PARAMS,
            "Invalid params: \"params\" must be an object",
        ),
        (
            "params as a string",
            br#"{"jsonrpc":"2.0","id":7105,"method":"ping","params":"x"}"#,
            INVALID_PARAMS,
            "Invalid params: \"params\" must be an object",
        ),
        (
            "params as a number",
            br#"{"jsonrpc":"2.0","id":7106,"method":"tools/list","params":5}"#,
            INVALID_PARAMS,
            "Invalid params: \"params\" must be an object",
        ),
        (
            "params as false",
            br#"{"jsonrpc":"2.0","id":7107,"method":"tools/call","params":false}"#,
            INVALID_PARAMS,
            "Invalid params: \"params\" must be an object",
        ),
    ];
    for (n, (what, line, code, message)) in cases.into_iter().enumerate() {
        s.expect_error(what, line, json!(7100 + n), code, &Msg::exact(message));
    }
    s.expect_result(
        "params null",
        br#"{"jsonrpc":"2.0","id":7200,"method":"ping","params":null}"#,
        json!(7200),
        &json!({}),
    );
    let not_objects = [
        "42",
        "\"ping\"",
        "null",
        "true",
        "[]",
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    ];
    for raw in not_objects {
        s.expect_error(
            &format!("the message {raw}"),
            raw.as_bytes(),
            Value::Null,
            INVALID_REQUEST,
            &Msg::exact(
                "Invalid Request: a message must be a JSON object (batches are not supported)",
            ),
        );
    }
    // Notifications are never answered, whatever they name; a malformed one is refused with
    // id null (its params are read before it is known to be a notification).
    let notifications: [&[u8]; 7] = [
        br#"{"jsonrpc":"2.0","method":"no/such/notification"}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nope"}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"a":[1]}}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized","params":{"x":1}}"#,
        br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"dispatch","arguments":{"agent":"helper","task":"--notification"}}}"#,
        br#"{"jsonrpc":"2.0","method":"ping\u0000"}"#,
    ];
    for line in notifications {
        let what = format!("notification {}", String::from_utf8_lossy(line));
        s.expect_silence(&what, line);
    }
    // A notification is never answered, even a malformed one (JSON-RPC 2.0).
    s.expect_silence(
        "a notification with params as a string",
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":"x"}"#,
    );
    for blank in [&b""[..], b"   ", b"\t", b" \r"] {
        s.expect_silence(&format!("blank line {blank:?}"), blank);
    }
}

/// The wrong JSON type for every parameter of every tool (the schema comes from
/// `tools/list`), a missing or null required argument, and a broken `tools/call` envelope:
/// each an invalid-params error naming the tool and the argument.
fn wrong_argument_types(s: &mut Session, tools: &[Value]) {
    for tool in tools {
        let name = tool["name"].as_str().expect("tool name");
        let schema = &tool["inputSchema"];
        let props = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let valid_required = || -> serde_json::Map<String, Value> {
            required.iter().map(|r| (r.clone(), json!("x"))).collect()
        };
        for (param, spec) in &props {
            let (article, wrong): (&str, Vec<Value>) = match spec["type"].as_str() {
                Some("string") => ("a string", vec![json!(42), json!(["x"]), json!({"a": 1})]),
                Some("integer") => (
                    "an integer",
                    vec![
                        json!("soon"),
                        json!(1.5),
                        parsed("9223372036854775808"),
                        json!(true),
                    ],
                ),
                Some("number") => ("a number", vec![json!("lots"), json!([1]), json!(false)]),
                Some("boolean") => ("a boolean", vec![json!("yes"), json!(1), json!(null)]),
                other => panic!("{name}.{param}: unknown type {other:?}"),
            };
            for value in wrong {
                if value.is_null() {
                    continue; // null means "not given"
                }
                let mut arguments = valid_required();
                arguments.insert(param.clone(), value.clone());
                let expected = format!(
                    "Invalid params: {name}: argument '{param}' must be {article}, got {value}"
                );
                let id = s.id();
                let line = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": name, "arguments": arguments}});
                s.expect_error(
                    &format!("{name}({param}={value})"),
                    line.to_string().as_bytes(),
                    id,
                    INVALID_PARAMS,
                    &Msg::exact(expected),
                );
            }
        }
        for (n, missing) in required.iter().enumerate() {
            let mut arguments = valid_required();
            if n == 0 {
                arguments.insert(missing.clone(), Value::Null);
            } else {
                arguments.remove(missing);
            }
            let id = s.id();
            let line = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}});
            s.expect_error(
                &format!("{name} without {missing}"),
                line.to_string().as_bytes(),
                id,
                INVALID_PARAMS,
                &Msg::exact(format!(
                    "Invalid params: {name}: missing required argument '{missing}'"
                )),
            );
        }
    }
    let envelopes = [
        (
            json!({"name": 5}),
            "Invalid params: \"name\" must be a string",
        ),
        (
            json!({"name": ["list_agents"]}),
            "Invalid params: \"name\" must be a string",
        ),
        (json!({}), "Invalid params: missing tool \"name\""),
        (
            json!({"arguments": {}}),
            "Invalid params: missing tool \"name\"",
        ),
        (
            json!({"name": "list_agents", "arguments": "x"}),
            "Invalid params: \"arguments\" must be an object",
        ),
        (
            json!({"name": "list_agents", "arguments": [1]}),
            "Invalid params: \"arguments\" must be an object",
        ),
        (
            json!({"name": "list_agents", "arguments": 5}),
            "Invalid params: \"arguments\" must be an object",
        ),
    ];
    for (params, message) in envelopes {
        let id = s.id();
        let line = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        s.expect_error(
            &format!("tools/call {params}"),
            line.to_string().as_bytes(),
            id,
            INVALID_PARAMS,
            &Msg::exact(message),
        );
    }
}

/// Unknown tool names and method names with control characters: named back exactly.
fn unknown_tools_and_methods(s: &mut Session) {
    let long = "t".repeat(10 * 1024);
    let tools = [
        "nope",
        "",
        "LIST_AGENTS",
        "list_agents ",
        " list_agents",
        "list_agents\n",
        "list_agents\u{0}",
        "../list_agents",
        "list-agents",
        "list_agents\u{202e}",
        long.as_str(),
    ];
    for tool in tools {
        let id = s.id();
        let line = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}});
        s.expect_error(
            &format!("unknown tool {}", short_json(&json!(tool))),
            line.to_string().as_bytes(),
            id,
            INVALID_PARAMS,
            &Msg::exact(format!("Unknown tool: {tool}")),
        );
    }
    let long = "m".repeat(10 * 1024);
    let methods = [
        "ping\u{0}",
        "\u{7}",
        "tools/call\n",
        "\u{1b}[31mred\u{1b}[0m",
        "ping\r",
        "",
        " ping",
        "PING",
        "tools/list\t",
        "initialize ",
        "notifications/cancelled",
        "\u{7f}\u{80}\u{9f}",
        long.as_str(),
    ];
    for method in methods {
        let id = s.id();
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method});
        s.expect_error(
            &format!("method {}", short_json(&json!(method))),
            line.to_string().as_bytes(),
            id,
            METHOD_NOT_FOUND,
            &Msg::exact(format!("Method not found: {method}")),
        );
    }
}

/// 10 000 pings written without waiting, with a garbage line every 1 000: every reply, in
/// the order sent.
fn pipelined_pings(s: &mut Session) {
    const N: usize = 10_000;
    let mut batch = Vec::with_capacity(N * 48);
    let mut expected = Vec::with_capacity(N + 10);
    for i in 0..N {
        if i % 1_000 == 500 {
            batch.extend_from_slice(b"{not json\n");
            expected.push(Value::Null);
        }
        batch.extend_from_slice(
            format!("{{\"jsonrpc\":\"2.0\",\"id\":\"pipe-{i}\",\"method\":\"ping\"}}\n").as_bytes(),
        );
        expected.push(json!(format!("pipe-{i}")));
    }
    let started = Instant::now();
    s.server.send_raw(&batch);
    let written = started.elapsed();
    let mut got = 0;
    for want in &expected {
        match s.server.try_next_message(REPLY_LIMIT) {
            Ok(m) => {
                let ok = if want.is_null() {
                    m["id"].is_null() && m["error"]["code"] == PARSE_ERROR
                } else {
                    &m["id"] == want && m["result"] == json!({})
                };
                if !ok {
                    s.fail(format!(
                        "pipelined reply {got}: expected the reply to {want}, got {}",
                        short_json(&m)
                    ));
                    return;
                }
                got += 1;
            }
            Err(e) => {
                s.fail(format!(
                    "pipelined pings: after {got} of {} replies: {e}",
                    expected.len()
                ));
                return;
            }
        }
    }
    s.lines += 10; // the garbage lines
    report_line(&format!(
        "hostile: 10 000 pipelined pings (+10 garbage lines): written in {written:.2?}, all {got} replies in order after {:.2?}",
        started.elapsed()
    ));
}

/// A 1 MiB task reaches the echo fake intact (on stdin: too long for one argument).
fn big_task(s: &mut Session) {
    let task: String = (0..)
        .map(|i| format!("{i:07} a line of the big task — ünïcode ☃\n"))
        .take_while({
            let mut len = 0;
            move |line: &String| {
                len += line.len();
                len <= 1 << 20
            }
        })
        .collect();
    let Some((payload, is_error)) = s.tool(
        "a 1 MiB task",
        "dispatch_session",
        json!({"agent": AGENT, "task": task}),
    ) else {
        return;
    };
    let facts = echo_facts(&payload).unwrap_or_default();
    let prompt = echoed_prompt(&facts);
    s.check(!is_error && prompt == task, || {
        format!(
            "a 1 MiB task: expected it intact in the child (stdin), got {} bytes: {}",
            prompt.len(),
            short_json(&payload)
        )
    });
}

/// Flag-looking values in every structured field. Those that would be command-line values
/// (model, permission_mode, tool lists, session_id) are refused before anything runs; the
/// free text (task, context, caller, goal, topic, response_format, descriptions) reaches the
/// child only inside the prompt. Every argv the fake logged is then walked flag by flag.
fn flag_looking_values(s: &mut Session, scratch: &Scratch, log: &Path) {
    let agent_dir = scratch.join("agent");
    let dir = agent_dir.to_str().expect("utf-8 path");
    let flags = [
        "--dangerously-skip-permissions",
        "-p",
        "--model=opus",
        "-c",
        " --resume",
        "--",
        "-",
    ];
    let flag_msg = |label: &str, value: &str| {
        Msg::exact(format!(
            "{label} {} starts with '-' and would be interpreted as a command-line flag by the claude CLI.",
            py_repr(value.trim())
        ))
    };
    let runs_before = read_json_lines(log).len();
    for flag in flags {
        for (field, label, value) in [
            ("model", "model", flag.to_owned()),
            ("permission_mode", "permission_mode", flag.to_owned()),
            ("allowed_tools", "allowed tool", format!("Read,{flag}")),
            (
                "disallowed_tools",
                "disallowed tool",
                format!("{flag},Bash"),
            ),
        ] {
            let bad = flag.trim();
            s.tool_refused(
                &format!("add_agent {field}={value:?}"),
                "add_agent",
                json!({"name": "flagged", "directory": dir, field: value}),
                &flag_msg(label, bad),
            );
            s.tool_refused(
                &format!("update_agent {field}={value:?}"),
                "update_agent",
                json!({"name": AGENT, field: value}),
                &flag_msg(label, bad),
            );
        }
        let name_msg = Msg::exact(validate_agent_name(flag).expect_err("a flag is no name"));
        s.tool_refused(
            &format!("add_agent name={flag:?}"),
            "add_agent",
            json!({"name": flag, "directory": dir}),
            &name_msg,
        );
    }
    // Nothing of the above was stored.
    if let Some(agent) = s.tool_ok(
        "inspect_agent after the refusals",
        "inspect_agent",
        json!({"name": AGENT}),
    ) {
        let clean = [
            "model",
            "permission_mode",
            "allowed_tools",
            "disallowed_tools",
        ]
        .iter()
        .all(|k| agent.get(*k).is_none_or(Value::is_null));
        s.check(clean, || {
            format!("a refused value was stored: {}", short_json(&agent))
        });
    }
    if let Some(list) = s.tool_ok("list_agents after the refusals", "list_agents", json!({})) {
        s.check(
            list["result"].as_array().is_some_and(|a| a.len() == 1),
            || format!("a refused agent was added: {}", short_json(&list)),
        );
    }

    // session_id: flag-looking or implausible values are refused before anything runs.
    for sid in ["--continue", "-r", "--resume=x", "-", "--session-id"] {
        let expected = format!(
            "Refusing to dispatch: session_id {} starts with '-' and would be interpreted as a command-line flag by the claude CLI.",
            py_repr(sid)
        );
        refused_dispatch(s, sid, &expected);
    }
    let long = "a".repeat(201);
    for sid in [" --x", "a b", "x\n", long.as_str(), "\t", "\u{7f}"] {
        let expected = format!(
            "Refusing to dispatch: session_id {} is not a valid session id (expected the session_id returned by an earlier dispatch).",
            py_repr(sid)
        );
        refused_dispatch(s, sid, &expected);
    }
    refused_dispatch(
        s,
        "x\u{0}y",
        &format!(
            "Refusing to dispatch: session_id {} contains a NUL byte, which cannot be passed on a command line.",
            py_repr("x\u{0}y")
        ),
    );
    let runs = read_json_lines(log).len();
    s.check(runs == runs_before, || {
        format!("{} run(s) started for refused values", runs - runs_before)
    });

    // Free text that looks like flags: it reaches the child inside the prompt only.
    let task = "--dangerously-skip-permissions";
    let context = "--permission-mode bypassPermissions";
    let caller = "--model";
    let goal = "-c";
    let hostile = [task, context, caller, goal, "--json", "-x", "--help"];
    let variants = [
        json!({"agent": AGENT, "task": task, "context": context, "caller": caller, "goal": goal,
            "response_format": "--json"}),
        json!({"agent": AGENT, "task": task}),
        json!({"agent": AGENT, "task": task, "context": context}),
        json!({"agent": AGENT, "task": "-x", "timeout_seconds": "-5"}),
    ];
    for tool in ["dispatch", "dispatch_session", "dispatch_stream"] {
        for args in &variants {
            let what = format!("{tool} {args}");
            if let Some(payload) = s.tool_ok(&what, tool, args.clone()) {
                prompt_holds(s, &what, &payload, args);
            }
        }
    }
    for args in &variants {
        let what = format!("dispatch_async {args}");
        let Some(started) = s.tool_ok(&what, "dispatch_async", args.clone()) else {
            continue;
        };
        let job = started["job_id"].as_str().unwrap_or_default().to_owned();
        if let Some(done) = s.tool_ok(
            &what,
            "dispatch_wait",
            json!({"job_id": job, "timeout_seconds": 60}),
        ) {
            s.check(done["status"] == "done", || {
                format!("{what}: the job did not end done: {}", short_json(&done))
            });
            prompt_holds(s, &what, &done["result"], args);
        }
    }
    let items = json!([
        {"agent": AGENT, "task": task, "caller": caller, "goal": goal},
        {"agent": AGENT, "task": "-x", "context": context},
    ]);
    if let Some(payload) = s.tool_ok(
        "dispatch_parallel with flag-looking items",
        "dispatch_parallel",
        json!({"dispatches": items.to_string()}),
    ) {
        let results = payload["result"].as_array().cloned().unwrap_or_default();
        let ok = results.len() == 2 && results.iter().all(|r| r["success"] == true);
        s.check(ok, || {
            format!(
                "dispatch_parallel with flag-looking items: {}",
                short_json(&payload)
            )
        });
    }
    let items = json!([{"agent": AGENT, "task": "x"}, {"agent": "--help", "task": "-x"}]);
    s.tool_refused(
        "dispatch_parallel to an agent called --help",
        "dispatch_parallel",
        json!({"dispatches": items.to_string()}),
        &Msg::exact("Unknown agent: '--help'. Available: helper"),
    );
    s.tool_refused(
        "dispatch_parallel aggregated by --help",
        "dispatch_parallel",
        json!({"dispatches": json!([{"agent": AGENT, "task": "x"}]).to_string(), "aggregate": "--help"}),
        &Msg::starts("Unknown agent: '--help'"),
    );
    if let Some((payload, _)) = s.tool(
        "dispatch_dialogue with a flag-looking topic",
        "dispatch_dialogue",
        json!({"requester": AGENT, "responder": AGENT, "topic": "--help", "max_rounds": 1}),
    ) {
        s.check(payload["rounds"].is_u64(), || {
            format!(
                "dispatch_dialogue with a flag-looking topic: {}",
                short_json(&payload)
            )
        });
    }

    // Descriptive fields that look like flags are stored (they never reach argv); standing
    // instructions that do would be refused at dispatch rather than passed as a flag.
    if s.tool_ok(
        "add_agent with flag-looking descriptive fields",
        "add_agent",
        json!({"name": "decoy", "directory": dir, "description": "--help",
            "instructions": "--dangerously-skip-permissions", "capabilities": "-x,--y",
            "risky_capabilities": "--rm"}),
    )
    .is_some()
    {
        let before = read_json_lines(log).len();
        if let Some((payload, is_error)) = s.tool(
            "dispatch to the decoy",
            "dispatch_session",
            json!({"agent": "decoy", "task": "hello"}),
        ) {
            let ran = read_json_lines(log).len() > before;
            let refused = is_error
                && payload["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("Refusing to dispatch:"));
            s.check((ran && !is_error) || (refused && !ran), || {
                format!("dispatch to the decoy: {}", short_json(&payload))
            });
        }
        s.tool_ok("remove the decoy", "remove_agent", json!({"name": "decoy"}));
    }
    // A model with a NUL byte cannot be an argument: refused when set, or at dispatch.
    let before = read_json_lines(log).len();
    if let Some((_, update_refused)) = s.tool(
        "update_agent model with a NUL byte",
        "update_agent",
        json!({"name": AGENT, "model": "son\u{0}net"}),
    ) {
        if !update_refused {
            let expected = format!(
                "Refusing to dispatch: model {} contains a NUL byte, which cannot be passed on a command line.",
                py_repr("son\u{0}net")
            );
            if let Some((payload, is_error)) = s.tool(
                "dispatch with a NUL in the model",
                "dispatch_session",
                json!({"agent": AGENT, "task": "hi"}),
            ) {
                s.check(is_error && payload["error"] == expected.as_str(), || {
                    format!(
                        "dispatch with a NUL in the model: expected {expected:?}, got {}",
                        short_json(&payload)
                    )
                });
            }
            s.tool_ok(
                "clear the model",
                "update_agent",
                json!({"name": AGENT, "model": "none"}),
            );
        }
    }
    let runs = read_json_lines(log).len();
    s.check(runs == before, || {
        "a run started with a NUL in the model".to_owned()
    });

    // Every run so far: nothing caller-supplied is a flag.
    let argvs = logged_argvs(log);
    s.check(argvs.len() >= 20, || {
        format!("only {} runs logged", argvs.len())
    });
    for argv in &argvs {
        if let Err(e) = check_argv(argv, &hostile) {
            s.fail(format!("a child's command line: {e}"));
        }
    }
    report_line(&format!(
        "hostile: {} child command lines checked flag by flag",
        argvs.len()
    ));
}

/// dispatch_session with `session_id` must be refused with exactly `expected`.
fn refused_dispatch(s: &mut Session, sid: &str, expected: &str) {
    let what = format!("dispatch_session session_id={sid:?}");
    let Some((payload, is_error)) = s.tool(
        &what,
        "dispatch_session",
        json!({"agent": AGENT, "task": "hi", "session_id": sid}),
    ) else {
        return;
    };
    let ok = is_error && payload["success"] == false && payload["error"] == expected;
    s.check(ok, || {
        format!(
            "{what}: expected {expected:?}, got {}",
            short_json(&payload)
        )
    });
}

/// The echo run behind `result` got every free-text argument inside its prompt.
fn prompt_holds(s: &mut Session, what: &str, result: &Value, args: &Value) {
    let Some(facts) = echo_facts(result) else {
        s.fail(format!(
            "{what}: not an echo result: {}",
            short_json(result)
        ));
        return;
    };
    let prompt = echoed_prompt(&facts);
    for field in ["task", "context", "caller", "goal"] {
        if let Some(text) = args[field].as_str() {
            s.check(prompt.contains(text), || {
                format!("{what}: the {field} {text:?} is not in the prompt {prompt:?}")
            });
        }
    }
    let argv: Vec<String> = facts["argv"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Err(e) = check_argv(&argv, &[]) {
        s.fail(format!("{what}: {e}"));
    }
}

/// Path-looking and malformed ids in every job tool: refused with the exact message before
/// any file is touched. Files planted where such ids would lead keep their contents, their
/// modification time and (where the file system records reads) their access time; nothing
/// in the scratch tree changes.
fn path_looking_ids(s: &mut Session, scratch: &Scratch) {
    let jobs = jobs_dir(scratch);
    fs::create_dir_all(&jobs).expect("jobs folder");
    let valid = "0123456789abcdef0123456789abcdef";
    let upper = valid.to_uppercase();
    let ids: Vec<String> = vec![
        "../x".into(),
        "../../../../etc/passwd".into(),
        "/etc/passwd".into(),
        "%2e%2e%2fx".into(),
        "..%2f..%2fetc%2fpasswd".into(),
        valid[..31].into(),
        format!("{valid}0"),
        upper.clone(),
        format!("{valid}\n"),
        format!("\n{valid}"),
        format!(" {}", &valid[..31]),
        format!("{valid}.json"),
        format!("{}/{}", &valid[..16], &valid[17..]),
        format!("{}\u{0}{}", &valid[..16], &valid[17..]),
        "..".into(),
        ".".into(),
        "".into(),
        "０１２３４５６７８９ａｂｃｄｅｆ".into(),
        format!("{}é", &valid[..30]),
    ];
    // Where those ids would lead, each a plausible record.
    let record = |id: &str| {
        json!({"id": id, "agent": AGENT, "task": "planted", "status": "done",
            "created_at": 1.0, "completed_at": 2.0, "result": {"success": true, "result": "planted"}})
        .to_string()
    };
    let planted: Vec<PathBuf> = vec![
        scratch.join("x.json"),
        jobs.join("%2e%2e%2fx.json"),
        jobs.join(format!("{}.json", &valid[..31])),
        jobs.join(format!("{valid}0.json")),
        jobs.join(format!("{upper}.json")),
        jobs.join(format!("{valid}\n.json")),
        jobs.join(format!("{valid}.json.json")),
    ];
    for path in &planted {
        let id = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        fs::write(path, record(id)).expect("plant a record");
        age_both_times(path, Duration::from_secs(3 * 86_400));
    }
    // Can reads be seen on this file system? Read a control file and look.
    let control = scratch.join("control.json");
    fs::write(&control, "{}").expect("control file");
    age_both_times(&control, Duration::from_secs(3 * 86_400));
    let before = stamp(&control);
    let _ = fs::read(&control);
    let reads_visible = stamp(&control).map(|t| t.2) != before.map(|t| t.2);
    let stamps: Vec<_> = planted.iter().map(|p| stamp(p)).collect();
    let snapshot = tree(&scratch.path);

    for id in &ids {
        let expected = Msg::exact(job_id_error(id));
        let shown = py_repr(id);
        for (tool, args) in [
            ("dispatch_status", json!({"job_id": id})),
            ("dispatch_wait", json!({"job_id": id, "timeout_seconds": 1})),
            ("dispatch_cancel", json!({"job_id": id})),
            ("fetch_result", json!({"ref": id})),
            ("fetch_result", json!({"ref": id, "max_chars": 5})),
        ] {
            s.tool_refused(&format!("{tool} {shown}"), tool, args, &expected);
        }
    }
    // Other job-tool fields that could be paths are plain filters or refused.
    s.tool_refused(
        "dispatch_jobs status=../x",
        "dispatch_jobs",
        json!({"status": "../x"}),
        &Msg::exact(format!(
            "Invalid status: {}. Use one of: cancelled, done, failed, pending, running or empty.",
            py_repr("../x")
        )),
    );
    for days in [json!(0), json!(-1), json!("NaN")] {
        s.tool_refused(
            &format!("dispatch_gc max_age_days={days}"),
            "dispatch_gc",
            json!({"max_age_days": days, "dry_run": true}),
            &Msg::exact("max_age_days must be > 0"),
        );
    }
    s.tool_refused(
        "dispatch_gc max_age_days=1e308",
        "dispatch_gc",
        json!({"max_age_days": 1e308, "dry_run": true}),
        &Msg::exact("max_age_days is too large (non-finite)"),
    );
    if let Some(rows) = s.tool_ok(
        "dispatch_jobs agent=../../etc",
        "dispatch_jobs",
        json!({"agent": "../../etc"}),
    ) {
        s.check(rows["result"].as_array().is_some_and(Vec::is_empty), || {
            format!(
                "dispatch_jobs agent=../../etc listed jobs: {}",
                short_json(&rows)
            )
        });
    }

    for (path, was) in planted.iter().zip(&stamps) {
        let now = stamp(path);
        let same = match (was, &now) {
            (Some(a), Some(b)) if reads_visible => a == b,
            (Some(a), Some(b)) => (a.0, a.1) == (b.0, b.1),
            _ => false,
        };
        s.check(same, || {
            format!(
                "{} was touched by a refused id: {was:?} -> {now:?}",
                path.display()
            )
        });
        let id = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        s.check(fs::read_to_string(path).ok() == Some(record(id)), || {
            format!("{} changed", path.display())
        });
    }
    let after = tree(&scratch.path);
    // The reads above changed nothing but access times; the listing has no access times.
    s.check(after == snapshot, || {
        let gone: Vec<_> = snapshot.iter().filter(|e| !after.contains(e)).collect();
        let new: Vec<_> = after.iter().filter(|e| !snapshot.contains(e)).collect();
        format!("the scratch tree changed: gone/changed {gone:?}, new/changed {new:?}")
    });
    report_line(&format!(
        "hostile: {} malformed ids refused in 5 job-tool forms; {} planted files untouched (reads {})",
        ids.len(),
        planted.len(),
        if reads_visible { "checked by access time" } else { "not visible here: size and mtime checked" }
    ));
    for path in &planted {
        let _ = fs::remove_file(path);
    }
}

/// `agents.yaml` rewritten between calls (it is re-read on every call) with hostile values:
/// each must work or give an error that names the problem, quickly.
fn hostile_configs(s: &mut Session, scratch: &Scratch, config: &Path) {
    let dir = Value::from(scratch.join("agent").to_str().expect("utf-8 path")).to_string();
    let agent = |extra: &str| format!("agents:\n  {AGENT}:\n    directory: {dir}\n{extra}");
    let set = |text: &str| fs::write(config, text).expect("write agents.yaml");
    let quick = Duration::from_secs(10);

    // Extreme numbers that are valid: dispatches still work (timers saturate).
    let valid_extremes = [
        agent("    timeout: 1000000000000000000\n"),
        agent("    timeout: 18446744073709551615\n"),
        agent("    timeout: 0\nsettings:\n  default_timeout: 1000000000000000000\n"),
        agent("settings:\n  max_concurrency: 1000000000\n  max_dispatch_depth: 4294967295\n"),
        agent("settings:\n  max_concurrency: 4294967295\n  cache:\n    enabled: true\n    ttl: 1000000000000000000\n    max_size: 1000000000000000000\n"),
        agent("    max_budget_usd: 1.0e300\nsettings:\n  job_retention_days: 1.0e300\n  limits:\n    max_line_bytes: 1099511627776\n    stderr_tail_bytes: 4294967296\n    progress_tail: 1000\n    max_parallel_items: 100000\n"),
    ];
    for yaml in &valid_extremes {
        set(yaml);
        let what = format!(
            "dispatch with {:?}",
            yaml.lines().skip(3).collect::<Vec<_>>()
        );
        let started = Instant::now();
        if let Some(payload) = s.tool_ok(
            &what,
            "dispatch",
            json!({"agent": AGENT, "task": "extremes"}),
        ) {
            s.check(payload["success"] == true, || {
                format!("{what}: {}", short_json(&payload))
            });
        }
        let took = started.elapsed();
        s.check(took < quick, || format!("{what}: took {took:?}"));
    }
    // Out of range: an error naming the field.
    let invalid = [
        (
            agent("settings:\n  max_concurrency: 4294967296\n"),
            "settings.max_concurrency: must be an integer <= 4294967295",
        ),
        (
            agent("settings:\n  max_concurrency: 0\n"),
            "settings.max_concurrency: must be an integer >= 1",
        ),
        (
            agent("    timeout: -1\n"),
            "agents.helper.timeout: must be a non-negative integer",
        ),
        (agent("    timeout: 1.0e30\n"), "agents.helper.timeout"),
        (
            agent("    timeout: 100000000000000000000000000000\n"),
            "agents.helper.timeout",
        ),
        (agent("    timeout: .inf\n"), "agents.helper.timeout"),
        (
            agent("    max_budget_usd: .nan\n"),
            "agents.helper.max_budget_usd: must be a non-negative number",
        ),
        (
            agent("settings:\n  default_timeout: 0\n"),
            "settings.default_timeout: must be an integer >= 1",
        ),
        (
            agent("settings:\n  job_retention_days: .inf\n"),
            "settings.job_retention_days: must be a non-negative number",
        ),
        (
            agent("settings:\n  limits:\n    max_line_bytes: 1099511627777\n"),
            "settings.limits.max_line_bytes: must be an integer <= 1099511627776",
        ),
        (
            agent("settings:\n  limits:\n    progress_tail: 1000000000\n"),
            "settings.limits.progress_tail: must be an integer <= 1000",
        ),
        (
            agent("settings:\n  limits:\n    max_parallel_items: 1000000000000000000\n"),
            "settings.limits.max_parallel_items: must be an integer <= 100000",
        ),
        (
            agent("settings:\n  cache:\n    max_size: 0\n"),
            "settings.cache.max_size: must be an integer >= 1",
        ),
        (
            agent("    model: [\"--a\"]\n"),
            "agents.helper.model: must be a string",
        ),
        (
            agent("    allowed_tools: {\"-x\": 1}\n"),
            "agents.helper.allowed_tools: must be a list of strings",
        ),
        (
            "agents:\n  \"-x\":\n    directory: /\n".to_owned(),
            "invalid agent name",
        ),
        (
            "agents:\n  \"a/../b\":\n    directory: /\n".to_owned(),
            "invalid agent name",
        ),
        ("agents: [1, 2]\n".to_owned(), "agents: must be a mapping"),
        ("- 1\n- 2\n".to_owned(), "must be a mapping"),
    ];
    for (yaml, message) in &invalid {
        set(yaml);
        let what = format!(
            "list_agents with {:?}",
            yaml.lines().last().unwrap_or_default()
        );
        let started = Instant::now();
        s.tool_refused(
            &what,
            "list_agents",
            json!({}),
            &Msg::has(&["could not be loaded", message]),
        );
        let took = started.elapsed();
        s.check(took < quick, || format!("{what}: took {took:?}"));
    }

    // Huge strings: 1 MiB each in the descriptive fields.
    let mib = "d".repeat(1 << 20);
    set(&agent(&format!(
        "    description: {mib}\n    instructions: {mib}\n    capabilities: [{mib}]\n"
    )));
    if let Some(list) = s.tool_ok("list_agents with 1 MiB strings", "list_agents", json!({})) {
        let len = list["result"][0]["description"]
            .as_str()
            .map_or(0, str::len);
        s.check(len == mib.len(), || {
            format!("list_agents with 1 MiB strings: description of {len} bytes")
        });
    }
    s.tool_ok(
        "inspect_agent with 1 MiB strings",
        "inspect_agent",
        json!({"name": AGENT}),
    );
    // A dispatch must end (a run, or a refusal that names the system prompt) — never hang.
    if let Some((payload, is_error)) = s.tool(
        "dispatch with 1 MiB instructions",
        "dispatch",
        json!({"agent": AGENT, "task": "huge strings"}),
    ) {
        s.check(
            !is_error || payload["error"].as_str().is_some_and(|e| !e.is_empty()),
            || format!("dispatch with 1 MiB instructions: {}", short_json(&payload)),
        );
    }
    // A 200 KB model cannot be one argument: a clear failure, not a hang.
    set(&agent(&format!("    model: {}\n", "m".repeat(200 * 1024))));
    if let Some((payload, is_error)) = s.tool(
        "dispatch with a 200 KB model",
        "dispatch",
        json!({"agent": AGENT, "task": "x"}),
    ) {
        let error = payload["error"].as_str().unwrap_or_default();
        s.check(
            is_error && payload["success"] == false && !error.is_empty(),
            || format!("dispatch with a 200 KB model: {}", short_json(&payload)),
        );
    }

    // 10 000 agents.
    let mut many = String::from("agents:\n");
    for i in 0..10_000 {
        many.push_str(&format!(
            "  a{i}:\n    directory: {dir}\n    timeout: 600\n"
        ));
    }
    set(&many);
    let started = Instant::now();
    if let Some(list) = s.tool_ok("list_agents with 10 000 agents", "list_agents", json!({})) {
        let n = list["result"].as_array().map_or(0, Vec::len);
        s.check(n == 10_000, || {
            format!("list_agents with 10 000 agents listed {n}")
        });
    }
    report_line(&format!(
        "hostile: list_agents of 10 000 agents: {:.2?}",
        started.elapsed()
    ));
    s.tool_ok(
        "inspect_agent a9999 of 10 000",
        "inspect_agent",
        json!({"name": "a9999"}),
    );
    if let Some(payload) = s.tool_ok(
        "dispatch to a5000 of 10 000",
        "dispatch",
        json!({"agent": "a5000", "task": "many agents"}),
    ) {
        s.check(payload["success"] == true, || {
            format!("dispatch to a5000: {}", short_json(&payload))
        });
    }

    // Deeply nested YAML: fine while shallow, a clear error from 1 000 levels on.
    for depth in [10, 100, 1_000, 10_000] {
        let shapes = [
            format!("x: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
            format!("x: {}1{}\n", "{a: ".repeat(depth), "}".repeat(depth)),
            format!(
                "x:\n{}",
                (0..depth.min(2_000))
                    .map(|i| format!("{}-\n", " ".repeat(i)))
                    .collect::<String>()
            ),
        ];
        for (shape, nested) in shapes.iter().enumerate() {
            set(&format!("{}{nested}", agent("")));
            let what = format!("list_agents with YAML nested {depth} deep (shape {shape})");
            let started = Instant::now();
            if depth >= 1_000 {
                s.tool_refused(
                    &what,
                    "list_agents",
                    json!({}),
                    &Msg::has(&["not valid YAML", "recursion limit exceeded"]),
                );
            } else {
                s.tool_ok(&what, "list_agents", json!({}));
            }
            let took = started.elapsed();
            s.check(took < quick, || format!("{what}: took {took:?}"));
        }
    }
    // The classic alias bomb: nine levels of nine.
    let mut laughs = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 9].join(", ");
        laughs.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    set(&format!("{}{laughs}", agent("")));
    let started = Instant::now();
    s.tool_refused(
        "list_agents with a billion laughs",
        "list_agents",
        json!({}),
        &Msg::has(&["not valid YAML", "repetition limit exceeded"]),
    );
    let took = started.elapsed();
    s.check(took < quick, || format!("the billion laughs took {took:?}"));
    // Not UTF-8, not YAML, binary.
    let broken: [(&[u8], &str); 4] = [
        (
            b"agents:\n  a:\n    directory: /\xff\xfe\n",
            "not valid UTF-8",
        ),
        (b"agents: {\n", "not valid YAML"),
        (b"\x00\x01\x02\x03", "not valid YAML"),
        (b"agents: !!binary aGVsbG8=\n", "agents: must be a mapping"),
    ];
    for (bytes, message) in broken {
        fs::write(config, bytes).expect("write agents.yaml");
        s.tool_refused(
            &format!("list_agents with {bytes:?}"),
            "list_agents",
            json!({}),
            &Msg::has(&["could not be loaded", message]),
        );
    }
    set(&agent(""));
    s.tool_ok(
        "list_agents after the hostile configs",
        "list_agents",
        json!({}),
    );
}

// ---------------------------------------------------------------------------------------------
// a child's huge stdout line

/// A `sh` fake `claude`: an init line, one assistant line of exactly `bytes` bytes (valid
/// JSON, so it is parsed whole when it fits under the cap), then a result.
fn fake_with_one_huge_line(scratch: &Scratch, bytes: usize) -> PathBuf {
    let head = r#"{"type":"assistant","message":{"content":[{"type":"text","text":""#;
    let tail = r#""}]}}"#;
    let pad = bytes - head.len() - tail.len();
    write_script(
        &scratch.path,
        "claude-huge-line",
        &format!(
            "sid=00000000-0000-4000-8000-000000000000\n\
             prev=\n\
             for a in \"$@\"; do [ \"$prev\" = --session-id ] && sid=$a; prev=$a; done\n\
             printf '%s\\n' '{{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"'$sid'\"}}'\n\
             printf '%s' '{head}'\n\
             head -c {pad} /dev/zero | tr '\\000' x\n\
             printf '%s\\n' '{tail}'\n\
             printf '%s\\n' '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"duration_ms\":1,\"num_turns\":1,\"result\":\"after the big line\",\"session_id\":\"'$sid'\",\"total_cost_usd\":0.0001}}'\n"
        ),
    )
}

/// A child prints one 64 MiB stdout line (one byte under the default cap) then its result:
/// the dispatch returns the result; returns the server's memory afterwards.
fn child_huge_line(test: &str, settings: &[&str]) -> Memory {
    let scratch = Scratch::new(test);
    let fake = fake_with_one_huge_line(&scratch, CLIENT_CAP - 1);
    let config = helper_config(&scratch, settings);
    let mut server = McpServer::start(&scratch, &config, &claude_env(&fake, &[]));
    server.initialize();
    let started = Instant::now();
    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": AGENT, "task": "print a huge line"}),
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    assert!(!is_error, "{}", short_json(&payload));
    assert_eq!(payload["success"], true, "{}", short_json(&payload));
    assert_eq!(payload["result"], "after the big line");
    let ping = server.request_within("ping", json!({}), Duration::from_secs(10));
    assert_eq!(ping["result"], json!({}));
    let memory = server.memory();
    report_line(&format!(
        "{test}: a child's 64 MiB stdout line, then its result: answered in {took:.2?}; server {memory}"
    ));
    memory
}

/// With `settings.limits.max_line_bytes: 1048576` the 64 MiB line is cut at 1 MiB: the
/// server's peak RSS stays under 100 MB.
#[test]
fn child_64_mib_line_with_a_1_mib_line_cap() {
    const TEST: &str = "child_64_mib_line_with_a_1_mib_line_cap";
    let memory = child_huge_line(TEST, &["  limits:\n    max_line_bytes: 1048576"]);
    assert!(
        memory.peak_kib < PEAK_BOUND_KIB,
        "{TEST}: the server's {memory}: over 100 MB"
    );
}

/// With the default cap (64 MiB) the line fits and is held (and parsed) once: the figure is
/// printed, not bounded.
#[test]
fn child_64_mib_line_with_the_default_line_cap() {
    child_huge_line("child_64_mib_line_with_the_default_line_cap", &[]);
}

// ---------------------------------------------------------------------------------------------
// what the main session cannot show: settings-driven limits, YAML that costs more than its size

/// `settings.limits.max_line_bytes` says client lines use the value read when the server
/// starts: with 16 MiB there, a 63 MiB request is refused as too long, and the server never
/// holds it (peak RSS under 100 MB).
#[test]
fn client_lines_follow_settings_max_line_bytes() {
    const TEST: &str = "client_lines_follow_settings_max_line_bytes";
    let scratch = Scratch::new(TEST);
    let config = helper_config(&scratch, &["  limits:\n    max_line_bytes: 16777216"]);
    let mut server = McpServer::start(&scratch, &config, &[]);
    server.initialize();
    let head = br#"{"jsonrpc":"2.0","id":"big","method":"ping","params":{"x":""#;
    server.send_raw(head);
    let chunk = vec![b'a'; 64 << 10];
    for _ in 0..(63 << 20) / chunk.len() {
        server.send_raw(&chunk);
    }
    server.send_raw(b"\"}}\n");
    let started = Instant::now();
    let first = server.try_next_message(REPLY_LIMIT);
    let memory = server.memory();
    report_line(&format!(
        "{TEST}: a valid 63 MiB ping with max_line_bytes 16 MiB: {:?} after {:.2?}; server {memory}",
        first.as_ref().map(short_json),
        started.elapsed()
    ));
    let ping = server.request_within("ping", json!({}), Duration::from_secs(10));
    assert_eq!(ping["result"], json!({}), "still serving");
    let reply = first.unwrap_or_else(|e| panic!("{TEST}: {e}"));
    assert!(
        reply["id"].is_null() && reply["error"]["code"] == PARSE_ERROR,
        "{TEST}: a 63 MiB line over the configured 16 MiB cap must be refused as a parse error, got {}",
        short_json(&reply)
    );
    assert!(
        memory.peak_kib < PEAK_BOUND_KIB,
        "{TEST}: the server's {memory}: over 100 MB for a line over its configured cap"
    );
}

/// YAML aliases repeated over a wide anchor: an 8 KB file that expands to a million nodes.
/// It must be refused (or read) quickly without the memory its expansion would take.
#[test]
fn yaml_alias_amplification_is_bounded() {
    const TEST: &str = "yaml_alias_amplification_is_bounded";
    let scratch = Scratch::new(TEST);
    let items: Vec<String> = (0..1_000).map(|i| format!("s{i}")).collect();
    let yaml = format!(
        "x: &a [{}]\ny: [{}]\nagents: {{}}\n",
        items.join(","),
        vec!["*a"; 1_000].join(",")
    );
    let config = scratch.join("agents.yaml");
    fs::write(&config, &yaml).expect("write agents.yaml");
    let mut server = McpServer::start(&scratch, &config, &[]);
    server.initialize();
    let id = server.send_request(
        "tools/call",
        json!({"name": "list_agents", "arguments": {}}),
    );
    let started = Instant::now();
    let reply = server.try_reply_to(&json!(id), Duration::from_secs(60));
    let took = started.elapsed();
    let memory = server.memory();
    report_line(&format!(
        "{TEST}: a {}-byte agents.yaml of 1 000 aliases to a 1 000-item anchor: answered in {took:.2?}; server {memory}",
        yaml.len()
    ));
    let reply = reply.unwrap_or_else(|e| panic!("{TEST}: {e}"));
    assert!(reply.get("result").is_some(), "{}", short_json(&reply));
    assert!(
        memory.peak_kib < PEAK_BOUND_KIB && took < Duration::from_secs(5),
        "{TEST}: an {}-byte config cost {took:.2?} and a {memory} (bounds: 5 s, 100 MB)",
        yaml.len()
    );
}

/// The replies to `ids` that arrive within `limit` of `started`, each with when it came.
fn replies_within(
    server: &mut McpServer,
    ids: &[i64],
    started: Instant,
    limit: Duration,
) -> Vec<Option<(Value, Duration)>> {
    let mut got: Vec<Option<(Value, Duration)>> = vec![None; ids.len()];
    while got.iter().any(Option::is_none) {
        let left = limit.saturating_sub(started.elapsed());
        let Ok(message) = server.try_next_message(left) else {
            break;
        };
        if let Some(i) = ids.iter().position(|id| message["id"] == *id) {
            got[i] = Some((message, started.elapsed()));
        }
    }
    got
}

/// A flow sequence nested 100 000 deep (200 KB): the server answers `initialize`, a ping and
/// `list_agents` (refused: too deep) within 5 s of starting.
#[test]
fn deeply_nested_yaml_fails_fast() {
    const TEST: &str = "deeply_nested_yaml_fails_fast";
    let scratch = Scratch::new(TEST);
    let depth = 100_000;
    let config = scratch.join("agents.yaml");
    fs::write(
        &config,
        format!(
            "agents: {{}}\nx: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    )
    .expect("write agents.yaml");
    let started = Instant::now();
    let mut server = McpServer::start(&scratch, &config, &[]);
    let ids = [
        server.send_request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": TEST, "version": "0"}}),
        ),
        server.send_request("ping", json!({})),
        server.send_request(
            "tools/call",
            json!({"name": "list_agents", "arguments": {}}),
        ),
    ];
    let got = replies_within(&mut server, &ids, started, Duration::from_secs(5));
    // Nothing more to learn: do not wait for the parse to end.
    server.kill9();
    let shown: Vec<String> = ["initialize", "ping", "list_agents"]
        .iter()
        .zip(&got)
        .map(|(what, reply)| match reply {
            Some((_, at)) => format!("{what} answered after {at:.2?}"),
            None => format!("{what} not answered within 5 s"),
        })
        .collect();
    report_line(&format!(
        "{TEST}: a server started on YAML nested {depth} deep: {}",
        shown.join(", ")
    ));
    assert!(
        got.iter().all(Option::is_some),
        "{TEST}: with a 200 KB agents.yaml nested {depth} deep: {}",
        shown.join(", ")
    );
    let reply = &got[2].as_ref().expect("checked").0;
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reply["result"]["isError"] == true && text.contains("recursion limit exceeded"),
        "{}",
        short_json(reply)
    );
}

/// `agents.yaml` replaced by a FIFO nobody writes to: a tool call gets an error within 5 s
/// rather than waiting for a writer for ever.
#[test]
fn config_that_is_a_fifo_does_not_hang() {
    const TEST: &str = "config_that_is_a_fifo_does_not_hang";
    let scratch = Scratch::new(TEST);
    let config = helper_config(&scratch, &[]);
    let mut server = McpServer::start(&scratch, &config, &[]);
    server.initialize();
    fs::remove_file(&config).expect("remove agents.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&config)
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        report_line(&format!("skipped: {TEST}: mkfifo failed"));
        return;
    }
    let id = server.send_request(
        "tools/call",
        json!({"name": "list_agents", "arguments": {}}),
    );
    let reply = server.try_reply_to(&json!(id), Duration::from_secs(5));
    if reply.is_err() {
        // Release a reader blocked in open(2) so the server can be shut down. Non-blocking
        // (O_NONBLOCK, 0o4000 on Linux): with no reader waiting it fails instead of hanging.
        use std::os::unix::fs::OpenOptionsExt;
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000)
            .open(&config);
    }
    let ping = server.request_within("ping", json!({}), Duration::from_secs(10));
    assert_eq!(ping["result"], json!({}), "still serving");
    let reply = reply.unwrap_or_else(|e| {
        panic!("{TEST}: list_agents with agents.yaml a FIFO: no answer within 5 s ({e})")
    });
    assert_eq!(reply["result"]["isError"], true, "{}", short_json(&reply));
}
