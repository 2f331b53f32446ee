//! `agent-dispatch-transports`: the smol drivers around `agent-dispatch-core`.
//!
//! A driver does the I/O and owns the clock; the core decides. Every transport shares one
//! drive loop ([`Driver::run`]): effects go to the [`Executor`], facts come back on one input
//! channel, and the loop sleeps until the next input or the core's one deadline.
//!
//! Transports: [`stdio`] (one client), [`unix`] (the daemon: one core for every session, each
//! connection its own client), [`proxy`] (stdio relayed to the daemon), [`local`] (an
//! in-process client) and [`replay`] (scripted, on a virtual clock, for tests).
//!
//! ```no_run
//! // The `serve` subcommand, over stdio:
//! # let options = agent_dispatch_core::Options::default();
//! let code = agent_dispatch_transports::stdio::serve(options);
//! std::process::exit(code);
//! ```

mod client;
mod clock;
mod exec;
mod lines;
pub mod local;
pub mod proxy;
pub mod remote;
pub mod replay;
mod signals;
pub mod stdio;
pub mod unix;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_dispatch_core::{ClientId, Core, Input, LogLevel};
use async_channel::{Receiver, Sender};
use futures_lite::future;
use futures_lite::io::AsyncWrite;
use smol::Timer;

pub use client::{read_client, OVERSIZED_LINE};
pub use clock::Clock;
pub use exec::files;
pub use exec::guard::{run_guard, use_guard, GuardCommand};
pub use exec::jobs;
pub use exec::Executor;
pub use lines::{Line, LineReader, MAX_LINE};

/// One core's surroundings: the clock, the input channel and the executor.
///
/// Build it, register clients on [`Driver::executor`], hand [`Driver::inputs`] to whatever
/// reads from clients, then [`Driver::run`] the core.
#[derive(Debug)]
pub struct Driver {
    clock: Clock,
    inputs: Sender<Input>,
    queue: Receiver<Input>,
    executor: Executor,
    joins: Receiver<Join>,
    connector: Connector,
}

impl Driver {
    /// A driver whose clock starts now.
    pub fn new() -> Self {
        // Unbounded: `Executor::apply` must never wait on the loop that calls it.
        let (inputs, queue) = async_channel::unbounded();
        let (joining, joins) = async_channel::unbounded();
        Driver {
            clock: Clock::new(),
            executor: Executor::new(inputs.clone()),
            inputs,
            queue,
            joins,
            connector: Connector { joining },
        }
    }

    /// The clock the core's timestamps come from (for `Options::unix_time_at_epoch`).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// A sender for client facts (`ClientConnected`, `ClientLine`, `Shutdown`, ...).
    pub fn inputs(&self) -> Sender<Input> {
        self.inputs.clone()
    }

    /// The executor, to add or remove clients before the core runs.
    pub fn executor(&mut self) -> &mut Executor {
        &mut self.executor
    }

    /// A handle that adds clients while the core runs (the socket daemon's connections).
    pub fn connector(&self) -> Connector {
        self.connector.clone()
    }

    /// Drives `core` until it exits; returns its exit code. Queued client lines are written
    /// before this returns.
    ///
    /// A client's writer is closed once the core has handled its `ClientClosed` (after the
    /// lines queued for it are written): the core never writes to a closed client again.
    pub async fn run(mut self, core: Core) -> i32 {
        drive(
            core,
            &self.clock,
            &self.queue,
            &self.joins,
            &mut self.executor,
        )
        .await
    }
}

/// Adds clients to a running [`Driver`] (see [`Driver::connector`]).
#[derive(Debug, Clone)]
pub struct Connector {
    joining: Sender<Join>,
}

/// A client's writer on its way to the executor.
struct Join {
    client: ClientId,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
}

impl std::fmt::Debug for Join {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Join")
            .field("client", &self.client)
            .finish()
    }
}

impl Connector {
    /// Routes `Effect::Send` for `client` to `writer`. Call it *before* sending the client's
    /// `Input::ClientConnected` on [`Driver::inputs`]: the drive loop takes new writers in
    /// before it handles the next input, so the writer is in place when the core first
    /// speaks to the client. Returns false when the driver has stopped.
    pub fn add_client<W>(&self, client: ClientId, writer: W) -> bool
    where
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let join = Join {
            client,
            writer: Box::new(writer),
        };
        self.joining.try_send(join).is_ok()
    }
}

impl Default for Driver {
    fn default() -> Self {
        Driver::new()
    }
}

/// The drive loop: drain effects, stop when finished, wait for an input or the deadline, feed.
async fn drive(
    mut core: Core,
    clock: &Clock,
    queue: &Receiver<Input>,
    joins: &Receiver<Join>,
    executor: &mut Executor,
) -> i32 {
    let mut closed = None;
    loop {
        while let Some(effect) = core.poll_effect() {
            executor.apply(effect);
        }
        if let Some(client) = closed.take() {
            executor.remove_client(client);
        }
        if core.is_finished() {
            break;
        }
        let deadline = core.poll_timeout().map(|(at, _why)| at);
        let input = match deadline {
            // Checked first so a busy input channel cannot starve the deadline.
            Some(at) if at <= clock.now() => Input::Timeout,
            _ => {
                let wake = deadline.map(|at| clock.instant(at));
                match next_input(queue, wake).await {
                    Some(input) => input,
                    None => {
                        // Cannot happen while the executor holds a sender; never spin on it.
                        log(LogLevel::Warn, "input channel closed; stopping");
                        executor.close_clients().await;
                        return 1;
                    }
                }
            }
        };
        // Writers first: a client's `ClientConnected` is sent after its writer (`Connector`).
        while let Ok(join) = joins.try_recv() {
            executor.add_client(join.client, join.writer);
        }
        if let Input::ClientClosed { client } = &input {
            closed = Some(*client);
        }
        executor.delivered(&input);
        if let Err(err) = core.handle(clock.now(), input) {
            log(LogLevel::Warn, &format!("driver bug: {err}"));
        }
    }
    executor.close_clients().await;
    executor.exit_code().unwrap_or(0)
}

/// The next input, or `Timeout` at `wake`. `None` when the channel is closed.
async fn next_input(queue: &Receiver<Input>, wake: Option<std::time::Instant>) -> Option<Input> {
    let recv = async { queue.recv().await.ok() };
    match wake {
        None => recv.await,
        Some(at) => {
            future::or(recv, async {
                Timer::at(at).await;
                Some(Input::Timeout)
            })
            .await
        }
    }
}

/// Whether [`log`] writes `info` lines (see [`set_info_logs`]).
static INFO_LOGS: AtomicBool = AtomicBool::new(true);

/// Turns `info` log lines on or off for the whole process; warnings always show. The CLI
/// turns them off: it reports what a tool did in its own words.
pub fn set_info_logs(on: bool) {
    INFO_LOGS.store(on, Ordering::Relaxed);
}

/// Writes one diagnostic line to stderr: `agent-dispatch: <level>: <message>`.
///
/// Newlines in `message` are escaped so each log entry stays one line. A closed stderr is
/// ignored (never a panic).
pub fn log(level: LogLevel, message: &str) {
    if level == LogLevel::Info && !INFO_LOGS.load(Ordering::Relaxed) {
        return;
    }
    let message = message.replace('\n', "\\n");
    let _ = writeln!(
        std::io::stderr().lock(),
        "agent-dispatch: {level}: {message}"
    );
}
