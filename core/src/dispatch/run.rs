//! One run of `claude`, from its slot request to the `DispatchResult` its owner receives.
//!
//! ```text
//!  queued ──grant──▶ spawning ──Spawned──▶ running ──Exited + pipes closed──▶ finished
//!     │                 │                    │  ▲
//!     │            SpawnFailed          deadline / cancel: TERM ─grace─▶ KILL
//!     ▼                 ▼                    ▼
//!  finished          finished      Exited, then at most LINGER for the pipes ──▶ finished
//! ```
//!
//! The slot is given back only when the leader has really exited (or never started). A
//! result line that already arrived wins over the timeout. A grandchild holding the pipes
//! cannot keep a run alive: after the leader exits we wait at most `LINGER`, then kill the
//! whole process group.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::background::JobKey;
use crate::config::Limits;
use crate::dispatch::argv::{self, Effective, Session};
use crate::dispatch::outcome::{self, DispatchResult, Facts};
use crate::dispatch::stream::{self, Event as StreamEvent};
use crate::engine::{CallId, Core, Event};
use crate::ids::ProcId;
use crate::io::{Effect, ExitStatus, Signal, SpawnError, SpawnSpec};
use crate::timer::TimerKey;

/// How long a stopped child gets between SIGTERM and SIGKILL.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long we wait for the pipes after the leader exited (a descendant may hold them).
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// How long a child may keep running after it printed its result (claude exits right after;
/// one that hangs is stopped so the caller is not held until the timeout).
pub(crate) const RESULT_GRACE: Duration = Duration::from_secs(5);
/// How much non-JSON stdout we keep for the plain-text tier.
pub(crate) const PLAIN_KEEP: usize = 256 * 1024;

/// Who gets a run's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A tool call, and which of its runs this is.
    Call { call: CallId, slot: usize },
    /// A background job.
    Job(JobKey),
}

/// Everything needed to start one run.
#[derive(Debug)]
pub(crate) struct Plan {
    pub owner: Owner,
    pub agent: String,
    pub directory: PathBuf,
    pub effective: Effective,
    pub prompt: String,
    /// The session to resume; `None` starts a fresh one with an id we choose.
    pub resume: Option<String>,
    pub json_mode: bool,
    /// `settings.dispatch_protocol`: the agent is asked for a final `STATUS:` line, which
    /// becomes the result's `outcome`.
    pub protocol: bool,
    /// The `--append-system-prompt` text (the protocol and the agent's standing
    /// instructions); empty = no flag.
    pub system_prompt: String,
    /// `settings.limits`: how much stderr to keep, and the longest stdout line.
    pub limits: Limits,
}

/// One child and what we have learned about it.
#[derive(Debug)]
pub(crate) struct Run {
    owner: Owner,
    agent: String,
    session_id: String,
    fresh: bool,
    retried: bool,
    spec: SpawnSpec,
    timeout: Duration,
    budget: Option<f64>,
    json_mode: bool,
    protocol: bool,
    /// The head of stderr kept (that is where the CLI explains itself).
    stderr_keep: usize,
    started: bool,
    result: Option<Map<String, Value>>,
    stderr: String,
    plain: String,
    events_seen: bool,
    exit: Option<ExitStatus>,
    stdout_closed: bool,
    stderr_closed: bool,
    timed_out: bool,
    stopping: bool,
    spawn_error: Option<SpawnError>,
    /// The result went to the owner (or the owner is gone); we only wait for the reaping.
    delivered: bool,
    /// The owner no longer wants the result.
    cancelled: bool,
}

