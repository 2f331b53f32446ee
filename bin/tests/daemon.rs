//! The shared daemon through its real socket (design.md §5): `agent-dispatch serve --daemon`
//! and `serve --connect` proxies as the sessions, with `fixtures/bin/fake-claude-scenarios` as
//! `claude` behind a small `sh` wrapper that picks each run's length from its `--model`
//! (`sleep-N`) and can log when each child starts and ends.
//!
//! Shown here: one limit for every session, one job table (a job outlives its session and
//! another session cancels or waits for it), another uid gets no answer, proxies starting at
//! the same instant start exactly one daemon, a stale socket is replaced, SIGTERM stops the
//! daemon cleanly, a daemon dying mid-request fails only that request, the idle exit, and the
//! ways `serve` becomes a proxy (`settings.daemon`, `init --daemon`).
//!
//! Every daemon a test starts is stopped when its rig drops. Without `python3` (the fake
//! claude) the tests print `skipped: <why>` (a failure with
//! `AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1`).

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::RwLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::*;

/// Test (a) measures time: it runs alone; the others share.
static MACHINE: RwLock<()> = RwLock::new(());

/// What a proxy answers for a request the daemon took with it.
const DAEMON_GONE: &str = "agent-dispatch daemon went away; the request was not completed";

// ---------------------------------------------------------------------------------------------
// the rig

/// A scratch folder with a config, a `claude` wrapper, and the daemon's socket at its default
/// place (`XDG_RUNTIME_DIR=<scratch>/xdg`). Stops every daemon on that socket, and every
/// child they left, when dropped.
struct Rig {
    scratch: Scratch,
    config: PathBuf,
    env: Vec<(String, String)>,
    socket: PathBuf,
}

impl Rig {
    /// `settings` lines for agents.yaml (two-space indented); agents `helper` (1 s runs),
    /// `slow` (30 s) and `quick` (2 s). With `events`, the wrapper logs each child's start and
    /// end to `events.log`.
    fn new(test: &str, tag: &str, settings: &[&str], events: bool) -> Option<Rig> {
        if which(&python()).is_none() {
            skip_or_fail(test, "python3 (for the fake claude) is not on PATH");
            return None;
        }
        // Short: the socket path must fit in 107 bytes.
        let scratch = Scratch::new(tag);
        let dir = scratch.dir("agent");
        let log = scratch.join("events.log");
        // The system Python starts in a few ms; a version manager's shim can take 200 ms,
        // which five waves of runs would feel.
        let fake = match ["/usr/bin/python3", "/bin/python3"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
        {
            Some(python) => format!(
                "{python} {}",
                sh_quote(fake_claude().to_str().expect("utf-8 path"))
            ),
            None => sh_quote(fake_claude().to_str().expect("utf-8 path")),
        };
        let timed = if events {
            format!(
                "echo \"start $$ $(date +%s%N)\" >> {log}\n\
                 FAKE_CLAUDE_SECONDS=\"$secs\" {fake} \"$@\"\n\
                 rc=$?\n\
                 echo \"end $$ $(date +%s%N)\" >> {log}\n\
                 exit $rc\n",
                log = sh_quote(log.to_str().expect("utf-8 path")),
            )
        } else {
            format!("FAKE_CLAUDE_SECONDS=\"$secs\" exec {fake} \"$@\"\n")
        };
        let wrapper = write_script(
            &scratch.path,
            "claude-wrapper",
            &format!(
                "secs=1\nprev=\nfor a in \"$@\"; do\n  \
                 if [ \"$prev\" = --model ]; then secs=\"${{a#sleep-}}\"; fi\n  \
                 prev=\"$a\"\ndone\n{timed}"
            ),
        );
        let config = write_config(
            &scratch,
            &[
                TestAgent {
                    name: "helper",
                    directory: &dir,
                    extra: &[],
                },
                TestAgent {
                    name: "slow",
                    directory: &dir,
                    extra: &["    model: sleep-30"],
                },
                TestAgent {
                    name: "quick",
                    directory: &dir,
                    extra: &["    model: sleep-2"],
                },
            ],
            settings,
        );
        let xdg = scratch.dir("xdg");
        fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).expect("chmod xdg");
        let fake_log = scratch.join("fake-claude.log");
        let mut env = claude_env(
            &wrapper,
            &[
                ("FAKE_CLAUDE_MODE", "sleep"),
                ("FAKE_CLAUDE_LOG", fake_log.to_str().expect("utf-8 path")),
            ],
        );
        env.push((
            "XDG_RUNTIME_DIR".to_owned(),
            xdg.to_str().expect("utf-8 path").to_owned(),
        ));
        let socket = xdg.join("agent-dispatch/daemon.sock");
        Some(Rig {
            scratch,
            config,
            env,
            socket,
        })
    }

