//! Where things live: the config path, home and working directory, from the environment.

use std::path::PathBuf;

use agent_dispatch_core::Options;

/// Builds the core's options from this process's environment.
pub fn options() -> Options {
    let home = home();
    Options {
        config_path: config_path(&home),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        home,
        seed: fastrand_seed(),
        unix_time_at_epoch: 0.0,
    }
}

/// `AGENT_DISPATCH_CONFIG` when set and non-empty, else `~/.config/agent-dispatch/agents.yaml`.
pub fn config_path(home: &std::path::Path) -> PathBuf {
    match std::env::var_os("AGENT_DISPATCH_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home
            .join(".config")
            .join("agent-dispatch")
            .join("agents.yaml"),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn fastrand_seed() -> u64 {
    // Ids must differ between runs; the core derives them deterministically from this seed.
    std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
}