impl Core {
    /// Starts a run: takes a slot (or queues for one) and spawns when granted. A run that
    /// cannot start (a flag-looking value) is refused here, before anything is spawned.
    pub(crate) fn start_run(&mut self, plan: Plan) -> Result<ProcId, Box<DispatchResult>> {
        if !self.is_serving() {
            // A call whose config arrived after Shutdown: nothing new starts while draining.
            let why = "The server is shutting down; nothing was started. Retry on the next server.";
            return Err(Box::new(DispatchResult::preflight(
                &plan.agent,
                why.into(),
                outcome::ErrorType::CliError,
            )));
        }
        let session_id = plan.resume.clone().unwrap_or_else(|| self.fresh_uuid());
        let session_arg = match &plan.resume {
            Some(id) => Session::Resume(id),
            None => Session::New(&session_id),
        };
        let via_stdin = argv::prompt_via_stdin(&plan.prompt);
        let prompt_arg = (!via_stdin).then_some(plan.prompt.as_str());
        let args = argv::build_args(
            prompt_arg,
            session_arg,
            &plan.effective,
            &plan.system_prompt,
        )
        .map_err(|e| {
            Box::new(DispatchResult::preflight(
                &plan.agent,
                e,
                outcome::ErrorType::CliError,
            ))
        })?;
        let mut env = BTreeMap::new();
        env.insert(
            "AGENT_DISPATCH_DEPTH".to_string(),
            (self.options.depth + 1).to_string(),
        );
        let spec = SpawnSpec {
            program: self.options.claude_program.clone(),
            args,
            cwd: plan.directory.clone(),
            env,
            stdin: via_stdin.then(|| plan.prompt.clone()),
            max_line_bytes: usize::try_from(plan.limits.max_line_bytes).unwrap_or(usize::MAX),
        };
        let proc = self.fresh_proc();
        let run = Run::new(
            plan.owner,
            plan.agent,
            session_id,
            plan.resume.is_none(),
            spec,
            Duration::from_secs(plan.effective.timeout_secs),
            plan.effective.max_budget_usd,
            plan.json_mode,
            plan.protocol,
        );
        let stderr_keep = usize::try_from(plan.limits.stderr_tail_bytes).unwrap_or(usize::MAX);
        self.runs.insert(proc, Run { stderr_keep, ..run });
        if self.limiter.acquire(proc) {
            self.spawn(proc);
        }
        Ok(proc)
    }

    /// The owner gave up (cancelled request, closed client, shutdown): stop its runs and
    /// deliver nothing.
    pub(crate) fn cancel_runs(&mut self, call: CallId) {
        self.cancel_runs_of(|owner| matches!(owner, Owner::Call { call: c, .. } if c == call));
    }

    /// Stops the run of a background job (cancelled): no result is delivered.
    pub(crate) fn cancel_job_run(&mut self, job: JobKey) {
        self.cancel_runs_of(|owner| owner == Owner::Job(job));
    }

    fn cancel_runs_of(&mut self, owned_by: impl Fn(Owner) -> bool) {
        let procs: Vec<ProcId> = self
            .runs
            .iter()
            .filter(|(_, r)| owned_by(r.owner))
            .map(|(p, _)| *p)
            .collect();
        for proc in procs {
            if let Some(run) = self.runs.get_mut(&proc) {
                run.cancelled = true;
                run.delivered = true;
            }
            self.stop(proc);
        }
    }

    /// Stops every run (shutdown). Their owners get the failures.
    pub(crate) fn stop_all_runs(&mut self) {
        let procs: Vec<ProcId> = self.runs.keys().copied().collect();
        for proc in procs {
            self.stop(proc);
        }
    }

    /// Applies `max_concurrency` from a freshly read config; raising it starts queued runs.
    pub(crate) fn resize_limit(&mut self, limit: usize) {
        self.limiter.resize(limit);
        for proc in self.limiter.grant() {
            self.spawn(proc);
        }
    }

    /// How many runs exist (queued, running, or waiting to be reaped).
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Feeds a process fact to its run.
    pub(crate) fn on_process(&mut self, input: ProcInput) {
        let proc = input.proc();
        let Some(run) = self.runs.get_mut(&proc) else {
            return;
        };
        match input {
            ProcInput::Spawned(_) => run.started = true,
            ProcInput::SpawnFailed(_, error) => {
                run.spawn_error = Some(error);
                run.exit = None;
                run.stdout_closed = true;
                run.stderr_closed = true;
                self.timers.cancel(TimerKey::RunDeadline(proc));
                self.release_slot(proc);
                self.finish(proc);
            }
            ProcInput::Stdout(_, line) => self.on_stdout(proc, &line),
            ProcInput::Stderr(_, text) => {
                let room = run.stderr_keep.saturating_sub(run.stderr.len());
                run.stderr.push_str(cut(&text, room));
            }
            ProcInput::StdoutClosed(_) => {
                run.stdout_closed = true;
                self.check_done(proc);
            }
            ProcInput::StderrClosed(_) => {
                run.stderr_closed = true;
                self.check_done(proc);
            }
            ProcInput::Exited(_, status) => {
                run.exit = Some(status);
                self.timers.cancel(TimerKey::RunDeadline(proc));
                self.timers.cancel(TimerKey::KillGrace(proc));
                self.release_slot(proc);
                self.check_done(proc);
            }
        }
    }

