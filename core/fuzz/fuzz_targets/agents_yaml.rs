//! The `agents.yaml` loader: arbitrary bytes as the config file.
//!
//! Checked: no panic (a broken file is an `Err` naming the problem); a file that loads can be
//! written back (`to_yaml`) and the written text loads to the same typed config, and writes
//! the same text again.

#![no_main]

use agent_dispatch_core::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = fuzzing::agents_yaml(data) else {
        return;
    };
    for (name, _) in &doc.config.agents {
        assert!(
            doc.config.agent(name).is_some(),
            "agent {name:?} not found by name"
        );
    }
    // A write either loads back to the same config or is refused (never a panic, never a
    // file that no longer loads).
    let Ok(yaml) = doc.to_yaml() else { return };
    let again = fuzzing::agents_yaml(yaml.as_bytes())
        .unwrap_or_else(|e| panic!("written config does not load: {e}\n---\n{yaml}"));
    assert_eq!(again.config, doc.config, "config changed by a write:\n{yaml}");
    assert_eq!(again.to_yaml().ok(), Some(yaml), "second write differs");
});
