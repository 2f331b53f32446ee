//! Reading `claude --output-format stream-json` stdout, one line at a time.
//!
//! Parsing is by field name only: unknown message types and fields are ignored, key order is
//! never relied on (2.1.197 writes `type` first, 2.1.330 somewhere in the middle), and lines
//! that are not JSON objects, or events of an unexpected shape, are skipped without a panic.
//! The CLI (JavaScript) may write lone UTF-16 surrogates as `\udXXX` escapes, which
//! serde_json rejects; such a line is re-read with each lone surrogate as U+FFFD, so an
//! answer cut in the middle of an emoji is not lost.

use serde_json::{Map, Value};

/// Progress texts are cut to this many characters.
const PROGRESS_CHARS: usize = 500;

/// What one stdout line told us.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// Progress for humans: assistant text (first 500 chars, non-empty) or `Using tool: <name>`; one per content block.
    Progress(String),
    /// The `result` message (type == "result"), as an object.
    Result(Map<String, Value>),
}

/// Appends the events of one line. Both CLI layouts (2.1.197 and 2.1.330) are read alike:
/// 2.1.330 sends text and tool_use as separate assistant lines with the same message id,
/// which simply gives one event per line.
pub(crate) fn parse_line(line: &str, out: &mut Vec<Event>) {
    let line = line.trim();
    if !line.starts_with('{') {
        return;
    }
    let value = match serde_json::from_str::<Value>(line) {
        Ok(value) => value,
        Err(_) => match replace_lone_surrogates(line) {
            Some(fixed) => match serde_json::from_str::<Value>(&fixed) {
                Ok(value) => value,
                Err(_) => return,
            },
            None => return,
        },
    };
    let Value::Object(mut message) = value else {
        return;
    };
    match message.get("type").and_then(Value::as_str) {
        Some("result") => out.push(Event::Result(message)),
        Some("assistant") => {
            let content = message
                .get_mut("message")
                .and_then(Value::as_object_mut)
                .and_then(|m| m.get_mut("content"))
                .map(Value::take);
            if let Some(Value::Array(blocks)) = content {
                out.extend(blocks.iter().filter_map(progress));
            }
        }
        _ => {}
    }
}

/// The progress text of one assistant content block, if it has one.
fn progress(block: &Value) -> Option<Event> {
    let block = block.as_object()?;
    match block.get("type").and_then(Value::as_str)? {
        "text" => {
            let text = block.get("text").and_then(Value::as_str)?;
            if text.trim().is_empty() {
                return None;
            }
            Some(Event::Progress(text.chars().take(PROGRESS_CHARS).collect()))
        }
        "tool_use" => {
            let name = block
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or("?");
            Some(Event::Progress(format!("Using tool: {name}")))
        }
        _ => None,
    }
}