    /// An initialized `serve --connect` session.
    fn proxy(&self) -> McpServer {
        let mut session = self.proxy_unstarted();
        session.initialize();
        session
    }

    /// A `serve --connect` process that has not said anything yet (so has not connected).
    fn proxy_unstarted(&self) -> McpServer {
        McpServer::start_args(
            &self.scratch,
            &["serve", "--connect"],
            &self.config,
            &self.env,
        )
    }

    /// `agent-dispatch <args>` with the environment a session gets.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.scratch.path)
            .env("HOME", self.scratch.dir("home"))
            .env("XDG_CONFIG_HOME", self.scratch.join("home/.config"));
        scrub_env(&mut cmd)
            .env("AGENT_DISPATCH_JOBS_DIR", jobs_dir(&self.scratch))
            .env("AGENT_DISPATCH_CONFIG", &self.config);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `serve --daemon` on the rig's socket, started by the test (stderr collected), once it
    /// accepts connections.
    fn daemon(&self, extra: &[&str]) -> Daemon {
        let socket = self.socket.to_str().expect("utf-8 path");
        let mut args = vec!["serve", "--daemon", "--socket", socket];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve --daemon");
        let stderr = Collector::spawn(child.stderr.take().expect("stderr is piped"));
        let mut daemon = Daemon { child, stderr };
        let up = wait_until(Duration::from_secs(10), || {
            UnixStream::connect(&self.socket).is_ok()
        });
        assert!(
            up.is_some(),
            "the daemon did not accept connections within 10 s:\n{}",
            daemon.log()
        );
        assert_eq!(daemon.child.try_wait().expect("try_wait"), None);
        daemon
    }

