//! Children for `Effect::Spawn` / `Effect::Kill`: start, stream, reap, signal the group.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use agent_dispatch_core::{
    ExitStatus, Input, LogLevel, ProcId, Signal, SpawnError, SpawnErrorKind, SpawnSpec,
};
use async_channel::Sender;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use rustix::process::Pid;

use super::guard::Guard;
use crate::lines::{LineReader, Utf8Chunks, MAX_LINE};

/// Size of one stderr read, and so the largest `StderrChunk`.
const STDERR_CHUNK: usize = 8 * 1024;

/// The children we started and may still signal.
#[derive(Debug, Default)]
pub(crate) struct Procs {
    table: BTreeMap<ProcId, ProcEntry>,
    guard: GuardState,
}

/// The group guard, started on the first spawn.
#[derive(Debug, Default)]
enum GuardState {
    #[default]
    NotStarted,
    Running(Guard),
    /// None configured, or it could not start or died: children get the parent-death signal.
    Unavailable,
}

#[derive(Debug)]
struct ProcEntry {
    /// The leader's pid, which is also the group id (each child gets a fresh group).
    pid: Pid,
    state: Arc<ProcState>,
}

/// What the reader and waiter tasks report back, so `Kill` knows whether the group id is
/// still ours to signal.
#[derive(Debug)]
struct ProcState {
    reaped: AtomicBool,
    /// stdout and stderr readers still running: some group member may still hold our pipes.
    open_pipes: AtomicUsize,
    /// One token per stdout line sent but not yet delivered to the core: the reader waits
    /// when [`LINES_IN_FLIGHT`] are outstanding, so a child writing faster than the core
    /// parses (hundreds of MB/s) cannot pile its output up in memory.
    in_flight: (Sender<()>, async_channel::Receiver<()>),
}

/// How many stdout lines of one child may wait for the core at once.
const LINES_IN_FLIGHT: usize = 64;

impl ProcState {
    /// After the leader is reaped its pid (= the group id) could in principle be reused, so we
    /// signal the group only while a member still holds our pipes.
    fn signalable(&self) -> bool {
        !self.reaped.load(Ordering::SeqCst) || self.open_pipes.load(Ordering::SeqCst) > 0
    }
}

impl Procs {
    /// Starts a child and its reader/waiter tasks. Answers `Spawned` or `SpawnFailed` at once,
    /// so those always precede the child's output in the input channel.
    ///
    /// Must run on a thread that outlives the child: without a guard, the parent-death signal
    /// fires when the *thread* that forked exits (Linux).
    pub(crate) fn spawn(&mut self, proc: ProcId, spec: SpawnSpec, inputs: &Sender<Input>) {
        self.prune();
        let guard = self.guard();
        let mut child = match start(&spec, guard.is_none()) {
            Ok(child) => child,
            Err(error) => {
                let _ = inputs.try_send(Input::SpawnFailed { proc, error });
                return;
            }
        };
        let raw_pid = child.id();
        let _ = inputs.try_send(Input::Spawned {
            proc,
            pid: Some(raw_pid),
        });
        let state = Arc::new(ProcState {
            reaped: AtomicBool::new(false),
            open_pipes: AtomicUsize::new(2),
            in_flight: async_channel::bounded(LINES_IN_FLIGHT),
        });

        if let (Some(mut stdin), Some(text)) = (child.stdin.take(), spec.stdin) {
            smol::spawn(async move {
                // A child that exits without reading gives EPIPE here; that is its business.
                let _ = stdin.write_all(text.as_bytes()).await;
                let _ = stdin.close().await;
            })
            .detach();
        }
        if let Some(stdout) = child.stdout.take() {
            // Bounded by the spec (settings.limits.max_line_bytes), never past our own cap.
            let max_line = spec.max_line_bytes.clamp(1024, MAX_LINE);
            smol::spawn(read_stdout(
                proc,
                stdout,
                max_line,
                inputs.clone(),
                state.clone(),
            ))
            .detach();
        }
        if let Some(stderr) = child.stderr.take() {
            smol::spawn(read_stderr(proc, stderr, inputs.clone(), state.clone())).detach();
        }
        smol::spawn(wait(proc, child, inputs.clone(), state.clone())).detach();

        match i32::try_from(raw_pid).ok().and_then(Pid::from_raw) {
            Some(pid) => {
                if let Some(guard) = guard {
                    guard.watch(pid);
                }
                self.table.insert(proc, ProcEntry { pid, state });
            }
            None => crate::log(
                LogLevel::Warn,
                &format!("{proc}: unusable pid {raw_pid}; it cannot be killed"),
            ),
        }
    }

