//! The jobs folder against the real file system: id checks before any path, modes, atomic
//! writes, terminal records kept, temp files cleaned, concurrent writers, a large listing.
//!
//! Most tests call the blocking functions in `agent_dispatch_transports::jobs` directly; one
//! goes through the executor (`Effect::Io` → `Input::IoDone`) to check the wiring.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agent_dispatch_core::jobs::{JobRecord, JobStatus, JobSummary};
use agent_dispatch_core::{Effect, Input, IoRequest, IoResult, OpId};
use agent_dispatch_transports::{jobs, Executor};

use support::{mode, TempDir};

const ID: &str = "0123456789abcdef0123456789abcdef";
const ID2: &str = "fedcba9876543210fedcba9876543210";

/// Every name in `dir`, sorted, recursively (`sub/name`).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("type").is_dir() {
            for sub in tree(&entry.path()) {
                out.push(format!("{name}/{sub}"));
            }
        }
        out.push(name);
    }
    out.sort();
    out
}

fn record(id: &str, status: JobStatus) -> JobRecord {
    let finished = status.is_terminal();
    JobRecord {
        id: id.to_owned(),
        agent: "backend".into(),
        task: "Fix the bug".into(),
        context: None,
        caller: Some("frontend".into()),
        goal: None,
        status,
        created_at: 1_700_000_000.5,
        started_at: (status != JobStatus::Pending).then_some(1_700_000_001.0),
        completed_at: finished.then_some(1_700_000_002.0),
        result: (status == JobStatus::Done).then(|| {
            serde_json::json!({"agent": "backend", "success": true, "result": "ok", "cost_usd": 0.01})
        }),
        error: matches!(status, JobStatus::Failed | JobStatus::Cancelled).then(|| "boom".into()),
        progress: (status == JobStatus::Running).then(|| vec!["Using tool: Read".into()]),
        progress_updated_at: (status == JobStatus::Running).then_some(1_700_000_001.5),
        extra: serde_json::Map::new(),
    }
}

fn write(dir: &Path, rec: &JobRecord) -> Result<(), String> {
    jobs::write_job(dir, &rec.id, &rec.to_json_pretty())
}

fn bad_ids() -> Vec<String> {
    vec![
        String::new(),
        "../x".into(),
        "a".repeat(31),
        "a".repeat(33),
        ID.to_uppercase(),
        format!("{ID}\n"),
        format!("{}/../x", "a".repeat(28)),
        format!("{}/../../x", "a".repeat(32)),
        "..".into(),
        "/etc/passwd".into(),
        format!("{}\0", "a".repeat(31)),
    ]
}

#[test]
fn invalid_ids_are_refused_by_every_op_before_any_fs_access() {
    let root = TempDir::new("jobs");
    // A folder that does not exist: any access would create it or its records.
    let missing = root.0.join("nowhere").join("jobs");
    // And one that exists, so a traversal would have somewhere to land.
    let existing = root.0.join("jobs");
    fs::create_dir(&existing).expect("mkdir");
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = tree(&root.0);
    for bad in bad_ids() {
        for dir in [&missing, &existing] {
            let err = jobs::write_job(dir, &bad, "{}").expect_err(&bad);
            assert!(
                err.starts_with("Invalid ref/job_id format:"),
                "{bad:?}: {err}"
            );
            let read = jobs::read_jobs(dir, std::slice::from_ref(&bad));
            assert_eq!(read.len(), 1);
            assert!(read[0].is_err(), "{bad:?}: {read:?}");
            // One bad id among good ones: nothing is deleted.
            assert!(
                jobs::delete_jobs(dir, std::slice::from_ref(&bad)).is_err(),
                "{bad:?}"
            );
            assert!(
                jobs::delete_jobs(dir, &[ID.to_owned(), bad.clone()]).is_err(),
                "{bad:?}"
            );
        }
    }
    // The error names the id the way the tools do.
    assert_eq!(
        jobs::write_job(&existing, "../x", "{}").unwrap_err(),
        "Invalid ref/job_id format: '../x' (expected a 32-char hex id)"
    );
    assert!(!missing.exists() && !root.0.join("nowhere").exists());
    // Not even the lock file or a tightened mode: nothing was touched.
    assert_eq!(tree(&root.0), before);
    assert_eq!(mode(&existing), 0o755);

    // Listing a missing folder is an empty list and creates nothing.
    assert_eq!(jobs::list_jobs(&missing, true), Ok(vec![]));
    assert!(!root.0.join("nowhere").exists());
    // Reading a missing record in a missing folder: none. Deleting: 0. Nothing created.
    assert_eq!(jobs::read_jobs(&missing, &[ID.to_owned()]), vec![Ok(None)]);
    assert_eq!(jobs::delete_jobs(&missing, &[ID.to_owned()]), Ok(0));
    assert!(!root.0.join("nowhere").exists());
}

