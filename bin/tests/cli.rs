//! The command line, run as a user runs it: the built binary with a throw-away `HOME`,
//! `AGENT_DISPATCH_CONFIG` and `PATH`.
//!
//! `PATH` holds only a scratch `bin/` folder, so the `claude` the CLI finds is the fake one a
//! test puts there (a small `sh` script using builtins only), or none at all. The real Claude
//! Code CLI is used only by `init_registers_with_the_real_claude`, which skips (or fails under
//! `AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1`) when it is not installed.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_agent-dispatch");
const INSTALL_CLAUDE: &str = "npm install -g @anthropic-ai/claude-code";

// ---------------------------------------------------------------------------------------------
// helpers

/// A scratch folder with `home/`, `bin/` (the whole `PATH`), a project and the config path.
#[derive(Debug)]
struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!(
            "agent-dispatch-cli-{}-{n}-{tag}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create sandbox");
        let root = root.canonicalize().expect("canonical sandbox");
        for dir in ["home", "bin", "web"] {
            fs::create_dir_all(root.join(dir)).expect("create sandbox folder");
        }
        fs::write(
            root.join("web/CLAUDE.md"),
            "# Web shop\nThe storefront of the demo shop.\n",
        )
        .expect("write CLAUDE.md");
        Sandbox { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn config(&self) -> PathBuf {
        self.path("config/agents.yaml")
    }

    fn project(&self) -> String {
        self.path("web").display().to_string()
    }

    /// Puts an executable `sh` script called `name` into `bin/`.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(&format!("bin/{name}"));
        fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
        path
    }

    /// The binary under test with the sandbox's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.root)
            .env("HOME", self.path("home"))
            .env("AGENT_DISPATCH_CONFIG", self.config())
            .env("PATH", self.path("bin"))
            .env("NO_COLOR", "1")
            .env_remove("AGENT_DISPATCH_JOBS_DIR")
            .env_remove("AGENT_DISPATCH_DEPTH")
            .env_remove("AGENT_DISPATCH_CLAUDE")
            .env_remove("CLAUDE_CONFIG_DIR")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Ran {
        run(self.command(args), &args.join(" "))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    #[track_caller]
    fn expect(self, code: i32) -> Ran {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "a panic:\n{}",
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `cmd` to completion (at most 60 s).
fn run(mut cmd: Command, what: &str) -> Ran {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: spawn: {e}"));
    let started = Instant::now();
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after 60 s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let take = |h: Option<thread::JoinHandle<String>>| {
        h.map(|h| h.join().expect("reader")).unwrap_or_default()
    };
    Ran {
        code: status.code(),
        stdout: take(out),
        stderr: take(err),
    }
}

fn reader<R: std::io::Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn real_clients_required() -> bool {
    std::env::var("AGENT_DISPATCH_REQUIRE_REAL_CLIENTS").is_ok_and(|v| v == "1")
}

fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

fn this_binary() -> String {
    Path::new(BIN)
        .canonicalize()
        .expect("canonical binary path")
        .display()
        .to_string()
}

fn read_config(sb: &Sandbox) -> String {
    fs::read_to_string(sb.config()).expect("read agents.yaml")
}

// ---------------------------------------------------------------------------------------------
// registry commands

#[test]
fn registry_commands_round_trip() {
    let sb = Sandbox::new("registry");
    let project = sb.project();

    let added = sb.run(&["add", "web", "web"]).expect(0);
    let description = auto_description(&sb);
    assert_eq!(
        added.stdout,
        format!("Auto-generated description: {description}\nAdded agent 'web' -> {project}\n")
    );
    assert_eq!(added.stderr, "");
    let mode = fs::metadata(sb.config())
        .expect("config")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let listed = sb.run(&["list"]).expect(0);
    assert_eq!(
        listed.stdout,
        format!(
            "  web [OK]\n    dir:  {project}\n    desc: {}\n\n",
            auto_description(&sb)
        )
    );

    let json = sb.run(&["list", "--json"]).expect(0).json();
    assert_eq!(json[0]["name"], "web");
    assert_eq!(json[0]["directory"], project);
    assert_eq!(json[0]["healthy"], true);
    assert_eq!(json[0]["has_claude_md"], true);
    assert_eq!(json.as_array().map(Vec::len), Some(1));

    let described = sb.run(&["describe", "web"]).expect(0);
    assert_eq!(
        described.stdout,
        format!(
            "web [OK]\n  directory:        {project}\n  description:      {}\n  timeout:          300s\n  allowed_tools:    (inherit defaults)\n  disallowed_tools: (inherit defaults)\n  project files:    CLAUDE.md\n",
            auto_description(&sb)
        )
    );

    let updated = sb
        .run(&[
            "update",
            "web",
            "--timeout",
            "600",
            "--model",
            "sonnet",
            "--max-budget",
            "2.5",
            "--allowed-tools",
            ",",
            "--disallowed-tools",
            "Bash,Write",
            "--permission-mode",
            "acceptEdits",
        ])
        .expect(0);
    assert_eq!(
        updated.stdout,
        "Updated agent 'web': timeout, max_budget_usd, model, permission_mode, allowed_tools, disallowed_tools\n"
    );

    let described = sb.run(&["describe", "web"]).expect(0);
    assert_eq!(
        described.stdout,
        format!(
            "web [OK]\n  directory:        {project}\n  description:      {}\n  timeout:          600s\n  model:            sonnet\n  max_budget_usd:   $2.5\n  permission_mode:  acceptEdits\n  allowed_tools:    (none — explicit override)\n  disallowed_tools: Bash, Write\n  project files:    CLAUDE.md\n",
            auto_description(&sb)
        )
    );
    let listed = sb.run(&["list"]).expect(0);
    assert!(
        listed.stdout.contains(
            "    config: timeout=600s, model=sonnet, budget=$2.5\n    permission_mode: acceptEdits\n    allowed_tools: (none)\n    disallowed_tools: Bash, Write\n"
        ),
        "{}",
        listed.stdout
    );

    // `none` clears: the model goes, the tool lists inherit the defaults again.
    sb.run(&[
        "update",
        "web",
        "--model",
        "none",
        "--allowed-tools",
        "none",
        "--max-budget-usd",
        "0",
    ])
    .expect(0);
    let json = sb.run(&["describe", "web", "--json"]).expect(0).json();
    assert_eq!(json["model"], Value::Null);
    assert_eq!(json["max_budget_usd"], Value::Null);
    assert_eq!(json["allowed_tools"], Value::Null);
    assert_eq!(json["disallowed_tools"], json!(["Bash", "Write"]));
    assert_eq!(json["timeout"], 600);
    assert!(
        json["claude_md_preview"]
            .as_str()
            .is_some_and(|p| p.contains("storefront")),
        "{json}"
    );

    // Refused before anything is touched: exit 2, the config unchanged.
    let before = read_config(&sb);
    let refused = sb.run(&["update", "web", "--timeout", "-5"]).expect(2);
    assert_eq!(
        refused.stderr,
        "Error: --timeout must be a positive number of seconds (got -5)\n"
    );
    assert_eq!(refused.stdout, "");
    sb.run(&["update", "web", "--timeout", "0"]).expect(2);
    sb.run(&["add", "shop", "web", "--max-budget-usd", "-1"])
        .expect(2);
    sb.run(&["add", "shop", "web", "--timeout", "0"]).expect(2);
    assert_eq!(read_config(&sb), before);

    let ghost = sb.run(&["add", "ghost", "/nonexistent"]).expect(1);
    assert_eq!(
        ghost.stderr,
        "Error: Directory does not exist: /nonexistent\n"
    );
    assert_eq!(ghost.stdout, "");
    let twice = sb.run(&["add", "web", "web"]).expect(1);
    assert_eq!(
        twice.stderr,
        "Error: Agent 'web' already exists. Remove it first.\n"
    );
    let bad_name = sb.run(&["add", "no good", "web"]).expect(1);
    assert!(
        bad_name
            .stderr
            .starts_with("Error: Invalid agent name: 'no good'."),
        "{}",
        bad_name.stderr
    );
    let nothing = sb.run(&["update", "web"]).expect(1);
    assert_eq!(
        nothing.stderr,
        "Error: Nothing to update. Pass at least one option (see --help).\n"
    );
    let unknown = sb.run(&["describe", "nope"]).expect(1);
    assert_eq!(
        unknown.stderr,
        "Error: Unknown agent: 'nope'. Available: web\n"
    );
    let unknown_json = sb.run(&["describe", "nope", "--json"]).expect(1);
    assert_eq!(
        unknown_json.json(),
        json!({"error": "Unknown agent: 'nope'. Available: web"})
    );
    assert_eq!(read_config(&sb), before);

    // A warning goes to stderr, the result to stdout.
    let warned = sb
        .run(&[
            "add",
            "shop",
            "web",
            "-d",
            "The shop",
            "--permission-mode",
            "sometimes",
        ])
        .expect(0);
    assert_eq!(warned.stdout, format!("Added agent 'shop' -> {project}\n"));
    assert!(
        warned
            .stderr
            .starts_with("Warning: Unknown permission_mode: 'sometimes'."),
        "{}",
        warned.stderr
    );

    assert_eq!(
        sb.run(&["remove", "shop"]).expect(0).stdout,
        "Removed agent 'shop'.\n"
    );
    assert_eq!(
        sb.run(&["remove", "web"]).expect(0).stdout,
        "Removed agent 'web'.\n"
    );
    let again = sb.run(&["remove", "web"]).expect(1);
    assert_eq!(
        again.stderr,
        "Error: Unknown agent: 'web'. Available: (none configured)\n"
    );
    assert_eq!(
        sb.run(&["list"]).expect(0).stdout,
        "No agents configured. Run: agent-dispatch add <name> <directory>\n"
    );
    assert_eq!(sb.run(&["list", "--json"]).expect(0).json(), json!([]));
}

/// The description `add_agent` generates for the sandbox project (read back from the config,
/// so this test does not restate the generator's rules).
fn auto_description(sb: &Sandbox) -> String {
    let yaml = read_config(sb);
    let line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("description: "))
        .unwrap_or_else(|| panic!("no description in\n{yaml}"));
    let text = line.trim_matches('\'').replace("''", "'");
    assert!(text.contains("storefront"), "{text}");
    text
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let sb = Sandbox::new("usage");
    let unknown = sb.run(&["frobnicate"]).expect(2);
    assert!(
        unknown.stderr.contains("Unrecognized argument: frobnicate"),
        "{}",
        unknown.stderr
    );
    assert_eq!(unknown.stdout, "");
    let missing = sb.run(&["add", "web"]).expect(2);
    assert!(
        missing
            .stderr
            .contains("Required positional arguments not provided"),
        "{}",
        missing.stderr
    );
    let not_a_number = sb.run(&["update", "web", "--timeout", "soon"]).expect(2);
    assert!(
        not_a_number.stderr.contains("--timeout"),
        "{}",
        not_a_number.stderr
    );
    sb.run(&[]).expect(2);

    let help = sb.run(&["--help"]).expect(0);
    assert!(
        help.stdout.starts_with("Usage: agent-dispatch"),
        "{}",
        help.stdout
    );
    for command in [
        "serve", "init", "add", "update", "remove", "list", "describe", "doctor", "test", "jobs",
        "job", "cancel", "gc",
    ] {
        assert!(
            help.stdout.contains(&format!("  {command} ")),
            "{command} missing:\n{}",
            help.stdout
        );
    }
    let add_help = sb.run(&["add", "--help"]).expect(0);
    assert!(
        add_help.stdout.contains("--max-budget-usd"),
        "{}",
        add_help.stdout
    );

    let version = sb.run(&["--version"]).expect(0);
    assert_eq!(
        version.stdout,
        format!("agent-dispatch {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        !sb.config().exists(),
        "no command above may create the config"
    );
}

// ---------------------------------------------------------------------------------------------
// doctor

/// A fake `claude` that only knows `--version`.
fn fake_claude_version(sb: &Sandbox) {
    sb.script(
        "claude",
        "if [ \"$1\" = --version ]; then echo '2.1.330 (Claude Code)'; exit 0; fi\necho \"fake claude: $*\" >&2\nexit 1\n",
    );
}

fn healthy_setup(sb: &Sandbox) {
    fake_claude_version(sb);
    std::os::unix::fs::symlink(BIN, sb.path("bin/agent-dispatch")).expect("symlink binary");
    sb.run(&["add", "web", "web", "-d", "The shop"]).expect(0);
    let registration = json!({
        "mcpServers": {"agent-dispatch": {"type": "stdio", "command": this_binary(), "args": ["serve"]}},
    });
    fs::write(sb.path("home/.claude.json"), registration.to_string()).expect("write .claude.json");
}

#[test]
fn doctor_passes_on_a_healthy_setup() {
    let sb = Sandbox::new("doctor-ok");
    healthy_setup(&sb);
    let ran = sb.run(&["doctor"]).expect(0);
    let config = sb.config().display().to_string();
    let project = sb.project();
    let exe = this_binary();
    let claude = sb.path("bin/claude").display().to_string();
    let jobs = sb.path("config/jobs").display().to_string();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        ran.stdout,
        format!(
            "
Environment
  [OK] claude CLI: {claude} (2.1.330 (Claude Code))
  [OK] agent-dispatch {version}: {exe}

Config
  [OK] Config: {config} (1 agent)

MCP registration
  [OK] agent-dispatch is registered with Claude Code (user scope): {exe} serve

Agents
  [OK] web: {project} [CLAUDE.md]

Jobs folder
  [OK] Jobs folder: {jobs} (not created yet)

All checks passed.
"
        )
    );

    let report = sb.run(&["doctor", "--json"]).expect(0).json();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["status"], "ok");
    assert_eq!(report["issues"], 0);
    assert_eq!(report["warnings"], 0);
    let sections: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["section"].as_str().expect("section"))
        .collect();
    assert_eq!(
        sections,
        [
            "Environment",
            "Environment",
            "Config",
            "MCP registration",
            "Agents",
            "Jobs folder"
        ]
    );
    assert_eq!(
        report["checks"][4],
        json!({"section": "Agents", "status": "ok", "message": format!("web: {project} [CLAUDE.md]"), "details": []})
    );

    // A jobs folder open to others is a warning with its fix; --strict makes warnings fail.
    fs::create_dir_all(sb.path("config/jobs")).expect("jobs dir");
    fs::set_permissions(sb.path("config/jobs"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let ran = sb.run(&["doctor"]).expect(0);
    assert!(
        ran.stdout.contains(&format!(
            "  [WARN] Jobs folder is open to other users (mode 0755): {jobs}\n    Fix: chmod 700 {jobs}\n"
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.ends_with("\n0 issues, 1 warning\n"),
        "{}",
        ran.stdout
    );
    sb.run(&["doctor", "--strict"]).expect(1);
}

#[test]
fn doctor_fails_on_a_broken_config_and_names_it() {
    let sb = Sandbox::new("doctor-broken");
    healthy_setup(&sb);
    fs::write(sb.config(), "agents:\n  web:\n    timeout: [nope\n").expect("break config");
    let config = sb.config().display().to_string();
    let ran = sb.run(&["doctor"]).expect(1);
    assert!(
        ran.stdout.contains(&format!(
            "  [FAIL] Config invalid: {config}\n    not valid YAML: "
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("  [WARN] Skipped (the config could not be loaded)"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.ends_with("\n1 issue, 1 warning\n"),
        "{}",
        ran.stdout
    );

    let report = sb.run(&["doctor", "--json"]).expect(1).json();
    assert_eq!(report["status"], "fail");
    assert_eq!(report["issues"], 1);
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["section"], "Config");
    assert_eq!(failed[0]["message"], format!("Config invalid: {config}"));

    // A schema error names the field.
    fs::write(
        sb.config(),
        "agents:\n  web:\n    directory: /tmp\n    timeout: soon\n",
    )
    .expect("config");
    let ran = sb.run(&["doctor"]).expect(1);
    assert!(ran.stdout.contains("agents.web.timeout"), "{}", ran.stdout);
}

#[test]
fn doctor_fails_without_claude_and_says_how_to_install_it() {
    let sb = Sandbox::new("doctor-no-claude");
    sb.run(&["add", "web", "web", "-d", "The shop"]).expect(0);
    let ran = sb.run(&["doctor"]).expect(1);
    assert!(
        ran.stdout.contains(&format!(
            "  [FAIL] claude CLI not found on PATH\n    agent-dispatch runs every agent with the claude CLI.\n    Install: {INSTALL_CLAUDE}\n    Then: agent-dispatch init\n"
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("  [WARN] agent-dispatch is not registered with Claude Code\n"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("    Run: agent-dispatch init\n"),
        "{}",
        ran.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// init

/// A fake `claude` for `mcp get` / `mcp add-json`: logs its argv (one line per argument, a
/// `--` line after each run) and keeps the registered JSON in `state`.
fn fake_claude_mcp(sb: &Sandbox) -> (PathBuf, PathBuf) {
    let log = sb.path("claude-argv.log");
    let state = sb.path("claude-state.json");
    sb.script(
        "claude",
        &format!(
            r#"LOG='{log}'
STATE='{state}'
for a in "$@"; do printf '%s\n' "$a" >> "$LOG"; done
printf -- '--\n' >> "$LOG"
if [ "$1 $2" = "mcp get" ]; then
  if [ -f "$STATE" ]; then
    read -r cmd < "$STATE"
    printf 'agent-dispatch:\n  Scope: User config (available in all your projects)\n  Status: ✔ Connected\n  Type: stdio\n  Command: %s\n  Args: serve\n' "$cmd"
    exit 0
  fi
  echo 'No MCP server named "agent-dispatch" found.' >&2
  exit 1
fi
if [ "$1 $2" = "mcp add-json" ]; then
  printf '%s\n' "$REGISTERED_COMMAND" > "$STATE"
  echo 'Added stdio MCP server agent-dispatch to user config'
  exit 0
fi
exit 1
"#,
            log = log.display(),
            state = state.display()
        ),
    );
    (log, state)
}

fn argv_runs(log: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line == "--" {
            runs.push(std::mem::take(&mut current));
        } else {
            current.push(line.to_owned());
        }
    }
    runs
}

#[test]
fn init_creates_the_config_and_registers_once() {
    let sb = Sandbox::new("init-fake");
    let (log, state) = fake_claude_mcp(&sb);
    let exe = this_binary();
    let config = sb.config().display().to_string();

    let mut first = sb.command(&["init"]);
    first.env("REGISTERED_COMMAND", &exe);
    let first = run(first, "init").expect(0);
    assert_eq!(
        first.stdout.lines().take(2).collect::<Vec<_>>(),
        [
            format!("Created config: {config}"),
            format!("Registered with Claude Code (user scope): {exe} serve"),
        ]
    );
    let entry = json!({"type": "stdio", "command": exe, "args": ["serve"]}).to_string();
    assert_eq!(
        argv_runs(&log),
        [
            vec!["mcp", "get", "agent-dispatch"],
            vec![
                "mcp",
                "add-json",
                "agent-dispatch",
                entry.as_str(),
                "--scope",
                "user"
            ],
        ]
    );
    assert_eq!(
        read_config(&sb),
        "agents: {}\nsettings:\n  default_timeout: 300\n  default_allowed_tools: []\n  default_disallowed_tools: []\n  max_dispatch_depth: 3\n  max_concurrency: 5\n  cache:\n    enabled: true\n    ttl: 300\n    max_size: 1000\n"
    );
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&sb.config()), 0o600);
    assert_eq!(mode(&sb.path("config")), 0o700);

    // Second run: nothing changes, nothing is registered again.
    fs::write(sb.config(), "agents: {}\n# mine\n").expect("edit config");
    let second = sb.run(&["init"]).expect(0);
    assert_eq!(
        second.stdout,
        format!(
            "Config already exists: {config}\nAlready registered with Claude Code (user scope).\n"
        )
    );
    assert_eq!(read_config(&sb), "agents: {}\n# mine\n");
    assert_eq!(argv_runs(&log).len(), 3);
    assert_eq!(argv_runs(&log)[2], ["mcp", "get", "agent-dispatch"]);

    // Registered for another program: reported with the fix, not overwritten.
    fs::write(&state, "/opt/old/agent-dispatch\n").expect("state");
    let other = sb.run(&["init"]).expect(0);
    assert!(
        other
            .stdout
            .contains("  registered:  /opt/old/agent-dispatch serve\n"),
        "{}",
        other.stdout
    );
    assert!(
        other.stdout.ends_with(
            "Nothing was changed. To register this binary instead, run:\n  claude mcp remove agent-dispatch -s user && agent-dispatch init\n"
        ),
        "{}",
        other.stdout
    );
    assert_eq!(
        argv_runs(&log).len(),
        4,
        "no add-json for a foreign registration"
    );
}

#[test]
fn init_without_claude_says_what_to_do() {
    let sb = Sandbox::new("init-no-claude");
    let ran = sb.run(&["init"]).expect(0);
    assert_eq!(
        ran.stdout,
        format!(
            "Created config: {}\nInstall Claude Code:  {INSTALL_CLAUDE}\nThen run again:       agent-dispatch init\n",
            sb.config().display()
        )
    );
    assert_eq!(
        ran.stderr,
        "Warning: the claude CLI is not on PATH, so agent-dispatch is not registered with Claude Code yet.\n"
    );
    assert!(sb.config().is_file());
}

/// The real Claude Code CLI: `init` registers, `claude mcp list` connects, a second `init`
/// changes nothing.
#[test]
fn init_registers_with_the_real_claude() {
    let test = "init_registers_with_the_real_claude";
    let claude = std::env::var_os("CLAUDE_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("claude"))
                .find(|p| p.is_file())
        });
    let Some(claude) = claude else {
        assert!(!real_clients_required(), "{test}: claude CLI not found");
        return skip(test, "claude CLI not found (set CLAUDE_BIN)");
    };
    let sb = Sandbox::new("init-real");
    // The real CLI (and node, if it is a script) must be found: its folder, then the system's.
    let claude_dir = claude.parent().expect("claude's folder").to_path_buf();
    let path = std::env::join_paths([claude_dir, PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .expect("PATH");
    let with_claude = |args: &[&str]| {
        let mut cmd = sb.command(args);
        cmd.env("PATH", &path).env("AGENT_DISPATCH_CLAUDE", &claude);
        quiet_claude(&mut cmd);
        cmd
    };
    let exe = this_binary();

    let first = run(with_claude(&["init"]), "init").expect(0);
    assert!(
        first.stdout.contains(&format!(
            "Registered with Claude Code (user scope): {exe} serve\n"
        )),
        "{first:?}"
    );
    let claude_json = sb.path("home/.claude.json");
    let doc: Value = serde_json::from_str(&fs::read_to_string(&claude_json).expect(".claude.json"))
        .expect("JSON");
    assert_eq!(
        doc["mcpServers"]["agent-dispatch"],
        json!({"type": "stdio", "command": exe, "args": ["serve"]})
    );

    let mut list = Command::new(&claude);
    list.args(["mcp", "list"])
        .current_dir(sb.path("home"))
        .env("HOME", sb.path("home"))
        .env("PATH", &path)
        .env("AGENT_DISPATCH_CONFIG", sb.config())
        .stdin(Stdio::null());
    quiet_claude(&mut list);
    let listed = run(list, "claude mcp list");
    assert!(
        listed
            .stdout
            .contains(&format!("agent-dispatch: {exe} serve - ✔ Connected")),
        "{listed:?}"
    );

    let second = run(with_claude(&["init"]), "init again").expect(0);
    assert_eq!(
        second.stdout,
        format!(
            "Config already exists: {}\nAlready registered with Claude Code (user scope).\n",
            sb.config().display()
        )
    );
    let again: Value =
        serde_json::from_str(&fs::read_to_string(&claude_json).expect(".claude.json"))
            .expect("JSON");
    assert_eq!(again["mcpServers"], doc["mcpServers"]);

    // doctor sees the registration the real CLI wrote.
    let doctor = run(with_claude(&["doctor"]), "doctor").expect(0);
    assert!(
        doctor.stdout.contains(&format!(
            "  [OK] agent-dispatch is registered with Claude Code (user scope): {exe} serve\n"
        )),
        "{}",
        doctor.stdout
    );
}

fn quiet_claude(cmd: &mut Command) {
    cmd.env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1");
}

// ---------------------------------------------------------------------------------------------
// serve and signals

#[test]
fn serve_exits_0_on_sigterm_sigint_and_sighup() {
    for signal in ["TERM", "INT", "HUP"] {
        let sb = Sandbox::new("signal");
        let mut child = sb
            .command(&["serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"cli-test","version":"0"}}}}}}"#
        )
        .expect("write initialize");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read reply");
        let reply: Value = serde_json::from_str(&line).expect("JSON reply");
        assert_eq!(reply["id"], 1, "{line}");
        let stderr = reader(child.stderr.take().expect("stderr"));

        // stdin stays open: only the signal can end the server.
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("SIG{signal}: serve still running after 10 s");
            }
            thread::sleep(Duration::from_millis(10));
        };
        drop(stdin);
        let stderr = stderr.join().expect("stderr");
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?}\n{stderr}");
        assert!(
            stderr.contains(&format!("SIG{signal} received")),
            "{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// test (a dispatch through the dispatch_stream tool)

/// Whether this build's server offers `dispatch_stream`.
fn has_dispatch_stream(sb: &Sandbox) -> bool {
    let mut child = sb
        .command(&["serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut stdin = child.stdin.take().expect("stdin");
    let requests = concat!(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cli-test","version":"0"}}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        "\n",
    );
    stdin.write_all(requests.as_bytes()).expect("write");
    drop(stdin);
    let out = reader(child.stdout.take().expect("stdout"))
        .join()
        .expect("stdout");
    let _ = child.wait();
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["id"] == 2)
        .flat_map(|m| m["result"]["tools"].as_array().cloned().unwrap_or_default())
        .any(|t| t["name"] == "dispatch_stream")
}

/// A fake `claude` answering in stream-json: an assistant text and tool use, then a result.
fn fake_claude_stream(sb: &Sandbox) {
    sb.script(
        "claude",
        r#"if [ "$1" = --version ]; then echo '2.1.330 (Claude Code)'; exit 0; fi
if [ -n "$FAIL_WITH" ]; then
  printf '%s\n' '{"type":"system","subtype":"init","session_id":"11111111-1111-4111-8111-111111111111"}'
  printf '{"type":"result","subtype":"success","is_error":true,"result":"%s","num_turns":1,"total_cost_usd":0.001,"session_id":"11111111-1111-4111-8111-111111111111"}\n' "$FAIL_WITH"
  exit 1
fi
printf '%s\n' '{"type":"system","subtype":"init","session_id":"11111111-1111-4111-8111-111111111111"}'
printf '%s\n' '{"type":"assistant","message":{"content":[{"type":"text","text":"Looking at the project"},{"type":"tool_use","name":"Read","input":{"file_path":"CLAUDE.md"}}]}}'
printf '%s\n' '{"type":"result","subtype":"success","is_error":false,"result":"It is the demo shop storefront.","num_turns":2,"total_cost_usd":0.0123,"duration_ms":40,"session_id":"11111111-1111-4111-8111-111111111111"}'
exit 0
"#,
    );
}

#[test]
fn test_command_dispatches_through_dispatch_stream() {
    let sb = Sandbox::new("test-cmd");
    fake_claude_stream(&sb);
    sb.run(&["add", "web", "web", "-d", "The shop"]).expect(0);
    let project = sb.project();

    // Checked before anything runs, engine or not.
    let bad = sb.run(&["test", "web", "--timeout", "0"]).expect(2);
    assert_eq!(
        bad.stderr,
        "Error: --timeout must be a positive number of seconds (got 0)\n"
    );
    let ghost = sb.run(&["test", "ghost"]).expect(1);
    assert_eq!(
        ghost.stderr,
        "Error: Unknown agent: 'ghost'. Available: web\n"
    );

    if !has_dispatch_stream(&sb) {
        let ran = sb.run(&["test", "web"]).expect(1);
        assert!(
            ran.stderr.contains("this build has no dispatch engine"),
            "{}",
            ran.stderr
        );
        return skip(
            "test_command_dispatches_through_dispatch_stream",
            "this build's server has no dispatch_stream tool; only the no-engine report was checked",
        );
    }

    let ran = sb.run(&["test", "web", "--stream"]).expect(0);
    assert_eq!(
        ran.stdout,
        "It is the demo shop storefront.\n\n--- Cost: $0.0123 | Turns: 2\n"
    );
    assert!(
        ran.stderr.starts_with(&format!(
            "Dispatching to 'web' ({project})...\nTask: What project is this? Describe in one sentence.\n---\n"
        )),
        "{}",
        ran.stderr
    );
    let progress: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("  ["))
        .collect();
    assert!(
        progress.iter().any(|l| l.ends_with("Using tool: Read")),
        "{}",
        ran.stderr
    );
    assert!(
        progress
            .iter()
            .any(|l| l.contains("Looking at the project")),
        "{}",
        ran.stderr
    );

    // Without --stream: no progress lines; a custom task and timeout pass through.
    let quiet = sb
        .run(&["test", "web", "Name the project", "--timeout", "60"])
        .expect(0);
    assert!(
        quiet.stderr.contains("Task: Name the project\n"),
        "{}",
        quiet.stderr
    );
    assert!(!quiet.stderr.contains("  ["), "{}", quiet.stderr);

    let json = sb.run(&["test", "web", "--json"]).expect(0).json();
    assert_eq!(json["success"], true);
    assert_eq!(json["result"], "It is the demo shop storefront.");

    // A permission failure: the error, then the diagnosis with the commands that fix it.
    let mut denied = sb.command(&["test", "web"]);
    denied.env(
        "FAIL_WITH",
        "Permission denied: the Bash tool is not allowed",
    );
    let denied = run(denied, "test (denied)").expect(1);
    assert!(
        denied
            .stderr
            .contains("Error: Permission denied: the Bash tool is not allowed"),
        "{}",
        denied.stderr
    );
    assert!(
        denied.stderr.contains(
            "\nDiagnosis: permission error\nThe agent was denied a tool or action. To fix:\n  agent-dispatch update web --permission-mode bypassPermissions\n  agent-dispatch update web --allowed-tools Bash,Read,Edit,Write\n"
        ),
        "{}",
        denied.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// jobs, job, cancel, gc (the job tools on the jobs folder)

/// A job id made of one repeated hex digit.
fn job_id(digit: char) -> String {
    std::iter::repeat_n(digit, 32).collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The sandbox's jobs folder (`AGENT_DISPATCH_JOBS_DIR` unset: beside the config), private.
fn jobs_dir(sb: &Sandbox) -> PathBuf {
    let dir = sb.path("config/jobs");
    fs::create_dir_all(&dir).expect("jobs dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod jobs dir");
    dir
}

/// Writes a record as the server would: pretty JSON in `<id>.json`.
fn write_job(dir: &Path, record: &Value) -> PathBuf {
    let id = record["id"].as_str().expect("record id");
    let path = dir.join(format!("{id}.json"));
    fs::write(
        &path,
        serde_json::to_string_pretty(record).expect("record JSON"),
    )
    .expect("write record");
    path
}

fn read_job(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).expect("read record")).expect("record JSON")
}

/// Sets a file's modification time `secs` seconds into the past.
fn age_file(path: &Path, secs: u64) {
    let file = fs::File::options()
        .write(true)
        .open(path)
        .expect("open to set mtime");
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(secs))
        .expect("set mtime");
}

/// One record of each status, written relative to `now`: pending (1m old), running (5m, with
/// progress), done (2h, with a result), failed (2d, timed out).
fn four_jobs(dir: &Path, now: f64) -> [(String, PathBuf); 4] {
    let pending = json!({
        "id": job_id('a'), "agent": "docs", "task": "Write the docs", "status": "pending",
        "created_at": now - 90.0,
    });
    let running = json!({
        "id": job_id('e'), "agent": "web", "task": "Refactor the checkout\nflow",
        "caller": "shop", "status": "running", "created_at": now - 300.0,
        "started_at": now - 250.0, "progress": ["Reading files", "Using tool: Read"],
        "progress_updated_at": now - 10.0,
    });
    let done = json!({
        "id": job_id('d'), "agent": "web", "task": "Fix the login bug", "status": "done",
        "created_at": now - 7200.0, "started_at": now - 7190.0, "completed_at": now - 7000.0,
        "result": {"agent": "web", "success": true, "result": "Fixed it.\nAll tests pass.",
            "session_id": "sess-1", "cost_usd": 0.0123, "duration_ms": 190000, "num_turns": 3},
    });
    let failed = json!({
        "id": job_id('f'), "agent": "backend", "task": "Migrate the database",
        "status": "failed", "created_at": now - 2.0 * 86_400.0,
        "started_at": now - 2.0 * 86_400.0 + 1.0, "completed_at": now - 2.0 * 86_400.0 + 61.0,
        "result": {"agent": "backend", "success": false, "result": "",
            "error": "Agent 'backend' timed out after 60s.", "error_type": "timeout"},
        "error": "Agent 'backend' timed out after 60s.",
    });
    [pending, running, done, failed].map(|r| {
        let id = r["id"].as_str().expect("id").to_owned();
        (id, write_job(dir, &r))
    })
}

#[test]
fn jobs_lists_and_shows_hand_written_records() {
    let sb = Sandbox::new("jobs");
    let missing = sb.path("config/jobs");

    // No folder yet: no jobs, and listing creates nothing.
    assert_eq!(sb.run(&["jobs"]).expect(0).stdout, "No jobs.\n");
    assert_eq!(sb.run(&["jobs", "--json"]).expect(0).json(), json!([]));
    assert_eq!(
        sb.run(&["jobs", "--status", "running"]).expect(0).stdout,
        "No running jobs.\n"
    );
    assert!(!missing.exists(), "listing must not create the jobs folder");

    let dir = jobs_dir(&sb);
    assert_eq!(sb.run(&["jobs"]).expect(0).stdout, "No jobs.\n");
    let [(pending, _), (running, _), (done, done_path), (failed, _)] = four_jobs(&dir, unix_now());

    // Newest first; the full id; a running job's last progress line below it.
    let listed = sb.run(&["jobs"]).expect(0);
    assert_eq!(
        listed.stdout,
        format!(
            "ID                                STATUS     AGENT    AGE     TASK
{pending}  pending    docs     1m ago  Write the docs
{running}  running    web      5m ago  Refactor the checkout flow
                                  ↳ Using tool: Read
{done}  done       web      2h ago  Fix the login bug
{failed}  failed     backend  2d ago  Migrate the database
"
        )
    );
    assert_eq!(listed.stderr, "");

    let only_running = sb.run(&["jobs", "--status", "running"]).expect(0);
    assert_eq!(
        only_running.stdout,
        format!(
            "ID                                STATUS     AGENT  AGE     TASK
{running}  running    web    5m ago  Refactor the checkout flow
                                  ↳ Using tool: Read
"
        )
    );

    let all = sb.run(&["jobs", "--json"]).expect(0).json();
    let ids: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|j| j["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [&pending, &running, &done, &failed]);
    assert_eq!(all[1]["last_progress"], "Using tool: Read");
    assert_eq!(all[2]["success"], true);
    assert_eq!(all[2]["cost_usd"], 0.0123);
    assert_eq!(all[3]["error_type"], "timeout");
    let web = sb
        .run(&["jobs", "--agent", "web", "--status", "DONE", "--json"])
        .expect(0)
        .json();
    assert_eq!(web.as_array().map(Vec::len), Some(1));
    assert_eq!(web[0]["id"], done.as_str());

    // --limit; a narrow terminal cuts the task; mistakes are usage errors.
    let two = sb.run(&["jobs", "--limit", "2"]).expect(0);
    assert_eq!(two.stdout.lines().count(), 4, "{}", two.stdout);
    assert_eq!(two.stderr, "(the newest 2 shown; more with --limit N)\n");
    let mut narrow = sb.command(&["jobs"]);
    narrow.env("COLUMNS", "70");
    let narrow = run(narrow, "jobs (COLUMNS=70)").expect(0);
    assert!(
        narrow.stdout.contains(&format!(
            "{running}  running    web      5m ago  Refactor the checko…\n"
        )),
        "{}",
        narrow.stdout
    );
    let bogus = sb.run(&["jobs", "--status", "bogus"]).expect(2);
    assert_eq!(
        bogus.stderr,
        "Error: Invalid status: 'bogus'. Use one of: cancelled, done, failed, pending, running or empty.\n"
    );
    assert_eq!(bogus.stdout, "");
    sb.run(&["jobs", "--limit", "0"]).expect(2);

    // job ID: every field, then the result in full, or the progress while it runs.
    let shown = sb.run(&["job", &done]).expect(0);
    let lines: Vec<&str> = shown.stdout.lines().collect();
    assert_eq!(
        lines[..4],
        [
            format!("Job {done}").as_str(),
            "  status:     done",
            "  agent:      web",
            "  task:       Fix the login bug",
        ]
    );
    assert!(
        iso_line(lines[4], "created") && lines[4].ends_with(" (2h ago)"),
        "{}",
        shown.stdout
    );
    assert!(iso_line(lines[5], "started"), "{}", shown.stdout);
    assert!(iso_line(lines[6], "completed"), "{}", shown.stdout);
    assert_eq!(
        lines[7..],
        [
            "  duration:   3m 10s",
            "  cost:       $0.0123",
            "  turns:      3",
            "  session:    sess-1",
            "---",
            "Fixed it.",
            "All tests pass.",
        ]
    );
    assert_eq!(
        sb.run(&["job", &done, "--json"]).expect(0).json(),
        read_job(&done_path)
    );

    let shown = sb.run(&["job", &running]).expect(0).stdout;
    assert!(
        shown.contains(
            "  status:     running\n  agent:      web\n  task:       Refactor the checkout\n              flow\n  caller:     shop\n"
        ),
        "{shown}"
    );
    assert!(shown.contains("  duration:   4m "), "{shown}");
    assert!(shown.contains(" so far\n"), "{shown}");
    assert!(!shown.contains("  completed:"), "{shown}");
    assert!(
        shown.ends_with("--- progress (newest last)\n  Reading files\n  Using tool: Read\n"),
        "{shown}"
    );

    let shown = sb.run(&["job", &failed]).expect(0).stdout;
    assert!(
        shown.contains("  duration:   1m 0s\n  error:      Agent 'backend' timed out after 60s.\n  error type: timeout\n"),
        "{shown}"
    );
    assert!(!shown.contains("---"), "{shown}");

    let shown = sb.run(&["job", &pending]).expect(0).stdout;
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 5, "{shown}");
    assert_eq!(lines[1], "  status:     pending");
    assert!(
        iso_line(lines[4], "created") && lines[4].ends_with(" (1m ago)"),
        "{shown}"
    );

    let nobody = "0123456789abcdef0123456789abcdef";
    let lost = sb.run(&["job", nobody]).expect(1);
    assert_eq!(lost.stderr, format!("Error: Job not found: {nobody}\n"));
    assert_eq!(lost.stdout, "");
    let lost = sb.run(&["job", nobody, "--json"]).expect(1);
    assert_eq!(
        lost.json(),
        json!({"error": format!("Job not found: {nobody}")})
    );
}

/// `  <label>:` padded, then an ISO 8601 UTC time to the second.
fn iso_line(line: &str, label: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("  {:<11} ", format!("{label}:"))) else {
        return false;
    };
    let stamp: Vec<char> = rest.chars().take(20).collect();
    stamp.len() == 20
        && stamp.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == '-',
            10 => *c == 'T',
            13 | 16 => *c == ':',
            19 => *c == 'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn cancel_and_gc_change_the_jobs_folder() {
    let sb = Sandbox::new("jobs-cancel");
    let dir = jobs_dir(&sb);
    let [(pending, pending_path), (running, running_path), (done, done_path), (failed, failed_path)] =
        four_jobs(&dir, unix_now());

    // A pending job is cancelled in its file.
    let cancelled = sb.run(&["cancel", &pending]).expect(0);
    assert_eq!(
        cancelled.stdout,
        format!("Cancelled job {pending} (it had not started yet).\n")
    );
    let record = read_job(&pending_path);
    assert_eq!(record["status"], "cancelled");
    assert_eq!(record["error"], "Cancelled before execution");
    assert!(record["completed_at"].as_f64().is_some(), "{record}");

    // A finished job stays as it is.
    let before = fs::read_to_string(&done_path).expect("done record");
    let finished = sb.run(&["cancel", &done]).expect(1);
    assert_eq!(
        finished.stderr,
        format!("Error: Job {done} already finished (done); nothing to cancel.\n")
    );
    assert_eq!(finished.stdout, "");
    assert_eq!(fs::read_to_string(&done_path).expect("done record"), before);
    let again = sb.run(&["cancel", &pending]).expect(1);
    assert!(
        again.stderr.contains("already finished (cancelled)"),
        "{}",
        again.stderr
    );
    let json = sb.run(&["cancel", &done, "--json"]).expect(1).json();
    assert_eq!(
        json,
        json!({"job_id": done, "outcome": "already_terminal", "status": "done"})
    );

    // A running job belongs to the server that started it: not this process.
    let other = sb.run(&["cancel", &running]).expect(1);
    assert!(
        other.stderr.starts_with(&format!(
            "Error: Job {running} is running in another agent-dispatch server (not the daemon): cannot kill it from here.\n"
        )),
        "{}",
        other.stderr
    );
    assert_eq!(read_job(&running_path)["status"], "running");
    let nobody = "0123456789abcdef0123456789abcdef";
    let lost = sb.run(&["cancel", nobody]).expect(1);
    assert_eq!(lost.stderr, format!("Error: Job not found: {nobody}\n"));

    // gc: nothing finished is a week old; --days picks the 2-day-old failure.
    assert_eq!(
        sb.run(&["gc", "--dry-run"]).expect(0).stdout,
        "Nothing to delete: no finished job is older than 7 days.\n"
    );
    let dry = sb.run(&["gc", "--days", "1", "--dry-run"]).expect(0);
    assert_eq!(
        dry.stdout,
        format!(
            "Would delete 1 finished job older than 1 day:
ID                                STATUS     AGENT    AGE     TASK
{failed}  failed     backend  2d ago  Migrate the database
"
        )
    );
    assert_eq!(dry.stderr, "(dry run: nothing was deleted)\n");
    assert!(failed_path.exists(), "a dry run deletes nothing");
    let dry = sb
        .run(&["gc", "--days", "1", "--dry-run", "--json"])
        .expect(0)
        .json();
    assert_eq!(
        dry,
        json!({"dry_run": true, "purged": 0, "would_purge": 1, "job_ids": [failed], "max_age_days": 1.0})
    );

    // Out of range: usage errors, nothing deleted.
    let zero = sb.run(&["gc", "--days", "0"]).expect(2);
    assert!(
        zero.stderr
            .starts_with("Error: --days must be greater than 0 (got 0)"),
        "{}",
        zero.stderr
    );
    sb.run(&["gc", "--days", "1", "--all"]).expect(2);
    sb.run(&["gc", "--days", "soon"]).expect(2);
    assert!(failed_path.exists());

    // --all: every finished job, whatever its age; never the running one.
    let all = sb
        .run(&["gc", "--all", "--dry-run", "--json"])
        .expect(0)
        .json();
    let mut ids: Vec<&str> = all["job_ids"]
        .as_array()
        .expect("job_ids")
        .iter()
        .map(|i| i.as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    let mut finished = [pending.as_str(), done.as_str(), failed.as_str()];
    finished.sort_unstable();
    assert_eq!(ids, finished);
    assert_eq!(
        sb.run(&["gc", "--all"]).expect(0).stdout,
        "Deleted 3 finished jobs.\n"
    );
    for path in [&pending_path, &done_path, &failed_path] {
        assert!(!path.exists(), "{} survived gc --all", path.display());
    }
    assert!(running_path.exists(), "gc never deletes a running job");
    assert_eq!(
        sb.run(&["gc", "--all"]).expect(0).stdout,
        "Nothing to delete: there are no finished jobs.\n"
    );
    let left = sb.run(&["jobs", "--json"]).expect(0).json();
    assert_eq!(left.as_array().map(Vec::len), Some(1));
    assert_eq!(left[0]["id"], running.as_str());
}

#[test]
fn crafted_job_ids_are_refused_before_any_file_access() {
    let sb = Sandbox::new("jobs-ids");
    let jobs = sb.path("nowhere/jobs");
    let upper = job_id('A');
    let short: String = job_id('a').chars().skip(1).collect();
    let long = format!("{}0", job_id('a'));
    let newline = format!("{}\n", job_id('a'));
    for id in [
        "../x",
        upper.as_str(),
        &short,
        &long,
        &newline,
        "",
        "../../etc/passwd",
    ] {
        for args in [
            vec!["job", id],
            vec!["job", id, "--json"],
            vec!["cancel", id],
        ] {
            let mut cmd = sb.command(&args);
            cmd.env("AGENT_DISPATCH_JOBS_DIR", &jobs);
            let refused = run(cmd, &format!("{args:?}")).expect(2);
            assert!(
                refused.stderr.starts_with("Error: Invalid job id "),
                "{args:?}: {}",
                refused.stderr
            );
            assert_eq!(refused.stdout, "", "{args:?}");
        }
    }
    assert!(
        !sb.path("nowhere").exists(),
        "a refused id must not touch the file system"
    );
}

#[test]
fn doctor_warns_about_stale_and_damaged_job_records() {
    let sb = Sandbox::new("doctor-jobs");
    healthy_setup(&sb);
    let dir = jobs_dir(&sb);
    let shown = dir.display().to_string();
    let stale = job_id('c');
    let damaged = dir.join(format!("{}.json", job_id('b')));
    let temp = dir.join(format!("{}.0123abcd.tmp", job_id('9')));
    let plant = || {
        let now = unix_now();
        let path = write_job(
            &dir,
            &json!({
                "id": stale, "agent": "web", "task": "Refactor", "status": "running",
                "created_at": now - 3.0 * 3600.0, "started_at": now - 3.0 * 3600.0 + 1.0,
            }),
        );
        age_file(&path, 2 * 3600);
        fs::write(&damaged, "{\"id\": ").expect("damaged record");
        fs::write(&temp, "{").expect("temp file");
        age_file(&temp, 60);
    };

    plant();
    let ran = sb.run(&["doctor"]).expect(0);
    assert!(
        ran.stdout.contains(&format!(
            "
Jobs folder
  [OK] Jobs folder: {shown} (mode 0700)
  [OK] Job records: 1 (1 running, 0 pending)
  [WARN] 1 running job not updated for over an hour
    {stale}  web  record last written 2h ago
    It has lost its server. Fix: it is marked failed the next time a server starts (most agent-dispatch commands start one, e.g.: agent-dispatch jobs)
  [WARN] 1 job record cannot be read
    {}: not valid JSON: ",
            damaged.display()
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains(&format!(
            "    Every tool skips it. Look at it, then delete it:\n    rm {}\n  [WARN] 1 temp file left by interrupted writes\n    {}\n    Fix: it is removed the next time a server starts; or: rm {}\n",
            damaged.display(),
            temp.display(),
            temp.display()
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.ends_with("\n0 issues, 3 warnings\n"),
        "{}",
        ran.stdout
    );

    // The doctor's agents check started a server, which may have recovered the records
    // meanwhile: plant them again for the JSON report.
    plant();
    let report = sb.run(&["doctor", "--json"]).expect(0).json();
    assert_eq!(report["status"], "warn");
    assert_eq!(report["warnings"], 3);
    let stale_check = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["message"] == "1 running job not updated for over an hour")
        .unwrap_or_else(|| panic!("no stale-job check in {report:#}"));
    assert_eq!(stale_check["section"], "Jobs folder");
    assert_eq!(stale_check["status"], "warn");
    assert_eq!(
        stale_check["details"][0],
        format!("{stale}  web  record last written 2h ago")
    );
    plant();
    sb.run(&["doctor", "--strict"]).expect(1);
}

// ---------------------------------------------------------------------------------------------
// a background job of a real `serve`, seen from another process

/// The scenario fake `claude` (a Python script).
fn fake_claude_scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/bin/fake-claude-scenarios")
        .canonicalize()
        .expect("fixtures/bin/fake-claude-scenarios")
}

/// This test process's own `PATH` has `python3`.
fn python_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("python3").is_file()))
}

/// Reads stdout lines of a `serve` until the reply to request `id` (at most 30 s).
fn reply_to(lines: &std::sync::mpsc::Receiver<String>, id: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no reply to request {id}: {e}"));
        let message: Value = serde_json::from_str(&line).expect("JSON line");
        if message["id"] == id && message.get("method").is_none() {
            return message;
        }
    }
}

#[test]
fn a_running_async_job_is_seen_but_not_killed_from_another_process() {
    let test = "a_running_async_job_is_seen_but_not_killed_from_another_process";
    if !python_on_path() {
        assert!(!real_clients_required(), "{test}: python3 is not on PATH");
        return skip(test, "python3 (for the fake claude) is not on PATH");
    }
    let sb = Sandbox::new("jobs-e2e");
    sb.run(&["add", "web", "web", "-d", "The shop"]).expect(0);
    let pid_file = sb.path("claude.pid");
    let path = std::env::join_paths(std::iter::once(sb.path("bin")).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let mut serve = sb.command(&["serve"]);
    serve
        .env("PATH", &path)
        .env("AGENT_DISPATCH_CLAUDE", fake_claude_scenarios())
        .env("FAKE_CLAUDE_MODE", "sleep")
        .env("FAKE_CLAUDE_SECONDS", "30")
        .env("FAKE_CLAUDE_PID_FILE", &pid_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = serve.spawn().expect("spawn serve");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = reader(child.stderr.take().expect("stderr"));
    let (tx, lines) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut send = |message: Value| {
        writeln!(stdin, "{message}").expect("write to serve");
        stdin.flush().expect("flush");
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "cli-test", "version": "0"}}}),
    );
    reply_to(&lines, 1);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "dispatch_async", "arguments": {"agent": "web", "task": "Take your time"}}}),
    );
    let reply = reply_to(&lines, 2);
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("dispatch_async: {reply}"));
    let started: Value = serde_json::from_str(text).expect("dispatch_async JSON");
    let id = started["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job_id: {started}"))
        .to_owned();
    assert_eq!(started["agent"], "web");

    // The server's record says running once the fake claude has started.
    let record_path = sb.path(&format!("config/jobs/{id}.json"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(pid_file.exists()
        && fs::read_to_string(&record_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|r| r["status"] == "running"))
    {
        assert!(
            Instant::now() < deadline,
            "the job never ran:\n{:?}",
            fs::read_to_string(&record_path)
        );
        thread::sleep(Duration::from_millis(50));
    }

    // Another process (the CLI) lists it and shows it...
    let listed = sb.run(&["jobs"]).expect(0);
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{}", listed.stdout));
    assert!(
        row.starts_with(&format!("{id}  running    web    ")),
        "{row}"
    );
    assert!(row.ends_with("  Take your time"), "{row}");
    let running = sb
        .run(&["jobs", "--status", "running", "--json"])
        .expect(0)
        .json();
    assert_eq!(running.as_array().map(Vec::len), Some(1), "{running}");
    assert_eq!(running[0]["id"], id.as_str());
    assert!(sb
        .run(&["job", &id])
        .expect(0)
        .stdout
        .contains("  status:     running\n"));

    // ...but cannot kill what another server started.
    let refused = sb.run(&["cancel", &id]).expect(1);
    assert!(
        refused.stderr.starts_with(&format!(
            "Error: Job {id} is running in another agent-dispatch server (not the daemon): cannot kill it from here.\n"
        )),
        "{}",
        refused.stderr
    );

    // The end of stdin stops the server: the job it owned ends failed, its claude killed.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve still running 20 s after the end of its stdin");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr.join().expect("stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    let record = read_job(&record_path);
    assert_eq!(record["status"], "failed", "{record}\n{stderr}");
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("The server shut down while this job was running")),
        "{record}"
    );
    let shown = sb.run(&["job", &id]).expect(0).stdout;
    assert!(shown.contains("  status:     failed\n"), "{shown}");
    let pids = fs::read_to_string(&pid_file).expect("pid file");
    let claude_pid = pids.split_whitespace().next().expect("pid").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("kill")
        .args(["-0", &claude_pid])
        .stderr(Stdio::null())
        .status()
        .expect("kill -0")
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the fake claude ({claude_pid}) outlived its server"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