    /// The live daemons serving this rig's socket, by their command line.
    fn daemons(&self) -> Vec<u32> {
        let socket = self.socket.to_str().expect("utf-8 path");
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
                    return false;
                };
                let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                args.contains(&&b"--daemon"[..]) && args.contains(&socket.as_bytes())
            })
            .filter(|pid| is_alive(*pid))
            .collect();
        pids.sort_unstable();
        pids
    }

    /// The one live daemon (waits a moment for a starting one to show up).
    fn the_daemon(&self) -> u32 {
        let mut found = Vec::new();
        wait_until(Duration::from_secs(5), || {
            found = self.daemons();
            !found.is_empty()
        });
        assert_eq!(found.len(), 1, "exactly one daemon: {found:?}");
        found[0]
    }

    /// `daemon.log` beside the socket (the stderr of daemons a proxy started).
    fn daemon_log(&self) -> String {
        fs::read_to_string(self.socket.with_file_name("daemon.log")).unwrap_or_default()
    }

    /// The fake claude runs so far (`FAKE_CLAUDE_LOG`).
    fn runs(&self) -> Vec<Value> {
        read_json_lines(&self.scratch.join("fake-claude.log"))
    }

    /// The record of job `id`, as on disk.
    fn job(&self, id: &str) -> Value {
        let path = jobs_dir(&self.scratch).join(format!("{id}.json"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("job record is JSON")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for pid in self.daemons() {
            signal(pid, "TERM");
        }
        wait_until(Duration::from_secs(5), || self.daemons().is_empty());
        for pid in self.daemons() {
            signal(pid, "KILL");
        }
        // Children of a daemon killed with -9 are killed with it; their own children are not.
        for run in self.runs() {
            if let Some(pgid) = run["pgid"].as_u64() {
                if !group_members(pgid as u32).is_empty() {
                    signal_group(pgid as u32, "KILL");
                }
            }
        }
    }
}

/// A daemon the test started itself.
struct Daemon {
    child: Child,
    stderr: Collector,
}

impl Daemon {
    fn log(&self) -> String {
        self.stderr.text_within(Duration::ZERO)
    }

    /// Waits up to `limit` for it to exit; its exit code.
    fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(limit, || match self.child.try_wait() {
            Ok(Some(status)) => {
                code = Some(status.code().unwrap_or(-1));
                true
            }
            _ => false,
        });
        code
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

fn signal_group(pgid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .status();
}

/// Prints a measured time on the real stderr (libtest captures `eprintln!`).
fn report(test: &str, what: &str, took: Duration) {
    let _ = writeln!(std::io::stderr(), "{test}: {what}: {took:.2?}");
}

/// A raw client on the daemon's socket, speaking JSON-RPC lines.
struct SocketClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: i64,
}

impl SocketClient {
    fn connect(socket: &Path) -> SocketClient {
        let stream = UnixStream::connect(socket).expect("connect to the daemon");
        stream
            .set_read_timeout(Some(CALL_LIMIT))
            .expect("read timeout");
        let writer = stream.try_clone().expect("clone the stream");
        SocketClient {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        }
    }

    fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .expect("write to the daemon");
    }

    /// Sends a request and returns the reply with its id (notifications are skipped).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read a reply");
            assert!(
                n > 0,
                "the daemon closed the connection before answering {method}"
            );
            let message: Value = serde_json::from_str(&line).expect("a JSON line");
            if message["id"] == json!(id) && message.get("method").is_none() {
                return message;
            }
        }
    }

    fn initialize(&mut self) {
        let reply = self.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}),
        );
        assert!(reply.get("result").is_some(), "{reply}");
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }

    /// A tool's JSON payload.
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let reply = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        tool_payload(
            reply
                .get("result")
                .unwrap_or_else(|| panic!("{tool} refused: {reply}")),
        )
    }

    /// Whether the daemon closes the connection within `limit` (EOF), skipping lines.
    fn closed_within(&mut self, limit: Duration) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(limit))
            .expect("read timeout");
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// The job id of a dispatch_async answer.
fn job_id(payload: &Value) -> String {
    payload["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job_id: {payload}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// (a) one limit for every session

/// Three proxy sessions each run dispatch_parallel of 6 one-second dispatches at the same
/// time against `max_concurrency: 4`: the wrapper's log shows at most 4 children alive at any
/// instant (and 4 reached), all 18 succeed, in 5 waves: under 7 s.
#[test]
fn sessions_share_one_concurrency_limit() {
    const TEST: &str = "sessions_share_one_concurrency_limit";
    let _alone = MACHINE.write().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-limit", &["  max_concurrency: 4"], true) else {
        return;
    };
    let mut sessions: Vec<McpServer> = (0..3).map(|_| rig.proxy()).collect();
    let daemon = rig.the_daemon();
    let started = Instant::now();
    let ids: Vec<i64> = sessions
        .iter_mut()
        .enumerate()
        .map(|(s, session)| {
            let items: Vec<Value> = (0..6)
                .map(|i| json!({"agent": "helper", "task": format!("session {s} item {i}")}))
                .collect();
            session.send_request(
                "tools/call",
                json!({"name": "dispatch_parallel", "arguments": {"dispatches": Value::Array(items).to_string()}}),
            )
        })
        .collect();
    for (session, id) in sessions.iter_mut().zip(ids) {
        let reply = session.reply_within(id, Duration::from_secs(60));
        let result = reply
            .get("result")
            .unwrap_or_else(|| panic!("dispatch_parallel refused: {reply}"));
        let payload = tool_payload(result);
        let why = format!("{payload:#}\ndaemon log:\n{}", rig.daemon_log());
        assert_ne!(result["isError"], true, "{why}");
        let results = payload["result"].as_array().expect("an array of results");
        assert_eq!(results.len(), 6, "{why}");
        for r in results {
            assert_eq!(r["success"], true, "{r:#}\n{why}");
        }
    }
    let took = started.elapsed();
    report(TEST, "3 sessions x 6 runs of 1 s, 4 at a time, took", took);
    assert_eq!(rig.daemons(), [daemon], "still the one daemon");

    let text = fs::read_to_string(rig.scratch.join("events.log")).expect("the wrapper's log");
    let mut timeline: Vec<(u128, i32)> = text
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "log line {line:?}");
            let at: u128 = parts[2].parse().unwrap_or_else(|e| panic!("{e}: {line:?}"));
            (at, if parts[0] == "start" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(
        timeline.iter().filter(|(_, d)| *d == 1).count(),
        18,
        "{text}"
    );
    assert_eq!(
        timeline.iter().filter(|(_, d)| *d == -1).count(),
        18,
        "{text}"
    );
    // At equal instants an end counts first.
    timeline.sort();
    let (mut alive, mut most) = (0, 0);
    for (_, delta) in &timeline {
        alive += delta;
        most = most.max(alive);
    }
    // DAEMON_TEST_TIMELINE=1 prints the waves (ms since the first start), to study the timing.
    if std::env::var_os("DAEMON_TEST_TIMELINE").is_some() {
        let t0 = timeline[0].0;
        for (at, d) in &timeline {
            let _ = writeln!(std::io::stderr(), "{:>6} ms {d:+}", (at - t0) / 1_000_000);
        }
    }
    assert!(most <= 4, "{most} children alive at once: {text}");
    assert_eq!(most, 4, "the shared limit lets 4 run at once: {text}");
    assert!(
        took < Duration::from_secs(7),
        "18 one-second runs, 4 at a time, took {took:?}: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) one job table; jobs outlive sessions

/// Session A starts a 30 s background job; session B sees it in dispatch_jobs and cancels it
/// (its child is killed). A starts a 2 s job and exits; the job keeps running, and B waits
/// for it to finish.
#[test]
fn jobs_are_shared_and_outlive_their_session() {
    const TEST: &str = "jobs_are_shared_and_outlive_their_session";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-jobs", &[], false) else {
        return;
    };
    let mut a = rig.proxy();
    let mut b = rig.proxy();
    let long = job_id(&a.call("dispatch_async", json!({"agent": "slow", "task": "long"})));

    let listed = b.call("dispatch_jobs", json!({}));
    let jobs = listed["result"].as_array().expect("a job list");
    let seen = jobs
        .iter()
        .find(|j| j["id"] == json!(long))
        .unwrap_or_else(|| panic!("B does not see A's job: {listed:#}"));
    assert_eq!(seen["status"], "running", "{seen:#}");
    assert_eq!(seen["agent"], "slow");

    assert!(wait_until(Duration::from_secs(10), || !rig.runs().is_empty()).is_some());
    let child = rig.runs()[0]["pid"].as_u64().expect("the child's pid") as u32;
    let cancelled = b.call("dispatch_cancel", json!({"job_id": long}));
    assert_eq!(cancelled["outcome"], "cancelled_running", "{cancelled:#}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        wait_until(Duration::from_secs(5), || !is_alive(child)).is_some(),
        "the cancelled job's child {child} still runs"
    );
    let recorded = wait_until(Duration::from_secs(5), || {
        rig.job(&long)["status"] == "cancelled"
    });
    assert!(recorded.is_some(), "{:#}", rig.job(&long));

    let short = job_id(&a.call("dispatch_async", json!({"agent": "quick", "task": "short"})));
    // McpServer's drop closes stdin and kills the process only after 5 s.
    let closing = Instant::now();
    drop(a);
    assert!(
        closing.elapsed() < Duration::from_secs(4),
        "A's proxy exits by itself at the end of its stdin"
    );
    let status = b.call("dispatch_status", json!({"job_id": short}));
    assert_eq!(status["status"], "running", "A's job runs on: {status:#}");

    let started = Instant::now();
    let waited = b.call(
        "dispatch_wait",
        json!({"job_id": short, "timeout_seconds": 30}),
    );
    report(TEST, "B waited for A's job", started.elapsed());
    assert_eq!(waited["status"], "done", "{waited:#}\n{}", rig.daemon_log());
    assert_eq!(waited["result"]["success"], true, "{waited:#}");
    assert_eq!(waited["result"]["result"], "fake success after sleeping");
    assert_eq!(rig.runs().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// (c) another uid

/// How to run a command as `nobody` (`setpriv`, else `su`) and a Python it may run, or why
/// that is not possible here.
fn as_nobody() -> Result<(Vec<String>, String), String> {
    let setpriv: Vec<String> = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let su: Vec<String> = ["su", "nobody", "-s", "/bin/sh", "-c"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    // The `python3` on PATH may live where nobody cannot reach (a pyenv shim under /root).
    let pythons = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"];
    for runner in [setpriv, su] {
        for python in pythons {
            let check = format!("[ \"$(id -u)\" = 65534 ] && {python} -c pass");
            if nobody_command(&runner, &check)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                return Ok((runner, python.to_owned()));
            }
        }
    }
    Err("cannot run python3 as nobody: neither `setpriv --reuid=65534` nor `su nobody` works here (not root?), or no system python3".to_owned())
}

/// `sh -c line` as nobody through `runner`.
fn nobody_command(runner: &[String], line: &str) -> Command {
    let mut cmd = Command::new(&runner[0]);
    cmd.args(&runner[1..]);
    if runner[0] == "su" {
        cmd.arg(line);
    } else {
        cmd.args(["sh", "-c", line]);
    }
    cmd
}

/// Runs `python script socket` as nobody; its stdout.
fn probe_as_nobody(runner: &[String], python: &str, script: &Path, socket: &Path) -> String {
    let line = format!(
        "{python} {} {}",
        sh_quote(script.to_str().expect("utf-8 path")),
        sh_quote(socket.to_str().expect("utf-8 path"))
    );
    let out = run_limited(
        nobody_command(runner, &line),
        Duration::from_secs(30),
        "the nobody client",
    );
    assert!(
        out.status.success(),
        "the nobody client failed: {}",
        out.stderr
    );
    out.stdout
}

/// A process of another uid gets no MCP answer: the socket's folder keeps it out (connect is
/// refused), and when the folder is opened up by mistake, the daemon's own peer check closes
/// the connection unanswered (and logs it). Our own uid is still served.
#[test]
fn another_uid_gets_no_answer() {
    const TEST: &str = "another_uid_gets_no_answer";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let (runner, python) = match as_nobody() {
        Ok(found) => found,
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "skipped: {TEST}: {why}");
            return;
        }
    };
    let Some(rig) = Rig::new(TEST, "dmn-uid", &[], false) else {
        return;
    };
    let mut daemon = rig.daemon(&[]);
    let script = write_script(&rig.scratch.path, "probe.py", "");
    fs::write(
        &script,
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.settimeout(5)\n\
         try:\n    s.connect(sys.argv[1])\n\
         except OSError as e:\n    print('connect failed', e.errno)\n    sys.exit(0)\n\
         data = b''\n\
         try:\n    s.sendall(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}\\n')\n    while True:\n        chunk = s.recv(65536)\n        if not chunk:\n            break\n        data += chunk\n\
         except OSError as e:\n    print('closed on us', e.errno)\n\
         print('got', repr(data))\n",
    )
    .expect("write the probe");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).expect("chmod probe");

    // The folder (0700, ours) keeps nobody out: EACCES.
    let dir = rig.socket.parent().expect("socket folder").to_owned();
    assert_eq!(
        fs::metadata(&dir).expect("stat").permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        fs::metadata(&rig.socket)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let out = probe_as_nobody(&runner, &python, &script, &rig.socket);
    assert_eq!(out.trim(), "connect failed 13", "{out}");

    // Opened up by mistake: nobody connects, and the daemon hangs up at once, unanswered.
    let xdg = dir.parent().expect("the runtime folder").to_owned();
    let chmod = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod")
    };
    chmod(&xdg, 0o755);
    chmod(&dir, 0o755);
    chmod(&rig.socket, 0o666);
    let out = probe_as_nobody(&runner, &python, &script, &rig.socket);
    chmod(&rig.socket, 0o600);
    chmod(&dir, 0o700);
    chmod(&xdg, 0o700);
    assert!(!out.contains("jsonrpc"), "nobody got an answer: {out}");
    assert!(
        out.contains("got b''") || out.contains("closed on us"),
        "{out}"
    );
    let refused = wait_until(Duration::from_secs(5), || {
        daemon.log().contains("refused a connection")
    });
    let log = daemon.log();
    assert!(refused.is_some(), "the refusal is logged: {log}");
    assert!(log.contains("runs as uid 65534, not as uid"), "{log}");

    // We are still served.
    let mut ours = SocketClient::connect(&rig.socket);
    ours.initialize();
    assert_eq!(
        ours.call("list_agents", json!({}))["result"][0]["name"],
        "helper"
    );
    assert_eq!(daemon.child.try_wait().expect("try_wait"), None);
}

// ---------------------------------------------------------------------------------------------
// (d) proxies starting together

/// Three proxies asked at the same instant with no daemon running: exactly one daemon is
/// started, and every session works.
#[test]
fn proxies_starting_together_start_one_daemon() {
    const TEST: &str = "proxies_starting_together_start_one_daemon";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-race", &[], false) else {
        return;
    };
    let mut sessions: Vec<McpServer> = (0..3).map(|_| rig.proxy_unstarted()).collect();
    // Let all three processes start, then ask all three at once.
    thread::sleep(Duration::from_millis(200));
    assert!(rig.daemons().is_empty());
    let ids: Vec<i64> = sessions
        .iter_mut()
        .map(|s| {
            s.send_request(
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "race", "version": "0"}}),
            )
        })
        .collect();
    for (session, id) in sessions.iter_mut().zip(ids) {
        let reply = session.reply_within(id, Duration::from_secs(30));
        assert!(reply.get("result").is_some(), "{reply}");
    }
    let daemon = rig.the_daemon();
    for session in &mut sessions {
        assert_eq!(
            session.call("list_agents", json!({}))["result"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(rig.daemons(), [daemon], "one daemon:\n{}", rig.daemon_log());
    let log = rig.daemon_log();
    assert_eq!(
        log.matches("listening on").count(),
        1,
        "one daemon started:\n{log}"
    );
    assert!(!log.contains("already serving"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// (e) a stale socket

/// A daemon killed with -9 leaves its socket file behind; the next start replaces it, and a
/// session of the dead daemon reconnects between requests without noticing.
#[test]
fn a_stale_socket_is_replaced() {
    const TEST: &str = "a_stale_socket_is_replaced";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-stale", &[], false) else {
        return;
    };
    let mut a = rig.proxy();
    let first = rig.the_daemon();
    signal(first, "KILL");
    assert!(wait_until(Duration::from_secs(5), || !is_alive(first)).is_some());
    assert!(rig.socket.exists(), "kill -9 leaves the socket file");

    let mut b = rig.proxy();
    let second = rig.the_daemon();
    assert_ne!(second, first);
    assert!(
        rig.daemon_log().contains("replaced the stale socket"),
        "{}",
        rig.daemon_log()
    );
    assert_eq!(
        b.call("list_agents", json!({}))["result"][0]["name"],
        "helper"
    );
    // A's daemon went away between requests: its next request just works.
    assert_eq!(
        a.call("list_agents", json!({}))["result"][0]["name"],
        "helper"
    );
    assert_eq!(rig.daemons(), [second]);
}

// ---------------------------------------------------------------------------------------------
// (f) SIGTERM

/// SIGTERM: the daemon exits 0, removes its socket file, and marks the job that was running
/// failed (its child is stopped).
#[test]
fn sigterm_stops_the_daemon_cleanly() {
    const TEST: &str = "sigterm_stops_the_daemon_cleanly";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-term", &[], false) else {
        return;
    };
    let mut daemon = rig.daemon(&[]);
    let mut client = SocketClient::connect(&rig.socket);
    client.initialize();
    let job = job_id(&client.call("dispatch_async", json!({"agent": "slow", "task": "long"})));
    let running = wait_until(Duration::from_secs(10), || {
        rig.job(&job)["status"] == "running" && !rig.runs().is_empty()
    });
    assert!(running.is_some(), "the job runs: {:#}", rig.job(&job));
    let child = rig.runs()[0]["pid"].as_u64().expect("child pid") as u32;

    let started = Instant::now();
    signal(daemon.child.id(), "TERM");
    let code = daemon.exit_within(Duration::from_secs(15));
    report(TEST, "exit after SIGTERM", started.elapsed());
    assert_eq!(code, Some(0), "{}", daemon.log());
    assert!(!rig.socket.exists(), "the socket file is removed");
    assert!(
        client.closed_within(Duration::from_secs(5)),
        "the session is closed"
    );
    let record = rig.job(&job);
    assert_eq!(record["status"], "failed", "{record:#}");
    assert!(!is_alive(child), "the job's child was stopped");
}

// ---------------------------------------------------------------------------------------------
// (g) the daemon dies mid-request

/// A daemon that dies while a request runs: the proxy answers that request with an error of
/// its own, and the session's next request starts a new daemon and is served.
#[test]
fn a_daemon_dying_mid_request_fails_only_that_request() {
    const TEST: &str = "a_daemon_dying_mid_request_fails_only_that_request";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-gone", &[], false) else {
        return;
    };
    let mut session = rig.proxy();
    let first = rig.the_daemon();
    let id = session.send_request(
        "tools/call",
        json!({"name": "dispatch", "arguments": {"agent": "slow", "task": "long"}}),
    );
    assert!(
        wait_until(Duration::from_secs(10), || !rig.runs().is_empty()).is_some(),
        "the dispatch started"
    );
    signal(first, "KILL");
    let reply = session.reply_within(id, Duration::from_secs(10));
    assert_eq!(
        reply,
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": DAEMON_GONE}})
    );
    let reply = session.request(
        "tools/call",
        json!({"name": "list_agents", "arguments": {}}),
    );
    assert!(
        reply.get("result").is_some(),
        "{reply}\nproxy:\n{}\ndaemon log:\n{}",
        session.stderr_so_far(),
        rig.daemon_log()
    );
    assert_eq!(
        tool_payload(&reply["result"])["result"][0]["name"],
        "helper"
    );
    let second = rig.the_daemon();
    assert_ne!(second, first);
}

// ---------------------------------------------------------------------------------------------
// lifecycle: a second daemon, the idle exit

/// A second `serve --daemon` on a live socket exits 1 and says so; a daemon with
/// `--idle-exit` exits 0 once no session is left, and removes its socket.
#[test]
fn a_second_daemon_is_refused_and_the_idle_exit_works() {
    const TEST: &str = "a_second_daemon_is_refused_and_the_idle_exit_works";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-idle", &[], false) else {
        return;
    };
    // 0.05 minutes: 3 s.
    let mut daemon = rig.daemon(&["--idle-exit", "0.05"]);
    let socket = rig.socket.to_str().expect("utf-8 path");
    let second = run_limited(
        rig.command(&["serve", "--daemon", "--socket", socket]),
        Duration::from_secs(30),
        "a second daemon",
    );
    assert_eq!(second.status.code(), Some(1), "{}", second.stderr);
    assert!(
        second.stderr.contains("already serving") && second.stderr.contains(socket),
        "{}",
        second.stderr
    );

    let mut client = SocketClient::connect(&rig.socket);
    client.initialize();
    thread::sleep(Duration::from_secs(4));
    assert_eq!(
        daemon.child.try_wait().expect("try_wait"),
        None,
        "no idle exit while a session is connected"
    );
    drop(client);
    let started = Instant::now();
    let code = daemon.exit_within(Duration::from_secs(20));
    report(TEST, "idle exit after the last session", started.elapsed());
    assert_eq!(code, Some(0), "{}", daemon.log());
    assert!(!rig.socket.exists());
    assert!(daemon.log().contains("Idle"), "{}", daemon.log());

    // Usage errors.
    let both = run_limited(
        rig.command(&["serve", "--daemon", "--connect"]),
        Duration::from_secs(30),
        "serve --daemon --connect",
    );
    assert_eq!(both.status.code(), Some(2), "{}", both.stderr);
    let zero = run_limited(
        rig.command(&["serve", "--daemon", "--idle-exit", "0"]),
        Duration::from_secs(30),
        "serve --idle-exit 0",
    );
    assert_eq!(zero.status.code(), Some(2), "{}", zero.stderr);
    assert!(
        zero.stderr
            .contains("--idle-exit must be a positive number"),
        "{}",
        zero.stderr
    );
}

/// A socket folder other users can reach is refused, with the fix.
#[test]
fn an_open_socket_folder_is_refused() {
    const TEST: &str = "an_open_socket_folder_is_refused";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-open", &[], false) else {
        return;
    };
    let open = rig.scratch.dir("open");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = open.join("d.sock");
    let ran = run_limited(
        rig.command(&[
            "serve",
            "--daemon",
            "--socket",
            socket.to_str().expect("utf-8"),
        ]),
        Duration::from_secs(30),
        "serve --daemon in an open folder",
    );
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("other users can reach it (mode 0755)")
            && ran
                .stderr
                .contains(&format!("chmod 700 {}", open.display())),
        "{}",
        ran.stderr
    );
    assert!(!socket.exists());
}

