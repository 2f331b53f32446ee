//! `agent-dispatch`: the command line. Human-facing output lives here; the protocol and
//! every decision live in `agent-dispatch-core`, the I/O in `agent-dispatch-transports`.

mod paths;

use argh::FromArgs;

/// Delegate work to Claude Code agents in other project directories.
#[derive(FromArgs, Debug)]
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
}

/// Run the MCP server over stdio (what Claude Code launches).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "serve")]
struct Serve {}

fn main() {
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("agent-dispatch {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let code = match cli.command {
        Some(Command::Serve(Serve {})) => serve(),
        None => {
            eprintln!("agent-dispatch: no command given; try 'agent-dispatch --help'");
            2
        }
    };
    std::process::exit(code);
}

fn serve() -> i32 {
    let options = paths::options();
    agent_dispatch_transports::stdio::serve(options)
}
