//! Entry points for the fuzz targets (`core/fuzz/`) and property tests only.
//!
//! Hidden from the docs and outside any compatibility promise: these wrap crate-private
//! parsers so that code outside the crate can throw arbitrary input at them, and they change
//! whenever those internals do. Nothing else should call them.

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::ConfigDoc;
use crate::dispatch::outcome::{self, Facts};
use crate::dispatch::stream::{self, Event};
use crate::jobs::{JobRecord, JobSummary};
use crate::{
    ClientId, Core, CoreError, DirProbe, Effect, ExitStatus, Input, IoRequest, IoResult, Options,
    Timestamp,
};

/// The home directory [`agents_yaml`] expands `~` with.
pub const HOME: &str = "/home/user";
/// The working directory [`agents_yaml`] resolves relative paths against.
pub const CWD: &str = "/work";

/// Feeds one raw line from client 0 to a fresh core (default options, no config file, no
/// job records) and returns the effects the line caused; start-up recovery is over by then.
pub fn mcp_line(line: &str) -> Result<Vec<Effect>, CoreError> {
    let mut core = Core::new(Options::default(), Timestamp::ZERO);
    core.handle(
        Timestamp::ZERO,
        Input::ClientConnected {
            client: ClientId(0),
        },
    )?;
    // Start-up recovery finds an empty jobs folder, so job tools need not wait for it.
    while let Some(effect) = core.poll_effect() {
        if let Effect::Io { op, request } = effect {
            core.handle(
                Timestamp::ZERO,
                Input::IoDone {
                    op,
                    result: empty_result(&request),
                },
            )?;
        }
    }
    core.handle(
        Timestamp::ZERO,
        Input::ClientLine {
            client: ClientId(0),
            line: line.to_owned(),
        },
    )?;
    Ok(std::iter::from_fn(|| core.poll_effect()).collect())
}

/// What an empty file system answers: no config, no job records, nothing written or found.
fn empty_result(request: &IoRequest) -> IoResult {
    match request {
        IoRequest::ReadConfig { .. } => IoResult::Config { result: Ok(None) },
        IoRequest::WriteConfig { .. }
        | IoRequest::UnlockConfig { .. }
        | IoRequest::WriteJob { .. } => IoResult::Written { result: Ok(()) },
        IoRequest::ProbeDirs { dirs, .. } => IoResult::Probes {
            probes: dirs
                .iter()
                .map(|dir| DirProbe {
                    dir: dir.clone(),
                    ..DirProbe::default()
                })
                .collect(),
        },
        IoRequest::ListJobs { .. } => IoResult::JobList {
            result: Ok(Vec::new()),
        },
        IoRequest::ReadJobs { ids, .. } => IoResult::Jobs {
            records: ids.iter().map(|_| Ok(None)).collect(),
        },
        IoRequest::DeleteJobs { .. } => IoResult::Deleted { result: Ok(0) },
    }
}

/// How a synthetic run ended, besides what it wrote to stdout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunEnd {
    /// The exit status (`None`: never seen).
    pub exit: Option<ExitStatus>,
    /// What the child wrote to stderr.
    pub stderr: String,
    /// Our deadline fired.
    pub timed_out: bool,
    /// The caller asked for `response_format: json`.
    pub json_mode: bool,
    /// The run carried the dispatch protocol (a final `STATUS:` line is expected).
    pub protocol: bool,
    /// The effective `--max-budget-usd`.
    pub budget: Option<f64>,
}

/// What a run's stdout amounted to.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRun {
    /// Progress messages, in order.
    pub progress: Vec<String>,
    /// The last `result` line.
    pub result: Option<Map<String, Value>>,
    /// The `DispatchResult` a caller would get, as JSON.
    pub outcome: Value,
}

/// Parses each stdout line as the stream-json reader does (`stream::parse_line`), then
/// classifies the run (`outcome::outcome`) the way a finished child is classified: the last
/// `result` line wins, lines that are neither JSON nor events are the plain-text tier.
pub fn stream_json(lines: &[&str], end: &RunEnd) -> StreamRun {
    let mut progress = Vec::new();
    let mut result = None;
    let mut plain = String::new();
    let mut events_seen = false;
    for line in lines {
        let mut events = Vec::new();
        stream::parse_line(line, &mut events);
        let json_like = line.trim_start().starts_with('{');
        events_seen |= json_like;
        if events.is_empty() && !json_like {
            plain.push_str(line);
            plain.push('\n');
        }
        for event in events {
            match event {
                Event::Progress(message) => progress.push(message),
                Event::Result(line) => result = Some(line),
            }
        }
    }
    let facts = Facts {
        agent: "fuzz",
        session_id: "0f0e0d0c-0b0a-4908-8706-050403020100",
        result: result.as_ref(),
        exit: end.exit,
        stderr: &end.stderr,
        plain_stdout: &plain,
        events_seen,
        timed_out: end.timed_out,
        timeout_secs: 300,
        spawn_error: None,
        json_mode: end.json_mode,
        protocol: end.protocol,
        budget: end.budget,
    };
    let outcome = outcome::outcome(&facts).to_json();
    StreamRun {
        progress,
        result,
        outcome,
    }
}

/// Parses `agents.yaml` bytes (`ConfigDoc::parse`), expanding paths with [`HOME`] and [`CWD`].
pub fn agents_yaml(bytes: &[u8]) -> Result<ConfigDoc, String> {
    ConfigDoc::parse(Some(bytes), Path::new(HOME), Path::new(CWD))
}

/// Parses a job record read from `<expected_id>.json` (`JobRecord::parse`).
pub fn job_record(expected_id: &str, text: &str) -> Result<JobRecord, String> {
    JobRecord::parse(expected_id, text)
}

/// A record's summary read by the fast path alone (`JobSummary::parse_fast`; `None`: left
/// to the full parse).
pub fn job_summary_fast(expected_id: &str, text: &str) -> Option<JobSummary> {
    JobSummary::parse_fast(expected_id, text)
}