    /// Signals the child's whole process group. Unknown or finished children are ignored.
    /// A stdout line of `proc` reached the core: its reader may send another.
    pub(crate) fn delivered(&self, proc: ProcId) {
        if let Some(entry) = self.table.get(&proc) {
            let _ = entry.state.in_flight.1.try_recv();
        }
    }

    pub(crate) fn kill(&mut self, proc: ProcId, signal: Signal) {
        self.prune();
        let Some(entry) = self.table.get(&proc) else {
            return;
        };
        if !entry.state.signalable() {
            return;
        }
        let sig = match signal {
            Signal::Term => rustix::process::Signal::TERM,
            Signal::Kill => rustix::process::Signal::KILL,
        };
        match rustix::process::kill_process_group(entry.pid, sig) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(err) => crate::log(
                LogLevel::Warn,
                &format!(
                    "{proc}: cannot signal process group {}: {err}",
                    entry.pid.as_raw_nonzero()
                ),
            ),
        }
    }

    /// Forgets children that are reaped and whose pipes are closed (and tells the guard).
    fn prune(&mut self) {
        let guard = match &self.guard {
            GuardState::Running(guard) => Some(guard),
            _ => None,
        };
        self.table.retain(|_, entry| {
            let keep = entry.state.signalable();
            if let (false, Some(guard)) = (keep, guard) {
                guard.forget(entry.pid);
            }
            keep
        });
    }

    /// The running guard, started on first use; `None` when children need the parent-death
    /// signal instead.
    fn guard(&mut self) -> Option<&Guard> {
        if let GuardState::NotStarted = self.guard {
            self.guard = Guard::start().map_or(GuardState::Unavailable, GuardState::Running);
        }
        if matches!(&self.guard, GuardState::Running(guard) if !guard.alive()) {
            self.guard = GuardState::Unavailable;
        }
        match &self.guard {
            GuardState::Running(guard) => Some(guard),
            _ => None,
        }
    }
}

impl Drop for Procs {
    /// Tell the guard which groups ended before it sees the end of its input.
    fn drop(&mut self) {
        self.prune();
    }
}

/// Builds and starts the child: resolved program, own process group, null or piped stdin,
/// piped stdout/stderr; with `death_signal`, killed with us by the kernel (Linux).
fn start(spec: &SpawnSpec, death_signal: bool) -> Result<async_process::Child, SpawnError> {
    check_cwd(&spec.cwd)?;
    let program = resolve_program(&spec.program, spec.env.get("PATH").map(OsStr::new))?;
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .process_group(0);
    if death_signal {
        die_with_parent(&mut cmd);
    }
    let mut cmd = async_process::Command::from(cmd);
    cmd.stdin(if spec.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd.spawn().map_err(|err| SpawnError {
        message: format!("cannot start {}: {err}", program.display()),
        kind: classify(&err),
    })
}

/// A missing working directory fails exec with the same ENOENT as a missing program; check
/// it first so the message names the right thing.
fn check_cwd(cwd: &Path) -> Result<(), SpawnError> {
    let fail = |kind, what: &str| {
        Err(SpawnError {
            message: format!("working directory {} {what}", cwd.display()),
            kind,
        })
    };
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => fail(SpawnErrorKind::Other, "is not a directory"),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fail(SpawnErrorKind::NotFound, "does not exist")
        }
        Err(err) => fail(classify(&err), &format!("cannot be used: {err}")),
    }
}

/// Finds the program the way `execvp` would (using the child's `PATH` when the spec sets
/// one), so a missing program is a clean `NotFound` and argv[0] is an absolute path.
fn resolve_program(program: &str, path_override: Option<&OsStr>) -> Result<PathBuf, SpawnError> {
    let not_found = |message: String| SpawnError {
        message,
        kind: SpawnErrorKind::NotFound,
    };
    let denied = |path: &Path| SpawnError {
        message: format!("{} is not an executable file", path.display()),
        kind: SpawnErrorKind::PermissionDenied,
    };
    if program.is_empty() {
        return Err(not_found("empty program name".to_owned()));
    }
    if program.contains('/') {
        let path =
            std::path::absolute(program).map_err(|err| not_found(format!("{program}: {err}")))?;
        return match executable(&path) {
            Found::Yes => Ok(path),
            Found::NotExecutable => Err(denied(&path)),
            Found::Missing => Err(not_found(format!("{} does not exist", path.display()))),
        };
    }
    let search = path_override
        .map(OsStr::to_os_string)
        .or_else(|| std::env::var_os("PATH"));
    let search = search.unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut refused = None;
    for dir in std::env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let Ok(candidate) = std::path::absolute(dir.join(program)) else {
            continue;
        };
        match executable(&candidate) {
            Found::Yes => return Ok(candidate),
            Found::NotExecutable => refused = refused.or(Some(candidate)),
            Found::Missing => {}
        }
    }
    match refused {
        Some(path) => Err(denied(&path)),
        None => Err(not_found(format!("`{program}` was not found on PATH"))),
    }
}