#[test]
fn an_unset_jobs_folder_is_refused() {
    let empty = Path::new("");
    assert!(jobs::write_job(empty, ID, "{}").is_err());
    assert!(jobs::list_jobs(empty, false).is_err());
    assert!(jobs::read_jobs(empty, &[ID.to_owned()])[0].is_err());
    assert!(jobs::delete_jobs(empty, &[ID.to_owned()]).is_err());
    assert!(!Path::new(&format!("{ID}.json")).exists());
}

#[test]
fn records_are_0600_in_a_0700_folder() {
    let root = TempDir::new("jobs");
    let dir = root.0.join("deep").join("jobs");
    write(&dir, &record(ID, JobStatus::Pending)).expect("write");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(format!("{ID}.json"))), 0o600);
    assert_eq!(mode(&dir.join(".jobs.lock")), 0o600);
    assert_eq!(tree(&dir), [".jobs.lock", &format!("{ID}.json")]);

    // An existing folder that is too open is tightened: it is ours.
    let open = root.0.join("open");
    fs::create_dir(&open).expect("mkdir");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).expect("chmod");
    write(&open, &record(ID, JobStatus::Pending)).expect("write");
    assert_eq!(mode(&open), 0o700);

    // The record reads back byte for byte.
    let text = record(ID, JobStatus::Pending).to_json_pretty();
    assert_eq!(
        jobs::read_jobs(&dir, &[ID.to_owned()]),
        vec![Ok(Some(text))]
    );
}