    /// A run deadline fired.
    pub(crate) fn on_run_timer(&mut self, key: TimerKey) {
        match key {
            TimerKey::RunDeadline(proc) => {
                if let Some(run) = self.runs.get_mut(&proc) {
                    run.timed_out = run.result.is_none() || run.exit.is_none();
                }
                self.stop(proc);
            }
            TimerKey::KillGrace(proc) => {
                self.effects_push(Effect::Kill {
                    proc,
                    signal: Signal::Kill,
                });
                if !self.timers.is_set(TimerKey::Linger(proc)) {
                    self.timers
                        .set(TimerKey::Linger(proc), self.now().plus(LINGER));
                }
            }
            TimerKey::Linger(proc) => {
                let Some(run) = self.runs.get(&proc) else {
                    return;
                };
                if run.exit.is_none() && !run.stopping {
                    // It printed its result but keeps running: stop it, answer now.
                    self.stop(proc);
                } else if run.exit.is_none() || !run.stdout_closed || !run.stderr_closed {
                    // A descendant still holds our pipes (or the leader ignores signals):
                    // take the whole group down, and answer without waiting any longer.
                    self.effects_push(Effect::Kill {
                        proc,
                        signal: Signal::Kill,
                    });
                }
                self.finish(proc);
            }
            TimerKey::Progress(_)
            | TimerKey::Wait(_)
            | TimerKey::JobWrite(_)
            | TimerKey::IdleExit => {}
        }
    }

    fn spawn(&mut self, proc: ProcId) {
        let Some(run) = self.runs.get(&proc) else {
            return;
        };
        if run.cancelled {
            self.release_slot(proc);
            self.runs.remove(&proc);
            return;
        }
        let (spec, owner) = (run.spec.clone(), run.owner);
        let deadline = self.now().plus(run.timeout);
        self.timers.set(TimerKey::RunDeadline(proc), deadline);
        self.effects_push(Effect::Spawn { proc, spec });
        if let Owner::Job(job) = owner {
            self.job_started(job);
        }
    }

    fn on_stdout(&mut self, proc: ProcId, line: &str) {
        let mut events = Vec::new();
        stream::parse_line(line, &mut events);
        let Some(run) = self.runs.get_mut(&proc) else {
            return;
        };
        run.events_seen |= line.trim_start().starts_with('{');
        if events.is_empty() && !line.trim_start().starts_with('{') {
            let room = PLAIN_KEEP.saturating_sub(run.plain.len());
            let text = cut(line, room);
            run.plain.push_str(text);
            if room > text.len() {
                run.plain.push('\n');
            }
        }
        let (owner, agent, quiet) = (run.owner, run.agent.clone(), run.delivered);
        for event in events {
            match event {
                StreamEvent::Result(result) => {
                    if let Some(run) = self.runs.get_mut(&proc) {
                        run.result = Some(result);
                    }
                    if !self.timers.is_set(TimerKey::Linger(proc)) {
                        self.timers
                            .set(TimerKey::Linger(proc), self.now().plus(RESULT_GRACE));
                    }
                }
                StreamEvent::Progress(message) if !quiet => match owner {
                    Owner::Call { call, .. } => self.progress(call, &agent, &message),
                    Owner::Job(job) => self.job_progress(job, &agent, &message),
                },
                StreamEvent::Progress(_) => {}
            }
        }
    }

    fn stop(&mut self, proc: ProcId) {
        let Some(run) = self.runs.get_mut(&proc) else {
            return;
        };
        self.timers.cancel(TimerKey::RunDeadline(proc));
        if !run.started && run.spawn_error.is_none() && run.exit.is_none() {
            // Still queued (or the spawn is in flight): a queued one just leaves the queue.
            if !self.limiter.is_running(proc) {
                self.limiter.release(proc);
                run.stdout_closed = true;
                run.stderr_closed = true;
                run.exit = Some(ExitStatus::Signal(15));
                self.finish(proc);
                return;
            }
        }
        if run.stopping || run.exit.is_some() {
            if run.exit.is_some() && !self.timers.is_set(TimerKey::Linger(proc)) {
                self.finish(proc);
            }
            return;
        }
        run.stopping = true;
        self.effects_push(Effect::Kill {
            proc,
            signal: Signal::Term,
        });
        self.timers
            .set(TimerKey::KillGrace(proc), self.now().plus(KILL_GRACE));
    }

    fn check_done(&mut self, proc: ProcId) {
        let Some(run) = self.runs.get(&proc) else {
            return;
        };
        if run.exit.is_none() {
            return;
        }
        if run.stdout_closed && run.stderr_closed {
            self.finish(proc);
        } else {
            // The leader is gone: its pipes get at most LINGER more, even when a longer
            // grace was running (the result grace while the leader still lived).
            self.timers
                .set_at_most(TimerKey::Linger(proc), self.now().plus(LINGER));
        }
    }

