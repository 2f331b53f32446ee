//! Dispatch with real processes (design.md §7, layer 2): the built `agent-dispatch serve`,
//! driven with raw JSON-RPC lines over stdio, runs `fixtures/bin/fake-claude-scenarios` as its
//! `claude` (`AGENT_DISPATCH_CLAUDE`), sometimes behind a small `sh` wrapper. This is what only
//! real processes show: the process-group kill with a grandchild holding the pipes, the
//! limiter's real concurrency, a big prompt on stdin, a stderr flood, garbage and crashes,
//! flag injection, cancellation, progress, and job records across `kill -9` of the server.
//!
//! Every wait polls with a deadline; the time bounds are the design's own (timeouts, grace,
//! linger) plus slack for a loaded 2-core machine. Measured times are printed on stderr. The
//! fake is a Python script: without `python3` the tests print `skipped: <why>` (a failure with
//! `AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1`).

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use support::*;

const AGENT: &str = "helper";

// ---------------------------------------------------------------------------------------------
// the rig

/// An initialized server whose `claude` is `claude`, with one agent (`helper`, an empty
/// directory, `agent_extra` lines), `settings` lines, the cache off, and `vars` (plus
/// `FAKE_CLAUDE_LOG`) in its environment for the children.
fn serve(
    scratch: &Scratch,
    claude: &Path,
    agent_extra: &[&str],
    settings: &[&str],
    vars: &[(&str, &str)],
) -> McpServer {
    let agent_dir = scratch.dir("agent");
    let config = write_config(
        scratch,
        &[TestAgent {
            name: AGENT,
            directory: &agent_dir,
            extra: agent_extra,
        }],
        settings,
    );
    let log = fake_log(scratch);
    let mut vars = vars.to_vec();
    vars.push(("FAKE_CLAUDE_LOG", log.to_str().expect("utf-8 path")));
    let mut server = McpServer::start(scratch, &config, &claude_env(claude, &vars));
    server.initialize();
    server
}

/// Prints a measured time on the real stderr (libtest captures `eprintln!`).
fn report(test: &str, what: &str, took: Duration) {
    let _ = writeln!(std::io::stderr(), "{test}: {what}: {took:.2?}");
}

/// The `session_id` of a dispatch result, checked to be a UUID.
fn session_id_of(payload: &Value) -> String {
    let sid = payload["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session_id in {payload:#}"));
    assert!(is_uuid(sid), "session_id is a UUID: {sid:?}");
    sid.to_owned()
}

/// The value after `flag` in an argv array.
fn arg_after<'a>(argv: &'a Value, flag: &str) -> Option<&'a str> {
    let argv = argv.as_array()?;
    let i = argv.iter().position(|a| a == flag)?;
    argv.get(i + 1)?.as_str()
}

/// `<pid> <grandchild pid>` from `FAKE_CLAUDE_PID_FILE`.
fn read_pids(path: &Path) -> (u32, u32) {
    let text = fs::read_to_string(path).expect("read the pid file");
    let pids: Vec<u32> = text
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 2, "pid file: {text:?}");
    (pids[0], pids[1])
}

