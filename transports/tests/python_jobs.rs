//! Job records shared with the published Python agent-dispatch, both ways.
//!
//! For each Python version (0.5.0, the spec's baseline, and 0.16.0, the newest) a venv under
//! `<target>/py-agent-dispatch[-0.16]` gets `agent-dispatch==<v>` and `mcp<2` (installed here
//! when missing: `.ci/run` pre-installs them). Then `tests/python/jobs_compat.py` drives the
//! package's own `JobStore` (its public API, as a black box):
//!
//! a. records we write (`JobRecord::to_json_pretty` through `jobs::write_job`) are listed,
//!    filtered and read by Python with the same values, and Python can move them on
//!    (mark_running, update_progress, finish) into records we parse again;
//! b. records Python writes in every lifecycle state parse with `JobRecord::parse`, and our
//!    rendering of them is byte-for-byte Python's file;
//! c. (0.16) Python's store waits for `<jobs dir>/.jobs.lock` while we hold it.
//!
//! Without pip or network the tests print `skipped: <why>`, unless
//! `AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1` (set by `.ci/run`), where that is a failure.
//! `AGENT_DISPATCH_PYTHON` picks the interpreter that creates the venvs (default `python3`).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_dispatch_core::jobs::{JobRecord, JobStatus};
use agent_dispatch_transports::jobs;
use serde_json::{json, Map, Value};

use support::TempDir;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/jobs_compat.py");

fn required() -> bool {
    std::env::var("AGENT_DISPATCH_REQUIRE_REAL_CLIENTS").is_ok_and(|v| v == "1")
}

/// A missing Python package: a skip locally, a failure when real clients are required.
fn skip_or_fail(test: &str, why: &str) {
    if required() {
        panic!("{test}: AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1 but {why}");
    }
    // Straight to stderr: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: {why} (set AGENT_DISPATCH_REQUIRE_REAL_CLIENTS=1 to make this a failure)"
    );
}

/// `<target>/py-agent-dispatch` for 0.5.0, `<target>/py-agent-dispatch-0.16` for 0.16.0.
fn venv_dir(version: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    match version {
        "0.5.0" => target.join("py-agent-dispatch"),
        _ => target.join(format!(
            "py-agent-dispatch-{}",
            version.rsplit_once('.').map_or(version, |(mm, _)| mm)
        )),
    }
}

fn installed_version(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m, agent_dispatch.jobs, mcp; print(m.version('agent-dispatch'))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The venv's python with `agent-dispatch==version` importable, installing it if needed.
fn python_with(version: &str) -> Result<PathBuf, String> {
    let venv = venv_dir(version);
    let python = venv.join("bin").join("python");
    if installed_version(&python).as_deref() == Some(version) {
        return Ok(python);
    }
    let base = std::env::var("AGENT_DISPATCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(
        Command::new(&base)
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        &format!("{base} -m venv {}", venv.display()),
    )?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            &format!("agent-dispatch=={version}"),
            "mcp<2",
        ]),
        &format!("pip install agent-dispatch=={version} 'mcp<2'"),
    )?;
    match installed_version(&python) {
        Some(v) if v == version => Ok(python),
        other => Err(format!(
            "after pip install, agent-dispatch is {other:?}, not {version}"
        )),
    }
}

