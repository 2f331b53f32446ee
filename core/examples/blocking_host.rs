//! A complete MCP host for `agent-dispatch-core` built from the standard library alone:
//! threads, blocking pipes, `std::process::Command` and one `std::sync::mpsc` channel.
//!
//! ```sh
//! cargo run --example blocking_host      # an MCP server on stdin/stdout, logs on stderr
//! ```
//!
//! It is the crate's run loop made real. Every source of facts gets a thread that turns what
//! it sees into `Input`s on one channel: stdin, and each child's stdout, stderr and exit. The
//! main thread alone owns the `Core`: it executes the effects of the last input, then waits on
//! the channel, but never past the core's one deadline. The production driver
//! (`agent-dispatch-transports`) has the same shape with smol tasks instead of threads, and
//! adds what this example leaves out: capped line lengths, lock timeouts, a kill-on-parent-death
//! guard for children, signal handling and the Unix-socket daemon.

// This file is a driver: it does exactly what `core/clippy.toml` forbids inside the core.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use agent_dispatch_core::jobs::{self, job_id_error, valid_job_id};
use agent_dispatch_core::{
    ClientId, Core, DirProbe, DirState, Effect, EntryKind, ExitStatus, Input, IoRequest, IoResult,
    JobFile, Options, ProcId, Signal, SpawnError, SpawnSpec, Timestamp,
};

/// A stdio server has exactly one client.
const CLIENT: ClientId = ClientId(0);

// ============================== the run loop ==============================

fn main() {
    // The driver owns the clock. `Timestamp`s are monotonic time since `epoch`; the wall
    // clock is read once, for the options.
    let epoch = Instant::now();
    let now = || Timestamp::from_duration(epoch.elapsed());
    let options = options_from_env(SystemTime::now());
    let (tx, rx) = mpsc::channel();
    let mut host = Host {
        tx: tx.clone(),
        children: BTreeMap::new(),
        config_locks: BTreeMap::new(),
    };
    let mut core = Core::new(options, now());

    // stdio: the one client is there from the start.
    feed(&mut core, now(), Input::ClientConnected { client: CLIENT });
    // The stdin thread: one `ClientLine` per line (the core parses it, so garbage gets a proper
    // JSON-RPC error). EOF means the client is gone and, on stdio, that we should stop: the core
    // cancels the client's calls, stops and reaps its children, and only then emits `Exit`.
    thread::spawn(move || {
        let client = CLIENT;
        read_lines(io::stdin().lock(), |line| {
            send(&tx, Input::ClientLine { client, line })
        });
        send(&tx, Input::ClientClosed { client });
        send(&tx, Input::Shutdown);
    });

    let code = 'run: loop {
        // 1. Execute every effect the last input produced, in order. Answers to `Spawn` and
        //    `Io` come back later through the channel, like any other fact.
        while let Some(effect) = core.poll_effect() {
            if let Some(code) = host.execute(effect) {
                break 'run code; // `Exit` is the core's last effect
            }
        }
        // 2. Wait for the next fact, but not past the core's single deadline: run timeouts,
        //    kill grace and progress throttling all live in the core's own timer table.
        let input = match core.poll_timeout() {
            // Checked first, so a chatty child cannot starve a deadline that is already due.
            Some((at, _why)) if at <= now() => Input::Timeout,
            // `Err` can only mean "timed out": `host` holds a sender, so the channel stays open.
            Some((at, _why)) => rx.recv_timeout(at.since(now())).unwrap_or(Input::Timeout),
            None => rx.recv().expect("the host holds a sender"),
        };
        // 3. Feed it, with the time it is fed at. (Early or extra `Timeout`s are harmless.)
        host.observe(&input);
        feed(&mut core, now(), input);
    };
    // Every reply was flushed as it was sent. `exit` also ends the stdin thread, which may
    // still be blocked in `read`.
    std::process::exit(code);
}

/// Feeds one fact. `Err` means this host broke the contract (say, an `IoDone` twice), never
/// that the outside world misbehaved, so it is logged rather than fatal.
fn feed(core: &mut Core, now: Timestamp, input: Input) {
    if let Err(err) = core.handle(now, input) {
        eprintln!("blocking_host: warn: driver bug: {err}");
    }
}

