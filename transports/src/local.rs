//! An in-process MCP client: the same `Core`, the real executor and the same drive loop as
//! `serve`, reached over an in-memory connection instead of stdio.
//!
//! The command line uses it so that `agent-dispatch add` *is* `add_agent`, `list` *is*
//! `list_agents`, and so on: one implementation of every operation, whichever door it is
//! reached through.
//!
//! ```no_run
//! # let options = agent_dispatch_core::Options::default();
//! use agent_dispatch_transports::local;
//! let outcome = local::call_tool(options, "list_agents", serde_json::json!({}), None)?;
//! println!("{}", outcome.value);
//! # Ok::<(), local::LocalError>(())
//! ```
//!
//! The core runs on its own thread (the executor's children are tied to the thread that
//! spawns them, so that thread lives until the core has exited). Calls are synchronous.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use agent_dispatch_core::{ClientId, Core, Input, Options, Timestamp};
use async_channel::{Receiver, Sender};
use futures_lite::io::AsyncWrite;
use serde_json::{json, Value};

use crate::Driver;

/// The one client of an in-process core.
pub const CLIENT: ClientId = ClientId(0);

/// JSON-RPC "invalid params": what the core answers for an unknown tool.
const INVALID_PARAMS: i64 = -32602;

/// The protocol revision the local client asks for.
pub(crate) const PROTOCOL_VERSION: &str = "2025-11-25";

/// A finished tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The tool's answer: the JSON document of `content[0].text` (the value itself, arrays
    /// included), else `structuredContent`, else the text as a string, else `null`.
    pub value: Value,
    /// The result's `isError`: the tool refused or failed (`value` then usually has `error`).
    pub is_error: bool,
}

/// A call that got no tool result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalError {
    /// The JSON-RPC error code when the server answered with an error; `None` when the
    /// in-process server stopped or could not be started.
    pub code: Option<i64>,
    /// What went wrong.
    pub message: String,
}

impl LocalError {
    /// Whether the server does not know the tool (`-32602 Unknown tool: <name>`).
    pub fn is_unknown_tool(&self) -> bool {
        self.code == Some(INVALID_PARAMS) && self.message.starts_with("Unknown tool")
    }

