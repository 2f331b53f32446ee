//! `agent-dispatch serve`: over stdio, as the shared daemon (`--daemon`), or as a proxy to it
//! (`--connect`, or plain `serve` with `settings.daemon: true`).
//!
//! The daemon and the proxy live in `agent-dispatch-transports` (`unix`, `proxy`); this
//! module picks the mode, the socket and the daemon's command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_dispatch_core::config::ConfigDoc;
use agent_dispatch_core::{LogLevel, Options};
use agent_dispatch_transports::proxy::{self, ProxyConfig};
use agent_dispatch_transports::{files, log, stdio, unix};

use crate::paths;
use crate::ui::{note, EXIT_FAILURE, EXIT_USAGE};
use crate::Serve;

/// The socket's file name, in `$XDG_RUNTIME_DIR/agent-dispatch/` or beside the config.
const SOCKET_NAME: &str = "daemon.sock";

/// Runs `serve` with its flags; returns the exit code.
pub fn serve(flags: Serve) -> i32 {
    let mut options = paths::options();
    if flags.daemon && flags.connect {
        note!("Error: --daemon and --connect exclude each other: --daemon runs the daemon, --connect relays to it");
        return EXIT_USAGE;
    }
    let idle_exit = match flags.idle_exit.map(minutes) {
        None => None,
        Some(Ok(after)) => Some(after),
        Some(Err(why)) => {
            note!("Error: --idle-exit {why}");
            return EXIT_USAGE;
        }
    };
    let socket = flags
        .socket
        .clone()
        .unwrap_or_else(|| default_socket(&options.config_path));
    if flags.daemon {
        options.idle_exit = idle_exit;
        return run_daemon(options, &socket);
    }
    let relay = flags.connect || daemon_setting(&options);
    if !relay {
        if flags.socket.is_some() || idle_exit.is_some() {
            note!("Error: --socket and --idle-exit go with --daemon or --connect");
            return EXIT_USAGE;
        }
        return stdio::serve(options);
    }
    if options.depth > 0 {
        // A session inside a dispatched agent: the shared daemon would put its dispatches
        // in the same queue as the one it runs in (a deadlock once the limit is reached)
        // and lose the dispatch depth. It gets its own server.
        log(
            LogLevel::Info,
            &format!(
                "dispatched agent (depth {}): serving over stdio instead of through the shared daemon",
                options.depth
            ),
        );
        return stdio::serve(options);
    }
    let program = match paths::this_exe() {
        Ok(program) => program,
        Err(why) => {
            note!("agent-dispatch: error: {why}");
            return EXIT_FAILURE;
        }
    };
    let mut daemon_args: Vec<OsString> = vec![
        "serve".into(),
        "--daemon".into(),
        "--socket".into(),
        socket.clone().into_os_string(),
    ];
    if let Some(after) = flags.idle_exit {
        daemon_args.push("--idle-exit".into());
        daemon_args.push(after.to_string().into());
    }
    proxy::serve(ProxyConfig {
        socket,
        daemon_program: program,
        daemon_args,
    })
}

/// Binds the socket and serves until a stop signal or the idle exit.
fn run_daemon(options: Options, socket: &Path) -> i32 {
    let listener = match unix::bind(socket) {
        Ok(listener) => listener,
        Err(why) => {
            note!("agent-dispatch: error: {why}");
            return EXIT_FAILURE;
        }
    };
    if let Some(after) = options.idle_exit {
        log(
            LogLevel::Info,
            &format!(
                "exiting after {} s with no sessions and no work",
                after.as_secs_f64()
            ),
        );
    }
    unix::serve(options, listener)
}

/// `$XDG_RUNTIME_DIR/agent-dispatch/daemon.sock` when that variable names an absolute
/// folder, else `daemon.sock` beside the config.
pub fn default_socket(config_path: &Path) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("agent-dispatch").join(SOCKET_NAME),
        _ => match config_path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(SOCKET_NAME),
            _ => PathBuf::from(SOCKET_NAME),
        },
    }
}

/// `settings.daemon` of the config. A config that cannot be read or parsed means stdio,
/// with a warning (the server then reports the broken config to the session itself).
fn daemon_setting(options: &Options) -> bool {
    let path = &options.config_path;
    let parsed = files::read_config(path)
        .and_then(|bytes| ConfigDoc::parse(bytes.as_deref(), &options.home, &options.cwd));
    match parsed {
        Ok(doc) => doc.config.settings.daemon,
        Err(why) => {
            log(
                LogLevel::Warn,
                &format!(
                    "cannot read settings.daemon from {} ({why}); serving over stdio",
                    path.display()
                ),
            );
            false
        }
    }
}

/// `--idle-exit` minutes (fractions allowed) as a duration.
fn minutes(value: f64) -> Result<Duration, String> {
    if value.is_finite() && value > 0.0 && value <= 1e6 {
        Ok(Duration::from_secs_f64(value * 60.0))
    } else {
        Err(format!(
            "must be a positive number of minutes (got {value})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_exit_takes_positive_minutes() {
        assert_eq!(minutes(2.0), Ok(Duration::from_secs(120)));
        assert_eq!(minutes(0.5), Ok(Duration::from_secs(30)));
        assert!(minutes(0.0).is_err());
        assert!(minutes(-1.0).is_err());
        assert!(minutes(f64::NAN).is_err());
        assert!(minutes(f64::INFINITY).is_err());
    }

    #[test]
    fn the_socket_sits_beside_the_config_without_a_runtime_dir() {
        // XDG_RUNTIME_DIR is read from the environment; only the fallback is checked here
        // (the end-to-end tests cover the runtime folder).
        if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
            return;
        }
        assert_eq!(
            default_socket(Path::new("/home/u/.config/agent-dispatch/agents.yaml")),
            PathBuf::from("/home/u/.config/agent-dispatch/daemon.sock")
        );
    }
}