/// Sets a file's modification time to `age` ago.
fn backdate(path: &Path, age: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now() - age))
        .unwrap_or_else(|e| panic!("backdate {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// 1. timeouts: the whole process group goes, grandchild included

/// A dispatch to a fake that starts a grandchild holding stdout and stderr, then never ends:
/// the timeout answer (with its session id and how to resume) arrives within 14 s of the
/// call, not before `min_secs`, and no member of the child's process group survives it by
/// more than 2 s.
fn timeout_kills_the_group(test: &str, agent_extra: &[&str], args: Value, ignore_term: bool) {
    let Some(scratch) = scratch_for(test) else {
        return;
    };
    let pid_file = scratch.join("pids");
    let mut vars = vec![
        ("FAKE_CLAUDE_MODE", "grandchild"),
        (
            "FAKE_CLAUDE_PID_FILE",
            pid_file.to_str().expect("utf-8 path"),
        ),
    ];
    if ignore_term {
        vars.push(("FAKE_CLAUDE_IGNORE_TERM", "1"));
    }
    let mut server = serve(&scratch, &fake_claude(), agent_extra, &[], &vars);
    let mut arguments = json!({"agent": AGENT, "task": "wait for ever"});
    for (k, v) in args.as_object().expect("args object") {
        arguments[k] = v.clone();
    }
    let started = Instant::now();
    let id = server.send_request(
        "tools/call",
        json!({"name": "dispatch_session", "arguments": arguments}),
    );

    // The leader (the group's id) and its grandchild, alive and in one group.
    assert!(
        wait_until(Duration::from_secs(8), || pid_file.exists()).is_some(),
        "the fake wrote no pid file in 8 s\nserver stderr:\n{}",
        server.stderr_so_far()
    );
    let (leader, grandchild) = read_pids(&pid_file);
    assert_ne!(grandchild, 0, "grandchild mode starts a grandchild");
    let pgid = leader;
    for pid in [leader, grandchild] {
        let stat = ProcStat::of(pid).unwrap_or_else(|| panic!("process {pid} is running"));
        assert!(stat.is_live(), "{stat:?}");
        assert_eq!(stat.pgrp, pgid, "the child leads its own group: {stat:?}");
    }
    let runs = read_json_lines(&fake_log(&scratch));
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    assert_eq!(runs[0]["pid"], leader);
    assert_eq!(runs[0]["pgid"], pgid);

    let reply = server.reply_within(id, Duration::from_secs(30));
    let took = started.elapsed();
    report(test, "timeout answer after", took);
    let result = &reply["result"];
    let payload = tool_payload(result);
    let why = format!("{payload:#}\nserver stderr:\n{}", server.stderr_so_far());
    assert_eq!(result["isError"], true, "{why}");
    assert_eq!(payload["success"], false, "{why}");
    assert_eq!(payload["error_type"], "timeout", "{why}");
    let sid = session_id_of(&payload);
    assert_eq!(
        arg_after(&runs[0]["argv"], "--session-id"),
        Some(sid.as_str()),
        "the id the child was started with: {why}"
    );
    let error = payload["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("Agent 'helper' timed out after 10s."),
        "{why}"
    );
    assert!(
        error.contains(&format!(
            "dispatch_session(agent='helper', task='Continue where you left off', session_id='{sid}')"
        )),
        "the error says how to resume: {why}"
    );
    // TERM at 10 s; when it is ignored, KILL after the 2 s grace.
    let min = Duration::from_millis(if ignore_term { 11_900 } else { 9_900 });
    assert!(
        took >= min,
        "answered after {took:?}, before {min:?}: {why}"
    );
    assert!(
        took < Duration::from_secs(14),
        "answered after {took:?}: {why}"
    );

    let gone = wait_until(Duration::from_secs(2), || group_members(pgid).is_empty());
    assert!(
        gone.is_some(),
        "process group {pgid} survived the timeout: {:?}",
        group_members(pgid)
    );
    report(
        test,
        "group gone after the answer within",
        gone.unwrap_or_default(),
    );
}

#[test]
fn timeout_kills_the_group_with_a_grandchild() {
    timeout_kills_the_group(
        "timeout_kills_the_group_with_a_grandchild",
        &["    timeout: 10"],
        json!({}),
        false,
    );
}

/// The one-off `timeout_seconds` (3, clamped to 10) and a child that ignores SIGTERM (its
/// grandchild inherits that): only the SIGKILL after the grace ends them.
#[test]
fn timeout_kills_a_group_that_ignores_term() {
    timeout_kills_the_group(
        "timeout_kills_a_group_that_ignores_term",
        &[],
        json!({"timeout_seconds": 3}),
        true,
    );
}

/// The leader prints its result and exits, but a grandchild keeps stdout and stderr open: the
/// result is answered once the leader has exited and `LINGER` (1 s) passed, and the grandchild
/// is killed with the group.
#[test]
fn grandchild_holding_the_pipes_after_the_result() {
    const TEST: &str = "grandchild_holding_the_pipes_after_the_result";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let pid_file = scratch.join("pids");
    let vars = [
        ("FAKE_CLAUDE_MODE", "grandchild"),
        ("FAKE_CLAUDE_PARENT_EXIT", "1"),
        (
            "FAKE_CLAUDE_PID_FILE",
            pid_file.to_str().expect("utf-8 path"),
        ),
    ];
    let mut server = serve(&scratch, &fake_claude(), &[], &[], &vars);
    let started = Instant::now();
    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": AGENT, "task": "answer and leave"}),
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    report(TEST, "answer after", took);
    let why = format!("{payload:#}\nserver stderr:\n{}", server.stderr_so_far());
    assert!(!is_error, "{why}");
    assert_eq!(payload["success"], true, "{why}");
    assert_eq!(
        payload["result"], "fake result; a grandchild still holds stdout",
        "{why}"
    );
    session_id_of(&payload);
    let (leader, grandchild) = read_pids(&pid_file);
    assert_ne!(grandchild, 0);
    let gone = wait_until(Duration::from_secs(2), || group_members(leader).is_empty());
    assert!(
        gone.is_some(),
        "the grandchild survived: {:?}",
        group_members(leader)
    );
    // The leader exits right after its result; then LINGER (1 s), not RESULT_GRACE (5 s, for
    // a leader that keeps running), is what may pass. The slack is for a loaded machine.
    assert!(
        took < Duration::from_secs(4),
        "a grandchild holding the pipes kept the answer back for {took:?} (LINGER is 1 s): {why}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. the limiter

/// `max_concurrency: 3` and 12 one-second runs through dispatch_parallel: a wrapper logs when
/// each child starts and ends, and at no instant were more than 3 alive (but 3 were); all 12
/// succeed, in 4 waves: under 6.5 s.
#[test]
fn limiter_caps_concurrent_children() {
    const TEST: &str = "limiter_caps_concurrent_children";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let events = scratch.join("events.log");
    let wrapper = write_script(
        &scratch.path,
        "claude-timed",
        &format!(
            "log={log}\n\
             echo \"start $$ $(date +%s%N)\" >> \"$log\"\n\
             {fake} \"$@\"\n\
             rc=$?\n\
             echo \"end $$ $(date +%s%N)\" >> \"$log\"\n\
             exit $rc\n",
            log = sh_quote(events.to_str().expect("utf-8 path")),
            fake = sh_quote(fake_claude().to_str().expect("utf-8 path")),
        ),
    );
    let vars = [("FAKE_CLAUDE_MODE", "sleep"), ("FAKE_CLAUDE_SECONDS", "1")];
    let mut server = serve(&scratch, &wrapper, &[], &["  max_concurrency: 3"], &vars);
    let items: Vec<Value> = (0..12)
        .map(|i| json!({"agent": AGENT, "task": format!("item {i}")}))
        .collect();
    let started = Instant::now();
    let (payload, is_error) = server.call_within(
        "dispatch_parallel",
        json!({"dispatches": Value::Array(items).to_string()}),
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    report(TEST, "12 runs of 1 s, 3 at a time, took", took);
    let why = format!("{payload:#}\nserver stderr:\n{}", server.stderr_so_far());
    assert!(!is_error, "{why}");
    let results = payload["result"]
        .as_array()
        .unwrap_or_else(|| panic!("an array of results: {why}"));
    assert_eq!(results.len(), 12, "{why}");
    for result in results {
        assert_eq!(result["success"], true, "{result:#}");
        assert_eq!(
            result["result"], "fake success after sleeping",
            "{result:#}"
        );
    }

    let text = fs::read_to_string(&events).expect("read the wrapper's log");
    let mut timeline: Vec<(u128, i32)> = text
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "log line {line:?}");
            let at: u128 = parts[2].parse().unwrap_or_else(|e| panic!("{e}: {line:?}"));
            match parts[0] {
                "start" => (at, 1),
                "end" => (at, -1),
                other => panic!("log line {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        timeline.iter().filter(|(_, d)| *d == 1).count(),
        12,
        "12 starts: {text}"
    );
    assert_eq!(
        timeline.iter().filter(|(_, d)| *d == -1).count(),
        12,
        "12 ends: {text}"
    );
    // At equal instants an end counts first (the next start may only follow it).
    timeline.sort();
    let mut alive = 0;
    let mut most = 0;
    for (_, delta) in &timeline {
        alive += delta;
        most = most.max(alive);
    }
    assert!(most <= 3, "{most} children alive at once: {text}");
    assert_eq!(most, 3, "the limiter lets 3 run at once: {text}");
    assert!(
        took < Duration::from_millis(6_500),
        "12 one-second runs, 3 at a time, took {took:?}: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. how the prompt reaches the child

/// About `bytes` bytes (cut on a character boundary) of varied lines: ASCII, accents, CJK,
/// emoji, tabs, quotes, backslashes, CR LF, JSON-looking text.
fn varied_text(bytes: usize) -> String {
    const PIECES: [&str; 12] = [
        "plain ascii words and numbers 12345",
        "café crème brûlée, naïve façade",
        "snowman ☃ and Ωμέγα and ünïcödé",
        "日本語のテキストと中文文本",
        "emoji 🎉🚀🦀 in the middle",
        "a\ttab\tseparated\tline",
        "quotes \"double\" 'single' `back`",
        r"backslashes \ \\ \n \u0041 literal",
        "a CR LF line\r",
        "-a line that starts with a dash",
        r#"{"json": [1, 2, {"x": null}]}"#,
        "   leading and trailing spaces   ",
    ];
    let mut text = String::with_capacity(bytes + 64);
    let mut i = 0;
    while text.len() < bytes {
        text.push_str(&format!("{i:06} {}\n", PIECES[i % PIECES.len()]));
        i += 1;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// What the echo fake saw: its result text, parsed.
fn echoed(payload: &Value) -> Value {
    assert_eq!(payload["success"], true, "echo run failed: {payload:#}");
    let text = payload["result"].as_str().expect("result text");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("echo result is not JSON ({e})"))
}

/// A 1 MiB task is too long for one argv entry: it reaches the child on stdin (a pipe), byte
/// for byte inside the structured prompt. A small task is the argument after `-p`, with stdin
/// on /dev/null.
#[test]
fn big_task_arrives_on_stdin_intact() {
    const TEST: &str = "big_task_arrives_on_stdin_intact";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    // The fake reads stdin until EOF (or this many seconds).
    let vars = [
        ("FAKE_CLAUDE_MODE", "echo"),
        ("FAKE_CLAUDE_STDIN_WAIT", "30"),
    ];
    let mut server = serve(&scratch, &fake_claude(), &[], &[], &vars);

    let task = varied_text(1 << 20);
    assert!(task.len() > (1 << 20) - 4 && task.len() <= 1 << 20);
    let started = Instant::now();
    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": AGENT, "task": task, "caller": "tests", "goal": "check the pipe"}),
        Duration::from_secs(60),
    );
    report(TEST, "1 MiB task round trip", started.elapsed());
    assert!(!is_error, "{}", payload["error"]);
    let facts = echoed(&payload);
    let argv = &facts["argv"];
    assert_eq!(
        arg_after(argv, "-p"),
        Some("--output-format"),
        "no prompt after -p: {argv}"
    );
    // Every entry is short but the dispatch protocol's system prompt, which is ours.
    let system_prompt = arg_after(argv, "--append-system-prompt").expect("protocol text");
    assert!(
        system_prompt.starts_with("## Dispatch protocol\n") && system_prompt.len() < 2000,
        "the protocol text: {system_prompt:?}"
    );
    assert!(
        argv.as_array()
            .expect("argv")
            .iter()
            .filter_map(Value::as_str)
            .all(|a| a.len() < 200 || a == system_prompt),
        "no long argv entry: {argv}"
    );
    assert_eq!(facts["stdin"]["kind"], "fifo", "stdin is a pipe");
    let data = facts["stdin"]["data"].as_str().expect("stdin data");
    let header = "## Goal\ncheck the pipe\n\n## Dispatched by\ntests\n\n## Task\n";
    assert!(
        data.starts_with(header),
        "the structured prompt: {:?}…",
        &data[..data.len().min(200)]
    );
    let got = &data[header.len()..];
    assert_eq!(got.len(), task.len(), "the task's length in bytes");
    let first_difference = got.bytes().zip(task.bytes()).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "the task arrived intact");
    assert!(got == task);

    let small = "say hi — ünïcode ✓";
    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": AGENT, "task": small}),
        Duration::from_secs(30),
    );
    assert!(!is_error, "{payload:#}");
    let facts = echoed(&payload);
    assert_eq!(arg_after(&facts["argv"], "-p"), Some(small), "{facts:#}");
    assert_eq!(facts["stdin"]["kind"], "devnull", "{facts:#}");
    assert_eq!(facts["stdin"]["data"], "", "{facts:#}");
    assert_eq!(
        facts["cwd"],
        scratch.join("agent").to_str().expect("utf-8"),
        "the agent's directory"
    );
    assert_eq!(facts["env"]["AGENT_DISPATCH_DEPTH"], "1", "depth + 1");
}

// ---------------------------------------------------------------------------------------------
// 4-6. what the child writes

/// 16 MiB on stderr while stdout is read: stderr is drained, nothing blocks.
#[test]
fn stderr_flood_does_not_block() {
    const TEST: &str = "stderr_flood_does_not_block";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let vars = [("FAKE_CLAUDE_MODE", "stderr-flood")];
    let mut server = serve(&scratch, &fake_claude(), &[], &[], &vars);
    let started = Instant::now();
    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": AGENT, "task": "flood"}),
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    report(TEST, "16 MiB of stderr took", took);
    assert!(!is_error, "{payload:#}");
    assert_eq!(payload["success"], true, "{payload:#}");
    assert_eq!(
        payload["result"], "fake success after 16777216 bytes of stderr",
        "{payload:#}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// Non-JSON lines, invalid UTF-8, broken and odd JSON before the result: the result wins.
#[test]
fn garbage_before_the_result() {
    const TEST: &str = "garbage_before_the_result";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let vars = [("FAKE_CLAUDE_MODE", "garbage")];
    let mut server = serve(&scratch, &fake_claude(), &[], &[], &vars);
    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": AGENT, "task": "make a mess"}),
        Duration::from_secs(30),
    );
    assert!(!is_error, "{payload:#}");
    assert_eq!(payload["success"], true, "{payload:#}");
    assert_eq!(
        payload["result"], "fake success after garbage",
        "{payload:#}"
    );
    assert!(payload.get("error_type").is_none(), "{payload:#}");
    assert_eq!(payload["num_turns"], 1, "{payload:#}");
    session_id_of(&payload);
}

/// Half a JSON line, "fake-claude: crashed" on stderr, exit 1: a failure that says so.
#[test]
fn crash_mid_line() {
    const TEST: &str = "crash_mid_line";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let vars = [("FAKE_CLAUDE_MODE", "crash")];
    let mut server = serve(&scratch, &fake_claude(), &[], &[], &vars);
    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": AGENT, "task": "crash"}),
        Duration::from_secs(30),
    );
    assert!(is_error, "{payload:#}");
    assert_eq!(payload["success"], false, "{payload:#}");
    assert_eq!(payload["error_type"], "cli_error", "{payload:#}");
    assert_eq!(
        payload["error"], "claude exited with code 1: fake-claude: crashed",
        "{payload:#}"
    );
    let sid = session_id_of(&payload);
    let runs = read_json_lines(&fake_log(&scratch));
    assert_eq!(
        arg_after(&runs[0]["argv"], "--session-id"),
        Some(sid.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// 7. flag injection

/// A config value that looks like a flag is refused before anything runs; a task that starts
/// with `-` goes on stdin, never onto the command line where it would be an option.
#[test]
fn flag_injection_is_refused_or_defused() {
    const TEST: &str = "flag_injection_is_refused_or_defused";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let agent_dir = scratch.dir("agent");
    let config = write_config(
        &scratch,
        &[
            TestAgent {
                name: AGENT,
                directory: &agent_dir,
                extra: &[],
            },
            TestAgent {
                name: "sneaky",
                directory: &agent_dir,
                extra: &["    model: \"--dangerously-skip-permissions\""],
            },
        ],
        &[],
    );
    let log = fake_log(&scratch);
    let vars = [
        ("FAKE_CLAUDE_MODE", "echo"),
        ("FAKE_CLAUDE_STDIN_WAIT", "30"),
        ("FAKE_CLAUDE_LOG", log.to_str().expect("utf-8 path")),
    ];
    let mut server = McpServer::start(&scratch, &config, &claude_env(&fake_claude(), &vars));
    server.initialize();

    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": "sneaky", "task": "hello"}),
        Duration::from_secs(30),
    );
    assert!(is_error, "{payload:#}");
    assert_eq!(payload["success"], false, "{payload:#}");
    assert_eq!(payload["error_type"], "cli_error", "{payload:#}");
    let error = payload["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("'--dangerously-skip-permissions' starts with '-'"),
        "{payload:#}"
    );
    assert_eq!(
        read_json_lines(&log),
        Vec::<Value>::new(),
        "nothing was run"
    );

    let (payload, is_error) = server.call_within(
        "dispatch_session",
        json!({"agent": AGENT, "task": "--help me"}),
        Duration::from_secs(30),
    );
    assert!(!is_error, "{payload:#}");
    let facts = echoed(&payload);
    let argv = &facts["argv"];
    assert_eq!(arg_after(argv, "-p"), Some("--output-format"), "{argv}");
    assert!(
        !argv
            .as_array()
            .expect("argv")
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.contains("--help"))),
        "the task is not on the command line: {argv}"
    );
    assert_eq!(facts["stdin"]["kind"], "fifo", "{facts:#}");
    assert_eq!(facts["stdin"]["data"], "--help me", "{facts:#}");
    let runs = read_json_lines(&log);
    assert_eq!(runs.len(), 1, "only the helper ran: {runs:?}");
    assert!(
        !runs[0]["argv"].to_string().contains("dangerously"),
        "{runs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. cancellation

/// `notifications/cancelled` for a running dispatch: its child dies at once, the request gets
/// no reply, and its slot goes to the dispatch queued behind it (`max_concurrency: 1`).
#[test]
fn cancelled_request_kills_its_child() {
    const TEST: &str = "cancelled_request_kills_its_child";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    // A task with SLOW in it sleeps 60 s; others 0.3 s.
    let wrapper = write_script(
        &scratch.path,
        "claude-slow-or-quick",
        &format!(
            "case \"$2\" in *SLOW*) FAKE_CLAUDE_SECONDS=60; export FAKE_CLAUDE_SECONDS;; esac\n\
             exec {fake} \"$@\"\n",
            fake = sh_quote(fake_claude().to_str().expect("utf-8 path")),
        ),
    );
    let vars = [
        ("FAKE_CLAUDE_MODE", "sleep"),
        ("FAKE_CLAUDE_SECONDS", "0.3"),
    ];
    let mut server = serve(&scratch, &wrapper, &[], &["  max_concurrency: 1"], &vars);
    let log = fake_log(&scratch);
    let call = |task: &str| json!({"name": "dispatch_session", "arguments": {"agent": AGENT, "task": task}});

    let slow = server.send_request("tools/call", call("a SLOW task"));
    assert!(
        wait_until(Duration::from_secs(10), || read_json_lines(&log).len() == 1).is_some(),
        "the slow run did not start\nserver stderr:\n{}",
        server.stderr_so_far()
    );
    let pid = read_json_lines(&log)[0]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .expect("pid");
    assert!(is_alive(pid));
    let quick = server.send_request("tools/call", call("a quick task"));

    server.notify(
        "notifications/cancelled",
        json!({"requestId": slow, "reason": "the test changed its mind"}),
    );
    let gone = wait_until(Duration::from_secs(2), || !is_alive(pid));
    assert!(
        gone.is_some(),
        "the cancelled run's child {pid} still runs 2 s later: {:?}",
        ProcStat::of(pid)
    );
    report(
        TEST,
        "child gone after the cancel within",
        gone.unwrap_or_default(),
    );

    let lines = server.lines_until(quick, Duration::from_secs(20));
    let reply = lines.last().expect("the reply");
    let payload = tool_payload(&reply["result"]);
    assert_eq!(payload["success"], true, "{payload:#}");
    assert_eq!(
        payload["result"], "fake success after sleeping",
        "{payload:#}"
    );
    let runs = read_json_lines(&log);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(arg_after(&runs[1]["argv"], "-p"), Some("a quick task"));

    // One more round trip: whatever the server had to say about `slow` came before it.
    let ping = server.request_within("ping", json!({}), Duration::from_secs(10));
    assert_eq!(ping["result"], json!({}));
    let answered: Vec<&Value> = lines
        .iter()
        .chain(server.other.iter())
        .filter(|m| m["id"] == json!(slow))
        .collect();
    assert!(
        answered.is_empty(),
        "a cancelled request gets no reply: {answered:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. progress

/// dispatch_stream with `_meta.progressToken`: the agent's messages arrive as
/// `notifications/progress` with that token and increasing `progress`, before the result.
#[test]
fn stream_sends_progress_before_the_result() {
    const TEST: &str = "stream_sends_progress_before_the_result";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let vars = [("FAKE_CLAUDE_MODE", "garbage")];
    let mut server = serve(&scratch, &fake_claude(), &[], &[], &vars);
    let id = server.send_request(
        "tools/call",
        json!({
            "name": "dispatch_stream",
            "arguments": {"agent": AGENT, "task": "tell me as you go"},
            "_meta": {"progressToken": "tok-9"},
        }),
    );
    let lines = server.lines_until(id, Duration::from_secs(30));
    let (reply, before) = lines.split_last().expect("the reply");
    let payload = tool_payload(&reply["result"]);
    assert_eq!(payload["success"], true, "{payload:#}");
    assert_eq!(payload["result"], "fake success after garbage");
    let progress: Vec<&Value> = before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| &m["params"])
        .collect();
    assert!(
        !progress.is_empty(),
        "progress before the result: {lines:#?}"
    );
    for p in &progress {
        assert_eq!(p["progressToken"], "tok-9", "{p}");
    }
    let counts: Vec<u64> = progress
        .iter()
        .map(|p| p["progress"].as_u64().expect("a progress number"))
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "increasing progress: {counts:?}"
    );
    let messages: Vec<&str> = progress
        .iter()
        .map(|p| p["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        messages,
        ["[helper] café ☃", "[helper] fake success after garbage"],
        "the agent's two text messages"
    );
}

// ---------------------------------------------------------------------------------------------
// 10-11. jobs

/// A record in the jobs folder, parsed; `None` when absent or not (yet) readable.
fn job_record(jobs: &Path, id: &str) -> Option<Value> {
    let text = fs::read_to_string(jobs.join(format!("{id}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn temp_files(jobs: &Path) -> Vec<String> {
    fs::read_dir(jobs)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// `kill -9` of the server with three jobs running: the records stay readable (running or
/// pending), the children die with the server, and the next server fails only the record
/// that went stale (not written for 2 h), removing an interrupted write's temp file.
#[test]
fn jobs_survive_kill_9_of_the_server() {
    const TEST: &str = "jobs_survive_kill_9_of_the_server";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let vars = [("FAKE_CLAUDE_MODE", "sleep"), ("FAKE_CLAUDE_SECONDS", "60")];
    let settings = ["  max_concurrency: 5"];
    let jobs = jobs_dir(&scratch);
    let log = fake_log(&scratch);
    let mut server = serve(&scratch, &fake_claude(), &[], &settings, &vars);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let payload = server.call(
                "dispatch_async",
                json!({"agent": AGENT, "task": format!("job {i}")}),
            );
            let id = payload["job_id"]
                .as_str()
                .unwrap_or_else(|| panic!("a job id: {payload:#}"));
            assert_eq!(id.len(), 32, "{payload:#}");
            id.to_owned()
        })
        .collect();
    let running = wait_until(Duration::from_secs(10), || {
        ids.iter()
            .all(|id| job_record(&jobs, id).is_some_and(|r| r["status"] == "running"))
            && read_json_lines(&log).len() == 3
    });
    assert!(
        running.is_some(),
        "three running records and children: {:?}\nserver stderr:\n{}",
        ids.iter()
            .map(|id| job_record(&jobs, id))
            .collect::<Vec<_>>(),
        server.stderr_so_far()
    );
    let pids: Vec<u32> = read_json_lines(&log)
        .iter()
        .map(|r| {
            r["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .expect("pid")
        })
        .collect();
    assert!(pids.iter().all(|p| is_alive(*p)), "{pids:?}");

    server.kill9();

    let mut records = 0;
    for entry in fs::read_dir(&jobs).expect("the jobs folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = fs::read_to_string(&path).expect("read record");
            let record: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
            assert!(
                record["status"] == "running" || record["status"] == "pending",
                "{record:#}"
            );
            records += 1;
        }
    }
    assert_eq!(records, 3);
    let gone = wait_until(Duration::from_secs(5), || {
        pids.iter().all(|p| !is_alive(*p))
    });
    assert!(
        gone.is_some(),
        "the children outlived the server by 5 s: {:?}",
        pids.iter().map(|p| ProcStat::of(*p)).collect::<Vec<_>>()
    );
    report(
        TEST,
        "children gone after kill -9 within",
        gone.unwrap_or_default(),
    );

    // An interrupted write's temp file, and one record not written for 2 h.
    let stale_temp = jobs.join(format!("{}.00000000deadbeef.tmp", ids[0]));
    fs::write(&stale_temp, "{\"half\": ").expect("write temp");
    backdate(&stale_temp, Duration::from_secs(2 * 3600));
    backdate(
        &jobs.join(format!("{}.json", ids[0])),
        Duration::from_secs(2 * 3600),
    );

    drop(server);
    let mut server = serve(&scratch, &fake_claude(), &[], &settings, &vars);
    // The first call after initialize: the listing must already know the stale job ended.
    // (Asserted last, so everything else is checked even when it does not.)
    let first_listing = server.call("dispatch_jobs", json!({}));

    // On disk (recovery's write is not awaited by any call, so poll).
    let written = wait_until(Duration::from_secs(5), || {
        job_record(&jobs, &ids[0]).is_some_and(|r| {
            r["status"] == "failed"
                && r["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("Abandoned in 'running'"))
        })
    });
    assert!(written.is_some(), "{:#?}", job_record(&jobs, &ids[0]));
    for id in &ids[1..] {
        let record = job_record(&jobs, id).expect("record");
        assert_eq!(record["status"], "running", "{record:#}");
    }
    let cleaned = wait_until(Duration::from_secs(5), || temp_files(&jobs).is_empty());
    assert!(
        cleaned.is_some(),
        "temp files left: {:?}",
        temp_files(&jobs)
    );
    let status = server.call("dispatch_status", json!({"job_id": ids[0]}));
    assert_eq!(status["status"], "failed", "{status:#}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("Abandoned in 'running'"), "{status:#}");

    let statuses = |listing: &Value| -> Vec<Option<Value>> {
        ids.iter()
            .map(|id| {
                listing["result"]
                    .as_array()
                    .and_then(|rows| rows.iter().find(|r| r["id"] == id.as_str()))
                    .map(|r| r["status"].clone())
            })
            .collect()
    };
    let expected = [json!("failed"), json!("running"), json!("running")].map(Some);
    let settled = server.call("dispatch_jobs", json!({}));
    assert_eq!(
        statuses(&settled),
        expected,
        "once recovery settled: {settled:#}"
    );
    assert_eq!(
        statuses(&first_listing),
        expected,
        "the first dispatch_jobs after the restart: {first_listing:#}\nserver stderr:\n{}",
        server.stderr_so_far()
    );
}

/// dispatch_async → dispatch_status (running, with the agent's progress) → dispatch_wait
/// (done) → fetch_result with max_chars; the record is 0600 in a 0700 folder.
#[test]
fn job_happy_path() {
    const TEST: &str = "job_happy_path";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    // An assistant line first, so the job has progress while the fake sleeps.
    let wrapper = write_script(
        &scratch.path,
        "claude-chatty",
        &format!(
            "printf '%s\\n' '{line}'\nexec {fake} \"$@\"\n",
            line = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"warming up"}]}}"#,
            fake = sh_quote(fake_claude().to_str().expect("utf-8 path")),
        ),
    );
    let text = "naïve résumé, ☃ — ".repeat(20);
    let vars = [
        ("FAKE_CLAUDE_MODE", "sleep"),
        ("FAKE_CLAUDE_SECONDS", "2"),
        ("FAKE_CLAUDE_TEXT", text.as_str()),
    ];
    let mut server = serve(&scratch, &wrapper, &[], &[], &vars);
    let jobs = jobs_dir(&scratch);

    let started = server.call(
        "dispatch_async",
        json!({"agent": AGENT, "task": "take your time"}),
    );
    let id = started["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a job id: {started:#}"))
        .to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{started:#}"
    );
    assert_eq!(started["agent"], AGENT);

    let mut status = Value::Null;
    let seen = wait_until(Duration::from_secs(5), || {
        status = server.call("dispatch_status", json!({"job_id": id}));
        status["progress"].is_array() || status["status"] != "running"
    });
    assert!(seen.is_some(), "{status:#}");
    assert_eq!(status["status"], "running", "{status:#}");
    assert_eq!(
        status["progress"],
        json!(["[helper] warming up"]),
        "{status:#}"
    );
    assert_eq!(status["id"], id.as_str());

    let waited_at = Instant::now();
    let (done, is_error) = server.call_within(
        "dispatch_wait",
        json!({"job_id": id, "timeout_seconds": 30}),
        Duration::from_secs(40),
    );
    let took = waited_at.elapsed();
    report(TEST, "dispatch_wait returned after", took);
    assert!(!is_error, "{done:#}");
    assert_eq!(done["status"], "done", "{done:#}");
    assert!(done.get("timed_out_waiting").is_none(), "{done:#}");
    assert_eq!(done["result"]["success"], true, "{done:#}");
    assert_eq!(done["result"]["result"], text.as_str(), "{done:#}");
    assert!(took < Duration::from_secs(5), "waited {took:?}");

    let fetched = server.call("fetch_result", json!({"ref": id, "max_chars": 10}));
    let head: String = text.chars().take(10).collect();
    assert_eq!(fetched["result"], head.as_str(), "{fetched:#}");
    assert_eq!(fetched["truncated"], true, "{fetched:#}");
    assert_eq!(fetched["full_size"], text.chars().count(), "{fetched:#}");
    let whole = server.call("fetch_result", json!({"ref": id}));
    assert_eq!(whole["result"], text.as_str());
    assert!(whole.get("truncated").is_none(), "{whole:#}");

    let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o7777;
    let record = jobs.join(format!("{id}.json"));
    assert_eq!(mode(&record), 0o600, "{}", record.display());
    assert_eq!(mode(&jobs), 0o700, "{}", jobs.display());
    let on_disk = wait_until(Duration::from_secs(5), || {
        job_record(&jobs, &id).is_some_and(|r| r["status"] == "done")
    });
    assert!(on_disk.is_some(), "{:#?}", job_record(&jobs, &id));
}

// ---------------------------------------------------------------------------------------------
// the group guard: no child, nor any of its descendants, outlives a killed server

/// The live processes whose parent is `ppid` and whose command line contains `needle`.
fn children_running(ppid: u32, needle: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let parent = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            parent == Some(ppid)
                && String::from_utf8_lossy(&cmdline).contains(needle)
                && is_alive(*pid)
        })
        .collect()
}

/// `kill -9` of the server while a child and its grandchild run: the server's guard kills the
/// child's whole group within 2 s (the grandchild too, which the kernel's parent-death signal
/// never covered), then exits itself.
#[test]
fn kill_9_of_the_server_ends_every_group_grandchildren_too() {
    const TEST: &str = "kill_9_of_the_server_ends_every_group_grandchildren_too";
    let Some(scratch) = scratch_for(TEST) else {
        return;
    };
    let pid_file = scratch.join("pids");
    let vars = [
        ("FAKE_CLAUDE_MODE", "grandchild"),
        (
            "FAKE_CLAUDE_PID_FILE",
            pid_file.to_str().expect("utf-8 path"),
        ),
    ];
    let mut server = serve(&scratch, &fake_claude(), &[], &[], &vars);
    server.send_request(
        "tools/call",
        json!({"name": "dispatch", "arguments": {"agent": AGENT, "task": "wait for ever"}}),
    );
    assert!(
        wait_until(Duration::from_secs(8), || pid_file.exists()).is_some(),
        "the fake wrote no pid file in 8 s\nserver stderr:\n{}",
        server.stderr_so_far()
    );
    let (leader, grandchild) = read_pids(&pid_file);
    assert!(
        is_alive(leader) && is_alive(grandchild),
        "{leader} {grandchild}"
    );
    let guards = children_running(server.pid(), "__guard");
    assert_eq!(guards.len(), 1, "one guard process per server: {guards:?}");

    server.kill9();

    let gone = wait_until(Duration::from_secs(2), || {
        group_members(leader).is_empty() && !is_alive(grandchild) && !is_alive(guards[0])
    });
    assert!(
        gone.is_some(),
        "2 s after kill -9: group {leader} {:?}, grandchild alive {}, guard alive {}",
        group_members(leader),
        is_alive(grandchild),
        is_alive(guards[0])
    );
    report(
        TEST,
        "group, grandchild and guard gone within",
        gone.unwrap_or_default(),
    );
}

/// The guard on its own: at the end of its input it SIGKILLs the groups it still watches,
/// spares the ones it was told to forget, and exits 0.
#[test]
fn the_guard_kills_what_it_watches_at_the_end_of_its_input() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let sleeper = || {
        Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .expect("start sleep")
    };
    let (mut watched, mut forgotten) = (sleeper(), sleeper());
    let mut guard = Command::new(BIN)
        .arg("__guard")
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the guard");
    let mut stdin = guard.stdin.take().expect("stdin");
    let lines = format!(
        "+{w}\n+{f}\nnoise\n+0\n-{f}\n",
        w = watched.id(),
        f = forgotten.id()
    );
    stdin.write_all(lines.as_bytes()).expect("write");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        is_alive(watched.id()),
        "nothing is killed while the input stays open"
    );
    drop(stdin);
    let status = guard.wait().expect("the guard exits");
    assert!(status.success(), "{status}");
    let mut watched_status = None;
    wait_until(Duration::from_secs(2), || {
        watched_status = watched.try_wait().expect("try_wait");
        watched_status.is_some()
    });
    let _ = watched.kill();
    assert_eq!(
        watched_status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        Some(9),
        "the watched group got SIGKILL"
    );
    assert!(
        forgotten.try_wait().expect("try_wait").is_none(),
        "a forgotten group is spared"
    );
    let _ = forgotten.kill();
    let _ = forgotten.wait();
}
