//! The effect executor: turns each core `Effect` into real work and reports results back as
//! `Input`s on the driver's channel.

pub mod files;
pub mod guard;
pub mod jobs;
mod process;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agent_dispatch_core::{ClientId, Effect, Input, LogLevel};
use async_channel::{Receiver, Sender};
use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use smol::Task;

use self::files::ConfigLocks;
use self::process::Procs;

/// How long [`Executor::close_clients`] waits for queued lines to reach a client.
const CLIENT_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Applies effects. Owns client writers, children and config locks.
///
/// `apply` never blocks: file work runs on `smol::unblock`, writes go through a per-client
/// queue, process output is read by tasks on smol's global executor. Call `apply` from a thread
/// that lives as long as the children (the drive loop's thread): on Linux the children's
/// parent-death signal is tied to the thread that spawned them.
#[derive(Debug)]
pub struct Executor {
    inputs: Sender<Input>,
    clients: BTreeMap<ClientId, ClientWriter>,
    /// Writers of removed clients still writing their last queued lines.
    closing: Vec<Task<()>>,
    procs: Procs,
    locks: Arc<ConfigLocks>,
    exit_code: Option<i32>,
}

#[derive(Debug)]
struct ClientWriter {
    lines: Sender<String>,
    task: Task<()>,
}

impl Executor {
    /// An executor that reports results on `inputs`.
    pub fn new(inputs: Sender<Input>) -> Self {
        Executor {
            inputs,
            clients: BTreeMap::new(),
            closing: Vec::new(),
            procs: Procs::default(),
            locks: Arc::new(ConfigLocks::new()),
            exit_code: None,
        }
    }

    /// Routes `Effect::Send` for `client` to `writer`, one line at a time, in order.
    pub fn add_client<W>(&mut self, client: ClientId, writer: W)
    where
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (lines, queue) = async_channel::unbounded();
        let task = smol::spawn(write_lines(client, writer, queue));
        if let Some(old) = self.clients.insert(client, ClientWriter { lines, task }) {
            old.lines.close();
            old.task.detach();
        }
    }

    /// Stops sending to `client`; lines already queued are still written (before
    /// [`Executor::close_clients`] returns), then the writer is closed.
    pub fn remove_client(&mut self, client: ClientId) {
        self.closing.retain(|task| !task.is_finished());
        if let Some(writer) = self.clients.remove(&client) {
            writer.lines.close();
            self.closing.push(writer.task);
        }
    }

    /// Executes one effect. Results arrive later on the input channel.
    /// Tells the executor an input is about to reach the core (it releases a child's
    /// stdout backpressure token). The drive loop calls it for every input.
    pub fn delivered(&self, input: &Input) {
        if let Input::StdoutLine { proc, .. } = input {
            self.procs.delivered(*proc);
        }
    }

    pub fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Send { client, line } => {
                // An unknown or departed client: its reply has nowhere to go.
                if let Some(writer) = self.clients.get(&client) {
                    let _ = writer.lines.try_send(line);
                }
            }
            Effect::Spawn { proc, spec } => self.procs.spawn(proc, spec, &self.inputs),
            Effect::Kill { proc, signal } => self.procs.kill(proc, signal),
            Effect::Io { op, request } => {
                let locks = self.locks.clone();
                let inputs = self.inputs.clone();
                smol::spawn(async move {
                    let result = smol::unblock(move || locks.perform(request)).await;
                    let _ = inputs.send(Input::IoDone { op, result }).await;
                })
                .detach();
            }
            Effect::Log { level, message } => crate::log(level, &message),
            Effect::Exit { code } => self.exit_code = Some(code),
        }
    }

    /// The code from `Effect::Exit`, once it was applied.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    /// Closes every client after its queued lines are written (waiting at most a few
    /// seconds for a stuck client). Call before exiting so the last replies are not lost.
    pub async fn close_clients(&mut self) {
        let writers = std::mem::take(&mut self.clients);
        for writer in writers.values() {
            writer.lines.close();
        }
        let mut tasks = std::mem::take(&mut self.closing);
        tasks.extend(writers.into_values().map(|writer| writer.task));
        let all = async {
            for task in tasks {
                task.await;
            }
        };
        futures_lite::future::or(all, async {
            smol::Timer::after(CLIENT_FLUSH_LIMIT).await;
            crate::log(
                LogLevel::Warn,
                "a client did not take its last lines in time",
            );
        })
        .await;
    }
}

/// Writes queued lines to one client, flushing whenever the queue runs dry.
async fn write_lines<W>(client: ClientId, mut writer: W, queue: Receiver<String>)
where
    W: AsyncWrite + Unpin,
{
    while let Ok(mut line) = queue.recv().await {
        line.push('\n');
        let mut result = writer.write_all(line.as_bytes()).await;
        if result.is_ok() && queue.is_empty() {
            result = writer.flush().await;
        }
        if let Err(err) = result {
            crate::log(
                LogLevel::Warn,
                &format!("{client}: write failed: {err}; dropping its output"),
            );
            return;
        }
    }
    let _ = writer.close().await;
}
