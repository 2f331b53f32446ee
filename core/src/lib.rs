//! `agent-dispatch-core`: the sans-IO heart of agent-dispatch.
//!
//! The core is a pure, deterministic state machine. It never reads a clock, touches the file
//! system, spawns a process or draws randomness: a *driver* does all of that and tells the
//! core what happened. The same core therefore runs over stdio, over a Unix socket, inside a
//! replay harness on a virtual clock, or inside any host that can run processes.
//!
//! # The run loop
//!
//! ```no_run
//! use agent_dispatch_core::{Core, Effect, Input, Options, Timestamp};
//! # fn now() -> Timestamp { Timestamp::ZERO }
//! # fn next_input_or_deadline(_: Option<Timestamp>) -> Input { Input::Shutdown }
//! # fn execute(_: Effect) {}
//! let mut core = Core::new(Options::default(), now());
//! loop {
//!     // 1. Drain every effect after every `handle`: replies, spawns, kills, file work.
//!     while let Some(effect) = core.poll_effect() {
//!         execute(effect); // I/O results come back later as `Input`s
//!     }
//!     if core.is_finished() {
//!         break;
//!     }
//!     // 2. Sleep until the next input or the single deadline, whichever comes first.
//!     let deadline = core.poll_timeout().map(|(at, _why)| at);
//!     let input = next_input_or_deadline(deadline); // `Input::Timeout` at the deadline
//!     // 3. Feed the fact. `Err` means the driver broke the contract, never bad input.
//!     core.handle(now(), input).expect("driver contract");
//! }
//! ```
//!
//! The contract:
//! - Call [`Core::handle`] with one past-tense [`Input`] and the current [`Timestamp`].
//! - Then drain [`Core::poll_effect`] to `None` and execute each [`Effect`] in order.
//!   `Effect::Io` and `Effect::Spawn` are answered later by `Input::IoDone` / `Input::Spawned`
//!   and friends carrying the same id.
//! - Then read [`Core::poll_timeout`]: the one deadline to sleep until. When it passes, feed
//!   `Input::Timeout`. Early or spurious timeouts are harmless.
//! - Stop once [`Core::is_finished`] (after `Effect::Exit`).
//!
//! A complete host in plain standard library (a thread per pipe, the standard library's `Command`, one
//! `std::sync::mpsc` channel and `recv_timeout` for the deadline; no async runtime) is
//! `examples/blocking_host.rs`: `cargo run --example blocking_host` serves MCP on
//! stdin/stdout. The async drivers in `agent-dispatch-transports` run the same loop in production.
//!
//! Everything the outside world does wrong (malformed JSON-RPC, unknown tools, a broken
//! `agents.yaml`, a crashing child) is a normal input that produces a reply. Only driver
//! misuse (an unknown op or process id) is an `Err`.

#![forbid(unsafe_code)]

mod background;
pub mod config;
pub mod describe;
mod dispatch;
mod engine;
/// For fuzz targets and property tests only: not part of the API (see the module docs).
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod io;
pub mod jobs;
mod jsonrpc;
mod mcp;
mod time;
mod timer;
mod tools;

pub use engine::{Core, CoreError, Options, TimeoutReason};
pub use ids::{ClientId, OpId, ProcId};
pub use io::{
    DirProbe, DirState, Effect, EntryKind, ExitStatus, Input, IoRequest, IoResult, JobFile,
    LogLevel, Signal, SpawnError, SpawnErrorKind, SpawnSpec,
};
pub use time::Timestamp;
pub use timer::TimerKey;