/// The line with every `\uXXXX` escape of a lone surrogate replaced by `\ufffd`; `None` when
/// there is none (so the line is broken for another reason).
fn replace_lone_surrogates(line: &str) -> Option<String> {
    fn escape_at(bytes: &[u8], at: usize) -> Option<u32> {
        let hex = bytes.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    }
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0; // bytes of `line` already in `out`
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match escape_at(bytes, i) {
            Some(0xD800..=0xDBFF) if matches!(escape_at(bytes, i + 6), Some(0xDC00..=0xDFFF)) => {
                i += 12; // a proper pair
            }
            Some(0xD800..=0xDFFF) => {
                out.push_str(&line[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
                changed = true;
            }
            Some(_) => i += 6,
            None => i += 2, // any other escape: skip the escaped character
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&line[copied.min(line.len())..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(line: &str) -> Vec<Event> {
        let mut out = Vec::new();
        parse_line(line, &mut out);
        out
    }

    fn progress(text: &str) -> Event {
        Event::Progress(text.to_owned())
    }

    /// 2.1.330 `mock-bash-bypass-permissions`: text and tool_use as separate assistant lines
    /// sharing one message id (trimmed to the fields that matter, order kept).
    const SPLIT_TEXT: &str = r#"{"type":"assistant","message":{"id":"msg_mock_fd1d2156212f46c7a641","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{"type":"text","text":"I'll run it."}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":100,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"context_management":null},"parent_tool_use_id":null,"session_id":"d51182d2-5d16-4248-b5c6-98ba1eef4287","uuid":"cd2c3627-71f4-4841-8706-297079dccd75","timestamp":"2026-11-23T21:13:01.853Z","request_id":"req_mock_aad84f9216644f35"}"#;
    const SPLIT_TOOL: &str = r#"{"type":"assistant","message":{"id":"msg_mock_fd1d2156212f46c7a641","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{"type":"tool_use","id":"toolu_mock_0001_2bfd610b","name":"Bash","input":{"command":"echo hi","description":"Print hi"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":100,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"context_management":null},"parent_tool_use_id":null,"session_id":"d51182d2-5d16-4248-b5c6-98ba1eef4287","uuid":"4a90eb17-bf64-4d01-8e25-4e5d0cd0582e","timestamp":"2026-11-23T21:13:01.857Z","request_id":"req_mock_aad84f9216644f35"}"#;

    /// 2.1.197 `b-stream-json`: the result line with `type` first.
    const RESULT_197: &str = r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":185,"duration_api_ms":34,"ttft_ms":178,"ttft_stream_ms":177,"time_to_request_ms":155,"num_turns":1,"result":"hi","stop_reason":"end_turn","session_id":"214a55f2-8318-46e1-8e8d-eb29333dd2b4","total_cost_usd":0.001,"usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":20,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard"},"modelUsage":{"claude-opus-4-8[1m]":{"inputTokens":100,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.001,"contextWindow":1000000,"maxOutputTokens":64000}},"permission_denials":[],"terminal_reason":"completed","fast_mode_state":"off","uuid":"37641595-b474-4c96-bc02-b927ffb89848"}"#;

    /// 2.1.330 `mock-say-hi`: the result line with `type` in the middle (abridged).
    const RESULT_330: &str = r#"{"duration_api_ms":32,"stop_reason":"end_turn","session_id":"80c19239-c66a-4007-822e-265f1dd269f1","total_cost_usd":0.0008,"modelUsage":{},"permission_denials":[],"terminal_reason":"completed","safety_stops":0,"is_error":false,"num_turns":1,"subtype":"success","api_error_status":null,"result":"hi","ttft_ms":134,"type":"result","duration_ms":147,"uuid":"974dbe20-1492-48f1-87fc-6ae3afb06199","queued_turn_count":0,"result_index":0}"#;

    #[test]
    fn split_assistant_lines_give_one_event_each() {
        assert_eq!(parse(SPLIT_TEXT), vec![progress("I'll run it.")]);
        assert_eq!(parse(SPLIT_TOOL), vec![progress("Using tool: Bash")]);
    }

    #[test]
    fn one_event_per_content_block() {
        let line = r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Checking logs..."},{"type":"tool_use","name":"Read","id":"x","input":{}},{"type":"tool_use","id":"y"}]}}"#;
        assert_eq!(
            parse(line),
            vec![
                progress("Checking logs..."),
                progress("Using tool: Read"),
                progress("Using tool: ?")
            ]
        );
    }

    #[test]
    fn spec_stream_shapes() {
        assert_eq!(
            parse(
                r#"{"type": "assistant", "message": {"content": [{"type": "text", "text": "Checking logs..."}]}}"#
            ),
            vec![progress("Checking logs...")]
        );
        assert_eq!(
            parse(
                r#"{"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Read", "id": "x", "input": {}}]}}"#
            ),
            vec![progress("Using tool: Read")]
        );
        let events = parse(
            r#"{"type": "result", "subtype": "success", "result": "Found 3 errors", "session_id": "sess-stream", "total_cost_usd": 0.03, "duration_ms": 8000, "num_turns": 4, "is_error": false}"#,
        );
        let [Event::Result(r)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(r["result"], json!("Found 3 errors"));
        assert_eq!(r["num_turns"], json!(4));
    }

    #[test]
    fn result_lines_of_both_versions() {
        for line in [RESULT_197, RESULT_330] {
            let events = parse(line);
            let [Event::Result(r)] = events.as_slice() else {
                panic!("{events:?}")
            };
            assert_eq!(r["result"], json!("hi"));
            assert_eq!(r["is_error"], json!(false));
            assert_eq!(r["subtype"], json!("success"));
        }
        // Surrounding whitespace and a CR are tolerated.
        assert_eq!(parse(&format!("  {RESULT_330}\r")).len(), 1);
    }

    #[test]
    fn text_is_cut_to_500_chars() {
        let long = "é".repeat(600);
        let line =
            json!({"type": "assistant", "message": {"content": [{"type": "text", "text": long}]}});
        assert_eq!(parse(&line.to_string()), vec![progress(&"é".repeat(500))]);
    }

    #[test]
    fn other_messages_are_ignored() {
        for line in [
            r#"{"type":"system","subtype":"init","session_id":"x","tools":[]}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"hi","tool_use_id":"t"}]}}"#,
            r#"{"type":"system","subtype":"permission_denied","tool_name":"Bash","tool_use_id":"t","message":"needs approval"}"#,
            r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":500,"error_status":500,"error":"server_error"}"#,
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}"#,
            r#"{"type":"stream_event","event":{"type":"message_start"}}"#,
            r#"{"type":"something_new","result":"x"}"#,
            r#"{"result":"no type"}"#,
            r#"{"type":"RESULT","result":"x"}"#,
        ] {
            assert_eq!(parse(line), vec![], "{line}");
        }
    }

    #[test]
    fn malformed_events_never_panic_or_leak() {
        for line in [
            "",
            "   ",
            "null",
            "[]",
            "42",
            "\"noise\"",
            "plain text",
            "{",
            "{\"type\":\"result\"",
            r#"{"type":"assistant"}"#,
            r#"{"type":"assistant","message":null}"#,
            r#"{"type":"assistant","message":"hi"}"#,
            r#"{"type":"assistant","message":{"content":null}}"#,
            r#"{"type":"assistant","message":{"content":"text, not blocks"}}"#,
            r#"{"type":"assistant","message":{"content":[null,"noise",42]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":42}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":""}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":" \n "}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":42}]}}"#,
            r#"{"type":null}"#,
            r#"{"type":["result"]}"#,
        ] {
            assert_eq!(parse(line), vec![], "{line:?}");
        }
        // Good blocks next to bad ones are kept.
        let line = r#"{"type":"assistant","message":{"content":[null,"noise",42,{"type":"text","text":42},{"type":"text","text":"ok"}]}}"#;
        assert_eq!(parse(line), vec![progress("ok")]);
        // Events accumulate across lines.
        let mut out = vec![progress("earlier")];
        parse_line(SPLIT_TOOL, &mut out);
        assert_eq!(out, vec![progress("earlier"), progress("Using tool: Bash")]);
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        assert!(serde_json::from_str::<Value>(r#"{"a":"\ud83d"}"#).is_err());
        let line = r#"{"type":"result","is_error":false,"result":"cut \ud83d here \ude00 and \ud83d\ude00 ok \\ud800 literal"}"#;
        let events = parse(line);
        let [Event::Result(r)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(
            r["result"],
            json!("cut \u{fffd} here \u{fffd} and \u{1f600} ok \\ud800 literal")
        );
        let line =
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"x\udbff"}]}}"#;
        assert_eq!(parse(line), vec![progress("x\u{fffd}")]);
        // A line broken for another reason stays skipped.
        assert_eq!(parse(r#"{"type":"result","result":"\ud83d""#), vec![]);
        assert_eq!(replace_lone_surrogates(r#"{"a":"\n\u0041"}"#), None);
    }
}
