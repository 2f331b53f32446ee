//! JSON-RPC 2.0 framing: one line in, a classified message or a ready error reply out.

use serde_json::{json, Map, Value};

/// Standard JSON-RPC error codes.
pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;

/// A well-formed message from a client.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A request: must get exactly one reply (unless cancelled).
    Request {
        id: Value,
        method: String,
        params: Map<String, Value>,
    },
    /// A notification: never replied to.
    Notification {
        method: String,
        params: Map<String, Value>,
    },
    /// A response to a request we sent; we send none, so these are ignored.
    Response,
}

/// A line that could not be accepted, with the reply it deserves.
#[derive(Debug, PartialEq)]
pub(crate) struct Rejected {
    pub id: Value,
    pub code: i64,
    pub message: String,
}

/// Classifies one line. `Ok(None)` for a blank line (ignored, as newline-delimited framing allows).
pub(crate) fn parse(line: &str) -> Result<Option<Incoming>, Rejected> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(line).map_err(|e| Rejected {
        id: Value::Null,
        code: PARSE_ERROR,
        message: format!("Parse error: {e}"),
    })?;
    let Value::Object(mut obj) = value else {
        return Err(invalid(
            Value::Null,
            "a message must be a JSON object (batches are not supported)",
        ));
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
        Some(other) => {
            return Err(invalid(
                Value::Null,
                &format!("id must be a string or an integer, got {other}"),
            ))
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(reply_id, "\"jsonrpc\" must be \"2.0\""));
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return Err(invalid(reply_id, "\"method\" must be a string")),
        None if obj.contains_key("result") || obj.contains_key("error") => {
            return Ok(Some(Incoming::Response))
        }
        None => return Err(invalid(reply_id, "missing \"method\"")),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        // A notification is never answered, not even when it is malformed.
        Some(_) if id.is_none() => return Ok(None),
        Some(_) => {
            return Err(Rejected {
                id: reply_id,
                code: INVALID_PARAMS,
                message: "Invalid params: \"params\" must be an object".into(),
            })
        }
    };
    Ok(Some(match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method, params },
    }))
}

/// Renders a success reply whose result is already serialized JSON.
pub(crate) fn result_line_raw(id: &Value, result_json: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result_json}}}")
}

/// Renders a success reply.
pub(crate) fn result_line(id: &Value, result: &Value) -> String {
    result_line_raw(id, &result.to_string())
}

/// Renders an error reply.
pub(crate) fn error_line(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// Renders a notification.
pub(crate) fn notification_line(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

fn invalid(id: Value, why: &str) -> Rejected {
    Rejected {
        id,
        code: INVALID_REQUEST,
        message: format!("Invalid Request: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let r = parse(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#)
            .unwrap()
            .unwrap();
        assert!(
            matches!(r, Incoming::Request { ref id, ref method, .. } if id == "a" && method == "ping")
        );
        let n = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .unwrap()
            .unwrap();
        assert!(
            matches!(n, Incoming::Notification { ref method, .. } if method == "notifications/initialized")
        );
        let resp = parse(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#)
            .unwrap()
            .unwrap();
        assert!(matches!(resp, Incoming::Response));
        assert!(parse("   ").unwrap().is_none());
    }

    #[test]
    fn rejects_bad_lines_with_the_right_code_and_id() {
        let e = parse("not json").unwrap_err();
        assert_eq!((e.code, e.id), (PARSE_ERROR, Value::Null));
        assert_eq!(parse("[1]").unwrap_err().code, INVALID_REQUEST);
        let e = parse(r#"{"jsonrpc":"1.0","id":5,"method":"x"}"#).unwrap_err();
        assert_eq!((e.code, e.id), (INVALID_REQUEST, json!(5)));
        let e = parse(r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#).unwrap_err();
        assert_eq!((e.code, e.id), (INVALID_REQUEST, Value::Null));
        let e = parse(r#"{"jsonrpc":"2.0","id":2,"method":"x","params":[1]}"#).unwrap_err();
        assert_eq!((e.code, e.id), (INVALID_PARAMS, json!(2)));
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep).unwrap_err().code, PARSE_ERROR);
    }
}
