//! `agent-dispatch`: the command line. Human-facing output lives here; the protocol and
//! every decision live in `agent-dispatch-core`, the I/O in `agent-dispatch-transports`.
//!
//! The registry commands (`add`, `update`, `remove`, `list`, `describe`), the job commands
//! (`jobs`, `job`, `cancel`, `gc`) and `test` call the MCP tools on an in-process server
//! (`transports::local`), so the CLI and the server share one implementation. Results go to stdout, messages to stderr. Exit codes: 0 success,
//! 1 failure, 2 usage error.

mod daemon;
mod doctor;
mod init;
mod jobs_cmd;
mod paths;
mod registry;
mod run;
mod test_cmd;
mod ui;

use argh::FromArgs;

use crate::registry::AgentOptions;
use crate::ui::{note, say, CliError, Outcome};

/// Delegate work to Claude Code agents in other project directories.
#[derive(FromArgs, Debug)]
#[argh(
    example = "agent-dispatch init\nagent-dispatch add web ~/src/web\nagent-dispatch list\nagent-dispatch test web\nagent-dispatch jobs --status running",
    note = "Config: $AGENT_DISPATCH_CONFIG or ~/.config/agent-dispatch/agents.yaml. Exit codes: 0 ok, 1 failure, 2 usage error."
)]
struct Cli {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Serve(Serve),
    Init(Init),
    Add(Add),
    Update(Update),
    Remove(Remove),
    List(List),
    Describe(Describe),
    Doctor(Doctor),
    Test(Test),
    Jobs(Jobs),
    Job(Job),
    Cancel(Cancel),
    Gc(Gc),
}

/// Run the MCP server over stdio (what Claude Code launches), or the daemon every session shares.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "serve",
    example = "agent-dispatch serve\nagent-dispatch serve --connect\nagent-dispatch serve --daemon --idle-exit 60",
    note = "With --connect (or settings.daemon: true in agents.yaml) serve relays stdio to the shared daemon and starts it when it is not running. The socket is $XDG_RUNTIME_DIR/agent-dispatch/daemon.sock, else daemon.sock beside the config; it must sit in a folder only you can use (0700)."
)]
pub(crate) struct Serve {
    /// run the shared daemon in the foreground on the Unix socket
    #[argh(switch)]
    daemon: bool,
    /// relay stdio to the shared daemon, starting it when it is not running
    #[argh(switch)]
    connect: bool,
    /// the daemon's socket (default: $XDG_RUNTIME_DIR/agent-dispatch/daemon.sock, else daemon.sock beside the config)
    #[argh(option)]
    socket: Option<std::path::PathBuf>,
    /// exit the daemon after this many minutes with no sessions and no work (with --connect: for a daemon it starts)
    #[argh(option)]
    idle_exit: Option<f64>,
}

/// Create the config (if missing) and register agent-dispatch with Claude Code (user scope).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "init")]
struct Init {
    /// register 'serve --connect': every session shares one daemon (one limit, one cache, one job table)
    #[argh(switch)]
    daemon: bool,
}

/// Register a project directory as an agent.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "add",
    example = "agent-dispatch add web ~/src/web --permission-mode acceptEdits --allowed-tools Read,Grep"
)]
struct Add {
    /// agent name: letters, digits, '-' and '_'
    #[argh(positional)]
    name: String,
    /// the project directory (must exist)
    #[argh(positional)]
    directory: String,
    /// what the agent is for (generated from the project when omitted)
    #[argh(option, short = 'd')]
    description: Option<String>,
    /// seconds per run (default 300)
    #[argh(option)]
    timeout: Option<i64>,
    /// model for claude --model
    #[argh(option)]
    model: Option<String>,
    /// spend cap in US dollars per run
    #[argh(option)]
    max_budget_usd: Option<String>,
    /// same as --max-budget-usd
    #[argh(option)]
    max_budget: Option<String>,
    /// permission mode for claude (default, acceptEdits, plan, bypassPermissions, ...)
    #[argh(option)]
    permission_mode: Option<String>,
    /// comma-separated tools the agent may use ("," = none)
    #[argh(option)]
    allowed_tools: Option<String>,
    /// comma-separated tools the agent may not use ("," = none)
    #[argh(option)]
    disallowed_tools: Option<String>,
    /// standing instructions added to every run
    #[argh(option)]
    instructions: Option<String>,
    /// comma-separated tags: what the agent is good at
    #[argh(option)]
    capabilities: Option<String>,
    /// comma-separated tags: what it can do that deserves care
    #[argh(option)]
    risky_capabilities: Option<String>,
    /// print the result as JSON
    #[argh(switch)]
    json: bool,
}