#[test]
fn a_terminal_record_is_never_overwritten() {
    let root = TempDir::new("jobs");
    let dir = &root.0;
    // pending → running → running (progress) → done: every step is allowed.
    write(dir, &record(ID, JobStatus::Pending)).expect("pending");
    write(dir, &record(ID, JobStatus::Running)).expect("running");
    write(dir, &record(ID, JobStatus::Running)).expect("running again");
    write(dir, &record(ID, JobStatus::Done)).expect("done");
    let done = fs::read_to_string(dir.join(format!("{ID}.json"))).expect("read");
    for status in [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Done,
    ] {
        let err = write(dir, &record(ID, status)).expect_err("overwrote a finished job");
        assert_eq!(
            err,
            format!("job {ID} is already done; a finished job is never overwritten")
        );
    }
    assert_eq!(
        fs::read_to_string(dir.join(format!("{ID}.json"))).expect("read"),
        done
    );
    // Every terminal status is protected, even in a record we could not fully parse.
    for status in ["failed", "cancelled"] {
        let text = format!(r#"{{"status": "{status}", "weird": true}}"#);
        fs::write(dir.join(format!("{ID2}.json")), &text).expect("plant");
        let err = write(dir, &record(ID2, JobStatus::Running)).expect_err(status);
        assert!(err.contains(&format!("already {status}")), "{err}");
    }
    // A damaged record (not JSON, unknown status) is replaced.
    for junk in ["{not json", r#"{"status": "finished"}"#, "", "[]"] {
        fs::write(dir.join(format!("{ID2}.json")), junk).expect("plant");
        write(dir, &record(ID2, JobStatus::Running)).expect(junk);
    }
    assert!(tree(dir).iter().all(|n| !n.ends_with(".tmp")));
}

#[test]
fn an_oversized_record_is_refused_both_ways() {
    let root = TempDir::new("jobs");
    let dir = &root.0;
    let big = "x".repeat(jobs::MAX_JOB_BYTES as usize + 1);
    assert!(jobs::write_job(dir, ID, &big).is_err());
    assert!(!dir.join(format!("{ID}.json")).exists());
    // A planted huge file (sparse) is refused, not read.
    let file = fs::File::create(dir.join(format!("{ID}.json"))).expect("create");
    file.set_len(jobs::MAX_JOB_BYTES + 1).expect("set_len");
    let read = jobs::read_jobs(dir, &[ID.to_owned()]);
    assert!(
        matches!(&read[0], Err(e) if e.contains("too large")),
        "{read:?}"
    );
    // Exactly at the limit is fine (and not UTF-8-invalid: zeros are NUL characters).
    file.set_len(jobs::MAX_JOB_BYTES).expect("set_len");
    let read = jobs::read_jobs(dir, &[ID.to_owned()]);
    assert!(
        matches!(&read[0], Ok(Some(t)) if t.len() == jobs::MAX_JOB_BYTES as usize),
        "read failed"
    );
}

#[test]
fn odd_files_are_errors_not_hangs() {
    let root = TempDir::new("jobs");
    let dir = &root.0;
    // A FIFO named like a record must not block the reader.
    let fifo = dir.join(format!("{ID}.json"));
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    // A directory named like a record, and a file that is not UTF-8.
    fs::create_dir(dir.join(format!("{ID2}.json"))).expect("mkdir");
    let id3 = "a".repeat(32);
    fs::write(dir.join(format!("{id3}.json")), b"{\"x\": \"\xff\"}").expect("write");
    let start = Instant::now();
    let read = jobs::read_jobs(dir, &[ID.to_owned(), ID2.to_owned(), id3.clone()]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(read.iter().all(Result::is_err), "{read:?}");
    // Only the regular file is listed.
    let listed = jobs::list_jobs(dir, true).expect("list");
    let ids: Vec<&str> = listed.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, [id3.as_str()]);
    // A write over the FIFO replaces it (it is not a terminal record).
    write(dir, &record(ID, JobStatus::Pending)).expect("write over fifo");
    assert!(fs::metadata(&fifo).expect("meta").is_file());
}

#[test]
fn listing_keeps_valid_record_names_only() {
    let root = TempDir::new("jobs");
    let dir = &root.0;
    write(dir, &record(ID, JobStatus::Pending)).expect("write");
    write(dir, &record(ID2, JobStatus::Done)).expect("write");
    for junk in [
        "README.json".to_owned(),
        format!("{}.json", ID.to_uppercase()),
        format!("{}.json", "a".repeat(31)),
        format!("{ID}.json.bak"),
        format!("{ID}.JSON"),
        "notes.txt".to_owned(),
    ] {
        fs::write(dir.join(junk), "{}").expect("junk");
    }
    let start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let listed = jobs::list_jobs(dir, false).expect("list");
    let ids: Vec<&str> = listed.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, [ID, ID2]);
    for file in &listed {
        let text = fs::read_to_string(dir.join(format!("{}.json", file.id))).expect("read");
        assert_eq!(file.size, text.len() as u64);
        assert!((file.modified - start).abs() < 60.0, "{file:?} vs {start}");
    }
}

#[test]
fn stale_temp_files_are_cleaned_and_fresh_ones_kept() {
    let root = TempDir::new("jobs");
    let dir = &root.0;
    write(dir, &record(ID, JobStatus::Pending)).expect("write");
    let old = SystemTime::now() - Duration::from_secs(60);
    let plant = |name: &str, aged: bool| {
        let path = dir.join(name);
        fs::write(&path, "partial").expect("plant");
        if aged {
            let file = fs::File::options().write(true).open(&path).expect("open");
            file.set_modified(old).expect("set_modified");
        }
    };
    let ours_old = format!("{ID}.0123456789abcdef.tmp");
    let python_old = format!("{ID2}.{}.tmp", "ab".repeat(16)); // Python 0.11+: 32 hex
    let legacy_old = format!("{ID2}.tmp"); // Python 0.5
    let fresh = format!("{ID}.fedcba9876543210.tmp"); // a writer may be using it right now
    let foreign = "notes.tmp"; // not a record temp: not ours to delete
    let odd = format!("{ID}.not-hex.tmp");
    let wide = format!("{}.tmp", "é".repeat(20)); // byte 32 is inside a character
    plant(&wide, true);
    plant(&ours_old, true);
    plant(&python_old, true);
    plant(&legacy_old, true);
    plant(&fresh, false);
    plant(foreign, true);
    plant(&odd, true);

    // Without clean_temps nothing is removed.
    assert_eq!(jobs::list_jobs(dir, false).expect("list").len(), 1);
    assert_eq!(tree(dir).len(), 9);

    let listed = jobs::list_jobs(dir, true).expect("list");
    assert_eq!(listed.len(), 1);
    let mut expected = vec![
        ".jobs.lock".to_owned(),
        format!("{ID}.json"),
        fresh,
        foreign.to_owned(),
        odd,
        wide,
    ];
    expected.sort();
    assert_eq!(tree(dir), expected);
}

