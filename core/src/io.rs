//! The vocabulary between the core and a driver: facts in (`Input`), requests out (`Effect`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, OpId, ProcId};

/// A fact the driver reports to the core. Inputs are past tense: something happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Input {
    /// A client connected (stdio: once, at start).
    ClientConnected { client: ClientId },
    /// One raw line arrived from a client, without its newline; the core parses it.
    ClientLine { client: ClientId, line: String },
    /// A client sent a line longer than the driver accepts (`limit` bytes); the line was
    /// discarded unread. The core answers it with a parse error naming the limit.
    ClientLineTooLong { client: ClientId, limit: usize },
    /// A client's input ended (EOF or a closed socket). Its running calls are cancelled.
    ClientClosed { client: ClientId },
    /// A child requested by `Effect::Spawn` is running. `pid` is for logs only.
    Spawned { proc: ProcId, pid: Option<u32> },
    /// A child could not be started.
    SpawnFailed { proc: ProcId, error: SpawnError },
    /// One line of a child's stdout, without its newline; undecodable bytes already U+FFFD.
    StdoutLine { proc: ProcId, line: String },
    /// A chunk of a child's stderr (the driver drains it concurrently with stdout).
    StderrChunk { proc: ProcId, text: String },
    /// A child's stdout reached EOF (a grandchild may still hold stderr).
    StdoutClosed { proc: ProcId },
    /// A child's stderr reached EOF (every chunk before it was delivered).
    StderrClosed { proc: ProcId },
    /// A child exited and was reaped.
    Exited { proc: ProcId, status: ExitStatus },
    /// An `Effect::Io` request finished.
    IoDone { op: OpId, result: IoResult },
    /// The deadline from `Core::poll_timeout` was reached. Early or repeated ones are harmless.
    Timeout,
    /// The process was asked to stop (SIGTERM, stdin EOF on stdio). The core drains and exits.
    Shutdown,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Normal exit with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// From what the OS reports: an exit code, else the terminating signal (as
    /// `ExitStatusExt::signal` gives it); neither is reported as code -1.
    pub fn from_parts(code: Option<i32>, signal: Option<i32>) -> Self {
        match (code, signal) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(signal)) => ExitStatus::Signal(signal),
            (None, None) => ExitStatus::Code(-1),
        }
    }
}

/// Why a spawn failed, classified so the core can choose `error_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnError {
    /// What went wrong, in the OS's words.
    pub message: String,
    /// The class of failure.
    pub kind: SpawnErrorKind,
}

/// Classes of spawn failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpawnErrorKind {
    /// The program was not found (on `PATH` or at its path).
    NotFound,
    /// The program or the working directory may not be used.
    PermissionDenied,
    /// Anything else.
    Other,
}

impl From<std::io::ErrorKind> for SpawnErrorKind {
    fn from(kind: std::io::ErrorKind) -> Self {
        match kind {
            std::io::ErrorKind::NotFound => SpawnErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => SpawnErrorKind::PermissionDenied,
            _ => SpawnErrorKind::Other,
        }
    }
}

/// A request from the core. The driver executes effects in order, as they are polled.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[must_use]
pub enum Effect {
    /// Write one protocol line (no newline included) to a client.
    Send { client: ClientId, line: String },
    /// Start a child process; answer with `Spawned` or `SpawnFailed`, then stream its output
    /// and report `StdoutClosed`, `StderrClosed` and `Exited` (in any order). After
    /// `SpawnFailed`, or once all three have been reported, the core never mentions this
    /// `proc` again except in a `Kill`, which the driver may then ignore.
    Spawn { proc: ProcId, spec: SpawnSpec },
    /// Send a signal to the child's whole process group (a descendant holding the pipes
    /// belongs to it). Ignore it for a `proc` that has already reported everything.
    Kill { proc: ProcId, signal: Signal },
    /// Perform file-system work; answer with `IoDone { op, .. }`.
    Io { op: OpId, request: IoRequest },
    /// Write a diagnostic line to the log (stderr); never to a client.
    Log { level: LogLevel, message: String },
    /// Everything is drained: exit the process with this code.
    Exit { code: i32 },
}

/// How to start one child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnSpec {
    /// Program name (looked up on `PATH` by the driver) or path.
    pub program: String,
    /// Arguments, each passed as one argv entry (never through a shell).
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Variables set on top of the driver's own environment.
    pub env: BTreeMap<String, String>,
    /// Bytes to write to the child's stdin before closing it; `None` means a null stdin.
    pub stdin: Option<String>,
    /// The longest stdout line to deliver; the rest of a longer line is dropped
    /// (`settings.limits.max_line_bytes`), so one child cannot make the driver buffer
    /// without bound.
    pub max_line_bytes: usize,
}