/// Change an agent's settings. Options not given are kept; "none" clears a field.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "update",
    example = "agent-dispatch update web --timeout 600 --model none"
)]
struct Update {
    /// agent name
    #[argh(positional)]
    name: String,
    /// what the agent is for
    #[argh(option, short = 'd')]
    description: Option<String>,
    /// seconds per run (at least 1)
    #[argh(option)]
    timeout: Option<i64>,
    /// model for claude --model ("none" clears)
    #[argh(option)]
    model: Option<String>,
    /// spend cap in US dollars per run ("none" or 0 clears)
    #[argh(option)]
    max_budget_usd: Option<String>,
    /// same as --max-budget-usd
    #[argh(option)]
    max_budget: Option<String>,
    /// permission mode for claude ("none" clears)
    #[argh(option)]
    permission_mode: Option<String>,
    /// comma-separated tools the agent may use ("," = none; "none" = inherit the defaults)
    #[argh(option)]
    allowed_tools: Option<String>,
    /// comma-separated tools the agent may not use ("," = none; "none" = inherit)
    #[argh(option)]
    disallowed_tools: Option<String>,
    /// standing instructions added to every run ("none" clears)
    #[argh(option)]
    instructions: Option<String>,
    /// comma-separated tags ("none" clears)
    #[argh(option)]
    capabilities: Option<String>,
    /// comma-separated tags ("none" clears)
    #[argh(option)]
    risky_capabilities: Option<String>,
    /// print the result as JSON
    #[argh(switch)]
    json: bool,
}

/// Unregister an agent (its directory is not touched).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "remove")]
struct Remove {
    /// agent name
    #[argh(positional)]
    name: String,
    /// print the result as JSON
    #[argh(switch)]
    json: bool,
}

/// List the agents and whether their directories are there.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct List {
    /// print list_agents' answer as JSON
    #[argh(switch)]
    json: bool,
}

/// Show one agent's settings and project.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "describe")]
struct Describe {
    /// agent name
    #[argh(positional)]
    name: String,
    /// print inspect_agent's answer (with CLAUDE.md/README previews) as JSON
    #[argh(switch)]
    json: bool,
}

/// Check the setup: claude CLI, config, MCP registration, agents, jobs folder.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "doctor")]
struct Doctor {
    /// print the report as JSON
    #[argh(switch)]
    json: bool,
    /// exit 1 on warnings too
    #[argh(switch)]
    strict: bool,
}

/// Run one task on an agent and show the answer.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "test",
    example = "agent-dispatch test web --stream\nagent-dispatch test web 'List the failing tests' --timeout 600"
)]
struct Test {
    /// agent name
    #[argh(positional)]
    name: String,
    /// the task (default: "What project is this? Describe in one sentence.")
    #[argh(positional)]
    task: Option<String>,
    /// show the agent's progress on stderr as it works
    #[argh(switch)]
    stream: bool,
    /// seconds for this run (instead of the agent's timeout)
    #[argh(option)]
    timeout: Option<i64>,
    /// print the dispatch result as JSON
    #[argh(switch)]
    json: bool,
}

/// List background jobs (from dispatch_async), newest first.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "jobs",
    example = "agent-dispatch jobs\nagent-dispatch jobs --status running --agent web\nagent-dispatch jobs --limit 100 --json"
)]
struct Jobs {
    /// only jobs with this status: pending, running, done, failed or cancelled
    #[argh(option)]
    status: Option<String>,
    /// how many to show (default 20)
    #[argh(option, default = "jobs_cmd::DEFAULT_LIMIT")]
    limit: i64,
    /// only this agent's jobs
    #[argh(option)]
    agent: Option<String>,
    /// print dispatch_jobs' answer as JSON
    #[argh(switch)]
    json: bool,
}

/// Show one background job: its status, times, error and result (or progress while it runs).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "job")]
struct Job {
    /// the job id (32 hex characters, as 'agent-dispatch jobs' shows)
    #[argh(positional)]
    id: String,
    /// print dispatch_status' answer (the job record) as JSON
    #[argh(switch)]
    json: bool,
}

/// Cancel a background job that has not finished.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "cancel",
    note = "A pending job is cancelled. A running job can only be killed by the server that started it (Claude Code's session, through dispatch_cancel): from here it is reported as running in another server (exit 1), as is a job that already finished."
)]
struct Cancel {
    /// the job id
    #[argh(positional)]
    id: String,
    /// print dispatch_cancel's answer as JSON
    #[argh(switch)]
    json: bool,
}

/// Delete finished background jobs (done, failed, cancelled); never pending or running ones.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "gc",
    example = "agent-dispatch gc --dry-run\nagent-dispatch gc --days 1\nagent-dispatch gc --all"
)]
struct Gc {
    /// delete finished jobs older than this many days (default 7; must be > 0)
    #[argh(option)]
    days: Option<f64>,
    /// delete every finished job, whatever its age
    #[argh(switch)]
    all: bool,
    /// only list what would be deleted
    #[argh(switch)]
    dry_run: bool,
    /// print dispatch_gc's answer as JSON
    #[argh(switch)]
    json: bool,
}

