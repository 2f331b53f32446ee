//! Crash safety (issue #8, part 3), against the built `agent-dispatch serve` and CLI.
//!
//! - `kill_9_during_job_writes`: N times (30 by default; `AGENT_DISPATCH_CRASH_ITERATIONS`
//!   for hundreds), a server starts on the jobs folder the previous one left behind, must
//!   have recovered it by the time its first job tool answers, then takes a stream of
//!   `dispatch_async` calls whose fake `claude` ends after 0–300 ms (so records are created,
//!   started and finished all the time) and is `kill -9`ed after a random 0–500 ms. After
//!   each kill every `<id>.json` must parse as a job record (`JobRecord::parse`), and nothing
//!   but records, `.jobs.lock` and temp files of writes cut short may be in the folder.
//!   Then the test prepares the next start: `running` records are backdated 2 h, `pending`
//!   ones get a `created_at` 25 h ago (both must come back `failed`, "Abandoned in …"), the
//!   temp files left by the kill are aged past `STALE_TEMP_AGE` and one more is planted
//!   (all must be gone), and a fresh temp file is planted too (it must be kept).
//!
//!   What is guaranteed about temp files (`transports/src/exec/jobs.rs`): a start removes
//!   every `<id>.tmp` / `<id>.<hex>.tmp` whose last change is older than `STALE_TEMP_AGE`
//!   (10 s). A younger one may belong to a writer in another process and is kept, so the
//!   temp file of a write cut short by a crash survives a restart within 10 s and goes at
//!   the first start once it is 10 s old. A record itself is never half-written: it is
//!   replaced by a rename. The delays come from a seeded generator; the seed is printed
//!   (`AGENT_DISPATCH_CRASH_SEED` replays it).
//! - `concurrent_adds_lose_nothing`: two `agent-dispatch add` loops and a server's `add_agent`
//!   calls add 50 agents each, at the same time, to one `agents.yaml`: all 150 (and the one
//!   that was there) are in the file at the end, it parses, it is `0600`, and no temp file
//!   is left.
//! - `full_disk_gives_clear_errors`: config and jobs folder on a 64 KiB tmpfs (needs root
//!   and `mount`; skipped with the reason otherwise), filled up: `add_agent`, `update_agent`,
//!   `remove_agent` and `dispatch_async` fail with errors that say the disk is full, and
//!   `agents.yaml` and the job records are byte for byte what they were; once space is
//!   freed, the same server works again.
//! - `a_result_that_cannot_be_written_is_kept_and_written_later`: a job ends while that
//!   tmpfs is full; the server answers for it from memory and writes its final record once
//!   there is room (retried every 5 s).
//!
//! The fake `claude` is a `sh` script (no Python needed). Measured figures go to stderr.

mod support;

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_dispatch_core::config::ConfigDoc;
use agent_dispatch_core::jobs::{is_temp_name, valid_job_id, JobRecord, JobStatus};
use agent_dispatch_transports::jobs::STALE_TEMP_AGE;
use serde_json::{json, Value};

use support::*;

const AGENT: &str = "helper";

// ---------------------------------------------------------------------------------------------
// the rig

/// A small xorshift generator: the test needs varied delays, not good randomness. The seed
/// is printed so a failing sequence can be replayed (`AGENT_DISPATCH_CRASH_SEED`).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("AGENT_DISPATCH_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

/// A fake `claude` in `sh`: after 0–300 ms (its pid modulo 301, so consecutive runs differ)
/// an init line and a successful result.
fn quick_fake(scratch: &Scratch) -> PathBuf {
    write_script(
        &scratch.path,
        "claude-quick",
        "sid=00000000-0000-4000-8000-000000000000\n\
         prev=\n\
         for a in \"$@\"; do [ \"$prev\" = --session-id ] && sid=$a; prev=$a; done\n\
         ms=$(( $$ % 301 ))\n\
         sleep \"$(printf '0.%03d' \"$ms\")\"\n\
         printf '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"%s\"}\\n' \"$sid\"\n\
         printf '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"duration_ms\":%s,\"num_turns\":1,\"result\":\"quick answer\",\"session_id\":\"%s\",\"total_cost_usd\":0.0001}\\n' \"$ms\" \"$sid\"\n",
    )
}