    fn stopped(what: &str) -> LocalError {
        LocalError {
            code: None,
            message: format!("the in-process server stopped {what}"),
        }
    }
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} (JSON-RPC error {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for LocalError {}

/// A running in-process server with one initialized client session.
///
/// Dropping it shuts the core down cleanly (as [`LocalClient::shutdown`] does).
#[derive(Debug)]
pub struct LocalClient {
    inputs: Sender<Input>,
    replies: Receiver<String>,
    core: Option<JoinHandle<i32>>,
    next_id: u64,
    server_info: Value,
}

impl LocalClient {
    /// Starts a core with `options` (the clock epoch and, when 0, the seed are filled in as
    /// `serve` does) and performs the MCP handshake (`initialize`, `notifications/initialized`).
    pub fn start(mut options: Options) -> Result<LocalClient, LocalError> {
        let mut driver = Driver::new();
        options.unix_time_at_epoch = driver.clock().unix_time_at_epoch();
        if options.seed == 0 {
            options.seed = fastrand::u64(1..);
        }
        let core = Core::new(options, Timestamp::ZERO);
        let (lines, replies) = async_channel::unbounded();
        driver.executor().add_client(
            CLIENT,
            LineWriter {
                lines,
                pending: Vec::new(),
            },
        );
        let inputs = driver.inputs();
        let thread = std::thread::Builder::new()
            .name("agent-dispatch-core".into())
            .spawn(move || smol::block_on(driver.run(core)))
            .map_err(|err| LocalError {
                code: None,
                message: format!("cannot start the in-process server: {err}"),
            })?;
        let mut client = LocalClient {
            inputs,
            replies,
            core: Some(thread),
            next_id: 0,
            server_info: Value::Null,
        };
        client.input(Input::ClientConnected { client: CLIENT })?;
        client.server_info = client.request(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "agent-dispatch-cli", "version": env!("CARGO_PKG_VERSION")},
            }),
            None,
        )?;
        client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(client)
    }

    /// The `initialize` result (protocol version, server info, instructions).
    pub fn server_info(&self) -> &Value {
        &self.server_info
    }

    /// The server's tools, as `tools/list` describes them (`name`, `description`, ...).
    pub fn list_tools(&mut self) -> Result<Vec<Value>, LocalError> {
        let result = self.request("tools/list", json!({}), None)?;
        match result.get("tools") {
            Some(Value::Array(tools)) => Ok(tools.clone()),
            _ => Err(LocalError {
                code: None,
                message: format!("tools/list returned no tool array: {result}"),
            }),
        }
    }

    /// Whether the server offers a tool of this name.
    pub fn has_tool(&mut self, tool: &str) -> Result<bool, LocalError> {
        Ok(self
            .list_tools()?
            .iter()
            .any(|t| t.get("name").and_then(Value::as_str) == Some(tool)))
    }

    /// Calls `tool` with `arguments` (a JSON object) and waits for its result.
    ///
    /// With `on_progress`, the request carries `_meta.progressToken` and the `message` of each
    /// `notifications/progress` for it is passed to the callback as it arrives.
    /// A refused or failed tool is an `Ok` with `is_error`; `Err` is a protocol-level error
    /// (unknown tool, invalid arguments) or a stopped server.
    pub fn call_tool(
        &mut self,
        tool: &str,
        arguments: Value,
        on_progress: Option<&mut dyn FnMut(&str)>,
    ) -> Result<ToolOutcome, LocalError> {
        let mut params = json!({"name": tool, "arguments": arguments});
        if on_progress.is_some() {
            params["_meta"] = json!({"progressToken": self.next_id});
        }
        let result = self.request("tools/call", params, on_progress)?;
        Ok(tool_outcome(&result))
    }

    /// Closes the session, lets the core drain and exit, and returns its exit code
    /// (0 after a clean shutdown; 1 when the core's thread panicked).
    pub fn shutdown(mut self) -> i32 {
        self.stop()
    }

    fn stop(&mut self) -> i32 {
        let Some(core) = self.core.take() else {
            return 0;
        };
        let _ = self
            .inputs
            .send_blocking(Input::ClientClosed { client: CLIENT });
        let _ = self.inputs.send_blocking(Input::Shutdown);
        core.join().unwrap_or(1)
    }

    fn input(&self, input: Input) -> Result<(), LocalError> {
        self.inputs
            .send_blocking(input)
            .map_err(|_| LocalError::stopped("before the request was sent"))
    }

    fn send(&self, message: &Value) -> Result<(), LocalError> {
        self.input(Input::ClientLine {
            client: CLIENT,
            line: message.to_string(),
        })
    }

    /// Sends one request and waits for its reply; progress notifications for it go to
    /// `on_progress`, other notifications are ignored, requests from the server are refused.
    fn request(
        &mut self,
        method: &str,
        params: Value,
        mut on_progress: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Value, LocalError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        loop {
            let line = self
                .replies
                .recv_blocking()
                .map_err(|_| LocalError::stopped(&format!("before answering {method}")))?;
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let method_of = message.get("method").and_then(Value::as_str);
            match (message.get("id"), method_of) {
                (Some(reply_id), None) if reply_id == &json!(id) => {
                    return match message.get("error") {
                        Some(error) => Err(LocalError {
                            code: error.get("code").and_then(Value::as_i64),
                            message: error
                                .get("message")
                                .and_then(Value::as_str)
                                .unwrap_or("error without a message")
                                .to_owned(),
                        }),
                        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                    };
                }
                (None, Some("notifications/progress")) => {
                    let params = &message["params"];
                    if let (Some(callback), Some(text)) =
                        (on_progress.as_mut(), params["message"].as_str())
                    {
                        if params["progressToken"] == json!(id) {
                            callback(text);
                        }
                    }
                }
                (Some(request_id), Some(other)) => {
                    // We announce no client capabilities, so the server should not ask; answer anyway.
                    self.send(&json!({
                        "jsonrpc": "2.0",
                        "id": request_id,
                        "error": {"code": -32601, "message": format!("Method not found: {other}")},
                    }))?;
                }
                _ => {}
            }
        }
    }
}

impl Drop for LocalClient {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs one tool call on a fresh in-process server and shuts it down again.
pub fn call_tool(
    options: Options,
    tool: &str,
    arguments: Value,
    on_progress: Option<&mut dyn FnMut(&str)>,
) -> Result<ToolOutcome, LocalError> {
    let mut client = LocalClient::start(options)?;
    let outcome = client.call_tool(tool, arguments, on_progress);
    client.shutdown();
    outcome
}

/// Reads a `tools/call` result.
pub(crate) fn tool_outcome(result: &Value) -> ToolOutcome {
    let text = result["content"]
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b["type"] == "text"))
        .and_then(|b| b["text"].as_str());
    let value = match (text.map(serde_json::from_str::<Value>), text) {
        (Some(Ok(value)), _) => value,
        (_, Some(text)) if result.get("structuredContent").is_none() => json!(text),
        _ => result
            .get("structuredContent")
            .cloned()
            .unwrap_or(Value::Null),
    };
    ToolOutcome {
        value,
        is_error: result["isError"].as_bool().unwrap_or(false),
    }
}