/// Runs the helper script; its stdout is one JSON object.
fn py(python: &Path, args: &[&str]) -> Value {
    let out = Command::new(python)
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "jobs_compat.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "jobs_compat.py {args:?} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The records we hand to Python: every state, every optional field, unknown extras.
fn our_records(now: f64) -> BTreeMap<&'static str, JobRecord> {
    let base = JobRecord {
        id: String::new(),
        agent: "backend".into(),
        task: "Fix the bug — naïve 🦀 \"quoted\"\n2nd line".into(),
        context: None,
        caller: None,
        goal: None,
        status: JobStatus::Pending,
        created_at: now - 30.25,
        started_at: None,
        completed_at: None,
        result: None,
        error: None,
        progress: None,
        progress_updated_at: None,
        extra: Map::new(),
    };
    let mut out = BTreeMap::new();
    out.insert(
        "pending",
        JobRecord {
            id: new_id(),
            context: Some("ctx".into()),
            caller: Some("frontend".into()),
            goal: Some("ship it".into()),
            ..base.clone()
        },
    );
    out.insert(
        "running",
        JobRecord {
            id: new_id(),
            status: JobStatus::Running,
            created_at: now - 20.0,
            started_at: Some(now - 19.5),
            progress: Some(vec!["Using tool: Read".into(), "Checking…".into()]),
            progress_updated_at: Some(now - 1.0),
            ..base.clone()
        },
    );
    out.insert(
        "done",
        JobRecord {
            id: new_id(),
            status: JobStatus::Done,
            created_at: now - 10.0,
            started_at: Some(now - 9.0),
            completed_at: Some(now - 0.123_456_789),
            result: Some(json!({
                "agent": "backend", "success": true, "result": "Found 3 errors",
                "session_id": "0b3c6f8e-1d2a-4c5b-9e7f-123456789abc", "cost_usd": 0.0234,
                "duration_ms": 5000, "num_turns": 2, "hint": "a hint", "outcome": "done",
                "parsed_result": {"count": 3, "errors": ["a", null]}
            })),
            ..base.clone()
        },
    );
    out.insert(
        "failed",
        JobRecord {
            id: new_id(),
            status: JobStatus::Failed,
            created_at: now - 5.0,
            started_at: Some(now - 4.0),
            completed_at: Some(now - 3.0),
            result: Some(json!({
                "agent": "backend", "success": false, "result": "", "error": "timed out",
                "error_type": "timeout", "denied_tools": ["Bash"], "budget_exceeded": true
            })),
            error: Some("timed out".into()),
            ..base.clone()
        },
    );
    out.insert(
        "cancelled",
        JobRecord {
            id: new_id(),
            status: JobStatus::Cancelled,
            created_at: now - 4.0,
            completed_at: Some(now - 2.0),
            error: Some("Cancelled before execution".into()),
            ..base.clone()
        },
    );
    let mut extra = Map::new();
    extra.insert("response_format".into(), json!("json"));
    extra.insert("future_field".into(), json!({"nested": [1, 2.5]}));
    out.insert(
        "extra",
        JobRecord {
            id: new_id(),
            created_at: now - 1.0,
            extra,
            ..base
        },
    );
    out
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Reads and parses every record in `dir`, by id.
fn parse_all(dir: &Path) -> BTreeMap<String, (String, JobRecord)> {
    let files = jobs::list_jobs(dir, false).expect("list");
    let ids: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
    ids.iter()
        .zip(jobs::read_jobs(dir, &ids))
        .map(|(id, text)| {
            let text = text.expect("read").expect("listed record exists");
            let rec = JobRecord::parse(id, &text)
                .unwrap_or_else(|e| panic!("Python's record {id} does not parse: {e}\n{text}"));
            (id.clone(), (text, rec))
        })
        .collect()
}

fn compat(version: &str) {
    let test = format!("python_jobs_{version}");
    let python = match python_with(version) {
        Ok(python) => python,
        Err(why) => return skip_or_fail(&test, &why),
    };

    // a. Ours → Python.
    let scratch = TempDir::new("pyjobs");
    let dir = scratch.0.join("jobs");
    let records = our_records(unix_now());
    for rec in records.values() {
        jobs::write_job(&dir, &rec.id, &rec.to_json_pretty()).expect("write");
    }
    let read = py(&python, &["read", dir.to_str().expect("utf8 path")]);
    assert_eq!(read["version"], version);
    let job_fields: Vec<&str> = read["job_fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let result_fields: Vec<&str> = read["result_fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Python lists newest first (created_at descending): exactly our records.
    let mut expected: Vec<&JobRecord> = records.values().collect();
    expected.sort_by(|a, b| b.created_at.total_cmp(&a.created_at));
    let listed: Vec<&str> = read["list"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        listed,
        expected.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "Python's list() of our records"
    );
    for (label, rec) in &records {
        let ours = rec.to_value();
        let theirs = &read["records"][&rec.id];
        assert!(
            theirs.is_object(),
            "{version}: Python cannot get our {label} record"
        );
        assert_eq!(
            read["by_status"][rec.status.as_str()]
                .as_array()
                .expect("by status")
                .iter()
                .filter(|id| *id == rec.id.as_str())
                .count(),
            1,
            "{version}: list({}) misses our {label} record",
            rec.status
        );
        // Every field Python knows has our value; it shows nothing we did not write.
        for (key, value) in ours.as_object().expect("object") {
            if !job_fields.contains(&key.as_str()) {
                assert!(theirs.get(key).is_none());
                continue;
            }
            if key == "result" {
                for (rkey, rvalue) in value.as_object().expect("result") {
                    if result_fields.contains(&rkey.as_str()) {
                        assert_eq!(
                            &theirs[key][rkey], rvalue,
                            "{version}: {label}.result.{rkey}"
                        );
                    }
                }
                for rkey in theirs[key].as_object().expect("result").keys() {
                    assert!(
                        value.get(rkey).is_some(),
                        "{version}: {label}.result.{rkey} invented"
                    );
                }
            } else {
                assert_eq!(&theirs[key], value, "{version}: {label}.{key}");
            }
        }
        for key in theirs.as_object().expect("object").keys() {
            assert!(
                ours.get(key).is_some(),
                "{version}: {label}.{key} invented by Python"
            );
        }
    }

    // Python moves our records on; we read its writes back.
    let mutated = py(
        &python,
        &[
            "mutate",
            dir.to_str().expect("utf8 path"),
            &records["pending"].id,
            &records["running"].id,
            &records["done"].id,
        ],
    );
    assert_eq!(mutated["mark_running"]["status"], "running");
    assert_eq!(mutated["finish"]["status"], "done");
    assert_eq!(mutated["cancel_done"], "already_terminal");
    let back = parse_all(&dir);
    assert_eq!(back.len(), records.len());
    assert_eq!(back[&records["pending"].id].1.status, JobStatus::Running);
    let finished = &back[&records["running"].id].1;
    assert_eq!(finished.status, JobStatus::Done);
    assert_eq!(
        finished.result.as_ref().expect("result")["result"],
        "finished by python"
    );
    if version != "0.5.0" {
        assert_eq!(
            finished.progress.as_deref(),
            Some(&["from python".to_owned(), "last line".to_owned()][..])
        );
    }
    // A job Python finished is final for us too.
    let err = jobs::write_job(
        &dir,
        &records["running"].id,
        &JobRecord {
            status: JobStatus::Running,
            ..finished.clone()
        }
        .to_json_pretty(),
    )
    .expect_err("overwrote a job Python finished");
    assert!(err.contains("already done"), "{err}");

    // b. Python → ours.
    let scratch = TempDir::new("pyjobs");
    let dir = scratch.0.join("jobs");
    let written = py(&python, &["write", dir.to_str().expect("utf8 path")]);
    let ids: BTreeMap<String, String> =
        serde_json::from_value(written["ids"].clone()).expect("label → id");
    let parsed = parse_all(&dir);
    assert_eq!(parsed.len(), ids.len(), "{version}: listed {parsed:?}");
    let expect = [
        ("pending", JobStatus::Pending),
        ("running", JobStatus::Running),
        ("done", JobStatus::Done),
        ("failed", JobStatus::Failed),
        ("crashed", JobStatus::Failed),
        ("cancelled", JobStatus::Cancelled),
        ("completed", JobStatus::Done),
    ];
    for (label, status) in expect {
        let (text, rec) = &parsed[&ids[label]];
        assert_eq!(rec.status, status, "{version}: {label}");
        assert!(
            rec.extra.is_empty(),
            "{version}: {label} has unknown fields {:?}",
            rec.extra
        );
        // Same bytes: field order, indentation, float digits, raw UTF-8, no final newline.
        assert_eq!(
            &rec.to_json_pretty(),
            text,
            "{version}: {label} renders differently"
        );
        let summary = rec.summary();
        assert_eq!(summary["status"], status.as_str());
    }
    let pending = &parsed[&ids["pending"]].1;
    assert_eq!(pending.task, "still pending — naïve 🦀");
    assert_eq!(
        (
            pending.context.as_deref(),
            pending.caller.as_deref(),
            pending.goal.as_deref()
        ),
        (Some("ctx"), Some("frontend"), Some("ship it"))
    );
    let done = &parsed[&ids["done"]].1;
    assert_eq!(
        done.result.as_ref().expect("result")["parsed_result"],
        json!({"count": 3, "errors": ["a", null]})
    );
    let crashed = &parsed[&ids["crashed"]].1;
    assert_eq!(crashed.error.as_deref(), Some("Worker crashed: kaboom"));
    assert_eq!(crashed.summary()["error_type"], "cli_error");
    let cancelled = &parsed[&ids["cancelled"]].1;
    assert_eq!(cancelled.summary()["error_type"], "cancelled");
    assert_eq!(parsed[&ids["failed"]].1.summary()["error_type"], "timeout");
    if version != "0.5.0" {
        let running = &parsed[&ids["running"]].1;
        assert_eq!(running.summary()["last_progress"], "Checking…");
    }
    // Python's terminal records are final for us; its pending one we may move on.
    for label in ["done", "failed", "crashed", "cancelled", "completed"] {
        let rec = &parsed[&ids[label]].1;
        let err = jobs::write_job(&dir, &rec.id, &rec.to_json_pretty()).expect_err(label);
        assert!(err.contains("a finished job is never overwritten"), "{err}");
    }
    let moved = JobRecord {
        status: JobStatus::Running,
        started_at: Some(unix_now()),
        ..pending.clone()
    };
    jobs::write_job(&dir, &moved.id, &moved.to_json_pretty()).expect("move pending on");
    assert_eq!(parse_all(&dir)[&moved.id].1, moved);

    // c. One lock for both implementations (0.12+ takes `.jobs.lock`).
    if version != "0.5.0" {
        let lock = fs::File::options()
            .read(true)
            .write(true)
            .open(jobs::lock_path(&dir))
            .expect("Python created the lock file");
        lock.lock().expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1000));
            drop(lock);
        });
        let waited = py(&python, &["lock", dir.to_str().expect("utf8 path")]);
        release.join().expect("release");
        let elapsed = waited["elapsed"].as_f64().expect("elapsed");
        assert!(
            elapsed >= 0.7,
            "{version}: Python created a job in {elapsed:.3} s while we held .jobs.lock"
        );
    }
}

#[test]
fn python_0_5_0_shares_job_records() {
    compat("0.5.0");
}

#[test]
fn python_0_16_0_shares_job_records() {
    compat("0.16.0");
}