    fn release_slot(&mut self, proc: ProcId) {
        for next in self.limiter.release(proc) {
            self.spawn(next);
        }
    }

    /// Turns what we know into a result and hands it to the owner, once.
    fn finish(&mut self, proc: ProcId) {
        self.timers.cancel(TimerKey::Linger(proc));
        let Some(run) = self.runs.get_mut(&proc) else {
            return;
        };
        let reaped = run.exit.is_some() || run.spawn_error.is_some();
        if run.delivered {
            if reaped {
                self.runs.remove(&proc);
            }
            return;
        }
        run.delivered = true;
        let old_cli = run.fresh && !run.retried && run.result.is_none() && !run.timed_out;
        if old_cli && argv::old_cli_rejects_session_id(&run.stderr) {
            // A CLI too old for --session-id: try once more without it.
            let mut spec = run.spec.clone();
            spec.args = argv::without_session_id(&spec.args);
            let again = run.again(spec);
            if reaped {
                self.runs.remove(&proc);
            }
            let retry = self.fresh_proc();
            self.runs.insert(retry, again);
            if self.limiter.acquire(retry) {
                self.spawn(retry);
            }
            return;
        }
        let facts = Facts {
            agent: &run.agent,
            session_id: &run.session_id,
            result: run.result.as_ref(),
            exit: run.exit,
            stderr: &run.stderr,
            plain_stdout: &run.plain,
            events_seen: run.events_seen,
            timed_out: run.timed_out,
            timeout_secs: run.timeout.as_secs(),
            spawn_error: run.spawn_error.as_ref(),
            json_mode: run.json_mode,
            budget: run.budget,
            protocol: run.protocol,
        };
        let result = outcome::outcome(&facts);
        let owner = run.owner;
        if reaped {
            self.runs.remove(&proc);
        }
        self.deliver(owner, result);
    }

    fn deliver(&mut self, owner: Owner, result: DispatchResult) {
        match owner {
            Owner::Call { call, slot } => {
                self.advance_call(
                    call,
                    Event::RunDone {
                        slot,
                        result: Box::new(result),
                    },
                );
            }
            Owner::Job(job) => self.job_finished(job, result),
        }
    }
}

/// A process fact, as routed to a run.
#[derive(Debug)]
pub(crate) enum ProcInput {
    Spawned(ProcId),
    SpawnFailed(ProcId, SpawnError),
    Stdout(ProcId, String),
    Stderr(ProcId, String),
    StdoutClosed(ProcId),
    StderrClosed(ProcId),
    Exited(ProcId, ExitStatus),
}

impl ProcInput {
    fn proc(&self) -> ProcId {
        match self {
            ProcInput::Spawned(p)
            | ProcInput::SpawnFailed(p, _)
            | ProcInput::Stdout(p, _)
            | ProcInput::Stderr(p, _)
            | ProcInput::StdoutClosed(p)
            | ProcInput::StderrClosed(p)
            | ProcInput::Exited(p, _) => *p,
        }
    }
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    fn new(
        owner: Owner,
        agent: String,
        session_id: String,
        fresh: bool,
        spec: SpawnSpec,
        timeout: Duration,
        budget: Option<f64>,
        json_mode: bool,
        protocol: bool,
    ) -> Self {
        Run {
            owner,
            agent,
            session_id,
            fresh,
            retried: false,
            spec,
            timeout,
            budget,
            json_mode,
            protocol,
            stderr_keep: crate::config::Limits::default().stderr_tail_bytes as usize,
            started: false,
            result: None,
            stderr: String::new(),
            plain: String::new(),
            events_seen: false,
            exit: None,
            stdout_closed: false,
            stderr_closed: false,
            timed_out: false,
            stopping: false,
            spawn_error: None,
            delivered: false,
            cancelled: false,
        }
    }

    /// The same run again, with other arguments (the old-CLI retry).
    fn again(&self, spec: SpawnSpec) -> Self {
        let agent = self.agent.clone();
        let session_id = self.session_id.clone();
        let fresh = Run::new(
            self.owner,
            agent,
            session_id,
            self.fresh,
            spec,
            self.timeout,
            self.budget,
            self.json_mode,
            self.protocol,
        );
        Run {
            retried: true,
            cancelled: self.cancelled,
            stderr_keep: self.stderr_keep,
            ..fresh
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