// ---------------------------------------------------------------------------------------------
// choosing the proxy: settings.daemon, dispatch depth, init --daemon

/// `settings.daemon: true` makes plain `serve` a proxy (a daemon appears on the default
/// socket); a broken config falls back to stdio with a warning; inside a dispatched agent
/// (`AGENT_DISPATCH_DEPTH` > 0) even `--connect` serves over stdio.
#[test]
fn settings_daemon_makes_serve_a_proxy() {
    const TEST: &str = "settings_daemon_makes_serve_a_proxy";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-set", &["  daemon: true"], false) else {
        return;
    };
    let mut plain = McpServer::start_args(&rig.scratch, &["serve"], &rig.config, &rig.env);
    plain.initialize();
    let daemon = rig.the_daemon();
    assert_eq!(
        plain.call("list_agents", json!({}))["result"][0]["name"],
        "helper"
    );
    drop(plain);

    // Depth 1: its own stdio server, no second daemon and no connection to the first.
    let mut env = rig.env.clone();
    env.push(("AGENT_DISPATCH_DEPTH".to_owned(), "1".to_owned()));
    let mut nested =
        McpServer::start_args(&rig.scratch, &["serve", "--connect"], &rig.config, &env);
    nested.initialize();
    assert_eq!(
        nested.call("list_agents", json!({}))["result"][0]["name"],
        "helper"
    );
    let said = wait_until(Duration::from_secs(5), || {
        nested
            .stderr_so_far()
            .contains("serving over stdio instead of through the shared daemon")
    });
    assert!(said.is_some(), "{}", nested.stderr_so_far());
    assert_eq!(rig.daemons(), [daemon]);
    drop(nested);

    // A broken config: stdio, with a warning.
    fs::write(&rig.config, "agents: [\n").expect("break the config");
    let mut broken = McpServer::start_args(&rig.scratch, &["serve"], &rig.config, &rig.env);
    broken.initialize();
    let warned = wait_until(Duration::from_secs(5), || {
        broken
            .stderr_so_far()
            .contains("cannot read settings.daemon from")
    });
    assert!(warned.is_some(), "{}", broken.stderr_so_far());
    assert_eq!(rig.daemons(), [daemon]);
}

