//! The async jobs folder behind `IoRequest::{WriteJob, ListJobs, ReadJobs, DeleteJobs}`.
//!
//! One record per job, `<jobs dir>/<id>.json`, in the Python agent-dispatch's format, so both
//! versions can share the folder. Every function validates each id with
//! [`valid_job_id`] *before* it builds a path: an invalid id is an error with no file-system
//! access at all. Writes are atomic (unique temp file `<id>.<16 hex>.tmp`, 0600, fsync, rename,
//! fsync of the folder) and serialised across processes by an exclusive `flock` on
//! `<jobs dir>/.jobs.lock` (the lock the Python version takes too). A record whose status is
//! already terminal is never overwritten.
//!
//! Everything here blocks; the executor runs it on `smol::unblock`. The functions are public
//! so the CLI (`agent-dispatch jobs`, `gc`) and tests can use the same code.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use agent_dispatch_core::jobs::{is_temp_name, job_id_error, record_status, valid_job_id};
use agent_dispatch_core::{IoRequest, IoResult, JobFile, LogLevel};

/// How long a write or delete waits for `<jobs dir>/.jobs.lock` before going on without it.
pub const JOBS_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest record read or written (a bigger one is refused, never half-read).
pub const MAX_JOB_BYTES: u64 = 16 * 1024 * 1024;

/// A temp file at least this old is left over from an interrupted write (a write takes
/// milliseconds; younger ones may belong to a writer in another process).
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(10);

/// The lock file's name inside the jobs folder.
pub const LOCK_NAME: &str = ".jobs.lock";

/// How often a busy lock is retried.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// Performs one job request (blocking). `None` for a request that is not about jobs.
pub fn perform(request: &IoRequest) -> Option<IoResult> {
    Some(match request {
        IoRequest::WriteJob { dir, id, contents } => IoResult::Written {
            result: write_job(dir, id, contents),
        },
        IoRequest::ListJobs { dir, clean_temps } => IoResult::JobList {
            result: list_jobs(dir, *clean_temps),
        },
        IoRequest::ReadJobs { dir, ids } => IoResult::Jobs {
            records: read_jobs(dir, ids),
        },
        IoRequest::DeleteJobs { dir, ids } => IoResult::Deleted {
            result: delete_jobs(dir, ids),
        },
        _ => return None,
    })
}

/// The record file of a *validated* id.
fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// The lock file: `<dir>/.jobs.lock`.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(LOCK_NAME)
}

/// An empty path would put records in the working directory: refuse it.
fn check_dir(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        Err("no jobs folder configured".into())
    } else {
        Ok(())
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if valid_job_id(id) {
        Ok(())
    } else {
        Err(job_id_error(id))
    }
}

/// Writes one record atomically to `<dir>/<id>.json`.
///
/// Creates the folder (0700; an existing folder with looser permissions is tightened, it is
/// ours), takes the jobs lock, and refuses to replace a record whose status is already
/// terminal. An existing file that cannot be understood is replaced (with a warning). On any
/// error the old record is intact and no temp file is left behind.
pub fn write_job(dir: &Path, id: &str, contents: &str) -> Result<(), String> {
    check_id(id)?;
    check_dir(dir)?;
    if contents.len() as u64 > MAX_JOB_BYTES {
        return Err(format!(
            "job {id}: the record is {} bytes, more than the {MAX_JOB_BYTES}-byte limit",
            contents.len()
        ));
    }
    ensure_dir(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let _lock = lock_jobs(dir);
    let path = record_path(dir, id);
    match read_capped(&path) {
        Ok(None) => {}
        Ok(Some(old)) => match record_status(&old) {
            Some(status) if status.is_terminal() => {
                return Err(format!(
                    "job {id} is already {status}; a finished job is never overwritten"
                ));
            }
            Some(_) => {}
            None => crate::log(
                LogLevel::Warn,
                &format!(
                    "replacing the damaged job record {} (no known status)",
                    path.display()
                ),
            ),
        },
        Err(err) => crate::log(
            LogLevel::Warn,
            &format!(
                "replacing the unreadable job record {}: {err}",
                path.display()
            ),
        ),
    }
    super::files::replace_atomically(dir, std::ffi::OsStr::new(id), &path, contents.as_bytes())
        .map_err(|err| format!("cannot write {}: {err}", path.display()))
}

/// Creates the jobs folder 0700 (with its missing parents) and tightens it to 0700 when it
/// is looser.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o7777 != 0o700 {
        if let Err(err) = fs::set_permissions(dir, Permissions::from_mode(0o700)) {
            // Someone else's folder (the records' own 0600 still protects them).
            crate::log(
                LogLevel::Warn,
                &format!("cannot make {} private (0700): {err}", dir.display()),
            );
        }
    }
    Ok(())
}

