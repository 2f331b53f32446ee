//! The JSON-RPC / MCP request path: arbitrary bytes, split at newlines, arrive as one
//! client's lines. The world answers at once: file work from a small in-memory tree (one
//! config with two agents, a jobs folder), and every child prints a result and exits.
//!
//! Checked: no panic and no driver-contract error; every `Send` is one line of JSON-RPC 2.0
//! JSON, a notification or a reply to a request the client sent (at most one reply each,
//! when ids are unique); nothing after `Exit`; after the client leaves and `Shutdown`, the
//! core exits once its deadlines have run.

#![no_main]

use std::collections::{BTreeMap, VecDeque};

use agent_dispatch_core::{
    ClientId, Core, DirProbe, DirState, Effect, ExitStatus, Input, IoRequest, IoResult, JobFile,
    Options, Timestamp,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CONFIG: &str = "\
agents:
  web:
    directory: /work/web
    description: Storefront
    timeout: 30
  api:
    directory: /work/api
settings:
  max_concurrency: 2
";

const RESULT_LINE: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"11111111-1111-4111-8111-111111111111","total_cost_usd":0.01,"num_turns":1,"duration_ms":5}"#;
const PROGRESS_LINE: &str =
    r#"{"type":"assistant","message":{"content":[{"type":"text","text":"working"}]}}"#;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut world = World::new();
    world.feed(Input::ClientConnected {
        client: ClientId(0),
    });
    for line in text.split('\n') {
        world.record_request(line);
        world.feed(Input::ClientLine {
            client: ClientId(0),
            line: line.to_owned(),
        });
        world.answer();
        world.tick(Timestamp::from_millis(world.now.as_millis() + 10));
    }
    world.feed(Input::ClientClosed {
        client: ClientId(0),
    });
    world.feed(Input::Shutdown);
    world.answer();
    world.tick(Timestamp::from_millis(u64::MAX / 2_000));
    assert!(world.exited, "the core did not exit after Shutdown");
});

struct World {
    core: Core,
    now: Timestamp,
    answers: VecDeque<Input>,
    config: String,
    lock_held: bool,
    jobs: BTreeMap<String, String>,
    /// Request id (as JSON text) → replies so far; `None` once the id was reused.
    requests: BTreeMap<String, Option<usize>>,
    exited: bool,
}

impl World {
    fn new() -> Self {
        let options = Options {
            config_path: "/home/user/.config/agent-dispatch/agents.yaml".into(),
            jobs_dir: "/home/user/.config/agent-dispatch/jobs".into(),
            home: "/home/user".into(),
            cwd: "/work".into(),
            seed: 1,
            unix_time_at_epoch: 1_800_000_000.0,
            ..Options::default()
        };
        let mut world = World {
            core: Core::new(options, Timestamp::ZERO),
            now: Timestamp::ZERO,
            answers: VecDeque::new(),
            config: CONFIG.to_owned(),
            lock_held: false,
            jobs: BTreeMap::new(),
            requests: BTreeMap::new(),
            exited: false,
        };
        world.drain();
        world
    }

    fn feed(&mut self, input: Input) {
        assert!(!self.exited, "input after Exit");
        if let Err(e) = self.core.handle(self.now, input) {
            panic!("driver contract broken: {e}");
        }
        self.drain();
    }

    /// Delivers everything the world owes, and what that causes, at the current instant.
    fn answer(&mut self) {
        while let Some(input) = self.answers.pop_front() {
            if self.exited {
                return;
            }
            self.feed(input);
        }
    }

    /// Fires every deadline up to `until`, answering after each.
    fn tick(&mut self, until: Timestamp) {
        for _ in 0..10_000 {
            let Some((at, _)) = self.core.poll_timeout() else {
                break;
            };
            if at > until || self.exited {
                break;
            }
            assert!(at >= self.now, "deadline {at} is before now {}", self.now);
            self.now = at;
            self.feed(Input::Timeout);
            self.answer();
        }
        if until < Timestamp::from_millis(u64::MAX / 2_000) {
            self.now = self.now.max(until);
        }
    }