/// Signals the core may send to a child's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Ask politely (SIGTERM).
    Term,
    /// Force (SIGKILL).
    Kill,
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
        })
    }
}

/// Severity of an `Effect::Log` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Something went wrong that the operator should know about.
    Warn,
    /// Normal operation.
    Info,
}

/// File-system work the driver performs for the core.
///
/// Requests are coarse: each one gathers every fact a decision needs, so a handler makes
/// at most a few round trips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "io", rename_all = "snake_case")]
pub enum IoRequest {
    /// Read the config file. With `lock`, first take the cross-process config lock
    /// (`<config>.lock`) and keep holding it until `WriteConfig` or `UnlockConfig`.
    /// Answered with `IoResult::Config`.
    ReadConfig { path: PathBuf, lock: bool },
    /// Atomically replace the config: temp file beside the symlink-resolved target, mode
    /// 0600, folder 0700, rename; then release the lock. Answered with `IoResult::Written`.
    WriteConfig { path: PathBuf, contents: String },
    /// Release the config lock without writing. Answered with `IoResult::Written`.
    UnlockConfig { path: PathBuf },
    /// Gather facts about directories. Answered with `IoResult::Probes`, in request order.
    ProbeDirs {
        /// The directories, as configured (absolute).
        dirs: Vec<PathBuf>,
        /// Names (relative paths) whose presence and kind to report.
        markers: Vec<String>,
        /// Names (relative paths) of files whose text to read, up to `max_bytes` each.
        read: Vec<String>,
        /// Cap per file read.
        max_bytes: usize,
    },
    /// Write one job record atomically to `<dir>/<id>.json` (unique temp file, mode
    /// 0600, folder 0700, rename). The driver re-validates `id` before building the path and
    /// refuses to replace a record whose status is already terminal (done, failed,
    /// cancelled; see `jobs::record_status`): a finished job is never overwritten. Answered with `IoResult::Written`.
    WriteJob {
        dir: PathBuf,
        id: String,
        contents: String,
    },
    /// List the job records: every `<id>.json` with a valid id, with its modification time
    /// and size. With `clean_temps`, first remove temp files left by interrupted writes
    /// (`jobs::is_temp_name`).
    /// Answered with `IoResult::JobList`.
    ListJobs { dir: PathBuf, clean_temps: bool },
    /// Read these job records. Answered with `IoResult::Jobs`, in request order.
    ReadJobs { dir: PathBuf, ids: Vec<String> },
    /// Delete these job records. Answered with `IoResult::Deleted`.
    DeleteJobs { dir: PathBuf, ids: Vec<String> },
}

/// The answer to an `IoRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "io", rename_all = "snake_case")]
pub enum IoResult {
    /// The config file's bytes; `None` when the file does not exist.
    Config {
        result: Result<Option<Vec<u8>>, String>,
    },
    /// A write or unlock finished.
    Written { result: Result<(), String> },
    /// One probe per requested directory.
    Probes { probes: Vec<DirProbe> },
    /// The job records on disk.
    JobList {
        result: Result<Vec<JobFile>, String>,
    },
    /// Each requested record's text (`None`: no such file), in request order.
    Jobs {
        records: Vec<Result<Option<String>, String>>,
    },
    /// How many records were deleted.
    Deleted { result: Result<usize, String> },
}

/// One job record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFile {
    /// The job id (the file name without `.json`), already validated.
    pub id: String,
    /// Last modification, in Unix seconds.
    pub modified: f64,
    /// Size in bytes (with `modified`, tells whether a cached parse is still current).
    pub size: u64,
}

/// What the driver found at one directory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirProbe {
    /// The directory as requested.
    pub dir: PathBuf,
    /// What the path is.
    pub state: DirState,
    /// The path with symlinks resolved, when it exists.
    pub resolved: Option<PathBuf>,
    /// For each requested marker that exists: whether it is a directory.
    pub markers: BTreeMap<String, EntryKind>,
    /// For each requested file that exists and could be read: its text (lossy UTF-8,
    /// cut at `max_bytes`).
    pub files: BTreeMap<String, String>,
}

/// The kind of a path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", content = "error", rename_all = "snake_case")]
pub enum DirState {
    /// A readable directory.
    Dir,
    /// Nothing at that path.
    #[default]
    Missing,
    /// Something that is not a directory.
    NotADir,
    /// The path could not be examined (permission denied, I/O error).
    Unreadable(String),
}

/// Whether a marker is a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file (or anything that is not a directory).
    File,
    /// A directory.
    Dir,
}
