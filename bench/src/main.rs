//! `cargo run --release -p agent-dispatch-bench [-- --quick] [-- --with-python]`
//!
//! Benchmarks `agent-dispatch serve` (the release binary) over stdio with one client and an
//! instant fake `claude` (`fixtures/bin/fake-claude-instant`), and — when the Python
//! agent-dispatch 0.5.0 is installed in `target/bench-venv` — runs the same workload against the
//! Python server in the same run and prints the ratios. The table goes to stdout (Markdown),
//! progress to stderr. This is a program, not a test: nothing here runs under `cargo test`.

mod client;
mod fixture;
mod stats;

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use client::{Launch, Mem, Server};
use fixture::Scratch;
use stats::{fmt_bytes, fmt_kib, fmt_ms, fmt_ratio, median, percentile};

/// Benchmarks of agent-dispatch serve, side by side with the Python agent-dispatch 0.5.0.
#[derive(argh::FromArgs, Debug)]
struct Args {
    /// fewer repetitions and a 20 MB stream: a quick look, not figures to publish
    #[argh(switch)]
    quick: bool,
    /// create target/bench-venv (python3 -m venv) and pip-install agent-dispatch==0.5.0 and
    /// mcp<2 there if missing; without it the venv is used only when already present
    #[argh(switch)]
    with_python: bool,
    /// do not run the Python server even when the venv is there
    #[argh(switch)]
    no_python: bool,
    /// the agent-dispatch binary to measure (default: target/release/agent-dispatch, built
    /// first with `cargo build --release -p agent-dispatch`)
    #[argh(option)]
    bin: Option<PathBuf>,
    /// the venv holding the Python agent-dispatch (default: target/bench-venv)
    #[argh(option)]
    venv: Option<PathBuf>,
    /// how long the fake sleeps in the fan-out workload, in ms; repeat for several runs, the
    /// first one is judged against the goal (default: 0, then 10, then 50)
    #[argh(option)]
    fanout_sleep_ms: Vec<u64>,
    /// size of the stream-json run in MB (default 100; 20 with --quick)
    #[argh(option)]
    stream_mb: Option<u64>,
}

/// How many times each workload runs.
#[derive(Debug, Clone)]
struct Plan {
    cold_starts: usize,
    list_calls: usize,
    dispatches: usize,
    fanout_total: usize,
    fanout_window: usize,
    fanout_concurrency: usize,
    fanout_sleeps_ms: Vec<u64>,
    stream_mb: u64,
    job_records: usize,
    jobs_warm: usize,
    daemon_sessions: usize,
    daemon_dispatches: usize,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let quick = args.quick;
        Plan {
            cold_starts: if quick { 5 } else { 20 },
            list_calls: if quick { 200 } else { 1000 },
            dispatches: if quick { 60 } else { 300 },
            fanout_total: 200,
            fanout_window: 20,
            fanout_concurrency: 5,
            fanout_sleeps_ms: if args.fanout_sleep_ms.is_empty() {
                vec![0, 10, 50]
            } else {
                args.fanout_sleep_ms.clone()
            },
            stream_mb: args.stream_mb.unwrap_or(if quick { 20 } else { 100 }),
            job_records: 10_000,
            jobs_warm: 5,
            daemon_sessions: 8,
            daemon_dispatches: 50,
        }
    }
}

/// One server under test.
#[derive(Debug, Clone)]
struct Target {
    label: String,
    program: PathBuf,
    /// `--output-format` its runner passes to `claude` (for timing the fake alone the same way).
    format: &'static str,
    /// The tool whose run parses stream-json: `dispatch` in Rust; Python 0.5.0's `dispatch`
    /// is one-shot JSON, so there it is `dispatch_stream`.
    stream_tool: &'static str,
}

/// What every server gets: the agents, the configs, `claude` first on `PATH`.
#[derive(Debug)]
struct World {
    scratch: Scratch,
    agents: Vec<(String, PathBuf)>,
    config: PathBuf,
    fanout_config: PathBuf,
    claude: PathBuf,
    path: OsString,
    jobs_empty: PathBuf,
    jobs_full: PathBuf,
    stream: PathBuf,
    logs: PathBuf,
}