/// Executes effects. Owns what the core refers to by id: children and held locks.
struct Host {
    /// Where every thread reports its facts.
    tx: Sender<Input>,
    /// Live children: pid (= process group id) and how many of `StdoutClosed`,
    /// `StderrClosed` and `Exited` are still to come. Until all three came, some member of
    /// the group may hold our pipes, so the group id is still ours to signal.
    children: BTreeMap<ProcId, (u32, u8)>,
    /// Config locks held from `ReadConfig { lock: true }` to `WriteConfig` / `UnlockConfig`.
    config_locks: BTreeMap<PathBuf, File>,
}

impl Host {
    /// Executes one effect; `Some(code)` for `Exit`.
    fn execute(&mut self, effect: Effect) -> Option<i32> {
        match effect {
            // One JSON-RPC message per line, flushed at once: the client may be waiting for it.
            Effect::Send { line, .. } => {
                let mut out = io::stdout().lock();
                // A failed write means the client is gone; its EOF on stdin follows.
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            }
            Effect::Spawn { proc, spec } => self.spawn(proc, spec),
            Effect::Kill { proc, signal } => self.kill(proc, signal),
            // File work runs right here and blocks the loop for its few milliseconds. The
            // answer still goes through the channel, so it arrives as an ordinary input.
            Effect::Io { op, request } => {
                let result = self.perform(request);
                send(&self.tx, Input::IoDone { op, result });
            }
            // Logs go to stderr, never to the client: stdout carries protocol lines only.
            Effect::Log { level, message } => {
                eprintln!("blocking_host: {level}: {}", message.replace('\n', "\\n"));
            }
            Effect::Exit { code } => return Some(code),
        }
        None
    }

