//! One tool call on a running daemon, over its socket, for command-line processes that need
//! the daemon itself: a job it runs can only be killed by it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::local::{tool_outcome, ToolOutcome, PROTOCOL_VERSION};

/// Connects to the daemon at `socket` (checking it runs as our uid), performs the MCP
/// handshake, calls `tool` and returns its outcome. `Err` says why there is no outcome: no
/// daemon there, a refused connection, no reply within `limit`, a JSON-RPC error.
pub fn call_tool_in_daemon(
    socket: &Path,
    tool: &str,
    arguments: Value,
    limit: Duration,
) -> Result<ToolOutcome, String> {
    let stream = crate::unix::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(limit))
        .and_then(|()| stream.set_write_timeout(Some(limit)))
        .map_err(|e| e.to_string())?;
    let mut writer = &stream;
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "agent-dispatch-cli", "version": env!("CARGO_PKG_VERSION")},
        }}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}}),
    ];
    for message in &messages {
        writeln!(writer, "{message}").map_err(|e| format!("writing to the daemon: {e}"))?;
    }
    for line in BufReader::new(&stream).lines() {
        let line = line.map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("no answer from the daemon within {limit:?}")
            }
            _ => format!("reading from the daemon: {e}"),
        })?;
        let Ok(reply) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if reply["id"] != 2 {
            continue; // the initialize reply, notifications
        }
        if let Some(error) = reply.get("error") {
            return Err(format!("the daemon answered with an error: {error}"));
        }
        return Ok(tool_outcome(&reply["result"]));
    }
    Err("the daemon closed the connection without an answer".into())
}