impl World {
    fn launch(
        &self,
        target: &Target,
        config: &Path,
        jobs: &Path,
        extra: &[(&str, &str)],
    ) -> Launch {
        let home = self.scratch.path.join("home");
        let mut env: Vec<(String, OsString)> = vec![
            ("PATH".into(), self.path.clone()),
            ("HOME".into(), home.clone().into()),
            ("XDG_CONFIG_HOME".into(), home.join(".config").into()),
            ("AGENT_DISPATCH_CONFIG".into(), config.into()),
            ("AGENT_DISPATCH_JOBS_DIR".into(), jobs.into()),
        ];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OsString::from(v))),
        );
        Launch {
            program: target.program.clone(),
            args: vec!["serve".into()],
            env,
            cwd: self.scratch.path.clone(),
        }
    }

    fn log(&self, target: &Target, what: &str) -> PathBuf {
        let tag: String = target
            .label
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        self.logs.join(format!("{tag}-{what}.log"))
    }
}

/// Every figure of one target; `None` where it was not measured (see `errors`).
#[derive(Debug, Default)]
struct Figures {
    cold_start_ms: Option<f64>,
    idle: Option<Mem>,
    after_calls: Option<Mem>,
    tools_bytes: Option<usize>,
    tools_count: Option<usize>,
    list_p50: Option<f64>,
    list_p95: Option<f64>,
    dispatch_p50: Option<f64>,
    dispatch_p95: Option<f64>,
    spawn_p50: Option<f64>,
    /// Per entry of `Plan::fanout_sleeps_ms`.
    fanout_s: Vec<Option<f64>>,
    stream_s: Option<f64>,
    stream_hwm: Option<u64>,
    jobs_first_ms: Option<f64>,
    jobs_warm_ms: Option<f64>,
    jobs_mem: Option<Mem>,
    /// `daemon_sessions` × `daemon_dispatches`, one `serve` process per session (s).
    sessions_s: Option<f64>,
    /// The same through one daemon (`serve --connect`), Rust only (s).
    daemon_s: Option<f64>,
    errors: Vec<String>,
}

const CALL: Duration = Duration::from_secs(120);
const LONG: Duration = Duration::from_secs(900);

fn main() {
    let args: Args = argh::from_env();
    if let Err(e) = run(&args) {
        eprintln!("agent-dispatch-bench: {e}");
        std::process::exit(1);
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

fn run(args: &Args) -> Result<(), String> {
    let root = workspace();
    let plan = Plan::new(args);
    let rust_bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            eprintln!("building: cargo build --release -p agent-dispatch");
            let status = Command::new(cargo)
                .args(["build", "--release", "-p", "agent-dispatch"])
                .current_dir(&root)
                .status()
                .map_err(|e| format!("cargo build: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build --release -p agent-dispatch: {status}"));
            }
            root.join("target/release/agent-dispatch")
        }
    };
    let rust_bin = rust_bin.canonicalize().map_err(|e| {
        format!(
            "{}: {e} (run `cargo build --release` first)",
            rust_bin.display()
        )
    })?;

    let venv = args
        .venv
        .clone()
        .unwrap_or_else(|| root.join("target/bench-venv"));
    if args.with_python && !args.no_python {
        fixture::setup_python(&venv)?;
    }
    let python = if args.no_python {
        None
    } else {
        fixture::python_server(&venv)
    };

    let world = prepare(&root, &plan)?;
    let mut targets = vec![Target {
        label: "Rust".into(),
        program: rust_bin.clone(),
        format: "stream-json",
        stream_tool: "dispatch",
    }];
    if let Some((program, version)) = &python {
        let mut versions = version.split_whitespace();
        let ad = versions.next().unwrap_or("?");
        let mcp = versions.next().unwrap_or("?");
        targets.push(Target {
            label: format!("Python {ad} (mcp {mcp})"),
            program: program.clone(),
            format: "json",
            stream_tool: "dispatch_stream",
        });
    } else if !args.no_python {
        eprintln!(
            "no Python agent-dispatch in {} (run with --with-python to install it): Rust figures only",
            venv.display()
        );
    }

    let load_before = fixture::load_average();
    let daemon = daemon_support(&rust_bin);
    let mut all = Vec::new();
    for target in &targets {
        eprintln!("== {}", target.label);
        let mut f = Figures::default();
        measure(&world, target, &plan, &mut f, daemon.as_ref(), &rust_bin);
        all.push(f);
    }

    let load = format!("{load_before} before, {} after", fixture::load_average());
    print_report(
        &plan,
        &targets,
        &all,
        &world,
        python.is_some(),
        daemon.is_some(),
        &load,
    );
    Ok(())
}

