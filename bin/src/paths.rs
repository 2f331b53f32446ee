//! Where things live: the config path, home and working directory, the jobs folder, Claude
//! Code's own config, and programs on `PATH`, all from the environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agent_dispatch_core::Options;

/// Builds the core's options from this process's environment (the rules live in
/// `Options::from_env`, shared with every host of the core).
pub fn options() -> Options {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let (options, warnings) =
        Options::from_env(|name| std::env::var_os(name), cwd, fastrand_seed(), 0.0);
    for warning in warnings {
        eprintln!("agent-dispatch: warning: {warning}");
    }
    // The client line cap is a setting too; it is read once, at start (a broken or missing
    // config keeps the default; the tools report the breakage). Read like the server reads it:
    // non-blocking and bounded, so a FIFO or a huge file cannot stall the start.
    let bytes = agent_dispatch_transports::files::read_config(&options.config_path)
        .ok()
        .flatten();
    let doc = agent_dispatch_core::config::ConfigDoc::parse(
        bytes.as_deref(),
        &options.home,
        &options.cwd,
    );
    let max_line_bytes = doc.map_or(options.max_line_bytes, |d| {
        usize::try_from(d.config.settings.limits.max_line_bytes).unwrap_or(usize::MAX)
    });
    Options {
        max_line_bytes,
        ..options
    }
}

/// Where the `claude` program is: [`claude_program`] looked up on `PATH` (doctor and init use
/// the same program the dispatches run).
pub fn claude() -> Option<PathBuf> {
    which(&options().claude_program)
}

/// The jobs folder for a config at `config_path` (the rule of `Options::from_env`).
pub fn jobs_dir(config_path: &Path) -> PathBuf {
    let var = |name: &str| match name {
        "AGENT_DISPATCH_CONFIG" => Some(config_path.as_os_str().to_owned()),
        _ => std::env::var_os(name),
    };
    Options::from_env(var, PathBuf::new(), 0, 0.0).0.jobs_dir
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

fn fastrand_seed() -> u64 {
    // Ids must differ between runs; the core derives them deterministically from this seed.
    std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
}
