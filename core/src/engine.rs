//! The `Core` state machine: routes inputs to MCP sessions and tool calls, queues effects.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;

use crate::io::{Effect, Input};
use crate::time::Timestamp;

/// Facts about the host the core needs but may not look up itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    /// The `agents.yaml` path (from `AGENT_DISPATCH_CONFIG` or the default).
    pub config_path: PathBuf,
    /// The user's home directory, for `~` in configured paths.
    pub home: PathBuf,
    /// The server's working directory, for relative configured paths.
    pub cwd: PathBuf,
    /// Seed for ids the core generates (session ids, job ids).
    pub seed: u64,
    /// Unix time in seconds at the driver's epoch (`Timestamp::ZERO`).
    pub unix_time_at_epoch: f64,
}

/// Why the core wants to be woken (for logs and replay timelines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeoutReason {
    /// A run reached its deadline.
    RunDeadline,
}

/// Driver misuse: the driver broke the run-loop contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// An input arrived after `Effect::Exit`.
    AfterExit,
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::AfterExit => f.write_str("input after the core exited"),
        }
    }
}

impl std::error::Error for CoreError {}

/// The agent-dispatch state machine. See the crate docs for the run loop.
#[derive(Debug)]
pub struct Core {
    options: Options,
    effects: VecDeque<Effect>,
    exited: bool,
    now: Timestamp,
}

impl Core {
    /// Creates a core at `now` (usually `Timestamp::ZERO`).
    pub fn new(options: Options, now: Timestamp) -> Self {
        Core { options, effects: VecDeque::new(), exited: false, now }
    }

    /// Feeds one fact. `Err` only when the driver broke the contract.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<(), CoreError> {
        if self.exited {
            return Err(CoreError::AfterExit);
        }
        self.now = self.now.max(now);
        let _ = (&self.options, input);
        Ok(())
    }

    /// Returns the next queued effect. Drain to `None` after every `handle`.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Returns the one deadline the driver should sleep until, and why.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Timestamp, TimeoutReason)> {
        None
    }

    /// Returns true once `Effect::Exit` has been emitted.
    pub fn is_finished(&self) -> bool {
        self.exited
    }
}
