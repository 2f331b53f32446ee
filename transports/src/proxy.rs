//! The stdio ↔ socket proxy (`agent-dispatch serve --connect`): what Claude Code launches
//! when every session should share one daemon.
//!
//! Lines are relayed both ways unchanged. The proxy reads just enough of each one to know
//! which requests are in flight: when the daemon goes away, each of them gets a JSON-RPC
//! error from the proxy ([`DAEMON_GONE`]) instead of waiting for ever, and the next line
//! reconnects (starting a daemon when none runs) and replays the session's `initialize`, so a
//! restarted daemon is invisible between requests.
//!
//! Starting a daemon is serialised by an exclusive lock on `<socket>.lock`: whoever holds it
//! checks for a live daemon, starts one when there is none and waits until it answers, so
//! proxies starting at the same instant end up with exactly one daemon. A new connection must
//! answer a `ping` before any client line goes through: a daemon on its way out (killed, or at
//! its idle exit) can still accept a connection it will never serve, and is waited out instead
//! of failing the next request.
//!
//! At the end of stdin the proxy shuts the socket's write half and exits once the daemon has
//! closed its side (the daemon has then cancelled whatever the session still had running).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_dispatch_core::LogLevel;
use async_channel::{Receiver, Sender};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use smol::{Async, Timer};

use crate::lines::{LineReader, MAX_LINE};
use crate::unix::{self, Half};
use crate::OVERSIZED_LINE;

/// The JSON-RPC error code of the proxy's own errors (implementation-defined server error).
pub const PROXY_ERROR: i64 = -32000;
/// What a request in flight gets when the daemon goes away before answering it.
pub const DAEMON_GONE: &str = "agent-dispatch daemon went away; the request was not completed";

/// How long a started daemon gets to accept connections.
const START_LIMIT: Duration = Duration::from_secs(5);
/// How long to wait for another proxy that is starting the daemon.
const LOCK_LIMIT: Duration = Duration::from_secs(15);
/// After the end of stdin: how long the daemon gets to close its side.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How long queued lines get to reach stdout before the proxy exits.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// Polling interval while waiting for a lock or a starting daemon.
const POLL: Duration = Duration::from_millis(20);
/// How long a daemon gets to answer the proxy's `ping` on a new connection.
const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// The id of that `ping`.
const PROBE_ID: &str = "agent-dispatch-proxy-probe";

/// Where the daemon is and how to start it.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The program that starts a daemon on `socket` (this binary).
    pub daemon_program: PathBuf,
    /// Its arguments (`serve --daemon --socket <socket>`).
    pub daemon_args: Vec<OsString>,
}

impl ProxyConfig {
    /// The folder of the socket, where the daemon's log goes too.
    fn dir(&self) -> &Path {
        match self.socket.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// `daemon.log` beside the socket: the stderr of daemons the proxy starts.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("daemon.log")
    }
}

/// Relays this process's stdin/stdout to the daemon until stdin ends; returns the exit
/// code. Exit the process with it: a thread may still be blocked reading stdin.
pub fn serve(config: ProxyConfig) -> i32 {
    let (stdin, stdout) = crate::stdio::std_streams();
    smol::block_on(run(config, stdin, stdout))
}

/// [`serve`] over any byte streams.
pub async fn run<R, W>(config: ProxyConfig, input: R, output: W) -> i32
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (events, queue) = async_channel::unbounded();
    let client_events = events.clone();
    smol::spawn(async move {
        let mut lines = LineReader::new(input, MAX_LINE);
        while let Ok(Some(line)) = lines.next_line().await {
            let text = if line.truncated {
                OVERSIZED_LINE.to_owned()
            } else {
                line.into_text()
            };
            if client_events.send(Event::Client(Some(text))).await.is_err() {
                return;
            }
        }
        let _ = client_events.send(Event::Client(None)).await;
    })
    .detach();
    let (out, out_queue) = async_channel::unbounded();
    let out_events = events.clone();
    let writer = smol::spawn(async move {
        if let Err(e) = pump(output, out_queue).await {
            crate::log(LogLevel::Warn, &format!("cannot write to stdout: {e}"));
            let _ = out_events.send(Event::OutputFailed).await;
        }
    });
    let mut proxy = Proxy {
        config,
        events,
        out,
        conn: None,
        generation: 0,
        in_flight: BTreeMap::new(),
        initialize: None,
        initialized: false,
        connected_before: false,
        swallow: None,
        stdin_closed: false,
    };
    proxy.relay(&queue).await;
    drop(proxy.conn.take());
    proxy.out.close();
    future::or(writer, async {
        Timer::after(FLUSH_LIMIT).await;
    })
    .await;
    0
}

