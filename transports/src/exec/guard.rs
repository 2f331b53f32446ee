//! The group guard: a small companion process that kills our children's process groups when
//! the server dies, even by `kill -9`.
//!
//! Why a process and not the kernel's parent-death signal on each child: setting that signal
//! needs code between `fork` and `exec`, which forces a full `fork` of the server per child;
//! without it `std` spawns with `posix_spawn` (a `vfork`-style clone), which costs a fraction.
//! The guard also covers what the parent-death signal did not: it kills each child's whole
//! group, grandchildren included.
//!
//! Protocol on the guard's stdin, one line each: `+<pgid>` (watch), `-<pgid>` (forget). At
//! end of input — the server closed it or died — the guard SIGKILLs every group it still
//! watches and exits. The server starts the guard on its first spawn, from the command given
//! to [`use_guard`]; without one (an embedder, a test harness), or when the guard cannot start
//! or has died, each child gets the parent-death signal instead.

use std::ffi::OsString;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use agent_dispatch_core::LogLevel;
use async_channel::Sender;
use futures_lite::io::AsyncWriteExt;
use rustix::process::Pid;

/// How to start the guard: a program (usually this executable) and its arguments.
#[derive(Debug, Clone)]
pub struct GuardCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// Sets the command every executor of this process uses to start its guard. Only the first
/// call counts.
pub fn use_guard(command: GuardCommand) {
    let _ = GUARD_COMMAND.set(command);
}

/// The guard's main loop: reads `+pgid` / `-pgid` lines from stdin until it ends, then
/// SIGKILLs the groups still watched. Returns the exit code.
pub fn run_guard() -> i32 {
    let mut watched = std::collections::BTreeSet::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match parse_line(&line) {
            Some((true, pgid)) => {
                watched.insert(pgid);
            }
            Some((false, pgid)) => {
                watched.remove(&pgid);
            }
            None => {}
        }
    }
    for pgid in watched {
        if let Some(pid) = Pid::from_raw(pgid) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
    0
}

/// `+N` → `(true, N)`, `-N` → `(false, N)`; anything else, and any group id below 2 (0 is
/// the caller's own group, 1 init's), is ignored.
fn parse_line(line: &str) -> Option<(bool, i32)> {
    let watch = match line.as_bytes().first()? {
        b'+' => true,
        b'-' => false,
        _ => return None,
    };
    let pgid = line[1..].parse::<i32>().ok().filter(|p| *p > 1)?;
    Some((watch, pgid))
}

static GUARD_COMMAND: OnceLock<GuardCommand> = OnceLock::new();

/// The server's end of a running guard.
#[derive(Debug)]
pub(crate) struct Guard {
    lines: Sender<String>,
    dead: Arc<AtomicBool>,
}

impl Guard {
    /// Starts the guard configured by [`use_guard`]; `None` when there is none or it cannot
    /// start (the caller then falls back to the parent-death signal).
    pub(crate) fn start() -> Option<Guard> {
        let command = GUARD_COMMAND.get()?;
        let mut cmd = std::process::Command::new(&command.program);
        cmd.args(&command.args)
            // Its own group: a Ctrl-C meant for the server's group must not end the guard.
            .process_group(0);
        let mut cmd = async_process::Command::from(cmd);
        // stdout must not be ours: it may be the MCP channel, whose end the client waits for.
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(err) => {
                crate::log(
                    LogLevel::Warn,
                    &format!(
                        "cannot start the group guard {}: {err}; children get the parent-death signal instead",
                        command.program.display()
                    ),
                );
                return None;
            }
        };
        let mut stdin = child.stdin.take()?;
        let dead = Arc::new(AtomicBool::new(false));
        let (lines, queue) = async_channel::unbounded::<String>();
        let writer_dead = dead.clone();
        smol::spawn(async move {
            while let Ok(line) = queue.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            writer_dead.store(true, Ordering::SeqCst);
        })
        .detach();
        let waiter_dead = dead.clone();
        smol::spawn(async move {
            let _ = child.status().await;
            if !waiter_dead.swap(true, Ordering::SeqCst) {
                crate::log(
                    LogLevel::Warn,
                    "the group guard exited; children get the parent-death signal from now on",
                );
            }
        })
        .detach();
        Some(Guard { lines, dead })
    }

    /// Whether the guard still runs (as far as we know).
    pub(crate) fn alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
    }

    /// Kill group `pgid` if we die.
    pub(crate) fn watch(&self, pgid: Pid) {
        let _ = self.lines.try_send(format!("+{}\n", pgid.as_raw_nonzero()));
    }

    /// Group `pgid` is gone: its id may be reused, so the guard must not kill it any more.
    pub(crate) fn forget(&self, pgid: Pid) {
        let _ = self.lines.try_send(format!("-{}\n", pgid.as_raw_nonzero()));
    }
}

impl Drop for Guard {
    /// Closing the pipe ends the guard; it kills what it still watches (nothing, after a clean
    /// shutdown).
    fn drop(&mut self) {
        self.lines.close();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn only_well_formed_lines_for_real_groups_count() {
        assert_eq!(parse_line("+4242"), Some((true, 4242)));
        assert_eq!(parse_line("-4242"), Some((false, 4242)));
        for bad in [
            "",
            "+",
            "-",
            "4242",
            "*4242",
            "+0",
            "+1",
            "-1",
            "+-5",
            "+ 42",
            "+42 ",
            "+4x",
            "+99999999999",
            "é42",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }
}