/// Sets a file's modification (and access) time to `age` ago.
fn backdate(path: &Path, age: Duration) -> std::io::Result<()> {
    let then = SystemTime::now() - age;
    File::options()
        .write(true)
        .open(path)?
        .set_times(FileTimes::new().set_accessed(then).set_modified(then))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What is in a jobs folder: parsed records by id, temp files, and anything else.
#[derive(Debug, Default)]
struct Folder {
    records: BTreeMap<String, JobRecord>,
    temps: Vec<PathBuf>,
    /// Files that are neither a parseable record, a temp file nor the lock, with why.
    bad: Vec<String>,
}

impl Folder {
    fn read(dir: &Path) -> Folder {
        let mut folder = Folder::default();
        let Ok(entries) = fs::read_dir(dir) else {
            return folder;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".jobs.lock" {
                continue;
            }
            if is_temp_name(&name) {
                folder.temps.push(path);
                continue;
            }
            let Some(id) = name.strip_suffix(".json").filter(|id| valid_job_id(id)) else {
                folder
                    .bad
                    .push(format!("{name}: not a record, temp file or the lock"));
                continue;
            };
            match fs::read_to_string(&path) {
                // A record may have been deleted since the listing (gc); skip it then.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => folder.bad.push(format!("{name}: unreadable: {e}")),
                Ok(text) => match JobRecord::parse(id, &text) {
                    Ok(record) => {
                        folder.records.insert(id.to_owned(), record);
                    }
                    Err(e) => folder.bad.push(format!(
                        "{name}: does not parse as a record ({e}): {text:?}"
                    )),
                },
            }
        }
        folder
    }
}

/// How the iterations went, for the report.
#[derive(Debug, Default)]
struct Tally {
    calls: usize,
    records_checked: usize,
    kills_mid_write: usize,
    temps_removed: usize,
    abandoned_running: usize,
    abandoned_pending: usize,
    statuses: BTreeMap<&'static str, usize>,
}

// ---------------------------------------------------------------------------------------------
// (a) kill -9 during job writes

#[test]
fn kill_9_during_job_writes() {
    const TEST: &str = "kill_9_during_job_writes";
    let iterations: usize = std::env::var("AGENT_DISPATCH_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let mut rng = Rng::from_env();
    let seed = rng.0;
    let scratch = Scratch::new(TEST);
    let agent_dir = scratch.dir("agent");
    let config = write_config(
        &scratch,
        &[TestAgent {
            name: AGENT,
            directory: &agent_dir,
            extra: &[],
        }],
        &["  max_concurrency: 6"],
    );
    let fake = quick_fake(&scratch);
    let env = claude_env(&fake, &[]);
    let jobs = jobs_dir(&scratch);
    let mut tally = Tally::default();
    // What the next start must have done: records it must fail, temps it must remove, temps
    // it must keep.
    let mut must_fail: Vec<(String, &str)> = Vec::new();
    let mut must_go: Vec<PathBuf> = Vec::new();
    let mut must_stay: Vec<PathBuf> = Vec::new();
    let started = Instant::now();

    for round in 0..=iterations {
        let mut server = McpServer::start(&scratch, &config, &env);
        server.initialize();
        // Job tools wait for start-up recovery: once this answers, recovery has read every
        // record and removed the stale temp files.
        let (listing, is_error) =
            server.call_within("dispatch_jobs", json!({"limit": 1000}), CALL_LIMIT);
        assert!(!is_error, "round {round}: dispatch_jobs: {listing}");
        for path in &must_go {
            assert!(
                !path.exists(),
                "round {round}: the stale temp file {} survived the start",
                path.display()
            );
        }
        tally.temps_removed += must_go.len();
        for path in must_stay.drain(..) {
            assert!(
                path.exists(),
                "round {round}: the fresh temp file {} (younger than {STALE_TEMP_AGE:?}) was removed",
                path.display()
            );
            fs::remove_file(&path).expect("remove the fresh temp file");
        }
        // Recovery's own writes are not awaited by any call: poll the folder.
        let recovered = wait_until(Duration::from_secs(10), || {
            let folder = Folder::read(&jobs);
            must_fail.iter().all(|(id, _)| {
                folder.records.get(id).is_some_and(|r| {
                    r.status == JobStatus::Failed
                        && r.error
                            .as_deref()
                            .is_some_and(|e| e.contains("Abandoned in"))
                })
            })
        });
        if recovered.is_none() {
            let folder = Folder::read(&jobs);
            let wrong: Vec<_> = must_fail
                .iter()
                .filter_map(|(id, was)| {
                    let r = folder.records.get(id);
                    let ok = r.is_some_and(|r| r.status == JobStatus::Failed);
                    (!ok).then(|| format!("{id} (was {was}): {r:?}"))
                })
                .collect();
            panic!(
                "round {round} (seed {seed}): abandoned records were not failed by the start:\n{}\nserver stderr:\n{}",
                wrong.join("\n"),
                server.stderr_so_far()
            );
        }
        for (_, was) in must_fail.drain(..) {
            match was {
                "running" => tally.abandoned_running += 1,
                _ => tally.abandoned_pending += 1,
            }
        }
        if round == iterations {
            // The last start only checks the previous round's recovery.
            let folder = Folder::read(&jobs);
            assert!(folder.bad.is_empty(), "{:#?}", folder.bad);
            break;
        }

        // Load: dispatch_async calls, not waiting for their replies, for 0–500 ms.
        let window = Duration::from_millis(rng.upto(500));
        let load_started = Instant::now();
        while load_started.elapsed() < window {
            server.send_request(
                "tools/call",
                json!({"name": "dispatch_async",
                    "arguments": {"agent": AGENT, "task": format!("round {round} job {}", tally.calls)}}),
            );
            tally.calls += 1;
            thread::sleep(Duration::from_millis(rng.upto(10)));
        }
        server.kill9();

        // Every record parses; nothing else is there.
        let folder = Folder::read(&jobs);
        assert!(
            folder.bad.is_empty(),
            "round {round} (seed {seed}): after kill -9:\n{}",
            folder.bad.join("\n")
        );
        tally.records_checked += folder.records.len();
        tally.kills_mid_write += usize::from(!folder.temps.is_empty());
        for record in folder.records.values() {
            *tally.statuses.entry(record.status.as_str()).or_default() += 1;
        }

        // Prepare the next start.
        for (id, record) in &folder.records {
            let path = jobs.join(format!("{id}.json"));
            match record.status {
                JobStatus::Running => {
                    backdate(&path, Duration::from_secs(2 * 3600)).expect("backdate a record");
                    must_fail.push((id.clone(), "running"));
                }
                JobStatus::Pending => {
                    let mut value: Value =
                        serde_json::from_str(&fs::read_to_string(&path).expect("read record"))
                            .expect("a record is JSON");
                    value["created_at"] = json!(unix_now() - 25.0 * 3600.0);
                    let tmp = scratch.join("pending.rewrite");
                    fs::write(&tmp, serde_json::to_string_pretty(&value).expect("json"))
                        .expect("write record");
                    fs::rename(&tmp, &path).expect("replace record");
                    must_fail.push((id.clone(), "pending"));
                }
                // Finished records are done with: remove them so the folder stays small.
                _ => fs::remove_file(&path).expect("remove a finished record"),
            }
        }
        must_go = folder.temps;
        for path in &must_go {
            backdate(path, STALE_TEMP_AGE + Duration::from_secs(50)).expect("age a temp file");
        }
        let planted_old = jobs.join(format!("{:032x}.{:016x}.tmp", rng.next(), rng.next()));
        let planted_fresh = jobs.join(format!("{:032x}.{:016x}.tmp", rng.next(), rng.next()));
        if jobs.exists() {
            fs::write(&planted_old, "{\"half\": ").expect("plant a temp file");
            backdate(&planted_old, Duration::from_secs(3600)).expect("age it");
            must_go.push(planted_old);
            fs::write(&planted_fresh, "{\"half\": ").expect("plant a temp file");
            must_stay.push(planted_fresh);
        }
    }
    let took = started.elapsed();
    report_line(&format!(
        "{TEST}: {iterations} kill -9s in {took:.2?} (seed {seed}): {} dispatch_async calls, {} record files parsed after the kills (by status: {:?}), {} kills left a write's temp file, {} stale temp files removed at the next start, {} running and {} pending abandoned records failed by the next start",
        tally.calls,
        tally.records_checked,
        tally.statuses,
        tally.kills_mid_write,
        tally.temps_removed,
        tally.abandoned_running,
        tally.abandoned_pending,
    ));
    assert!(
        tally.records_checked > 0 && tally.statuses.contains_key("done"),
        "the load created and finished records: {tally:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) concurrent adds

/// `agent-dispatch add` for `names`, one process after the other; panics on a failure.
fn cli_adds(scratch: &Scratch, config: &Path, dir: &Path, names: Vec<String>) -> Duration {
    let started = Instant::now();
    for name in names {
        let mut cmd = command_in(scratch, config, &[]);
        cmd.args(["add", &name])
            .arg(dir)
            .args(["-d", "added by the CLI", "--timeout", "60"]);
        let done = run_limited(
            cmd,
            Duration::from_secs(60),
            &format!("agent-dispatch add {name}"),
        );
        assert!(
            done.status.success(),
            "agent-dispatch add {name}: {}\nstdout:\n{}\nstderr:\n{}",
            done.status,
            done.stdout,
            done.stderr
        );
    }
    started.elapsed()
}

#[test]
fn concurrent_adds_lose_nothing() {
    const TEST: &str = "concurrent_adds_lose_nothing";
    const EACH: usize = 50;
    let scratch = Scratch::new(TEST);
    let dir = scratch.dir("agent");
    let config = write_config(
        &scratch,
        &[TestAgent {
            name: "seed",
            directory: &dir,
            extra: &[],
        }],
        &[],
    );
    let mut server = McpServer::start(&scratch, &config, &[]);
    server.initialize();

    let barrier = Barrier::new(3);
    let started = Instant::now();
    let (refused, mcp_took, cli_took) = thread::scope(|scope| {
        let clis: Vec<_> = ["cli-a", "cli-b"]
            .into_iter()
            .map(|prefix| {
                let (scratch, config, dir, barrier) = (&scratch, &config, &dir, &barrier);
                scope.spawn(move || {
                    let names = (0..EACH).map(|i| format!("{prefix}-{i}")).collect();
                    barrier.wait();
                    cli_adds(scratch, config, dir, names)
                })
            })
            .collect();
        barrier.wait();
        let mut refused = Vec::new();
        for i in 0..EACH {
            let name = format!("mcp-{i}");
            let (payload, is_error) = server.call_within(
                "add_agent",
                json!({"name": name, "directory": dir, "description": "added over MCP", "timeout": 60}),
                Duration::from_secs(60),
            );
            if is_error || payload["added"] != name.as_str() {
                refused.push(format!("{name}: {payload}"));
            }
        }
        let mcp_took = started.elapsed();
        let cli_took: Vec<Duration> = clis
            .into_iter()
            .map(|t| t.join().expect("a CLI thread panicked"))
            .collect();
        (refused, mcp_took, cli_took)
    });
    let took = started.elapsed();
    assert!(refused.is_empty(), "add_agent refused: {refused:#?}");

    let bytes = fs::read(&config).expect("read agents.yaml");
    let doc = ConfigDoc::parse(Some(&bytes), &scratch.join("home"), &scratch.path)
        .unwrap_or_else(|e| panic!("agents.yaml does not parse after the adds: {e}"));
    let names: Vec<&str> = doc.config.names();
    let mut expected = vec!["seed".to_owned()];
    for prefix in ["cli-a", "cli-b", "mcp"] {
        expected.extend((0..EACH).map(|i| format!("{prefix}-{i}")));
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|n| !names.contains(&n.as_str()))
        .collect();
    assert!(missing.is_empty(), "lost agents: {missing:?}");
    assert_eq!(names.len(), expected.len(), "{names:?}");
    let mode = fs::metadata(&config)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o600, "agents.yaml mode {mode:o}");
    let leftovers: Vec<String> = fs::read_dir(&scratch.path)
        .expect("scratch")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("agents.yaml.") && n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    let listed = server.call("list_agents", json!({}));
    assert_eq!(
        listed["result"].as_array().map(Vec::len),
        Some(expected.len())
    );
    report_line(&format!(
        "{TEST}: {} agents added at once by 2 CLI loops ({:.2?}, {:.2?}) and add_agent ({mcp_took:.2?}); all {} present after {took:.2?}, mode {mode:o}",
        3 * EACH,
        cli_took[0],
        cli_took[1],
        names.len()
    ));
}

// ---------------------------------------------------------------------------------------------
// (c) a full disk

/// A tmpfs mounted at `path` for the test's life; unmounted on drop.
#[derive(Debug)]
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a `size` tmpfs at `path`, or says why it cannot.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = File::create(path).expect("create the filler");
    let mut written = 0;
    for size in [4096, 1] {
        let chunk = vec![b'f'; size];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(_) => break,
            }
        }
    }
    let _ = file.sync_all();
    written
}