    /// Starts a child in a process group of its own, with a thread per pipe and one that
    /// waits for its exit.
    fn spawn(&mut self, proc: ProcId, spec: SpawnSpec) {
        // Text for stdin goes through a pipe; otherwise a null stdin, never ours (the MCP pipe).
        let stdin = match spec.stdin {
            Some(_) => Stdio::piped(),
            None => Stdio::null(),
        };
        let mut command = Command::new(&spec.program); // looked up on PATH, never via a shell
        command
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .envs(&spec.env) // on top of our own environment
            .process_group(0) // a fresh group, so `Kill` reaches grandchildren too
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                // (A missing `cwd` is NotFound too; the smol driver checks it first to say so.)
                let message = format!("cannot start {}: {err}", spec.program);
                let error = SpawnError {
                    message,
                    kind: err.kind().into(),
                };
                return send(&self.tx, Input::SpawnFailed { proc, error });
            }
        };
        // Queued before any reader thread exists, so `Spawned` precedes the child's output.
        let pid = Some(child.id()); // for logs only: the core speaks of `proc`
        send(&self.tx, Input::Spawned { proc, pid });
        self.children.insert(proc, (child.id(), 3));
        if let (Some(mut stdin), Some(text)) = (child.stdin.take(), spec.stdin) {
            // Its own thread: a child that never reads must not block the loop. Drop closes it.
            thread::spawn(move || stdin.write_all(text.as_bytes()));
        }
        // stdout and stderr are drained at the same time, so a chatty child never blocks on a
        // full pipe. Each reader reports its EOF: a grandchild may hold a pipe past the exit.
        let (tx, stdout) = (self.tx.clone(), child.stdout.take().expect("piped"));
        thread::spawn(move || {
            read_lines(stdout, |line| send(&tx, Input::StdoutLine { proc, line }));
            send(&tx, Input::StdoutClosed { proc });
        });
        let (tx, stderr) = (self.tx.clone(), child.stderr.take().expect("piped"));
        thread::spawn(move || {
            read_chunks(stderr, |text| send(&tx, Input::StderrChunk { proc, text }));
            send(&tx, Input::StderrClosed { proc });
        });
        let tx = self.tx.clone();
        thread::spawn(move || {
            let status = child.wait().map_or(ExitStatus::Code(-1), |s| {
                ExitStatus::from_parts(s.code(), s.signal())
            });
            send(&tx, Input::Exited { proc, status });
        });
    }

    /// Signals the child's whole process group (TERM first; the core sends KILL after a grace).
    fn kill(&self, proc: ProcId, signal: Signal) {
        // A finished child's group id may belong to someone else by now: leave it alone.
        let Some(&(pgid, _)) = self.children.get(&proc) else {
            return;
        };
        let name = match signal {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        };
        // std has no killpg(2); a real host calls it through libc or rustix. kill(1) does the
        // same when given a negative pid after `--`. (procps' `kill -TERM -<pgid>` exits 0
        // without signalling anything, hence `-s`.)
        let pgid = format!("-{pgid}");
        let _ = Command::new("kill")
            .args(["-s", name, "--", &pgid])
            .stderr(Stdio::null())
            .status();
    }

    /// Counts down a child's three final facts; after the last one it is forgotten.
    fn observe(&mut self, input: &Input) {
        if let Input::StdoutClosed { proc }
        | Input::StderrClosed { proc }
        | Input::Exited { proc, .. } = input
        {
            if let Some((_, left)) = self.children.get_mut(proc) {
                *left -= 1;
                if *left == 0 {
                    self.children.remove(proc);
                }
            }
        }
    }

    /// Performs one file request. Requests are coarse: each one gathers every fact a
    /// decision needs, so a tool call makes only a few round trips.
    fn perform(&mut self, request: IoRequest) -> IoResult {
        match request {
            IoRequest::ReadConfig { path, lock } => {
                // The cross-process lock (`<config>.lock`) keeps a CLI edit and a server edit
                // from losing each other. The core asks for it one call at a time.
                if lock {
                    let locked =
                        private_parent(&path).and_then(|()| lock_file(&with(&path, ".lock")));
                    match locked {
                        Ok(file) => {
                            self.config_locks.insert(path.clone(), file);
                        }
                        Err(err) => {
                            eprintln!("blocking_host: warn: not locking {}: {err}", path.display())
                        }
                    }
                }
                IoResult::Config {
                    result: read_if_exists(&path),
                }
            }
            IoRequest::WriteConfig { path, contents } => {
                let tmp = with(&path, &format!(".{}.tmp", unique_hex()));
                let result = replace_file(&path, &tmp, contents.as_bytes())
                    .map_err(|err| format!("cannot write {}: {err}", path.display()));
                self.config_locks.remove(&path); // closing the lock file releases the lock
                IoResult::Written { result }
            }
            IoRequest::UnlockConfig { path } => {
                self.config_locks.remove(&path);
                IoResult::Written { result: Ok(()) }
            }
            IoRequest::ProbeDirs {
                dirs,
                markers,
                read,
                max_bytes,
            } => IoResult::Probes {
                probes: dirs
                    .iter()
                    .map(|d| probe_dir(d, &markers, &read, max_bytes))
                    .collect(),
            },
            IoRequest::WriteJob { dir, id, contents } => IoResult::Written {
                result: write_job(&dir, &id, &contents),
            },
            // (The smol driver also removes temp files of interrupted writes on `clean_temps`,
            // those `jobs::is_temp_name` recognises.)
            IoRequest::ListJobs {
                dir,
                clean_temps: _,
            } => IoResult::JobList {
                result: list_jobs(&dir),
            },
            IoRequest::ReadJobs { dir, ids } => IoResult::Jobs {
                records: ids.iter().map(|id| read_job(&dir, id)).collect(),
            },
            IoRequest::DeleteJobs { dir, ids } => IoResult::Deleted {
                result: delete_jobs(&dir, &ids),
            },
        }
    }
}

/// Puts a fact on the channel. It fails only once `main` is gone, when nobody cares.
fn send(tx: &Sender<Input>, input: Input) {
    let _ = tx.send(input);
}

/// The facts the core may not look up itself, from the environment and the wall clock.
fn options_from_env(wall_clock: SystemTime) -> Options {
    let since_1970 = wall_clock.duration_since(UNIX_EPOCH).unwrap_or_default();
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    // Session and job ids derive from the seed, so it must differ between runs; job records
    // carry wall-clock times: the epoch's Unix time plus the `Timestamp` of the moment.
    let seed = since_1970.as_nanos() as u64 ^ u64::from(std::process::id());
    let (options, warnings) = Options::from_env(
        |name| std::env::var_os(name),
        cwd,
        seed,
        since_1970.as_secs_f64(),
    );
    for warning in warnings {
        eprintln!("blocking_host: {warning}");
    }
    options
}