/// What the relay loop reacts to.
#[derive(Debug)]
enum Event {
    /// A line from the client; `None` at the end of stdin.
    Client(Option<String>),
    /// A line from connection `generation` to the daemon; `None` when it closed.
    Daemon(u64, Option<String>),
    /// Stdout is gone: nobody reads our answers any more.
    OutputFailed,
}

/// The current connection to the daemon.
#[derive(Debug)]
struct Conn {
    lines: Sender<String>,
}

#[derive(Debug)]
struct Proxy {
    config: ProxyConfig,
    events: Sender<Event>,
    out: Sender<String>,
    conn: Option<Conn>,
    /// Counts connections; lines of an older one are ignored.
    generation: u64,
    /// Requests sent and not answered yet, by their id's JSON text.
    in_flight: BTreeMap<String, Value>,
    /// The client's `initialize` params, replayed to a daemon we reconnect to.
    initialize: Option<Value>,
    initialized: bool,
    connected_before: bool,
    /// The id (JSON text) of a replayed `initialize`, whose reply the client must not see.
    swallow: Option<String>,
    stdin_closed: bool,
}

impl Proxy {
    async fn relay(&mut self, queue: &Receiver<Event>) {
        let mut drain_until = None;
        loop {
            let next = async { queue.recv().await.ok() };
            let event = match drain_until {
                None => next.await,
                Some(at) => {
                    future::or(next, async {
                        Timer::at(at).await;
                        None
                    })
                    .await
                }
            };
            match event {
                None | Some(Event::OutputFailed) => return,
                Some(Event::Client(Some(line))) => self.client_line(line).await,
                Some(Event::Client(None)) => {
                    self.stdin_closed = true;
                    let Some(conn) = &self.conn else { return };
                    // The writer sends what is queued, then shuts the write half.
                    conn.lines.close();
                    drain_until = Some(Instant::now() + DRAIN_LIMIT);
                }
                Some(Event::Daemon(generation, line)) if generation == self.generation => {
                    match line {
                        Some(line) => self.daemon_line(line),
                        None => {
                            self.daemon_gone();
                            if self.stdin_closed {
                                return;
                            }
                        }
                    }
                }
                Some(Event::Daemon(..)) => {}
            }
        }
    }

    async fn client_line(&mut self, line: String) {
        let request = self.track_request(&line);
        if self.conn.is_none() {
            if let Err(why) = self.connect().await {
                crate::log(LogLevel::Warn, &why);
                if let Some(key) = request {
                    if let Some(id) = self.in_flight.remove(&key) {
                        let message = format!("agent-dispatch daemon is not available: {why}");
                        let _ = self.out.try_send(error_line(&id, &message));
                    }
                }
                return;
            }
        }
        if let Some(conn) = &self.conn {
            let _ = conn.lines.try_send(line);
        }
    }