/// The client end of the in-memory connection: bytes the executor writes, split into lines.
#[derive(Debug)]
struct LineWriter {
    lines: Sender<String>,
    pending: Vec<u8>,
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]).into_owned();
            // Unbounded: never full. Closed: the client is gone; drop the line.
            let _ = self.lines.try_send(text);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.lines.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &std::path::Path) -> Options {
        Options {
            config_path: dir.join("agents.yaml"),
            home: dir.to_path_buf(),
            cwd: dir.to_path_buf(),
            seed: 7,
            unix_time_at_epoch: 0.0,
            ..Options::default()
        }
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("agent-dispatch-local-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir.canonicalize().expect("canonical scratch dir")
    }

    #[test]
    fn a_session_runs_several_tools_and_shuts_down_cleanly() {
        let dir = scratch("session");
        let project = dir.join("web");
        std::fs::create_dir_all(&project).expect("project dir");
        let mut client = LocalClient::start(options(&dir)).expect("start");
        assert_eq!(client.server_info()["serverInfo"]["name"], "agent-dispatch");
        assert!(client.has_tool("list_agents").expect("tools/list"));
        assert!(!client.has_tool("no_such_tool").expect("tools/list"));

        let listed = client
            .call_tool("list_agents", json!({}), None)
            .expect("list");
        assert_eq!(
            listed,
            ToolOutcome {
                value: json!([]),
                is_error: false
            }
        );

        let added = client
            .call_tool(
                "add_agent",
                json!({"name": "web", "directory": project, "description": "The shop"}),
                None,
            )
            .expect("add");
        assert!(!added.is_error, "{added:?}");
        assert_eq!(added.value["added"], "web");
        assert_eq!(added.value["directory"], json!(project));

        let again = client
            .call_tool(
                "add_agent",
                json!({"name": "web", "directory": project}),
                None,
            )
            .expect("add twice");
        assert!(again.is_error);
        assert_eq!(
            again.value["error"],
            "Agent 'web' already exists. Remove it first."
        );

        let listed = client
            .call_tool("list_agents", json!({}), None)
            .expect("list");
        assert_eq!(listed.value[0]["name"], "web");
        assert_eq!(listed.value[0]["healthy"], true);
        assert_eq!(client.shutdown(), 0);
        let saved = std::fs::read_to_string(dir.join("agents.yaml")).expect("config written");
        assert!(saved.contains("description: The shop"), "{saved}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn protocol_errors_are_errors_and_unknown_tools_are_recognised() {
        let dir = scratch("errors");
        let err = call_tool(options(&dir), "no_such_tool", json!({}), None).unwrap_err();
        assert_eq!(err.code, Some(INVALID_PARAMS));
        assert_eq!(err.message, "Unknown tool: no_such_tool");
        assert!(err.is_unknown_tool());

        let err = call_tool(options(&dir), "inspect_agent", json!({}), None).unwrap_err();
        assert!(!err.is_unknown_tool());
        assert!(
            err.message.contains("missing required argument 'name'"),
            "{err}"
        );

        let refused = call_tool(options(&dir), "inspect_agent", json!({"name": "x"}), None)
            .expect("a tool error is a result");
        assert!(refused.is_error);
        assert_eq!(
            refused.value["error"],
            "Unknown agent: 'x'. Available: (none configured)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn results_are_read_from_text_then_structured_content() {
        let text = json!({"content": [{"type": "text", "text": "[1,2]"}], "structuredContent": {"result": [1, 2]}, "isError": false});
        assert_eq!(tool_outcome(&text).value, json!([1, 2]));
        let plain = json!({"content": [{"type": "text", "text": "hello"}], "isError": true});
        assert_eq!(
            tool_outcome(&plain),
            ToolOutcome {
                value: json!("hello"),
                is_error: true
            }
        );
        let structured = json!({"content": [{"type": "text", "text": "not json"}], "structuredContent": {"a": 1}});
        assert_eq!(tool_outcome(&structured).value, json!({"a": 1}));
    }

    #[test]
    fn the_line_writer_splits_lines_across_writes() {
        let (lines, replies) = async_channel::unbounded();
        let mut writer = LineWriter {
            lines,
            pending: Vec::new(),
        };
        smol::block_on(async {
            use futures_lite::io::AsyncWriteExt;
            writer.write_all(b"{\"a\"").await.expect("write");
            writer
                .write_all(b":1}\n{\"b\":2}\n{\"c\"")
                .await
                .expect("write");
            writer.close().await.expect("close");
        });
        let got: Vec<String> = std::iter::from_fn(|| replies.try_recv().ok()).collect();
        assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}"]);
        assert!(replies.is_closed());
    }
}
