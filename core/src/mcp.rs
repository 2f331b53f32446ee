//! The MCP session: lifecycle methods, tool listing and tool-call admission for one client.

use serde_json::{json, Map, Value};

use crate::engine::Core;
use crate::ids::ClientId;
use crate::jsonrpc::{self, Incoming, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND};
use crate::tools::{self, args};

/// Protocol revisions we speak, newest first. A client asking for one of them gets it back;
/// anything else gets the newest.
pub(crate) const PROTOCOL_VERSIONS: &[&str] =
    &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Per-client protocol state.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// The negotiated protocol version, once `initialize` was answered.
    pub protocol_version: Option<&'static str>,
}

impl Core {
    /// Handles one raw line from a client. Every request gets exactly one reply here or,
    /// for tool calls, when the call finishes.
    pub(crate) fn on_line(&mut self, client: ClientId, line: &str) {
        match jsonrpc::parse(line) {
            Ok(None) | Ok(Some(Incoming::Response)) => {}
            Ok(Some(Incoming::Notification { method, params })) => {
                self.on_notification(client, &method, &params)
            }
            Ok(Some(Incoming::Request { id, method, params })) => {
                if let Err((code, message)) = self.on_request(client, &id, &method, params) {
                    self.send(client, jsonrpc::error_line(&id, code, &message));
                }
            }
            Err(rejected) => {
                let line = jsonrpc::error_line(&rejected.id, rejected.code, &rejected.message);
                self.send(client, line);
            }
        }
    }

    fn on_request(
        &mut self,
        client: ClientId,
        id: &Value,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<(), (i64, String)> {
        if !self.is_serving() {
            return Err((INVALID_REQUEST, "Server is shutting down".into()));
        }
        match method {
            "initialize" => {
                let result = self.initialize(client, &params);
                self.send(client, jsonrpc::result_line(id, &result));
            }
            "ping" => self.send(client, jsonrpc::result_line(id, &json!({}))),
            "tools/list" => {
                let line = jsonrpc::result_line_raw(id, &self.tools_list);
                self.send(client, line);
            }
            "tools/call" => self.admit_call(client, id, &params)?,
            // Claude Code >= 2.1.330 probes for the stateless 2026 protocol first. An error
            // echoing the id sends it straight to `initialize` (silence would cost it ~3 s).
            "server/discover" => {
                return Err((
                    METHOD_NOT_FOUND,
                    "Method not found: server/discover (this server speaks MCP 2025-11-25; send initialize)".into(),
                ))
            }
            other => return Err((METHOD_NOT_FOUND, format!("Method not found: {other}"))),
        }
        Ok(())
    }

    fn on_notification(&mut self, client: ClientId, method: &str, params: &Map<String, Value>) {
        if method == "notifications/cancelled" {
            if let Some(request) = params.get("requestId") {
                self.cancel_request(client, request);
            }
        }
        // `notifications/initialized` and unknown notifications need nothing from us.
    }

    fn initialize(&mut self, client: ClientId, params: &Map<String, Value>) -> Value {
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let version = PROTOCOL_VERSIONS
            .iter()
            .copied()
            .find(|v| Some(*v) == asked)
            .unwrap_or(PROTOCOL_VERSIONS[0]);
        if let Some(session) = self.clients.get_mut(&client) {
            session.protocol_version = Some(version);
        }
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "agent-dispatch", "version": env!("CARGO_PKG_VERSION")},
            "instructions": tools::INSTRUCTIONS,
        })
    }

    fn admit_call(
        &mut self,
        client: ClientId,
        id: &Value,
        params: &Map<String, Value>,
    ) -> Result<(), (i64, String)> {
        let invalid = |m: String| (INVALID_PARAMS, format!("Invalid params: {m}"));
        let name = match params.get("name") {
            Some(Value::String(n)) => n.as_str(),
            Some(_) => return Err(invalid("\"name\" must be a string".into())),
            None => return Err(invalid("missing tool \"name\"".into())),
        };
        let Some(spec) = tools::find(name) else {
            return Err((INVALID_PARAMS, format!("Unknown tool: {name}")));
        };
        let empty = Map::new();
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(a)) => a,
            Some(_) => return Err(invalid("\"arguments\" must be an object".into())),
        };
        let args =
            args::validate(spec.params, arguments).map_err(|m| invalid(format!("{name}: {m}")))?;
        let progress_token = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
            .cloned();
        self.start_call(client, id.clone(), spec.tool, args, progress_token);
        Ok(())
    }
}