/// The scratch world: agents, configs, `claude`, jobs folders, the stream file.
fn prepare(root: &Path, plan: &Plan) -> Result<World, String> {
    let scratch = Scratch::new()?;
    let agents = fixture::agent_projects(&scratch)?;
    let config = fixture::write_config(&scratch, "agents.yaml", &agents, 5)?;
    let fanout_config = fixture::write_config(
        &scratch,
        "agents-fanout.yaml",
        &agents,
        plan.fanout_concurrency,
    )?;
    let fake = root.join("fixtures/bin/fake-claude-instant");
    if !fake.is_file() {
        return Err(format!("{} is missing", fake.display()));
    }
    let bin = fixture::claude_bin_dir(&scratch, &fake)?;
    let path = fixture::path_with(&bin);
    let jobs_empty = scratch.dir("jobs-empty")?;
    let jobs_full = scratch.path.join("jobs-full");
    eprintln!("writing {} job records", plan.job_records);
    fixture::job_records(&jobs_full, plan.job_records, &agents)?;
    let cache = root.join("target/bench-data");
    eprintln!("stream file: {} MB in {}", plan.stream_mb, cache.display());
    let stream = fixture::stream_file(&cache, plan.stream_mb)?;
    let logs = scratch.dir("logs")?;
    Ok(World {
        claude: bin.join("claude"),
        scratch,
        agents,
        config,
        fanout_config,
        path,
        jobs_empty,
        jobs_full,
        stream,
        logs,
    })
}

/// `Some(help text)` when `serve --help` mentions `--daemon` or `--connect`.
fn daemon_support(bin: &Path) -> Option<String> {
    let out = Command::new(bin)
        .args(["serve", "--help"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    (help.contains("--daemon") || help.contains("--connect")).then_some(help)
}

fn record<T>(f: &mut Figures, what: &str, r: Result<T, String>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("  {what}: ERROR {e}");
            f.errors.push(format!("{what}: {e}"));
            None
        }
    }
}

