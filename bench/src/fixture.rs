//! What the workloads run on: a scratch folder with agent projects, `agents.yaml`, a `bin/`
//! holding `claude` (the instant fake), 10 000 job records, the stream file, the Python venv,
//! and the machine's description.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// A scratch folder under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new() -> Result<Scratch, String> {
        let path = std::env::temp_dir().join(format!(
            "agent-dispatch-bench-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let path = path
            .canonicalize()
            .map_err(|e| format!("canonicalize {}: {e}", path.display()))?;
        Ok(Scratch { path })
    }

    pub fn dir(&self, rel: &str) -> Result<PathBuf, String> {
        let dir = self.path.join(rel);
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The agents of every workload: `AGENTS` small projects, each with a CLAUDE.md, a README, an
/// `.mcp.json` with two servers and a `package.json` (so `list_agents` has something to scan).
pub const AGENTS: usize = 5;

/// Creates the agent projects; returns their (name, directory).
pub fn agent_projects(scratch: &Scratch) -> Result<Vec<(String, PathBuf)>, String> {
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let name = format!("agent{i}");
        let dir = scratch.dir(&format!("projects/{name}"))?;
        write(
            &dir.join("CLAUDE.md"),
            &format!("# Project {i}\n\nA benchmark project. Run the tests before reporting.\n"),
        )?;
        write(&dir.join("README.md"), &format!("# agent{i}\n\nReadme.\n"))?;
        write(
            &dir.join(".mcp.json"),
            r#"{"mcpServers": {"postgres": {"command": "pg-mcp"}, "redis": {"command": "redis-mcp"}}}"#,
        )?;
        write(
            &dir.join("package.json"),
            r#"{"name": "bench", "description": "a benchmark project", "dependencies": {"express": "4"}}"#,
        )?;
        agents.push((name, dir));
    }
    Ok(agents)
}

/// Writes `agents.yaml` (cache off) with the given `max_concurrency`; returns its path.
pub fn write_config(
    scratch: &Scratch,
    file: &str,
    agents: &[(String, PathBuf)],
    max_concurrency: usize,
) -> Result<PathBuf, String> {
    let mut yaml = String::from("agents:\n");
    for (name, dir) in agents {
        // A JSON string is a valid YAML double-quoted scalar.
        let dir = Value::from(dir.to_string_lossy().as_ref()).to_string();
        let _ = write!(
            yaml,
            "  {name}:\n    directory: {dir}\n    description: benchmark agent {name}\n    timeout: 600\n"
        );
    }
    let _ = write!(
        yaml,
        "settings:\n  max_concurrency: {max_concurrency}\n  cache:\n    enabled: false\n"
    );
    let path = scratch.path.join(file);
    write(&path, &yaml)?;
    Ok(path)
}

/// `fixtures/bin/fake-claude-instant`, linked as `<scratch>/bin/claude`; returns that folder
/// (to put first on `PATH`).
pub fn claude_bin_dir(scratch: &Scratch, fake: &Path) -> Result<PathBuf, String> {
    let dir = scratch.dir("bin")?;
    let link = dir.join("claude");
    std::os::unix::fs::symlink(fake, &link)
        .map_err(|e| format!("symlink {}: {e}", link.display()))?;
    Ok(dir)
}

/// `dir`, then our `PATH`.
pub fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_owned()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Writes `n` finished job records (pretty JSON, the `JobRecord::to_json_pretty` layout) into
/// `dir`: 80 % done, 15 % failed, 5 % cancelled, created over the last six days.
pub fn job_records(dir: &Path, n: usize, agents: &[(String, PathBuf)]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    set_mode(dir, 0o700)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..n {
        let id = format!("{:016x}{:016x}", rng.u64(..), rng.u64(..));
        let agent = &agents[i % agents.len()].0;
        let created = now - 3600.0 - rng.f64() * 6.0 * 86400.0;
        let started = created + 0.05 + rng.f64();
        let completed = started + 5.0 + rng.f64() * 120.0;
        let task = format!(
            "Benchmark task number {i}: look through the logs of the last deploy and report \
             every error with its cause and the file it came from."
        );
        let kind = i % 20;
        let record = if kind < 16 {
            json!({
                "id": id, "agent": agent, "task": task, "caller": "bench", "goal": "benchmark",
                "status": "done", "created_at": created, "started_at": started,
                "completed_at": completed,
                "result": {
                    "agent": agent, "success": true,
                    "result": format!("Found {i} errors in the logs; all come from the retry loop in worker.py."),
                    "session_id": "6a0d1c9e-2b7f-4e43-9a51-3c8e2f1d7b90",
                    "cost_usd": 0.0123, "duration_ms": 4200, "num_turns": 3,
                },
            })
        } else if kind < 19 {
            json!({
                "id": id, "agent": agent, "task": task, "status": "failed",
                "created_at": created, "started_at": started, "completed_at": completed,
                "result": {
                    "agent": agent, "success": false, "result": "",
                    "error": "Agent timed out after 300s. Increase timeout in agents.yaml if the task needs more time.",
                    "error_type": "timeout",
                },
                "error": "Agent timed out after 300s. Increase timeout in agents.yaml if the task needs more time.",
            })
        } else {
            json!({
                "id": id, "agent": agent, "task": task, "status": "cancelled",
                "created_at": created, "completed_at": created + 1.0,
                "error": "Cancelled before execution",
            })
        };
        let path = dir.join(format!("{id}.json"));
        let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
        write(&path, &text)?;
        set_mode(&path, 0o600)?;
    }
    Ok(())
}

pub fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// The stream-json file of exactly `mb` MB (10^6 bytes) the stream workload `cat`s: an init
/// line, ~850-byte assistant text lines (with a `tool_use` and a `user` tool result every 50
/// lines), then a result. Kept in `cache_dir` and reused while its size matches.
pub fn stream_file(cache_dir: &Path, mb: u64) -> Result<PathBuf, String> {
    let path = cache_dir.join(format!("stream-{mb}mb.jsonl"));
    let target = mb * 1_000_000;
    if fs::metadata(&path).is_ok_and(|m| m.len() == target) {
        return Ok(path);
    }
    fs::create_dir_all(cache_dir).map_err(|e| format!("create {}: {e}", cache_dir.display()))?;
    let tmp = path.with_extension("tmp");
    let file = fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let sid = "00000000-0000-4000-8000-000000000000";
    let mut written: u64 = 0;
    let put = |out: &mut BufWriter<fs::File>, line: &str| -> Result<u64, String> {
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| format!("write {}: {e}", tmp.display()))?;
        Ok(line.len() as u64 + 1)
    };
    written += put(
        &mut out,
        &json!({"type": "system", "subtype": "init", "cwd": "/bench", "session_id": sid,
                "tools": ["Bash", "Read"], "mcp_servers": [], "model": "claude-fake",
                "permissionMode": "default", "apiKeySource": "none"})
        .to_string(),
    )?;
    let result = json!({"type": "result", "subtype": "success", "is_error": false,
        "duration_ms": 1, "duration_api_ms": 0, "num_turns": 1,
        "result": "streamed answer", "session_id": sid, "total_cost_usd": 0.0001})
    .to_string();
    let pad = "lorem ipsum dolor sit amet ".repeat(30);
    let mut n: u64 = 0;
    while written + result.len() as u64 + 1 < target {
        let line = if n % 50 == 49 {
            json!({"type": "user", "message": {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": format!("toolu_{n:08}"),
                 "content": pad.clone()}]}, "session_id": sid})
        } else if n % 50 == 48 {
            json!({"type": "assistant", "message": {"id": format!("msg_{n:08}"),
                "type": "message", "role": "assistant", "model": "claude-fake", "content": [
                {"type": "tool_use", "id": format!("toolu_{n:08}"), "name": "Read",
                 "input": {"file_path": "/bench/src/main.rs"}}]}, "session_id": sid})
        } else {
            json!({"type": "assistant", "message": {"id": format!("msg_{n:08}"),
                "type": "message", "role": "assistant", "model": "claude-fake",
                "content": [{"type": "text", "text": format!("{n}: {pad}")}],
                "stop_reason": null}, "parent_tool_use_id": null, "session_id": sid})
        };
        let line = line.to_string();
        let room = target - written - result.len() as u64 - 1;
        if line.len() as u64 + 1 > room {
            // Pad the last line so the file is exactly `target` bytes.
            let filler = " ".repeat(usize::try_from(room.saturating_sub(1)).unwrap_or(0));
            put(&mut out, &filler)?;
            break;
        }
        written += put(&mut out, &line)?;
        n += 1;
    }
    put(&mut out, &result)?;
    out.flush()
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    drop(out);
    fs::rename(&tmp, &path).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
    Ok(path)
}

