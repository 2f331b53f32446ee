//! The job-record loader: arbitrary bytes as `<ID>.json`.
//!
//! Checked: no panic (a bad record is an `Err`); a record that loads is written back
//! (`to_json_pretty`) to text that loads to the same record (top-level `null`s of unknown
//! fields are dropped by design); the loose `record_status` agrees with the full parse; the
//! `dispatch_jobs` row can be built; the fast summary read never accepts a record the full
//! parse refuses, and reads the same summary from the others.

#![no_main]

use agent_dispatch_core::{fuzzing, jobs};
use libfuzzer_sys::fuzz_target;

/// The id the seeds use (the fuzzer learns it from them and from comparisons).
const ID: &str = "0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let loaded = fuzzing::job_record(ID, &text);
    if let Some(fast) = fuzzing::job_summary_fast(ID, &text) {
        let full = loaded.as_ref().ok().map(jobs::JobSummary::of);
        assert_eq!(Some(fast), full, "the fast summary read disagrees");
    }
    let Ok(record) = loaded else {
        return;
    };
    assert_eq!(record.id, ID);
    assert_eq!(
        jobs::record_status(&text),
        Some(record.status),
        "loose status differs"
    );
    let written = record.to_json_pretty();
    let again = fuzzing::job_record(ID, &written)
        .unwrap_or_else(|e| panic!("written record does not load: {e}\n{written}"));
    let mut expected = record.clone();
    expected.extra.retain(|_, v| !v.is_null());
    assert_eq!(again, expected, "record changed by a write:\n{written}");
    assert_eq!(again.to_json_pretty(), written, "second write differs");
    let _ = record.summary();
});