    fn drain(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            assert!(!self.exited, "effect after Exit: {effect:?}");
            match effect {
                Effect::Send { line, .. } => self.check_send(&line),
                Effect::Io { op, request } => {
                    let result = self.io(request);
                    self.answers.push_back(Input::IoDone { op, result });
                }
                Effect::Spawn { proc, .. } => {
                    self.answers.push_back(Input::Spawned { proc, pid: None });
                    for line in [PROGRESS_LINE, RESULT_LINE] {
                        let line = line.to_owned();
                        self.answers.push_back(Input::StdoutLine { proc, line });
                    }
                    self.answers.push_back(Input::StdoutClosed { proc });
                    self.answers.push_back(Input::StderrClosed { proc });
                    let status = ExitStatus::Code(0);
                    self.answers.push_back(Input::Exited { proc, status });
                }
                Effect::Kill { .. } | Effect::Log { .. } => {}
                Effect::Exit { .. } => self.exited = true,
            }
        }
        if let Some((at, _)) = self.core.poll_timeout() {
            assert!(at >= self.now, "deadline {at} is before now {}", self.now);
        }
    }

    fn record_request(&mut self, line: &str) {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(line) else {
            return;
        };
        // Any object with an id may be answered (an error for a malformed request echoes
        // the id); a client's response reusing an id just makes that id ambiguous.
        let Some(id) = msg.get("id") else {
            return;
        };
        if id.is_string() || id.is_i64() || id.is_u64() {
            let key = id.to_string();
            let fresh = !self.requests.contains_key(&key);
            self.requests.insert(key, fresh.then_some(0));
        }
    }

    fn check_send(&mut self, line: &str) {
        assert!(
            !line.contains('\n'),
            "a sent line holds a newline: {line:?}"
        );
        let msg: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("sent line is not JSON ({e}): {line}"));
        assert_eq!(msg["jsonrpc"], "2.0", "not JSON-RPC 2.0: {line}");
        if msg.get("method").is_some() {
            assert!(msg.get("id").is_none(), "we never send requests: {line}");
            return;
        }
        let has_result = msg.get("result").is_some();
        let has_error = msg.get("error").is_some();
        assert!(
            has_result != has_error,
            "a reply needs result xor error: {line}"
        );
        let id = &msg["id"];
        if id.is_null() {
            assert!(has_error, "only an error may have a null id: {line}");
            return;
        }
        match self.requests.get_mut(&id.to_string()) {
            None => panic!("reply to a request never sent: {line}"),
            Some(None) => {}
            Some(Some(count)) => {
                *count += 1;
                assert_eq!(*count, 1, "second reply to {id}: {line}");
            }
        }
    }

    fn io(&mut self, request: IoRequest) -> IoResult {
        match request {
            IoRequest::ReadConfig { lock, .. } => {
                if lock {
                    assert!(!self.lock_held, "config lock taken twice");
                    self.lock_held = true;
                }
                IoResult::Config {
                    result: Ok(Some(self.config.clone().into_bytes())),
                }
            }
            IoRequest::WriteConfig { contents, .. } => {
                assert!(self.lock_held, "config written without the lock");
                self.lock_held = false;
                self.config = contents;
                IoResult::Written { result: Ok(()) }
            }
            IoRequest::UnlockConfig { .. } => {
                assert!(self.lock_held, "config unlocked without the lock");
                self.lock_held = false;
                IoResult::Written { result: Ok(()) }
            }
            IoRequest::ProbeDirs { dirs, .. } => IoResult::Probes {
                probes: dirs
                    .into_iter()
                    .map(|dir| DirProbe {
                        state: if dir.starts_with("/work") {
                            DirState::Dir
                        } else {
                            DirState::Missing
                        },
                        resolved: Some(dir.clone()),
                        dir,
                        ..DirProbe::default()
                    })
                    .collect(),
            },
            IoRequest::WriteJob { id, contents, .. } => {
                assert!(
                    agent_dispatch_core::jobs::valid_job_id(&id),
                    "core asked to write job {id:?}"
                );
                self.jobs.insert(id, contents);
                IoResult::Written { result: Ok(()) }
            }
            IoRequest::ListJobs { .. } => {
                let modified = 1_800_000_000.0 + self.now.as_duration().as_secs_f64();
                let files = self
                    .jobs
                    .iter()
                    .map(|(id, text)| JobFile {
                        id: id.clone(),
                        modified,
                        size: text.len() as u64,
                    })
                    .collect();
                IoResult::JobList { result: Ok(files) }
            }
            IoRequest::ReadJobs { ids, .. } => IoResult::Jobs {
                records: ids
                    .iter()
                    .map(|id| Ok(self.jobs.get(id).cloned()))
                    .collect(),
            },
            IoRequest::DeleteJobs { ids, .. } => IoResult::Deleted {
                result: Ok(ids
                    .iter()
                    .filter(|id| self.jobs.remove(*id).is_some())
                    .count()),
            },
        }
    }
}