#[test]
fn delete_counts_what_existed() {
    let root = TempDir::new("jobs");
    let dir = &root.0;
    write(dir, &record(ID, JobStatus::Done)).expect("write");
    write(dir, &record(ID2, JobStatus::Failed)).expect("write");
    let third = "c".repeat(32);
    assert_eq!(
        jobs::delete_jobs(dir, &[ID.to_owned(), third.clone(), ID.to_owned()]),
        Ok(1)
    );
    assert_eq!(jobs::delete_jobs(dir, &[]), Ok(0));
    let ids: Vec<String> = jobs::list_jobs(dir, false)
        .expect("list")
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(ids, [ID2]);
    assert_eq!(
        jobs::read_jobs(dir, &[ID.to_owned(), third]),
        vec![Ok(None), Ok(None)]
    );
}

#[test]
fn concurrent_writers_of_one_id_never_expose_a_partial_record() {
    const WRITES: usize = 200;
    let root = TempDir::new("jobs");
    let dir = Arc::new(root.0.join("jobs"));
    let done = Arc::new(AtomicBool::new(false));
    // A reader that parses the record as often as it can while the writers race.
    let reader = {
        let dir = dir.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut parsed = 0usize;
            while !done.load(Ordering::Relaxed) {
                match jobs::read_jobs(&dir, &[ID.to_owned()]).remove(0) {
                    Ok(None) => {}
                    Ok(Some(text)) => {
                        JobRecord::parse(ID, &text)
                            .unwrap_or_else(|e| panic!("torn record ({e}): {text:?}"));
                        parsed += 1;
                    }
                    Err(e) => panic!("read failed: {e}"),
                }
            }
            parsed
        })
    };
    let writers: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|who| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for i in 0..WRITES {
                    let mut rec = record(ID, JobStatus::Running);
                    // Records of different sizes, so a torn write would show.
                    rec.progress = Some(vec![format!("{who} {i} {}", "x".repeat(i * 37))]);
                    write(&dir, &rec).expect("write");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    done.store(true, Ordering::Relaxed);
    let parsed = reader.join().expect("reader");
    let last = jobs::read_jobs(&dir, &[ID.to_owned()]).remove(0);
    let rec = JobRecord::parse(ID, &last.expect("read").expect("exists")).expect("parse");
    assert!(rec.progress.expect("progress")[0].contains(" 199 "));
    assert_eq!(tree(&dir), [".jobs.lock", &format!("{ID}.json")]);
    eprintln!(
        "concurrent writers: {parsed} successful reads during {} writes",
        2 * WRITES
    );
}