    /// Notes what a client line means for the requests in flight; returns the key of the
    /// request it starts, if any.
    fn track_request(&mut self, line: &str) -> Option<String> {
        let Ok(peek) = serde_json::from_str::<Peek>(line) else {
            return None;
        };
        let method = peek.method?;
        match (peek.id, method.as_str()) {
            (Some(id), _) if id.is_string() || id.is_number() => {
                if method == "initialize" {
                    self.initialize = full(line).get("params").cloned();
                }
                let key = id.to_string();
                self.in_flight.insert(key.clone(), id);
                Some(key)
            }
            (None, "notifications/initialized") => {
                self.initialized = true;
                None
            }
            (None, "notifications/cancelled") => {
                // A cancelled request gets no reply: it is no longer waiting for one.
                if let Some(id) = full(line).get("params").and_then(|p| p.get("requestId")) {
                    self.in_flight.remove(&id.to_string());
                }
                None
            }
            _ => None,
        }
    }

    fn daemon_line(&mut self, line: String) {
        if let Ok(peek) = serde_json::from_str::<ReplyPeek>(&line) {
            if let (Some(id), None) = (peek.id, peek.method) {
                let key = id.to_string();
                if self.swallow.as_ref() == Some(&key) {
                    self.swallow = None;
                    return;
                }
                self.in_flight.remove(&key);
            }
        }
        let _ = self.out.try_send(line);
    }

    /// The daemon closed the connection: every request still in flight gets an error, and
    /// the next client line reconnects.
    fn daemon_gone(&mut self) {
        self.conn = None;
        self.swallow = None;
        if self.stdin_closed {
            return;
        }
        let failed = std::mem::take(&mut self.in_flight);
        if failed.is_empty() {
            crate::log(
                LogLevel::Info,
                "the agent-dispatch daemon closed the connection; reconnecting at the next request",
            );
            return;
        }
        crate::log(
            LogLevel::Warn,
            &format!(
                "the agent-dispatch daemon went away with {} request(s) unanswered; they got an error, and the next request reconnects",
                failed.len()
            ),
        );
        for id in failed.values() {
            let _ = self.out.try_send(error_line(id, DAEMON_GONE));
        }
    }

