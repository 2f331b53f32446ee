//! One MCP client of one server process over stdio: JSON-RPC lines written to its stdin, read
//! from its stdout on this thread (no reader thread, so a reply's time is when its line was
//! read). The server's stderr goes to a log file. A watchdog kills the server when a wait runs
//! past its limit, so a hung server ends the figure with an error instead of hanging the bench.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How to start a server: program, arguments and environment (on top of a cleaned copy of
/// ours, see [`base_env`]).
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, OsString)>,
    pub cwd: PathBuf,
}

/// Our environment minus what would change a server's behaviour: every `AGENT_DISPATCH_*`
/// and `FAKE_*` variable.
pub fn base_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !k.starts_with("AGENT_DISPATCH_") && !k.starts_with("FAKE_")
        })
        .collect()
}

/// Memory figures of a process, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn mem_of(pid: u32) -> Result<Mem, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/status has no {name}"))
    };
    Ok(Mem {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Kills a process (by pid, with `kill -9`) once the armed deadline passes.
#[derive(Debug)]
struct Watchdog {
    /// Milliseconds since `epoch` after which the server is killed; 0 = disarmed.
    deadline_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    fn spawn(pid: u32) -> Watchdog {
        let deadline_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let (d, s, f) = (deadline_ms.clone(), stop.clone(), fired.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
                let deadline = d.load(Ordering::Relaxed);
                let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                if deadline != 0 && now > deadline {
                    f.store(true, Ordering::Relaxed);
                    let _ = Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                    return;
                }
            }
        });
        Watchdog {
            deadline_ms,
            stop,
            epoch,
            fired,
        }
    }

    fn arm(&self, limit: Duration) {
        let at = self.epoch.elapsed() + limit;
        let ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX).max(1);
        self.deadline_ms.store(ms, Ordering::Relaxed);
    }

    fn disarm(&self) {
        self.deadline_ms.store(0, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A reply and when its line was read.
#[derive(Debug)]
pub struct Reply {
    pub id: i64,
    pub message: Value,
    /// The reply line's length in bytes (without the newline).
    pub bytes: usize,
    pub at: Instant,
}

/// A running server and its one client.
#[derive(Debug)]
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: i64,
    watchdog: Watchdog,
    log: PathBuf,
    line: String,
    /// Messages read that were not replies (notifications, requests from the server).
    pub others: u64,
    /// When the process was spawned.
    pub spawned: Instant,
}

impl Server {
    /// Starts the server; its stderr goes to `log`.
    pub fn start(launch: &Launch, log: &Path) -> Result<Server, String> {
        let err = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.args)
            .current_dir(&launch.cwd)
            .env_clear()
            .envs(base_env())
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", launch.program.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::with_capacity(
            1 << 16,
            child
                .stdout
                .take()
                .ok_or("the server's stdout is not piped")?,
        );
        let watchdog = Watchdog::spawn(child.id());
        Ok(Server {
            child,
            stdin,
            stdout,
            next_id: 1,
            watchdog,
            log: log.to_owned(),
            line: String::new(),
            others: 0,
            spawned,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn mem(&self) -> Result<Mem, String> {
        mem_of(self.pid())
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(15);
        lines[from..].join("\n")
    }

    fn fail(&self, what: String) -> String {
        let fired = if self.watchdog.fired.load(Ordering::Relaxed) {
            " (the server was killed: no reply within the limit)"
        } else {
            ""
        };
        format!(
            "{what}{fired}; server log {}:\n{}",
            self.log.display(),
            self.log_tail()
        )
    }

    fn send(&mut self, message: &Value) -> Result<(), String> {
        let mut line = message.to_string();
        line.push('\n');
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        if let Err(e) = stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
        {
            return Err(self.fail(format!("write to the server: {e}")));
        }
        Ok(())
    }

    /// Sends a request without waiting; returns its id.
    pub fn send_request(&mut self, method: &str, params: Value) -> Result<i64, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        Ok(id)
    }

    pub fn notify(&mut self, method: &str) -> Result<(), String> {
        self.send(&json!({"jsonrpc": "2.0", "method": method}))
    }

    /// Reads until the next reply (to any request), within `limit`.
    pub fn next_reply(&mut self, limit: Duration) -> Result<Reply, String> {
        self.watchdog.arm(limit);
        let reply = loop {
            self.line.clear();
            match self.stdout.read_line(&mut self.line) {
                Ok(0) => break Err(self.fail("the server closed its stdout".into())),
                Ok(_) => {}
                Err(e) => break Err(self.fail(format!("read from the server: {e}"))),
            }
            let at = Instant::now();
            // Cheap pre-check: notifications carry a method and no id; skip them unparsed.
            let line = self.line.trim_end();
            if line.is_empty() {
                continue;
            }
            if !line.contains("\"id\"") {
                self.others += 1;
                continue;
            }
            let message: Value = match serde_json::from_str(line) {
                Ok(m) => m,
                Err(e) => break Err(self.fail(format!("server stdout is not JSON ({e})"))),
            };
            if message.get("method").is_some() {
                self.others += 1;
                continue;
            }
            let Some(id) = message.get("id").and_then(Value::as_i64) else {
                self.others += 1;
                continue;
            };
            break Ok(Reply {
                id,
                bytes: line.len(),
                message,
                at,
            });
        };
        self.watchdog.disarm();
        reply
    }

    /// Sends a request and waits for its reply; returns the reply and the round trip.
    pub fn request(
        &mut self,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<(Reply, Duration), String> {
        let started = Instant::now();
        let id = self.send_request(method, params)?;
        loop {
            let reply = self.next_reply(limit)?;
            if reply.id == id {
                let took = reply.at - started;
                return Ok((reply, took));
            }
        }
    }

    /// `initialize` then `notifications/initialized`; returns the time from spawn to the reply.
    pub fn initialize(&mut self) -> Result<Duration, String> {
        let (reply, _) = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "agent-dispatch-bench", "version": "0"},
            }),
            Duration::from_secs(60),
        )?;
        if reply.message.get("result").is_none() {
            return Err(self.fail(format!("initialize failed: {}", reply.message)));
        }
        let took = reply.at - self.spawned;
        self.notify("notifications/initialized")?;
        Ok(took)
    }

    /// `tools/call`; returns the tool's JSON payload and the round trip.
    pub fn call(
        &mut self,
        tool: &str,
        arguments: Value,
        limit: Duration,
    ) -> Result<(Value, Duration), String> {
        let (reply, took) = self.request(
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
            limit,
        )?;
        let payload = payload(&reply.message).map_err(|e| self.fail(format!("{tool}: {e}")))?;
        Ok((payload, took))
    }

    /// Closes stdin and waits (at most 10 s, then kills) for the process to end.
    pub fn shutdown(mut self) {
        drop(self.stdin.take());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The JSON document a `tools/call` reply carries: the text of `content[0]` parsed (both
/// servers put the whole answer there as JSON text). A refused call is an error.
pub fn payload(message: &Value) -> Result<Value, String> {
    let result = message
        .get("result")
        .ok_or_else(|| format!("the call was refused: {message}"))?;
    let text = result["content"][0]["text"]
        .as_str()
        .ok_or_else(|| format!("the result has no text: {result}"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("the result text is not JSON ({e}): {text:.300}"))?;
    if result["isError"] == true {
        return Err(format!("the tool reported an error: {text:.300}"));
    }
    Ok(value)
}
