//! Replays every scenario in `fixtures/scenarios/` through the core on a virtual clock and
//! snapshots the timeline into `snapshots/`. The replay driver asserts the core's invariants
//! (one reply per request, nothing after exit, no I/O left open, the config lock never held
//! twice); this test adds determinism: the same scenario twice gives the same timeline.

use agent_dispatch_transports::replay::{self, Scenario};

#[test]
fn scenarios() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    settings.bind(|| {
        insta::glob!("../../fixtures", "scenarios/*.yaml", |path| {
            let text = std::fs::read_to_string(path).expect("read scenario");
            let scenario: Scenario =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let first = replay::run(&scenario, &fixtures);
            let second = replay::run(&scenario, &fixtures);
            assert_eq!(
                first.timeline, second.timeline,
                "replay is not deterministic"
            );
            insta::assert_snapshot!(first.timeline);
        });
    });
}