// ============================== reading pipes ==============================

/// Calls `each` with every line of `reader` without its `\n` (or `\r\n`), undecodable bytes
/// as U+FFFD, until EOF or an error. (The smol driver also caps a line at 64 MiB.)
fn read_lines(reader: impl Read, mut each: impl FnMut(String)) {
    let (mut reader, mut buf) = (BufReader::new(reader), Vec::new());
    while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        each(String::from_utf8_lossy(line).into_owned());
        buf.clear();
    }
}

/// Calls `each` with every chunk `reader` yields, as lossy UTF-8, until EOF or an error.
/// A character split between two reads is held back for the next chunk.
fn read_chunks(mut reader: impl Read, mut each: impl FnMut(String)) {
    let (mut buf, mut pending) = ([0u8; 8192], Vec::new());
    loop {
        let n = match reader.read(&mut buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Ok(n) => n,
            Err(_) => 0,
        };
        pending.extend_from_slice(&buf[..n]);
        let ready = match std::str::from_utf8(&pending) {
            Err(err) if n > 0 && err.error_len().is_none() => err.valid_up_to(),
            _ => pending.len(),
        };
        let text: Vec<u8> = pending.drain(..ready).collect();
        if !text.is_empty() {
            each(String::from_utf8_lossy(&text).into_owned());
        }
        if n == 0 {
            return;
        }
    }
}

// ============================== files ==============================

/// The config's bytes; `None` when it does not exist. Opened non-blocking (a FIFO must not
/// hang the host) and read only when a regular file of at most `MAX_CONFIG_BYTES`.
fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, String> {
    // O_NONBLOCK: std has no constant for it; a real host takes it from libc or rustix.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const O_NONBLOCK: i32 = 0o4000;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const O_NONBLOCK: i32 = 0x0004;
    let shown = path.display();
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read {shown}: {err}")),
    };
    let meta = file
        .metadata()
        .map_err(|err| format!("cannot read {shown}: {err}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let limit = agent_dispatch_core::config::MAX_CONFIG_BYTES as u64;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read {shown}: {err}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{shown} is larger than 4 MiB"));
    }
    Ok(Some(bytes))
}

/// Creates the folder of `path` (and its parents) 0700 when missing.
fn private_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => DirBuilder::new().recursive(true).mode(0o700).create(dir),
        None => Ok(()),
    }
}

/// Takes an exclusive `flock` on `path` (created 0600); it lasts while the `File` is open.
/// std's `File::lock` waits without limit; the smol driver gives up after 10 s and goes on.
fn lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    let file = options
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// Replaces `target` atomically: a fresh 0600 temp file `tmp` beside it (folder 0700),
/// synced, then renamed over it. Readers see the old file or the new one, never half of one.
/// (The smol driver also follows a symlinked config, so that the link survives.)
fn replace_file(target: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    private_parent(target)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    let written = (file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| fs::rename(tmp, target));
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
    written
}

/// `path` with `suffix` appended to its file name.
fn with(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// 16 hex digits that differ between processes and between calls, for temp-file names.
fn unique_hex() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:08x}{:08x}", std::process::id(), nanos.subsec_nanos())
}

