//! `agent-dispatch init`: create the config, then register this binary with Claude Code at
//! user scope through `claude mcp add-json` (never by editing Claude's files).
//!
//! Idempotent: an existing config is kept, and an existing registration is left alone. A
//! registration pointing at another program is reported with the command that replaces it.
//!
//! `init --daemon` registers `serve --connect` instead of `serve`: each session then relays to
//! the one daemon every session shares.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use agent_dispatch_core::config::DEFAULT_CONFIG_YAML;
use agent_dispatch_core::Options;
use agent_dispatch_transports::files;
use serde_json::{json, Value};

use crate::paths;
use crate::run::run;
use crate::ui::{self, say, shell_quote, CliError, Outcome};

/// The name we register under.
pub const SERVER_NAME: &str = "agent-dispatch";
/// How to install Claude Code.
pub const INSTALL_CLAUDE: &str = "npm install -g @anthropic-ai/claude-code";
/// What replaces a registration of another program.
pub const REREGISTER: &str = "claude mcp remove agent-dispatch -s user && agent-dispatch init";
/// The arguments of each form of registration: a server per session, or a proxy to the daemon.
pub const SERVE_ARGS: &[&str] = &["serve"];
pub const CONNECT_ARGS: &[&str] = &["serve", "--connect"];

/// `claude mcp get` starts the server to report its status; give it the CLI's start-up limit.
const MCP_GET_LIMIT: Duration = Duration::from_secs(60);
const MCP_ADD_LIMIT: Duration = Duration::from_secs(30);

pub fn init(options: &Options, daemon: bool) -> Outcome {
    create_config(&options.config_path)?;
    let exe = paths::this_exe().map_err(CliError::fail)?;
    let (args, init_cmd) = if daemon {
        (CONNECT_ARGS, "agent-dispatch init --daemon")
    } else {
        (SERVE_ARGS, "agent-dispatch init")
    };
    let Some(claude) = paths::claude() else {
        ui::warn("the claude CLI is not on PATH, so agent-dispatch is not registered with Claude Code yet.");
        say!("Install Claude Code:  {INSTALL_CLAUDE}");
        say!("Then run again:       {init_cmd}");
        return Ok(());
    };
    let wanted = format!("{} {}", exe.display(), args.join(" "));
    let entry = json!({"type": "stdio", "command": exe, "args": args});
    match registered_at_user_scope(&claude, &options.home)? {
        Some(current) if current.is_this(&exe) && current.args == args => {
            say!("Already registered with Claude Code (user scope).");
            return Ok(());
        }
        Some(current) if current.is_this(&exe) => {
            let form = if daemon {
                "a server per session"
            } else {
                "a proxy to the shared daemon"
            };
            say!(
                "agent-dispatch is already registered with Claude Code (user scope) as {form}: {}",
                current.shown()
            );
            say!("Nothing was changed. To register {wanted} instead, run:");
            say!("  claude mcp remove {SERVER_NAME} -s user && {init_cmd}");
            return Ok(());
        }
        Some(current) => {
            say!("agent-dispatch is already registered with Claude Code (user scope) for another program:");
            say!("  registered:  {}", current.shown());
            say!("  this binary: {wanted}");
            say!("Nothing was changed. To register this binary instead, run:");
            say!("  claude mcp remove {SERVER_NAME} -s user && {init_cmd}");
            return Ok(());
        }
        None => {}
    }
    let json_text = entry.to_string();
    let ran = run(
        &claude,
        &[
            "mcp",
            "add-json",
            SERVER_NAME,
            &json_text,
            "--scope",
            "user",
        ],
        MCP_ADD_LIMIT,
    )
    .map_err(CliError::fail)?;
    if !ran.ok() {
        return Err(CliError::fail(format!(
            "Failed to register MCP server: {}",
            ran.complaint()
        ))
        .with_hint(format!(
            "register it by hand: claude mcp add-json {SERVER_NAME} {} --scope user",
            shell_quote(&json_text)
        )));
    }
    say!("Registered with Claude Code (user scope): {wanted}");
    if daemon {
        say!("Sessions relay to one shared daemon, started on first use (see 'agent-dispatch serve --help').");
    }
    say!();
    say!("Next steps:");
    say!("  agent-dispatch add <name> <directory>   register a project as an agent");
    say!("  agent-dispatch list                     see your agents and their health");
    say!("  agent-dispatch test <name>              try one dispatch");
    say!("  claude mcp list                         check that Claude Code can connect");
    Ok(())
}