    /// Connects to the daemon (starting one when none runs) and, after a reconnect, replays
    /// the session's handshake.
    async fn connect(&mut self) -> Result<(), String> {
        let config = self.config.clone();
        let stream = smol::unblock(move || connect_or_start(&config)).await?;
        let stream = Arc::new(
            Async::new(stream).map_err(|e| format!("cannot watch the daemon connection: {e}"))?,
        );
        self.generation += 1;
        let generation = self.generation;
        let events = self.events.clone();
        let reader = Half(stream.clone());
        smol::spawn(async move {
            let mut lines = LineReader::new(reader, MAX_LINE);
            while let Ok(Some(line)) = lines.next_line().await {
                let text = line.into_text();
                if events
                    .send(Event::Daemon(generation, Some(text)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = events.send(Event::Daemon(generation, None)).await;
        })
        .detach();
        let (lines, queue) = async_channel::unbounded();
        smol::spawn(async move {
            // A failed write shows up as the end of the daemon's output too.
            let _ = pump(Half(stream), queue).await;
        })
        .detach();
        if self.connected_before {
            if let Some(params) = &self.initialize {
                let id = json!(format!("agent-dispatch-proxy-reconnect-{generation}"));
                self.swallow = Some(id.to_string());
                let init =
                    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": params});
                let _ = lines.try_send(init.to_string());
                if self.initialized {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                    let _ = lines.try_send(note.to_string());
                }
            }
            crate::log(LogLevel::Info, "reconnected to the agent-dispatch daemon");
        }
        self.connected_before = true;
        self.conn = Some(Conn { lines });
        Ok(())
    }
}

/// The fields of a client line the proxy looks at.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
}

/// The fields of a daemon line the proxy looks at (the rest is skipped, not built).
#[derive(Deserialize)]
struct ReplyPeek {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<IgnoredAny>,
}

fn full(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or(Value::Null)
}

/// A JSON-RPC error reply from the proxy itself.
pub fn error_line(id: &Value, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": PROXY_ERROR, "message": message}})
        .to_string()
}

/// Writes queued lines, flushing whenever the queue runs dry; closes the writer when the
/// queue is closed and empty.
async fn pump<W: AsyncWrite + Unpin>(mut writer: W, queue: Receiver<String>) -> io::Result<()> {
    while let Ok(mut line) = queue.recv().await {
        line.push('\n');
        writer.write_all(line.as_bytes()).await?;
        if queue.is_empty() {
            writer.flush().await?;
        }
    }
    writer.close().await
}

/// Connects to a live daemon, or starts one and waits until it answers: under the start
/// lock, so only one proxy starts it.
fn connect_or_start(config: &ProxyConfig) -> Result<UnixStream, String> {
    let socket = &config.socket;
    unix::secure_dir(config.dir())?;
    if let Probe::Live(stream) = probe(socket)? {
        return Ok(stream);
    }
    let _lock = start_lock(&unix::sibling(socket, ".lock"))?;
    let log_path = config.log_path();
    let deadline = Instant::now() + START_LIMIT;
    let mut started: Option<i32> = None;
    let mut starts = 0;
    loop {
        let why = match probe(socket)? {
            Probe::Live(stream) => return Ok(stream),
            // A daemon on its way out (killed, or its idle exit): wait for it to be gone.
            Probe::Dying(why) => why,
            Probe::Absent(why) => {
                let running = started.is_some_and(|pid| {
                    rustix::process::Pid::from_raw(pid)
                        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
                });
                if !running {
                    // A second try covers a daemon that found the previous one still exiting.
                    if starts == 2 {
                        return Err(format!(
                            "the daemon exited at start; its log {} ends with: {}",
                            log_path.display(),
                            log_tail(&log_path)
                        ));
                    }
                    let pid = start_daemon(config, &log_path)?;
                    crate::log(
                        LogLevel::Info,
                        &format!(
                            "started the agent-dispatch daemon (pid {pid}) on {}; its log: {}",
                            socket.display(),
                            log_path.display()
                        ),
                    );
                    started = Some(pid);
                    starts += 1;
                }
                why
            }
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "no agent-dispatch daemon answered on {} within {} s ({why}); see {}",
                socket.display(),
                START_LIMIT.as_secs(),
                log_path.display()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// What is at the socket.
enum Probe {
    /// Our daemon, answering: the connection to use.
    Live(UnixStream),
    /// It accepted the connection but closed it without answering.
    Dying(String),
    /// Nobody accepts connections there.
    Absent(String),
}

/// Connects and checks that a daemon of our uid answers a `ping` (whose reply is consumed,
/// so the connection is handed over clean). `Err` when it is not ours or not reachable.
fn probe(socket: &Path) -> Result<Probe, String> {
    let mut stream = match unix::connect(socket) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(format!("cannot connect to {}: {e}", socket.display()))
        }
        Err(e) => return Ok(Probe::Absent(e.to_string())),
    };
    let answered = (|| -> io::Result<bool> {
        stream.set_read_timeout(Some(PROBE_LIMIT))?;
        writeln!(
            stream,
            "{}",
            json!({"jsonrpc": "2.0", "id": PROBE_ID, "method": "ping"})
        )?;
        // Byte by byte: nothing after the reply may be read here.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 4096 {
            if stream.read(&mut byte)? == 0 {
                return Ok(false);
            }
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        let reply: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
        stream.set_read_timeout(None)?;
        Ok(reply["id"] == PROBE_ID && reply.get("result").is_some())
    })();
    match answered {
        Ok(true) => Ok(Probe::Live(stream)),
        Ok(false) => Ok(Probe::Dying("it closed the connection unanswered".into())),
        Err(e) => Ok(Probe::Dying(e.to_string())),
    }
}

/// Starts the daemon fully detached and returns its pid: `/bin/sh` starts it in the
/// background and exits at once, so the daemon is no descendant of this proxy (Claude Code
/// kills a server's whole process tree when it closes a session) and sits in its own process
/// group (a ^C or a signal to the session's group does not reach it). Its stdin and stdout are
/// `/dev/null`, its stderr is appended to `log_path`.
fn start_daemon(config: &ProxyConfig, log_path: &Path) -> Result<i32, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path)
        .map_err(|e| format!("cannot open the daemon log {}: {e}", log_path.display()))?;
    let launched = Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$0\" \"$@\" </dev/null >/dev/null & echo $!")
        .arg(&config.daemon_program)
        .args(&config.daemon_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .output()
        .map_err(|e| format!("cannot start the daemon through /bin/sh: {e}"))?;
    let printed = String::from_utf8_lossy(&launched.stdout);
    match printed.trim().parse::<i32>() {
        Ok(pid) if launched.status.success() && pid > 0 => Ok(pid),
        _ => Err(format!(
            "cannot start the daemon ({}): /bin/sh said {:?} ({})",
            config.daemon_program.display(),
            printed.trim(),
            launched.status
        )),
    }
}

/// Takes the exclusive start lock (waiting for another proxy that is starting the daemon).
fn start_lock(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if started.elapsed() < LOCK_LIMIT => {
                std::thread::sleep(POLL)
            }
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "another process held {} for {} s while starting the daemon",
                    path.display(),
                    LOCK_LIMIT.as_secs()
                ))
            }
            Err(TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()))
            }
        }
    }
}