enum Found {
    Yes,
    NotExecutable,
    Missing,
}

fn executable(path: &Path) -> Found {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => match rustix::fs::access(path, rustix::fs::Access::EXEC_OK) {
            Ok(()) => Found::Yes,
            Err(_) => Found::NotExecutable,
        },
        Ok(_) => Found::NotExecutable,
        Err(_) => Found::Missing,
    }
}

fn classify(err: &io::Error) -> SpawnErrorKind {
    err.kind().into()
}

/// Makes the kernel SIGKILL the child when we die, even by `kill -9`, so no `claude` outlives
/// the server: the fallback when there is no group guard. Grandchildren are not covered; the
/// group kill handles them while we live. It costs a full `fork` per child (see `guard`).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut std::process::Command) {
    let parent = rustix::process::getpid();
    // SAFETY: `pre_exec` runs the closure in the forked child before `exec`, where only
    // async-signal-safe work is allowed. The closure makes two raw syscalls through rustix
    // (prctl(PR_SET_PDEATHSIG) and getppid) and builds an `io::Error` from an errno, which
    // does not allocate: no locks, no allocation, no shared state.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // We may have died between fork and prctl; then nobody would deliver the signal.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::SRCH.raw_os_error(),
                ));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut std::process::Command) {}

/// Streams stdout as lines, then reports `StdoutClosed`.
async fn read_stdout(
    proc: ProcId,
    stdout: async_process::ChildStdout,
    max_line: usize,
    inputs: Sender<Input>,
    state: Arc<ProcState>,
) {
    let mut lines = LineReader::new(stdout, max_line);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                // Wait for room first (backpressure); a closed token channel cannot happen
                // while we hold the state, so an error just means "go on".
                let _ = state.in_flight.0.send(()).await;
                let _ = inputs
                    .send(Input::StdoutLine {
                        proc,
                        line: line.into_text(),
                    })
                    .await;
            }
            Ok(None) => break,
            Err(err) => {
                crate::log(
                    LogLevel::Warn,
                    &format!("{proc}: reading stdout failed: {err}"),
                );
                break;
            }
        }
    }
    state.open_pipes.fetch_sub(1, Ordering::SeqCst);
    let _ = inputs.send(Input::StdoutClosed { proc }).await;
}

/// Drains stderr to EOF in chunks so the child never blocks on a full pipe, then reports
/// `StderrClosed`.
async fn read_stderr(
    proc: ProcId,
    mut stderr: async_process::ChildStderr,
    inputs: Sender<Input>,
    state: Arc<ProcState>,
) {
    let mut buf = vec![0u8; STDERR_CHUNK];
    let mut decoder = Utf8Chunks::default();
    loop {
        let (text, eof) = match stderr.read(&mut buf).await {
            Ok(0) => (decoder.finish(), true),
            Ok(n) => (decoder.push(&buf[..n]), false),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                crate::log(
                    LogLevel::Warn,
                    &format!("{proc}: reading stderr failed: {err}"),
                );
                (decoder.finish(), true)
            }
        };
        if !text.is_empty() {
            let _ = inputs.send(Input::StderrChunk { proc, text }).await;
        }
        if eof {
            break;
        }
    }
    state.open_pipes.fetch_sub(1, Ordering::SeqCst);
    let _ = inputs.send(Input::StderrClosed { proc }).await;
}

/// Reaps the leader and reports `Exited`, whether or not a grandchild still holds the pipes.
async fn wait(
    proc: ProcId,
    mut child: async_process::Child,
    inputs: Sender<Input>,
    state: Arc<ProcState>,
) {
    let status = match child.status().await {
        Ok(status) => ExitStatus::from_parts(status.code(), status.signal()),
        Err(err) => {
            crate::log(
                LogLevel::Warn,
                &format!("{proc}: waiting for the child failed: {err}"),
            );
            ExitStatus::Code(-1)
        }
    };
    state.reaped.store(true, Ordering::SeqCst);
    let _ = inputs.send(Input::Exited { proc, status }).await;
}