/// The Python agent-dispatch this bench compares against.
pub const PYTHON_VERSION: &str = "0.5.0";

/// The venv's `agent-dispatch` and its version, when the venv holds one.
pub fn python_server(venv: &Path) -> Option<(PathBuf, String)> {
    let program = venv.join("bin/agent-dispatch");
    if !program.is_file() {
        return None;
    }
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('agent-dispatch'), m.version('mcp'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Some((program, version))
}

/// Creates the venv and installs `agent-dispatch==0.5.0` and `mcp<2` unless that is already
/// there.
pub fn setup_python(venv: &Path) -> Result<(), String> {
    if let Some((_, version)) = python_server(venv) {
        if version.split_whitespace().next() == Some(PYTHON_VERSION) {
            eprintln!(
                "Python agent-dispatch {PYTHON_VERSION} already in {}",
                venv.display()
            );
            return Ok(());
        }
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        eprintln!("$ {cmd:?}");
        let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?} failed: {status}"))
        }
    };
    if !venv.join("bin/pip").is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        &format!("agent-dispatch=={PYTHON_VERSION}"),
        "mcp<2",
    ]))
}

/// `nproc`, CPU model, memory and kernel, one line each.
pub fn machine() -> Vec<String> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    vec![
        format!("cpu: {model} ({cores} cores available)"),
        format!("memory: {:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
        format!("kernel: Linux {kernel}"),
    ]
}

/// The 1-minute load average (`/proc/loadavg`), as text.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
