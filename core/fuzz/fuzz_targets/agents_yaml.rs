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
    // Known bug (see `config_with_a_tagged_key_is_written` in core/tests/properties.rs):
    // serde_yaml cannot emit a one-entry mapping whose key is tagged or a mapping
    // (`groups: {!t x: 1}`), and `to_yaml` panics on it. Skipped here so fuzzing goes on;
    // remove this guard with the fix.
    if serde_yaml::to_string(doc.raw()).is_err() {
        return;
    }
    let yaml = doc.to_yaml();
    let again = match fuzzing::agents_yaml(yaml.as_bytes()) {
        Ok(again) => again,
        // Known bug (see `written_config_with_an_escaped_tag_loads` in core/tests/properties.rs):
        // serde_yaml writes a tag's `%xx` escapes decoded (`!a%5b` becomes `!a[`), which does not
        // load. Skipped here so fuzzing goes on; remove this guard with the fix.
        Err(_) if data.contains(&b'%') => return,
        Err(e) => panic!("written config does not load: {e}\n---\n{yaml}"),
    };
    assert_eq!(
        again.config, doc.config,
        "config changed by a write:\n{yaml}"
    );
    assert_eq!(again.to_yaml(), yaml, "second write differs");
});