#[test]
fn listing_ten_thousand_records() {
    const N: usize = 10_000;
    let root = TempDir::new("jobs");
    let dir = &root.0;
    let setup = Instant::now();
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let id = format!("{i:032x}");
        let mut rec = record(
            &id,
            if i % 3 == 0 {
                JobStatus::Done
            } else {
                JobStatus::Failed
            },
        );
        rec.task = format!("task number {i}");
        // Plain writes for the set-up: 10 000 fsyncs would measure the disk, not us.
        fs::write(dir.join(format!("{id}.json")), rec.to_json_pretty()).expect("write");
        ids.push(id);
    }
    let setup = setup.elapsed();

    let start = Instant::now();
    let listed = jobs::list_jobs(dir, true).expect("list");
    let list_time = start.elapsed();
    assert_eq!(listed.len(), N);

    let start = Instant::now();
    let texts = jobs::read_jobs(dir, &ids);
    let read_time = start.elapsed();
    let texts: Vec<String> = texts
        .into_iter()
        .map(|t| t.expect("read").expect("exists"))
        .collect();
    // The index's path (what start-up recovery and dispatch_jobs do per record) ...
    let start = Instant::now();
    let rows: Vec<_> = ids
        .iter()
        .zip(&texts)
        .map(|(id, text)| JobSummary::parse(id, text).expect("summary"))
        .collect();
    let summary_time = start.elapsed();
    // ... and the full parse, which it must agree with.
    let start = Instant::now();
    let full: Vec<_> = ids
        .iter()
        .zip(&texts)
        .map(|(id, text)| JobRecord::parse(id, text).expect("parse").summary())
        .collect();
    let parse_time = start.elapsed();
    assert_eq!(rows.len(), N);
    for ((id, row), full) in ids.iter().zip(&rows).zip(&full) {
        assert_eq!(&row.to_value(id), full, "{id}");
    }
    eprintln!(
        "10 000 records: set-up {setup:?}; list_jobs {list_time:?}; read_jobs {read_time:?}; \
         JobSummary::parse {summary_time:?}; JobRecord::parse + summary {parse_time:?}"
    );
}

#[test]
fn the_executor_runs_job_requests_in_the_jobs_folder() {
    let root = TempDir::new("jobs");
    let dir = root.0.join("jobs");
    let (tx, inputs) = async_channel::unbounded();
    let mut exec = Executor::new(tx);
    let mut op = 0;
    let mut io = |exec: &mut Executor, request: IoRequest| {
        op += 1;
        exec.apply(Effect::Io {
            op: OpId(op),
            request,
        });
        let input = smol::block_on(futures_lite::future::or(
            async { inputs.recv().await.ok() },
            async {
                smol::Timer::after(Duration::from_secs(15)).await;
                None
            },
        ));
        match input {
            Some(Input::IoDone { op: done, result }) if done == OpId(op) => result,
            other => panic!("unexpected input {other:?}"),
        }
    };
    let text = record(ID, JobStatus::Pending).to_json_pretty();
    // An empty folder would mean the working directory: refused, nothing written anywhere.
    let IoResult::Written { result: Err(err) } = io(
        &mut exec,
        IoRequest::WriteJob {
            dir: std::path::PathBuf::new(),
            id: ID.into(),
            contents: text.clone(),
        },
    ) else {
        panic!("wrote without a jobs folder")
    };
    assert!(err.contains("no jobs folder"), "{err}");

    let written = io(
        &mut exec,
        IoRequest::WriteJob {
            dir: dir.clone(),
            id: ID.into(),
            contents: text.clone(),
        },
    );
    assert_eq!(written, IoResult::Written { result: Ok(()) });
    let IoResult::JobList { result: Ok(files) } = io(
        &mut exec,
        IoRequest::ListJobs {
            dir: dir.clone(),
            clean_temps: true,
        },
    ) else {
        panic!("list failed")
    };
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].id.as_str(), files[0].size),
        (ID, text.len() as u64)
    );
    assert_eq!(
        io(
            &mut exec,
            IoRequest::ReadJobs {
                dir: dir.clone(),
                ids: vec![ID.into(), ID2.into(), "../x".into()]
            }
        ),
        IoResult::Jobs {
            records: vec![
                Ok(Some(text)),
                Ok(None),
                Err("Invalid ref/job_id format: '../x' (expected a 32-char hex id)".into())
            ]
        }
    );
    assert_eq!(
        io(
            &mut exec,
            IoRequest::DeleteJobs {
                dir: dir.clone(),
                ids: vec![ID.into(), ID2.into()]
            }
        ),
        IoResult::Deleted { result: Ok(1) }
    );
    assert_eq!(
        io(
            &mut exec,
            IoRequest::ListJobs {
                dir: dir.clone(),
                clean_temps: false
            }
        ),
        IoResult::JobList { result: Ok(vec![]) }
    );
}