/// `init --daemon` registers `serve --connect`; with `serve` registered it says how to switch.
#[test]
fn init_daemon_registers_the_proxy() {
    const TEST: &str = "init_daemon_registers_the_proxy";
    let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new(TEST, "dmn-init", &[], false) else {
        return;
    };
    let bin = rig.scratch.dir("bin");
    let argv = rig.scratch.join("claude-argv.log");
    let state = rig.scratch.join("claude-state");
    write_script(
        &bin,
        "claude",
        &format!(
            r#"for a in "$@"; do printf '%s\n' "$a" >> {argv}; done
printf -- '--\n' >> {argv}
if [ "$1 $2" = "mcp get" ]; then
  if [ -f {state} ]; then
    printf 'agent-dispatch:\n  Scope: User config (available in all your projects)\n  Command: %s\n  Args: %s\n' "$REGISTERED_COMMAND" "$(cat {state})"
    exit 0
  fi
  exit 1
fi
if [ "$1 $2" = "mcp add-json" ]; then
  echo "$4" | sed -e 's/.*"args":\[//' -e 's/\].*//' -e 's/[",]/ /g' -e 's/  */ /g' -e 's/^ //' -e 's/ $//' > {state}
  exit 0
fi
exit 1
"#,
            argv = sh_quote(argv.to_str().expect("utf-8")),
            state = sh_quote(state.to_str().expect("utf-8")),
        ),
    );
    let exe = fs::canonicalize(BIN).expect("canonical binary");
    let init = |args: &[&str]| {
        let mut cmd = rig.command(args);
        cmd.env("PATH", path_with(&bin))
            .env("REGISTERED_COMMAND", &exe)
            .env_remove("AGENT_DISPATCH_CLAUDE");
        run_limited(cmd, Duration::from_secs(60), "init")
    };
    let first = init(&["init", "--daemon"]);
    assert!(first.status.success(), "{}", first.stderr);
    let entry =
        json!({"type": "stdio", "command": exe, "args": ["serve", "--connect"]}).to_string();
    let logged = fs::read_to_string(&argv).expect("claude argv");
    assert!(
        logged.contains(&format!(
            "add-json\nagent-dispatch\n{entry}\n--scope\nuser\n"
        )),
        "{logged}"
    );
    assert!(
        first.stdout.contains(&format!(
            "Registered with Claude Code (user scope): {} serve --connect",
            exe.display()
        )),
        "{}",
        first.stdout
    );
    let again = init(&["init", "--daemon"]);
    assert!(
        again
            .stdout
            .contains("Already registered with Claude Code (user scope)."),
        "{}",
        again.stdout
    );
    // Registered as the proxy, `init` (per-session servers) says how to switch, and changes nothing.
    let plain = init(&["init"]);
    assert!(
        plain.stdout.contains("as a proxy to the shared daemon")
            && plain
                .stdout
                .contains("claude mcp remove agent-dispatch -s user && agent-dispatch init\n"),
        "{}",
        plain.stdout
    );
    assert_eq!(
        fs::read_to_string(&state).expect("state").trim(),
        "serve --connect"
    );
}

