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
        "serve", "init", "add", "update", "remove", "list", "describe", "doctor", "test",
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
