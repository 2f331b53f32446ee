//! Where things live: the config path, home and working directory, the jobs folder, Claude
//! Code's own config, and programs on `PATH`, all from the environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agent_dispatch_core::Options;

/// Builds the core's options from this process's environment.
pub fn options() -> Options {
    let home = home();
    let config_path = config_path(&home);
    Options {
        jobs_dir: jobs_dir(&config_path),
        config_path,
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        home,
        seed: fastrand_seed(),
        unix_time_at_epoch: 0.0,
        depth: depth(),
        claude_program: claude_program(),
        idle_exit: None,
    }
}

/// Our own dispatch depth from `AGENT_DISPATCH_DEPTH` (set by a dispatching parent); a
/// missing or malformed value counts as 0 (top level), with a warning for the latter.
fn depth() -> u32 {
    match std::env::var("AGENT_DISPATCH_DEPTH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| {
            eprintln!(
                "agent-dispatch: warning: ignoring AGENT_DISPATCH_DEPTH={v:?} (not a number)"
            );
            0
        }),
        _ => 0,
    }
}

/// Where the `claude` program is: [`claude_program`] looked up on `PATH` (doctor and init use
/// the same program the dispatches run).
pub fn claude() -> Option<PathBuf> {
    which(&claude_program())
}

/// The `claude` program: `AGENT_DISPATCH_CLAUDE` (a path or a name on `PATH`) or `claude`.
fn claude_program() -> String {
    std::env::var("AGENT_DISPATCH_CLAUDE")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "claude".to_string())
}

/// `AGENT_DISPATCH_CONFIG` when set and non-empty, else `~/.config/agent-dispatch/agents.yaml`.
pub fn config_path(home: &Path) -> PathBuf {
    match std::env::var_os("AGENT_DISPATCH_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home
            .join(".config")
            .join("agent-dispatch")
            .join("agents.yaml"),
    }
}

/// `AGENT_DISPATCH_JOBS_DIR` when set and non-empty, else `jobs` beside the config.
pub fn jobs_dir(config_path: &Path) -> PathBuf {
    match std::env::var_os("AGENT_DISPATCH_JOBS_DIR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => config_path.parent().unwrap_or(Path::new(".")).join("jobs"),
    }
}

/// Claude Code's user config, where `claude mcp add --scope user` writes:
/// `$CLAUDE_CONFIG_DIR/.claude.json` when that is set, else `~/.claude.json`.
pub fn claude_json(home: &Path) -> PathBuf {
    match std::env::var_os("CLAUDE_CONFIG_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join(".claude.json"),
        _ => home.join(".claude.json"),
    }
}

/// The absolute, symlink-free path of this binary (what `init` registers).
pub fn this_exe() -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the path of this program: {e}"))?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

/// Looks `program` up on `PATH` like a shell does: the first executable regular file.
/// A name containing `/` is taken as a path.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                PathBuf::from(".").join(program)
            } else {
                dir.join(program)
            }
        })
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether two paths name the same file (after resolving symlinks; literal when either
/// cannot be resolved).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
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