/// Takes the exclusive jobs lock, retrying every 20 ms for up to [`JOBS_LOCK_TIMEOUT`];
/// when it stays busy or cannot be taken, logs and goes on unlocked (a stuck lock must not
/// stop every job). The lock lasts as long as the returned file is open.
fn lock_jobs(dir: &Path) -> Option<File> {
    let path = lock_path(dir);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        Err(err) => {
            crate::log(
                LogLevel::Warn,
                &format!(
                    "cannot lock {}: {err}; going on without the lock",
                    path.display()
                ),
            );
            return None;
        }
    };
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Some(file),
            Err(TryLockError::WouldBlock) if start.elapsed() < JOBS_LOCK_TIMEOUT => {
                std::thread::sleep(LOCK_RETRY)
            }
            Err(TryLockError::WouldBlock) => {
                crate::log(
                    LogLevel::Warn,
                    &format!(
                        "{} is still locked after {} s; going on without the lock",
                        path.display(),
                        JOBS_LOCK_TIMEOUT.as_secs()
                    ),
                );
                return None;
            }
            Err(TryLockError::Error(err)) => {
                crate::log(
                    LogLevel::Warn,
                    &format!(
                        "cannot lock {}: {err}; going on without the lock",
                        path.display()
                    ),
                );
                return None;
            }
        }
    }
}

/// Lists the records: every regular file `<id>.json` with a valid id, sorted by id, with
/// its modification time and size. A missing folder is an empty list (nothing is created).
///
/// With `clean_temps`, first removes record temp files whose last change is more than
/// [`STALE_TEMP_AGE`] ago: left by a write that was interrupted (a crash, a full disk).
pub fn list_jobs(dir: &Path, clean_temps: bool) -> Result<Vec<JobFile>, String> {
    check_dir(dir)?;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(format!("cannot list {}: {err}", dir.display())),
    };
    let now = SystemTime::now();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(id) = name.strip_suffix(".json") {
            if !valid_job_id(id) {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks; a linked record is followed.
            let meta = match entry.metadata() {
                Ok(meta) if meta.file_type().is_symlink() => fs::metadata(entry.path()),
                other => other,
            };
            // A record removed or replaced while we list: skip it rather than fail the list.
            let Ok(meta) = meta else { continue };
            if !meta.is_file() {
                continue;
            }
            files.push(JobFile {
                id: id.to_owned(),
                modified: unix_seconds(meta.modified().ok()),
                size: meta.len(),
            });
        } else if clean_temps && is_temp_name(name) {
            remove_stale_temp(&entry, now);
        }
    }
    files.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(files)
}

fn remove_stale_temp(entry: &fs::DirEntry, now: SystemTime) {
    let Ok(meta) = entry.metadata() else { return };
    if !meta.is_file() {
        return;
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok());
    if age.is_some_and(|age| age > STALE_TEMP_AGE) {
        match fs::remove_file(entry.path()) {
            Ok(()) => crate::log(
                LogLevel::Info,
                &format!(
                    "removed {} left by an interrupted job write",
                    entry.path().display()
                ),
            ),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => crate::log(
                LogLevel::Warn,
                &format!("cannot remove {}: {err}", entry.path().display()),
            ),
        }
    }
}

/// A file time as Unix seconds (negative before 1970; 0 when the OS has none).
fn unix_seconds(time: Option<SystemTime>) -> f64 {
    match time.map(|t| t.duration_since(SystemTime::UNIX_EPOCH)) {
        Some(Ok(d)) => d.as_secs_f64(),
        Some(Err(before)) => -before.duration().as_secs_f64(),
        None => 0.0,
    }
}

/// Reads each record's text, in request order: `Ok(None)` when there is no such file, `Err`
/// for an invalid id (nothing read), a file over [`MAX_JOB_BYTES`], one that is not a
/// regular file or not UTF-8, or an I/O error.
pub fn read_jobs(dir: &Path, ids: &[String]) -> Vec<Result<Option<String>, String>> {
    ids.iter()
        .map(|id| {
            check_id(id)?;
            check_dir(dir)?;
            let path = record_path(dir, id);
            read_capped(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))
        })
        .collect()
}

/// Reads a record file: `Ok(None)` if missing. Opened non-blocking so a FIFO named like a
/// record cannot hang the reader; only regular files up to [`MAX_JOB_BYTES`] are read.
fn read_capped(path: &Path) -> Result<Option<String>, String> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let meta = file.metadata().map_err(|err| err.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.size() > MAX_JOB_BYTES {
        return Err(too_large(meta.size()));
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    file.take(MAX_JOB_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| err.to_string())?;
    if bytes.len() as u64 > MAX_JOB_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|err| format!("not UTF-8 text ({err})"))
}

fn too_large(size: u64) -> String {
    format!("the record is too large ({size} bytes; the limit is {MAX_JOB_BYTES})")
}

/// Deletes these records under the jobs lock; returns how many existed and were removed.
/// Every id is validated first: one invalid id deletes nothing. A missing folder deletes
/// nothing (and is not created).
pub fn delete_jobs(dir: &Path, ids: &[String]) -> Result<usize, String> {
    for id in ids {
        check_id(id)?;
    }
    check_dir(dir)?;
    if ids.is_empty() {
        return Ok(0);
    }
    match fs::metadata(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(format!("cannot open {}: {err}", dir.display())),
        Ok(_) => {}
    }
    let _lock = lock_jobs(dir);
    let mut removed = 0;
    for id in ids {
        let path = record_path(dir, id);
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(format!(
                    "cannot delete {} ({removed} deleted before it): {err}",
                    path.display()
                ))
            }
        }
    }
    if removed > 0 {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(removed)
}