/// Writes the default config unless one exists (under the config lock, 0600 in a 0700 folder).
fn create_config(path: &Path) -> Outcome {
    let _lock = files::lock_config(path, files::CONFIG_LOCK_TIMEOUT).map_err(|e| {
        CliError::fail(format!(
            "cannot lock {}: {e}",
            files::lock_path(path).display()
        ))
    })?;
    match fs::metadata(path) {
        Ok(_) => {
            say!("Config already exists: {}", path.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            files::write_config(path, DEFAULT_CONFIG_YAML.as_bytes()).map_err(CliError::fail)?;
            say!("Created config: {}", path.display());
            Ok(())
        }
        Err(e) => Err(CliError::fail(format!(
            "cannot check the config at {}: {e}",
            path.display()
        ))),
    }
}

/// A registered server entry: its command and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub command: String,
    pub args: Vec<String>,
}

impl Registration {
    /// Whether it starts this binary's `serve`, as a server per session or as a proxy to the
    /// shared daemon (`serve --connect`).
    pub fn is_this(&self, exe: &Path) -> bool {
        (self.args == SERVE_ARGS || self.args == CONNECT_ARGS)
            && paths::same_file(Path::new(&self.command), exe)
    }

    /// `command args...` for people.
    pub fn shown(&self) -> String {
        let mut words = vec![self.command.clone()];
        words.extend(self.args.iter().cloned());
        words.join(" ")
    }

    /// Reads `{"command": ..., "args": [...]}`.
    pub fn from_entry(entry: &Value) -> Option<Registration> {
        Some(Registration {
            command: entry.get("command")?.as_str()?.to_owned(),
            args: entry
                .get("args")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// The user-scope registration of `agent-dispatch`, if any: `claude mcp get` says whether
/// the name is configured at all (exit 0) and in which scope; the user-scope entry's exact
/// command and arguments come from its answer, or from Claude's user config when the name
/// is found in another scope first.
fn registered_at_user_scope(claude: &Path, home: &Path) -> Result<Option<Registration>, CliError> {
    let ran = run(claude, &["mcp", "get", SERVER_NAME], MCP_GET_LIMIT).map_err(CliError::fail)?;
    if !ran.ok() {
        return Ok(None);
    }
    let shown = parse_mcp_get(&ran.stdout);
    if shown.scope.to_ascii_lowercase().starts_with("user") {
        if let Some(command) = shown.command {
            return Ok(Some(Registration {
                command,
                args: shown.args,
            }));
        }
    }
    Ok(user_entry(&paths::claude_json(home)))
}

/// The top-level (user scope) `mcpServers.agent-dispatch` of Claude's user config.
pub fn user_entry(claude_json: &Path) -> Option<Registration> {
    let text = fs::read_to_string(claude_json).ok()?;
    let doc: Value = serde_json::from_str(&text).ok()?;
    Registration::from_entry(doc.get("mcpServers")?.get(SERVER_NAME)?)
}

/// What `claude mcp get NAME` printed.
#[derive(Debug, Default, PartialEq)]
struct Shown {
    scope: String,
    command: Option<String>,
    args: Vec<String>,
}

/// Reads the `Scope:`, `Command:` and `Args:` lines of `claude mcp get`.
fn parse_mcp_get(stdout: &str) -> Shown {
    let mut shown = Shown::default();
    for line in stdout.lines().map(str::trim) {
        if let Some(scope) = line.strip_prefix("Scope:") {
            shown.scope = scope.trim().to_owned();
        } else if let Some(command) = line.strip_prefix("Command:") {
            shown.command = Some(command.trim().to_owned());
        } else if let Some(args) = line.strip_prefix("Args:") {
            shown.args = args.split_whitespace().map(str::to_owned).collect();
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_claude_mcp_get() {
        let out = "agent-dispatch:\n  Scope: User config (available in all your projects)\n  Status: ✔ Connected\n  Type: stdio\n  Command: /usr/local/bin/agent-dispatch\n  Args: serve\n\nTo remove this server, run: claude mcp remove agent-dispatch -s user\n";
        assert_eq!(
            parse_mcp_get(out),
            Shown {
                scope: "User config (available in all your projects)".into(),
                command: Some("/usr/local/bin/agent-dispatch".into()),
                args: vec!["serve".into()],
            }
        );
        assert_eq!(parse_mcp_get("nothing here"), Shown::default());
    }

    #[test]
    fn a_registration_is_ours_only_with_our_path_and_serve() {
        let exe = paths::this_exe().expect("test binary path");
        let ours = Registration {
            command: exe.display().to_string(),
            args: vec!["serve".into()],
        };
        assert!(ours.is_this(&exe));
        let proxy = Registration {
            args: vec!["serve".into(), "--connect".into()],
            ..ours.clone()
        };
        assert!(proxy.is_this(&exe));
        let other_args = Registration {
            args: vec![],
            ..ours.clone()
        };
        assert!(!other_args.is_this(&exe));
        let other = Registration {
            command: "/nonexistent/agent-dispatch".into(),
            ..ours.clone()
        };
        assert!(!other.is_this(&exe));
        assert_eq!(other.shown(), "/nonexistent/agent-dispatch serve");
    }
}
