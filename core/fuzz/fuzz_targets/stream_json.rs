//! The stream-json reader and the classification of a finished run: arbitrary bytes are a
//! child's stdout (split at newlines); the first byte picks how the run ended (exit status,
//! stderr, timeout, JSON mode, dispatch protocol, budget).
//!
//! Checked: no panic; the `DispatchResult` is a JSON object with the fields every caller
//! relies on (`agent`, `success`, `result`, `session_id`; `error` and `error_type` on a
//! failure, never on a success); progress texts are non-empty and cut to 500 characters.

#![no_main]

use agent_dispatch_core::fuzzing::{self, RunEnd};
use agent_dispatch_core::ExitStatus;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ERROR_TYPES: &[&str] = &[
    "permission",
    "timeout",
    "recursion",
    "not_found",
    "cli_error",
    "budget",
    "usage_limit",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines: Vec<&str> = text.split('\n').collect();
    // With flag 0x08 the last line is stderr instead of stdout.
    let stderr = if flags & 0x08 != 0 {
        lines.pop().unwrap_or_default().to_owned()
    } else {
        String::new()
    };
    let end = RunEnd {
        exit: match flags & 0x07 {
            0 => None,
            1 => Some(ExitStatus::Code(0)),
            2 => Some(ExitStatus::Code(1)),
            3 => Some(ExitStatus::Code(143)),
            4 => Some(ExitStatus::Signal(9)),
            5 => Some(ExitStatus::Code(130)),
            6 => Some(ExitStatus::Code(-1)),
            _ => Some(ExitStatus::Signal(15)),
        },
        stderr,
        timed_out: flags & 0x10 != 0,
        json_mode: flags & 0x20 != 0,
        protocol: flags & 0x40 != 0,
        budget: (flags & 0x80 != 0).then_some(0.05),
    };
    let run = fuzzing::stream_json(&lines, &end);

    for message in &run.progress {
        assert!(!message.trim().is_empty(), "empty progress message");
        if !message.starts_with("Using tool: ") {
            assert!(
                message.chars().count() <= 500,
                "progress not cut: {message:?}"
            );
        }
    }
    let out = &run.outcome;
    let Value::Object(fields) = out else {
        panic!("outcome is not an object: {out}");
    };
    assert_eq!(out["agent"], "fuzz");
    assert!(out["result"].is_string(), "no result text: {out}");
    assert!(out["session_id"].is_string(), "no session_id: {out}");
    let Some(success) = out["success"].as_bool() else {
        panic!("no success flag: {out}");
    };
    if success {
        assert!(
            fields.get("error_type").is_none(),
            "success with an error_type: {out}"
        );
    } else {
        assert!(
            out["error"].as_str().is_some_and(|e| !e.is_empty()),
            "failure without an error: {out}"
        );
        let error_type = out["error_type"].as_str().unwrap_or_default();
        assert!(
            ERROR_TYPES.contains(&error_type),
            "error_type {error_type:?}: {out}"
        );
    }
    if run.result.is_none() && !end.timed_out {
        // Without a result line only a clean exit with plain text counts as success.
        if success {
            assert_eq!(
                end.exit,
                Some(ExitStatus::Code(0)),
                "success without a result: {out}"
            );
        }
    }
    // What a client receives must survive the wire.
    let wire = out.to_string();
    let back: Value = serde_json::from_str(&wire).expect("outcome JSON re-reads");
    assert_eq!(&back, out, "outcome changed on the wire");
});