fn measure(
    world: &World,
    target: &Target,
    plan: &Plan,
    f: &mut Figures,
    daemon: Option<&String>,
    rust_bin: &Path,
) {
    eprintln!("  cold start x{}", plan.cold_starts);
    f.cold_start_ms = record(f, "cold start", cold_start(world, target, plan));
    eprintln!(
        "  one session: tools/list, {} list_agents, {} dispatches (each + the fake alone)",
        plan.list_calls, plan.dispatches
    );
    if let Some(s) = record(f, "session", session(world, target, plan)) {
        f.idle = Some(s.idle);
        f.after_calls = Some(s.after_calls);
        f.tools_bytes = Some(s.tools_bytes);
        f.tools_count = Some(s.tools_count);
        f.list_p50 = Some(percentile(&s.list, 50.0));
        f.list_p95 = Some(percentile(&s.list, 95.0));
        if let Some(d) = s.dispatch {
            f.dispatch_p50 = Some(percentile(&d, 50.0));
            f.dispatch_p95 = Some(percentile(&d, 95.0));
        }
        if let Some(sp) = s.spawn {
            f.spawn_p50 = Some(percentile(&sp, 50.0));
        }
        if let Some(e) = s.dispatch_error {
            f.errors.push(format!("dispatch: {e}"));
        }
    }
    for &sleep_ms in &plan.fanout_sleeps_ms {
        eprintln!(
            "  fan-out: {} dispatches, {} in flight, fake sleeping {sleep_ms} ms",
            plan.fanout_total, plan.fanout_window
        );
        let wall = record(f, "fan-out", fanout(world, target, plan, sleep_ms));
        f.fanout_s.push(wall);
    }
    eprintln!(
        "  stream: {} MB through {}",
        plan.stream_mb, target.stream_tool
    );
    if let Some((s, hwm)) = record(f, "stream", stream(world, target)) {
        f.stream_s = Some(s);
        f.stream_hwm = Some(hwm);
    }
    eprintln!("  dispatch_jobs over {} records", plan.job_records);
    if let Some((first, warm, mem)) = record(f, "dispatch_jobs", jobs(world, target, plan)) {
        f.jobs_first_ms = Some(first);
        f.jobs_warm_ms = Some(warm);
        f.jobs_mem = Some(mem);
    }
    if daemon.is_some() {
        eprintln!(
            "  {} sessions x {} dispatches, one serve each",
            plan.daemon_sessions, plan.daemon_dispatches
        );
        f.sessions_s = record(f, "sessions", sessions(world, target, plan, false));
        if target.program == rust_bin {
            eprintln!(
                "  {} sessions x {} dispatches through one daemon",
                plan.daemon_sessions, plan.daemon_dispatches
            );
            f.daemon_s = record(f, "daemon", sessions(world, target, plan, true));
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cold_start(world: &World, target: &Target, plan: &Plan) -> Result<f64, String> {
    let launch = world.launch(target, &world.config, &world.jobs_empty, &[]);
    let mut samples = Vec::new();
    // One unmeasured start first, so the binary and its libraries are in the page cache.
    for i in 0..=plan.cold_starts {
        let mut server = Server::start(&launch, &world.log(target, "cold"))?;
        let took = server.initialize()?;
        server.shutdown();
        if i > 0 {
            samples.push(ms(took));
        }
    }
    Ok(median(&samples))
}

#[derive(Debug)]
struct SessionFigures {
    idle: Mem,
    after_calls: Mem,
    tools_bytes: usize,
    tools_count: usize,
    list: Vec<f64>,
    dispatch: Option<Vec<f64>>,
    spawn: Option<Vec<f64>>,
    dispatch_error: Option<String>,
}

fn session(world: &World, target: &Target, plan: &Plan) -> Result<SessionFigures, String> {
    let launch = world.launch(target, &world.config, &world.jobs_empty, &[]);
    let mut server = Server::start(&launch, &world.log(target, "session"))?;
    server.initialize()?;
    // Let start-up work (job recovery, imports done lazily) settle before reading memory.
    std::thread::sleep(Duration::from_millis(300));
    let idle = server.mem()?;
    let (reply, _) = server.request("tools/list", json!({}), CALL)?;
    let tools_count = reply.message["result"]["tools"]
        .as_array()
        .map_or(0, Vec::len);
    let tools_bytes = reply.bytes;

    let mut list = Vec::with_capacity(plan.list_calls);
    for _ in 0..plan.list_calls {
        let (payload, took) = server.call("list_agents", json!({}), CALL)?;
        if payload.as_array().map(Vec::len) != Some(fixture::AGENTS) {
            return Err(format!(
                "list_agents did not list {} agents: {payload:.300}",
                fixture::AGENTS
            ));
        }
        list.push(ms(took));
    }
    let after_calls = server.mem()?;

    // Dispatches in the same session, each followed by one run of the fake alone (so both see
    // the same machine load); a failure here still keeps the figures above.
    let agent = world.agents[0].0.clone();
    let mut run = || -> Result<(Vec<f64>, Vec<f64>), String> {
        let mut dispatch = Vec::with_capacity(plan.dispatches);
        let mut spawn = Vec::with_capacity(plan.dispatches);
        for i in 0..plan.dispatches + 10 {
            let task = format!("bench task {i}");
            let (payload, took) =
                server.call("dispatch", json!({"agent": agent, "task": task}), CALL)?;
            if payload["success"] != true {
                return Err(format!("dispatch failed: {payload:.500}"));
            }
            let alone = fake_once(world, target)?;
            // The first ten warm up (page cache, thread pools).
            if i >= 10 {
                dispatch.push(ms(took));
                spawn.push(ms(alone));
            }
        }
        Ok((dispatch, spawn))
    };
    let (dispatch, spawn, dispatch_error) = match run() {
        Ok((d, s)) => (Some(d), Some(s), None),
        Err(e) => (None, None, Some(e)),
    };
    server.shutdown();
    Ok(SessionFigures {
        idle,
        after_calls,
        tools_bytes,
        tools_count,
        list,
        dispatch,
        spawn,
        dispatch_error,
    })
}

/// Runs the fake `claude` once directly, the way the target's runner does (same argv shape,
/// cwd, stdin null, stdout/stderr piped and read to the end); returns how long it took.
fn fake_once(world: &World, target: &Target) -> Result<Duration, String> {
    let mut cmd = Command::new(&world.claude);
    cmd.args(["-p", "bench task", "--output-format", target.format]);
    if target.format == "stream-json" {
        cmd.args([
            "--verbose",
            "--session-id",
            "00000000-0000-4000-8000-00000000beef",
        ]);
    }
    cmd.current_dir(&world.agents[0].1)
        .env_clear()
        .envs(client::base_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("run {}: {e}", world.claude.display()))?;
    let took = started.elapsed();
    if !out.status.success() || out.stdout.is_empty() {
        return Err(format!("the fake failed: {}", out.status));
    }
    Ok(took)
}

fn fanout(world: &World, target: &Target, plan: &Plan, sleep_ms: u64) -> Result<f64, String> {
    let sleep = format!("{:.3}", sleep_ms as f64 / 1000.0);
    let launch = world.launch(
        target,
        &world.fanout_config,
        &world.jobs_empty,
        &[("FAKE_INSTANT_SLEEP", &sleep)],
    );
    let mut server = Server::start(&launch, &world.log(target, "fanout"))?;
    server.initialize()?;
    let agents = &world.agents;
    let send = |server: &mut Server, i: usize| -> Result<i64, String> {
        let agent = &agents[i % agents.len()].0;
        server.send_request(
            "tools/call",
            json!({"name": "dispatch", "arguments": {"agent": agent, "task": format!("fan-out task {i}")}}),
        )
    };
    let started = Instant::now();
    let mut sent = 0;
    while sent < plan.fanout_window.min(plan.fanout_total) {
        send(&mut server, sent)?;
        sent += 1;
    }
    let mut done = 0;
    while done < plan.fanout_total {
        let reply = server.next_reply(LONG)?;
        let payload = client::payload(&reply.message)?;
        if payload["success"] != true {
            return Err(format!("a dispatch failed: {payload:.500}"));
        }
        done += 1;
        if sent < plan.fanout_total {
            send(&mut server, sent)?;
            sent += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    server.shutdown();
    Ok(wall)
}

/// One dispatch whose fake `cat`s the stream file; returns its time (s) and the server's peak
/// RSS (KiB).
fn stream(world: &World, target: &Target) -> Result<(f64, u64), String> {
    let file = world.stream.to_string_lossy().into_owned();
    let launch = world.launch(
        target,
        &world.config,
        &world.jobs_empty,
        &[("FAKE_INSTANT_STREAM", &file)],
    );
    let mut server = Server::start(&launch, &world.log(target, "stream"))?;
    server.initialize()?;
    let agent = &world.agents[0].0;
    let (payload, took) = server.call(
        target.stream_tool,
        json!({"agent": agent, "task": "stream bench"}),
        LONG,
    )?;
    if payload["success"] != true || payload["result"] != "streamed answer" {
        return Err(format!("the stream dispatch failed: {payload:.500}"));
    }
    let hwm = server.mem()?.hwm_kib;
    server.shutdown();
    Ok((took.as_secs_f64(), hwm))
}

/// How fast the fake alone delivers the stream file through a pipe (MB/s).
fn fake_stream_rate(world: &World) -> Result<f64, String> {
    let started = Instant::now();
    let mut child = Command::new(&world.claude)
        .args(["-p", "x", "--output-format", "stream-json"])
        .env("FAKE_INSTANT_STREAM", &world.stream)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run the fake: {e}"))?;
    let mut out = child.stdout.take().ok_or("stdout not piped")?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = out.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let _ = child.wait();
    Ok(total as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// `dispatch_jobs` (default limit 50) over the pre-written records: the first call right after
/// `initialize`, then the median of warm calls (ms), and the server's memory after them.
fn jobs(world: &World, target: &Target, plan: &Plan) -> Result<(f64, f64, Mem), String> {
    let launch = world.launch(target, &world.config, &world.jobs_full, &[]);
    let mut server = Server::start(&launch, &world.log(target, "jobs"))?;
    server.initialize()?;
    let check = |payload: &serde_json::Value| -> Result<(), String> {
        let rows = payload
            .as_array()
            .or_else(|| payload["result"].as_array())
            .map_or(0, Vec::len);
        if rows == 50 {
            Ok(())
        } else {
            Err(format!(
                "dispatch_jobs returned {rows} rows, not 50: {payload:.300}"
            ))
        }
    };
    let (payload, first) = server.call("dispatch_jobs", json!({}), LONG)?;
    check(&payload)?;
    let mut warm = Vec::new();
    for _ in 0..plan.jobs_warm {
        let (payload, took) = server.call("dispatch_jobs", json!({}), LONG)?;
        check(&payload)?;
        warm.push(ms(took));
    }
    let mem = server.mem()?;
    server.shutdown();
    Ok((ms(first), median(&warm), mem))
}

/// `daemon_sessions` clients at once, each `initialize` + `daemon_dispatches` dispatches
/// (instant fake, `max_concurrency` 5); returns the wall time (s) from starting the clients to
/// the last reply. Without `daemon` each client is its own `serve`; with it, a
/// `serve --daemon --socket S` is started first (and killed after) and each client is
/// `serve --connect --socket S`.
fn sessions(world: &World, target: &Target, plan: &Plan, daemon: bool) -> Result<f64, String> {
    let mut args = vec!["serve".to_owned()];
    let mut server = None;
    if daemon {
        let dir = world.scratch.dir("daemon")?;
        fixture::set_mode(&dir, 0o700)?;
        let socket = dir.join("daemon.sock");
        let _ = std::fs::remove_file(&socket);
        let socket = socket.to_string_lossy().into_owned();
        let mut launch = world.launch(target, &world.config, &world.jobs_empty, &[]);
        launch.args = vec![
            "serve".into(),
            "--daemon".into(),
            "--socket".into(),
            socket.clone(),
        ];
        let d = Server::start(&launch, &world.log(target, "daemon"))?;
        let started = Instant::now();
        while !Path::new(&socket).exists() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "the daemon did not create {socket} within 10 s; log:\n{}",
                    d.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        server = Some(d);
        args.extend(["--connect".into(), "--socket".into(), socket]);
    }
    let started = Instant::now();
    let handles: Vec<_> = (0..plan.daemon_sessions)
        .map(|s| {
            let mut launch = world.launch(target, &world.config, &world.jobs_empty, &[]);
            launch.args.clone_from(&args);
            let log = world.log(target, &format!("session{s}-{daemon}"));
            let agent = world.agents[s % world.agents.len()].0.clone();
            let n = plan.daemon_dispatches;
            std::thread::spawn(move || -> Result<(), String> {
                let mut client = Server::start(&launch, &log)?;
                client.initialize()?;
                for i in 0..n {
                    let (payload, _) = client.call(
                        "dispatch",
                        json!({"agent": agent, "task": format!("session {s} task {i}")}),
                        CALL,
                    )?;
                    if payload["success"] != true {
                        return Err(format!("dispatch failed: {payload:.300}"));
                    }
                }
                client.shutdown();
                Ok(())
            })
        })
        .collect();
    let mut result = Ok(());
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err("client thread panicked".into()));
        if result.is_ok() {
            result = r;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    if let Some(d) = server {
        d.kill();
    }
    result.map(|()| wall)
}

// ---------------------------------------------------------------------------------------------
// the report

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    Missed,
    NotApplicable,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::NotApplicable => "n/a",
        }
    }
}

fn verdict(ok: Option<bool>) -> Verdict {
    match ok {
        Some(true) => Verdict::Met,
        Some(false) => Verdict::Missed,
        None => Verdict::NotApplicable,
    }
}

/// Python / Rust of a figure where smaller is better.
fn ratio(rust: Option<f64>, py: Option<f64>) -> Option<f64> {
    match (rust, py) {
        (Some(r), Some(p)) if r > 0.0 => Some(p / r),
        _ => None,
    }
}

fn opt(x: Option<f64>, f: fn(f64) -> String) -> String {
    x.map_or_else(|| "—".to_owned(), f)
}

fn print_report(
    plan: &Plan,
    targets: &[Target],
    all: &[Figures],
    world: &World,
    has_python: bool,
    has_daemon: bool,
    load: &str,
) {
    let rust = &all[0];
    let py = all.get(1);
    let p = |get: fn(&Figures) -> Option<f64>| py.and_then(get);
    let py_label = targets.get(1).map_or("Python", |t| t.label.as_str());

    println!("## agent-dispatch benchmarks\n");
    for line in fixture::machine() {
        println!("- {line}");
    }
    println!("- load average (1 min): {load}");
    let root = workspace();
    let rust_path = targets[0].program.strip_prefix(&root).map_or_else(
        |_| targets[0].program.display().to_string(),
        |p| p.display().to_string(),
    );
    println!(
        "- Rust: `{rust_path}`{}",
        if has_python {
            format!("; Python: {py_label}")
        } else {
            "; Python: not run (no venv, or --no-python): its figures and the ratios are n/a"
                .to_owned()
        }
    );
    println!(
        "- one client over stdio; `claude` = fixtures/bin/fake-claude-instant (sh); cache off; {} agents{}",
        fixture::AGENTS,
        if plan.list_calls < 1000 { "; **--quick**" } else { "" }
    );
    println!();
    println!("| figure | Rust | {py_label} | Python / Rust | goal | |");
    println!("|---|---|---|---|---|---|");

    let row = |name: &str, r: String, py: String, ratio: String, goal: &str, v: Verdict| {
        println!("| {name} | {r} | {py} | {ratio} | {goal} | {} |", v.text());
    };
    // Most rows: one figure for each server (smaller is better) and Python / Rust.
    let compare =
        |name: &str, r: Option<f64>, p: Option<f64>, fmt: fn(f64) -> String, goal: &str, v| {
            row(
                name,
                opt(r, fmt),
                opt(p, fmt),
                opt(ratio(r, p), fmt_ratio),
                goal,
                v,
            );
        };
    let secs: fn(f64) -> String = |s| format!("{s:.2} s");

    // cold start
    let cs = ratio(rust.cold_start_ms, p(|f| f.cold_start_ms));
    let cs_ok = rust
        .cold_start_ms
        .map(|r| r < 15.0 && cs.is_none_or(|x| x >= 50.0));
    row(
        &format!(
            "cold start to `initialize` reply (median of {})",
            plan.cold_starts
        ),
        opt(rust.cold_start_ms, fmt_ms),
        opt(p(|f| f.cold_start_ms), fmt_ms),
        opt(cs, fmt_ratio),
        "≥ 50× and < 15 ms",
        verdict(cs_ok),
    );

    // memory
    let kib =
        |m: Option<Mem>, hwm: bool| m.map(|m| (if hwm { m.hwm_kib } else { m.rss_kib }) as f64);
    let at_least = |r: Option<f64>, p: Option<f64>, x: f64| verdict(ratio(r, p).map(|v| v >= x));
    let (r, q) = (kib(rust.idle, false), py.and_then(|f| kib(f.idle, false)));
    let name = "idle RSS after `initialize` (VmRSS)";
    compare(name, r, q, fmt_kib, "≥ 8× smaller", at_least(r, q, 8.0));
    let after = |f: &Figures| kib(f.after_calls, false);
    let (r, q) = (after(rust), py.and_then(after));
    let name = format!("RSS after {} tool calls (VmRSS)", plan.list_calls);
    compare(&name, r, q, fmt_kib, "≥ 8× smaller", at_least(r, q, 8.0));
    let peak = |f: &Figures| kib(f.after_calls, true);
    let name = format!("peak RSS after {} tool calls (VmHWM)", plan.list_calls);
    let na = Verdict::NotApplicable;
    compare(&name, peak(rust), py.and_then(peak), fmt_kib, "", na);

    // tools/list
    let tb = |f: &Figures| f.tools_bytes.map(|b| b as f64);
    let tc = |f: &Figures| f.tools_count.map(|c| c as f64);
    let share = match (tb(rust), py.and_then(tb)) {
        (Some(r), Some(p)) if p > 0.0 => Some(r / p),
        _ => None,
    };
    let tools_ok = match (share, rust.tools_count, py.and_then(|f| f.tools_count)) {
        (Some(s), Some(r), Some(p)) => Some(s <= 0.6 && r >= p),
        _ => None,
    };
    row(
        "`tools/list` reply size",
        opt(tb(rust), fmt_bytes),
        opt(py.and_then(tb), fmt_bytes),
        share.map_or_else(|| "—".into(), |s| format!("Rust = {:.0} %", s * 100.0)),
        "≤ 60 % of Python's bytes",
        verdict(tools_ok),
    );
    row(
        "`tools/list` tool count",
        opt(tc(rust), |x| format!("{x:.0}")),
        opt(py.and_then(tc), |x| format!("{x:.0}")),
        "".into(),
        "at least as many",
        verdict(tools_ok),
    );

    // list_agents
    let (r, p50) = (rust.list_p50, p(|f| f.list_p50));
    let name = format!(
        "`list_agents` p50 ({} agents, {} calls)",
        fixture::AGENTS,
        plan.list_calls
    );
    compare(
        &name,
        r,
        p50,
        fmt_ms,
        "≥ 10× faster",
        at_least(r, p50, 10.0),
    );
    compare(
        "`list_agents` p95",
        rust.list_p95,
        p(|f| f.list_p95),
        fmt_ms,
        "",
        na,
    );

    // dispatch
    let name = format!("`dispatch` p50 (cache off, {} calls)", plan.dispatches);
    compare(
        &name,
        rust.dispatch_p50,
        p(|f| f.dispatch_p50),
        fmt_ms,
        "",
        na,
    );
    compare(
        "`dispatch` p95",
        rust.dispatch_p95,
        p(|f| f.dispatch_p95),
        fmt_ms,
        "",
        na,
    );
    row(
        "the fake's own spawn, run directly (p50)",
        opt(rust.spawn_p50, fmt_ms),
        opt(p(|f| f.spawn_p50), fmt_ms),
        "".into(),
        "",
        Verdict::NotApplicable,
    );
    let over = |f: &Figures| match (f.dispatch_p50, f.spawn_p50) {
        (Some(d), Some(s)) => Some(d - s),
        _ => None,
    };
    compare(
        "dispatch overhead = p50 dispatch − p50 fake",
        over(rust),
        py.and_then(over),
        fmt_ms,
        "≤ 1 ms",
        verdict(over(rust).map(|o| o <= 1.0)),
    );

    // fan-out
    for (k, &sleep_ms) in plan.fanout_sleeps_ms.iter().enumerate() {
        let wall = |f: &Figures| f.fanout_s.get(k).copied().flatten();
        let ideal = (plan.fanout_total as f64 / plan.fanout_concurrency as f64).ceil()
            * sleep_ms as f64
            / 1000.0;
        let (r, q) = (wall(rust), py.and_then(wall));
        // The first run is the one judged against the goal.
        let (goal, v) = if k == 0 {
            ("≥ 3× shorter", at_least(r, q, 3.0))
        } else {
            ("", na)
        };
        let name = format!(
            "{} dispatches, {} in flight, max_concurrency {}, fake sleeps {sleep_ms} ms (ideal {ideal:.1} s)",
            plan.fanout_total, plan.fanout_window, plan.fanout_concurrency,
        );
        compare(&name, r, q, secs, goal, v);
        let above = |f: &Figures| wall(f).map(|s| (s - ideal).max(0.0) * 1000.0);
        let name = "… of which above the ideal";
        compare(name, above(rust), py.and_then(above), fmt_ms, "", na);
    }

    // stream
    let mb = plan.stream_mb as f64;
    let rate = |f: &Figures| f.stream_s.map(|s| mb / s);
    let fake_rate = fake_stream_rate(world).ok();
    row(
        &format!(
            "{} MB stream-json through one dispatch (Rust `dispatch`, Python `dispatch_stream`; `cat` alone: {})",
            plan.stream_mb,
            opt(fake_rate, |r| format!("{r:.0} MB/s"))
        ),
        opt(rate(rust), |r| format!("{r:.0} MB/s")),
        opt(py.and_then(rate), |r| format!("{r:.1} MB/s")),
        opt(
            match (rate(rust), py.and_then(rate)) {
                (Some(r), Some(p)) if p > 0.0 => Some(r / p),
                _ => None,
            },
            |x| format!("{} faster", fmt_ratio(x)),
        ),
        "≥ 200 MB/s",
        verdict(rate(rust).map(|r| r >= 200.0)),
    );
    let hwm = |f: &Figures| f.stream_hwm.map(|h| h as f64);
    compare(
        "… server's peak RSS during it (VmHWM)",
        hwm(rust),
        py.and_then(hwm),
        fmt_kib,
        "< 40 MB",
        verdict(rust.stream_hwm.map(|h| (h as f64) * 1024.0 < 40e6)),
    );

    // jobs
    let under_150 = |ms: Option<f64>| verdict(ms.map(|x| x < 150.0));
    let (r, p1) = (rust.jobs_first_ms, p(|f| f.jobs_first_ms));
    let name = format!(
        "`dispatch_jobs` over {} records, first call",
        plan.job_records
    );
    compare(&name, r, p1, fmt_ms, "< 150 ms", under_150(r));
    let (r, pw) = (rust.jobs_warm_ms, p(|f| f.jobs_warm_ms));
    let name = format!("`dispatch_jobs`, warm call (median of {})", plan.jobs_warm);
    compare(&name, r, pw, fmt_ms, "< 150 ms", under_150(r));
    let jm = |f: &Figures| kib(f.jobs_mem, false);
    let name = "… server's RSS after those calls (VmRSS)";
    compare(name, jm(rust), py.and_then(jm), fmt_kib, "", na);

    // sessions and the daemon
    if has_daemon {
        let label = format!(
            "{} sessions × {} dispatches at once, one `serve` each",
            plan.daemon_sessions, plan.daemon_dispatches
        );
        let py_sessions = p(|f| f.sessions_s);
        compare(&label, rust.sessions_s, py_sessions, secs, "", na);
        let name = "… Rust through one daemon (`serve --connect`; Python: one `serve` each)";
        compare(name, rust.daemon_s, py_sessions, secs, "", na);
    } else {
        row(
            &format!(
                "daemon: {} sessions × {} dispatches",
                plan.daemon_sessions, plan.daemon_dispatches
            ),
            "n/a (no daemon in this build)".into(),
            "—".into(),
            "—".into(),
            "",
            na,
        );
    }

    for (target, f) in targets.iter().zip(all) {
        for e in &f.errors {
            println!("\n{}: error: {e}", target.label);
        }
    }
}