/// What one directory is, where it really is, which markers exist, and the start of each
/// requested file (a character cut by `max_bytes` shows as U+FFFD).
fn probe_dir(dir: &Path, markers: &[String], read: &[String], max_bytes: usize) -> DirProbe {
    let state = match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => DirState::NotADir,
        Ok(_) => fs::read_dir(dir)
            .map_or_else(|e| DirState::Unreadable(e.to_string()), |_| DirState::Dir),
        Err(err) if err.kind() == io::ErrorKind::NotFound => DirState::Missing,
        Err(err) => DirState::Unreadable(err.to_string()),
    };
    let resolved = fs::canonicalize(dir).ok();
    let mut probe = DirProbe {
        dir: dir.to_path_buf(),
        state,
        resolved,
        ..DirProbe::default()
    };
    if probe.state != DirState::Dir {
        return probe;
    }
    for marker in markers {
        if let Ok(meta) = fs::metadata(dir.join(marker)) {
            let kind = if meta.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            probe.markers.insert(marker.clone(), kind);
        }
    }
    for name in read {
        let path = dir.join(name);
        // Regular files only: a FIFO named like `CLAUDE.md` must not hang the loop.
        if fs::metadata(&path).is_ok_and(|meta| meta.is_file()) {
            let mut bytes = Vec::new();
            let file =
                File::open(&path).and_then(|f| f.take(max_bytes as u64).read_to_end(&mut bytes));
            if file.is_ok() {
                probe
                    .files
                    .insert(name.clone(), String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    probe
}

// ===================== job records: `<jobs dir>/<id>.json` =====================
// Shared with other agent-dispatch processes (and the Python version): writers and deleters
// take `<jobs dir>/.jobs.lock`. (The smol driver also caps a record at 16 MiB.)

/// The record path of an id, validated first: no path is ever built from an unchecked id.
fn job_path(dir: &Path, id: &str) -> Result<PathBuf, String> {
    if !valid_job_id(id) {
        return Err(job_id_error(id));
    }
    if dir.as_os_str().is_empty() {
        return Err("no jobs folder configured".into());
    }
    Ok(dir.join(format!("{id}.json")))
}

/// Writes one record atomically, never over one that is already finished.
fn write_job(dir: &Path, id: &str, contents: &str) -> Result<(), String> {
    let path = job_path(dir, id)?;
    private_parent(&path).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let _lock = lock_file(&dir.join(".jobs.lock"));
    let old = read_job(dir, id).ok().flatten();
    let status = old.as_deref().and_then(jobs::record_status);
    if let Some(status) = status.filter(|s| s.is_terminal()) {
        return Err(format!(
            "job {id} is already {status}; a finished job is never overwritten"
        ));
    }
    let tmp = dir.join(format!("{id}.{}.tmp", unique_hex()));
    replace_file(&path, &tmp, contents.as_bytes())
        .map_err(|err| format!("cannot write {}: {err}", path.display()))
}

/// One record's text; `None` when there is no such record.
fn read_job(dir: &Path, id: &str) -> Result<Option<String>, String> {
    let path = job_path(dir, id)?;
    let fail = |err: &dyn std::fmt::Display| format!("cannot read {}: {err}", path.display());
    match fs::metadata(&path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Ok(meta) if !meta.is_file() => Err(fail(&"not a regular file")),
        Ok(_) => fs::read_to_string(&path)
            .map(Some)
            .map_err(|err| fail(&err)),
        Err(err) => Err(fail(&err)),
    }
}

/// Every `<valid id>.json` regular file with its modification time and size, by id.
fn list_jobs(dir: &Path) -> Result<Vec<JobFile>, String> {
    let entries = match fs::read_dir(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(|err| format!("cannot list {}: {err}", dir.display()))?,
    };
    let mut jobs: Vec<JobFile> = (entries.flatten())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let id = name.strip_suffix(".json").filter(|id| valid_job_id(id))?;
            let meta = fs::metadata(entry.path())
                .ok()
                .filter(|meta| meta.is_file())?;
            let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
            let (modified, size) = (modified.as_secs_f64(), meta.len());
            Some(JobFile {
                id: id.to_owned(),
                modified,
                size,
            })
        })
        .collect();
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(jobs)
}

/// Deletes records; returns how many existed. One invalid id deletes nothing.
fn delete_jobs(dir: &Path, ids: &[String]) -> Result<usize, String> {
    let paths: Vec<PathBuf> = ids
        .iter()
        .map(|id| job_path(dir, id))
        .collect::<Result<_, _>>()?;
    let _lock = lock_file(&dir.join(".jobs.lock")); // fails harmlessly when there is no folder
    let mut deleted = 0;
    for path in paths {
        match fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(format!("cannot delete {}: {err}", path.display())),
        }
    }
    Ok(deleted)
}