/// The hidden first argument that runs this executable as the group guard (see
/// `agent_dispatch_transports::run_guard`): not a command users type.
const GUARD_ARG: &str = "__guard";

fn main() {
    let mut argv = std::env::args_os();
    if argv.nth(1).is_some_and(|arg| arg == GUARD_ARG) {
        std::process::exit(agent_dispatch_transports::run_guard());
    }
    // Children are started by posix_spawn and watched by the guard; when this executable
    // cannot be found again, they get the kernel's parent-death signal instead.
    if let Ok(program) = std::env::current_exe() {
        agent_dispatch_transports::use_guard(agent_dispatch_transports::GuardCommand {
            program,
            args: vec![GUARD_ARG.into()],
        });
    }
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => std::process::exit(code),
    };
    if cli.version {
        say!("agent-dispatch {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let Some(command) = cli.command else {
        note!("agent-dispatch: no command given; try 'agent-dispatch --help'");
        std::process::exit(ui::EXIT_USAGE);
    };
    if let Command::Serve(serve) = command {
        std::process::exit(daemon::serve(serve));
    }
    // The CLI reports what each tool did in its own words; the core's warnings still show.
    agent_dispatch_transports::set_info_logs(false);
    let code = match run_command(command) {
        Ok(()) => 0,
        Err(err) => {
            err.report();
            err.code
        }
    };
    std::process::exit(code);
}

/// Parses argv. `--help` prints to stdout (exit 0); a parse error goes to stderr (exit 2).
fn parse_args() -> Result<Cli, i32> {
    let mut args = Vec::new();
    for arg in std::env::args_os() {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(bad) => {
                note!(
                    "Error: argument is not valid UTF-8: {}",
                    bad.to_string_lossy()
                );
                return Err(ui::EXIT_USAGE);
            }
        }
    }
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (program, rest) = match strs.split_first() {
        Some((_, rest)) => ("agent-dispatch", rest),
        None => ("agent-dispatch", &[][..]),
    };
    Cli::from_args(&[program], rest).map_err(|exit| match exit.status {
        Ok(()) => {
            say!("{}", exit.output.trim_end());
            0
        }
        Err(()) => {
            note!("{}", exit.output.trim_end());
            note!("Run 'agent-dispatch --help' for more information.");
            ui::EXIT_USAGE
        }
    })
}

fn run_command(command: Command) -> Outcome {
    let options = paths::options();
    match command {
        Command::Serve(_) => Err(CliError::fail("serve is handled before")),
        Command::Init(i) => init::init(&options, i.daemon),
        Command::Add(a) => {
            let opts = AgentOptions {
                description: a.description,
                timeout: a.timeout,
                model: a.model,
                max_budget_usd: a.max_budget_usd,
                max_budget: a.max_budget,
                permission_mode: a.permission_mode,
                allowed_tools: a.allowed_tools,
                disallowed_tools: a.disallowed_tools,
                instructions: a.instructions,
                capabilities: a.capabilities,
                risky_capabilities: a.risky_capabilities,
            };
            registry::add(options, &a.name, &a.directory, &opts, a.json)
        }
        Command::Update(u) => {
            let opts = AgentOptions {
                description: u.description,
                timeout: u.timeout,
                model: u.model,
                max_budget_usd: u.max_budget_usd,
                max_budget: u.max_budget,
                permission_mode: u.permission_mode,
                allowed_tools: u.allowed_tools,
                disallowed_tools: u.disallowed_tools,
                instructions: u.instructions,
                capabilities: u.capabilities,
                risky_capabilities: u.risky_capabilities,
            };
            registry::update(options, &u.name, &opts, u.json)
        }
        Command::Remove(r) => registry::remove(options, &r.name, r.json),
        Command::List(l) => registry::list(options, l.json),
        Command::Describe(d) => registry::describe(options, &d.name, d.json),
        Command::Doctor(d) => doctor::doctor(options, d.json, d.strict),
        Command::Test(t) => test_cmd::test(
            options,
            &t.name,
            t.task.as_deref(),
            t.stream,
            t.timeout,
            t.json,
        ),
        Command::Jobs(j) => jobs_cmd::jobs(
            options,
            j.status.as_deref(),
            j.limit,
            j.agent.as_deref(),
            j.json,
        ),
        Command::Job(j) => jobs_cmd::job(options, &j.id, j.json),
        Command::Cancel(c) => jobs_cmd::cancel(options, &c.id, c.json),
        Command::Gc(g) => jobs_cmd::gc(options, g.days, g.all, g.dry_run, g.json),
    }
}