/// The names in `dir` that look like temp files of an atomic write.
fn temp_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// A 64 KiB tmpfs in `scratch`, or `None` after a skip message (it needs root and `mount`).
fn small_disk(test: &str, scratch: &Scratch) -> Option<Tmpfs> {
    match Tmpfs::mount(&scratch.join("disk"), "64k") {
        Ok(disk) => Some(disk),
        Err(why) => {
            report_line(&format!("skipped: {test}: {why}"));
            None
        }
    }
}

/// The server's environment: `claude` is `fake`, job records go to `jobs`.
fn env_with_jobs(fake: &Path, jobs: &Path) -> Vec<(String, String)> {
    let mut env = claude_env(fake, &[]);
    env.push((
        "AGENT_DISPATCH_JOBS_DIR".to_owned(),
        jobs.to_str().expect("utf-8 path").to_owned(),
    ));
    env
}

#[test]
fn full_disk_gives_clear_errors() {
    const TEST: &str = "full_disk_gives_clear_errors";
    let scratch = Scratch::new(TEST);
    let Some(disk) = small_disk(TEST, &scratch) else {
        return;
    };
    let agent_dir = scratch.dir("agent");
    let config = disk.path.join("agents.yaml");
    let jobs = disk.path.join("jobs");
    let dir_yaml = Value::from(agent_dir.to_str().expect("utf-8 path")).to_string();
    fs::write(
        &config,
        format!(
            "agents:\n  {AGENT}:\n    directory: {dir_yaml}\n    description: on a small disk\nsettings:\n  cache:\n    enabled: false\n"
        ),
    )
    .expect("write agents.yaml");
    let fake = quick_fake(&scratch);
    let env = env_with_jobs(&fake, &jobs);
    let mut server = McpServer::start(&scratch, &config, &env);
    server.initialize();

    // An agent added and a job run to its end: what works while there is room.
    let add_and_run = |server: &mut McpServer, name: &str, task: &str| -> String {
        let added = server.call(
            "add_agent",
            json!({"name": name, "directory": agent_dir, "description": "x"}),
        );
        assert_eq!(added["added"], name, "{added}");
        let job = server.call("dispatch_async", json!({"agent": AGENT, "task": task}));
        let id = job["job_id"].as_str().expect("a job id").to_owned();
        let done = server.call(
            "dispatch_wait",
            json!({"job_id": id, "timeout_seconds": 30}),
        );
        assert_eq!(done["status"], "done", "{done}");
        id
    };
    let id = add_and_run(&mut server, "second", "before");
    let record_path = jobs.join(format!("{id}.json"));
    let written = wait_until(Duration::from_secs(5), || {
        fs::read_to_string(&record_path).is_ok_and(|t| t.contains("\"done\""))
    });
    assert!(written.is_some(), "the finished record is on disk");
    let config_before = fs::read(&config).expect("read agents.yaml");
    let record_before = fs::read(&record_path).expect("read the record");

    let filler = disk.path.join("filler");
    let filled = fill(&filler);
    let no_space = "No space left on device";
    let edits = [
        (
            "add_agent",
            json!({"name": "third", "directory": agent_dir, "description": "x"}),
        ),
        (
            "update_agent",
            json!({"name": "second", "description": "changed"}),
        ),
        ("remove_agent", json!({"name": "second"})),
    ];
    for (tool, args) in &edits {
        let (payload, is_error) = server.call_within(tool, args.clone(), CALL_LIMIT);
        let error = payload["error"].as_str().unwrap_or_default();
        assert!(
            is_error
                && error.starts_with(&format!("Could not save config at {}", config.display()))
                && error.contains(no_space),
            "{tool} on a full disk: {payload}"
        );
        let hint = payload["hint"].as_str().unwrap_or_default();
        assert!(hint.contains("free disk space"), "{tool}: {payload}");
        assert_eq!(
            fs::read(&config).expect("read agents.yaml"),
            config_before,
            "{tool} changed agents.yaml on a full disk"
        );
    }
    let (payload, is_error) = server.call_within(
        "dispatch_async",
        json!({"agent": AGENT, "task": "on a full disk"}),
        CALL_LIMIT,
    );
    let error = payload["error"].as_str().unwrap_or_default();
    assert!(
        is_error && error.contains("could not create the job record") && error.contains(no_space),
        "dispatch_async on a full disk: {payload}"
    );
    assert!(
        payload["hint"]
            .as_str()
            .is_some_and(|h| h.contains("free disk space")),
        "{payload}"
    );
    assert_eq!(fs::read(&record_path).expect("read record"), record_before);
    let records: Vec<String> = fs::read_dir(&jobs)
        .expect("jobs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(
        records,
        [format!("{id}.json")],
        "no new record on a full disk"
    );
    assert_eq!(temp_names(&disk.path), Vec::<String>::new());
    assert_eq!(temp_names(&jobs), Vec::<String>::new());
    let listed = server.call("list_agents", json!({}));
    assert_eq!(
        listed["result"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // Room again: the same server works.
    fs::remove_file(&filler).expect("remove the filler");
    add_and_run(&mut server, "third", "after");
    report_line(&format!(
        "{TEST}: a 64 KiB tmpfs filled with {filled} bytes: add/update/remove_agent and dispatch_async refused with '{no_space}', agents.yaml and the record intact, working again once freed"
    ));
    drop(server);
}

/// A job that ends while the disk is full: its final record cannot be written, so the server
/// keeps answering for it from memory (`dispatch_status` says `done`, not the `running` the
/// file still shows) and writes it again every 5 s; once there is room, the file says `done`
/// with the result.
#[test]
fn a_result_that_cannot_be_written_is_kept_and_written_later() {
    const TEST: &str = "a_result_that_cannot_be_written_is_kept_and_written_later";
    let scratch = Scratch::new(TEST);
    let Some(disk) = small_disk(TEST, &scratch) else {
        return;
    };
    let agent_dir = scratch.dir("agent");
    let jobs = disk.path.join("jobs");
    let go = scratch.join("go");
    let fake = write_script(
        &scratch.path,
        "claude-waits",
        &format!(
            "while [ ! -e {go} ]; do sleep 0.05; done\n\
             printf '{{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"00000000-0000-4000-8000-000000000000\"}}\\n'\n\
             printf '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"num_turns\":1,\"result\":\"kept answer\",\"session_id\":\"00000000-0000-4000-8000-000000000000\"}}\\n'\n",
            go = sh_quote(go.to_str().expect("utf-8 path"))
        ),
    );
    let config = write_config(
        &scratch,
        &[TestAgent {
            name: AGENT,
            directory: &agent_dir,
            extra: &[],
        }],
        &[],
    );
    let env = env_with_jobs(&fake, &jobs);
    let mut server = McpServer::start(&scratch, &config, &env);
    server.initialize();

    let job = server.call(
        "dispatch_async",
        json!({"agent": AGENT, "task": "wait for go"}),
    );
    let id = job["job_id"].as_str().expect("a job id").to_owned();
    let record_path = jobs.join(format!("{id}.json"));
    let on_disk = |status: &str| {
        fs::read_to_string(&record_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|r| r["status"] == status)
    };
    assert!(
        wait_until(Duration::from_secs(10), || on_disk("running")).is_some(),
        "the running record is on disk"
    );

    let filler = disk.path.join("filler");
    fill(&filler);
    fs::write(&go, "").expect("write the go file");
    let failed = format!("Could not write job {id}");
    assert!(
        wait_until(Duration::from_secs(10), || server
            .stderr_so_far()
            .contains(&failed))
        .is_some(),
        "the final write fails on the full disk: {}",
        server.stderr_so_far()
    );
    let status = server.call("dispatch_status", json!({"job_id": id}));
    assert_eq!(status["status"], "done", "answered from memory: {status}");
    let result = server.call("fetch_result", json!({"ref": id}));
    assert!(result.to_string().contains("kept answer"), "{result}");
    assert!(
        on_disk("running"),
        "the file is unchanged while the disk is full"
    );
    assert_eq!(temp_names(&jobs), Vec::<String>::new());

    fs::remove_file(&filler).expect("remove the filler");
    let written = wait_until(Duration::from_secs(15), || on_disk("done"));
    assert!(
        written.is_some(),
        "the final record written once there is room: {}\nserver stderr:\n{}",
        fs::read_to_string(&record_path).unwrap_or_default(),
        server.stderr_so_far()
    );
    let record: Value =
        serde_json::from_str(&fs::read_to_string(&record_path).expect("read")).expect("json");
    assert_eq!(record["result"]["result"], "kept answer", "{record:#}");
    let status = server.call("dispatch_status", json!({"job_id": id}));
    assert_eq!(status["status"], "done", "{status}");
    report_line(&format!(
        "{TEST}: final record written {:.1?} after the disk had room again",
        written.unwrap_or_default()
    ));
    drop(server);
}