/// The last few lines of the daemon's log, on one line.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        "(nothing)".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Proxy {
        let (events, _) = async_channel::unbounded();
        let (out, _) = async_channel::unbounded();
        Proxy {
            config: ProxyConfig {
                socket: PathBuf::from("/nonexistent/d.sock"),
                daemon_program: PathBuf::from("/bin/false"),
                daemon_args: Vec::new(),
            },
            events,
            out,
            conn: None,
            generation: 1,
            in_flight: BTreeMap::new(),
            initialize: None,
            initialized: false,
            connected_before: true,
            swallow: None,
            stdin_closed: false,
        }
    }

    #[test]
    fn requests_are_in_flight_until_answered_or_cancelled() {
        let mut p = proxy();
        assert_eq!(
            p.track_request(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#),
            Some("0".into())
        );
        assert_eq!(p.initialize, Some(json!({"protocolVersion": "2025-11-25"})));
        p.track_request(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(p.initialized);
        p.track_request(r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{}}"#);
        p.track_request(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#);
        // Not requests: a response, a null id, garbage.
        p.track_request(r#"{"jsonrpc":"2.0","id":9,"result":{}}"#);
        p.track_request(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#);
        p.track_request("not json");
        let keys: Vec<&str> = p.in_flight.keys().map(String::as_str).collect();
        assert_eq!(keys, ["\"a\"", "0", "7"]);

        p.daemon_line(r#"{"jsonrpc":"2.0","id":0,"result":{"big":[1,2,3]}}"#.into());
        // A notification that carries an id-like field is not a reply.
        p.daemon_line(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7}}"#
                .into(),
        );
        p.track_request(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a"}}"#,
        );
        let keys: Vec<&str> = p.in_flight.keys().map(String::as_str).collect();
        assert_eq!(keys, ["7"]);
    }

    #[test]
    fn a_vanished_daemon_fails_what_was_in_flight() {
        let (out, lines) = async_channel::unbounded();
        let mut p = Proxy { out, ..proxy() };
        p.track_request(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}}"#);
        p.track_request(r#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#);
        p.swallow = Some("\"agent-dispatch-proxy-reconnect-1\"".into());
        p.daemon_line(
            r#"{"jsonrpc":"2.0","id":"agent-dispatch-proxy-reconnect-1","result":{}}"#.into(),
        );
        p.daemon_gone();
        let got: Vec<String> = std::iter::from_fn(|| lines.try_recv().ok()).collect();
        assert_eq!(
            got,
            [
                r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32000,"message":"agent-dispatch daemon went away; the request was not completed"}}"#,
                r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"agent-dispatch daemon went away; the request was not completed"}}"#,
            ]
        );
        assert!(p.in_flight.is_empty());
    }
}