/// `agent-dispatch cancel` of a job the daemon runs: the command's own in-process server does
/// not run it, so it asks the daemon, which kills it; a job nobody runs any more is still
/// refused with the reason.
#[test]
fn cli_cancel_reaches_a_job_running_in_the_daemon() {
    const TEST: &str = "cli_cancel_reaches_a_job_running_in_the_daemon";
    let Some(rig) = Rig::new(TEST, "dcancel", &[], false) else {
        return;
    };
    let daemon = rig.daemon(&[]);
    let mut session = rig.proxy();
    let job = session.call("dispatch_async", json!({"agent": "slow", "task": "sleep"}));
    let id = job["job_id"].as_str().expect("a job id").to_owned();
    let record = jobs_dir(&rig.scratch).join(format!("{id}.json"));
    let status_on_disk = || {
        fs::read_to_string(&record)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|r| r["status"].clone())
    };
    assert!(
        wait_until(Duration::from_secs(10), || status_on_disk()
            == Some(json!("running")))
        .is_some(),
        "the job runs in the daemon: {:?}\n{}",
        status_on_disk(),
        daemon.log()
    );

    let out = run_limited(
        rig.command(&["cancel", &id]),
        Duration::from_secs(30),
        "cancel",
    );
    assert!(
        out.status.success() && out.stdout.contains("killed the running job"),
        "{}\n{}\ndaemon log:\n{}",
        out.stdout,
        out.stderr,
        daemon.log()
    );
    let status = session.call("dispatch_status", json!({"job_id": id}));
    assert_eq!(status["status"], "cancelled", "{status}");
    assert!(
        wait_until(Duration::from_secs(5), || status_on_disk()
            == Some(json!("cancelled")))
        .is_some(),
        "{:?}",
        status_on_disk()
    );

    let again = run_limited(
        rig.command(&["cancel", &id]),
        Duration::from_secs(30),
        "cancel again",
    );
    assert_eq!(again.status.code(), Some(1), "{}", again.stderr);
    assert!(
        again.stderr.contains("already finished (cancelled)"),
        "{}",
        again.stderr
    );
}
