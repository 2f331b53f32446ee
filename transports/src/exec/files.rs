//! File work behind `Effect::Io`: the config lock, atomic config writes, directory probes
//! (job records are in [`super::jobs`]).
//!
//! Everything here blocks; the executor runs it on `smol::unblock`. The functions are public
//! so the CLI can edit the config under the same lock as the server.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use agent_dispatch_core::config::MAX_CONFIG_BYTES;
use agent_dispatch_core::{DirProbe, DirState, EntryKind, IoRequest, IoResult, LogLevel};

/// How long `ReadConfig { lock: true }` waits for the config lock before going on without it.
pub const CONFIG_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a busy lock is retried.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// Config locks taken by `ReadConfig { lock: true }`, held until `WriteConfig` or
/// `UnlockConfig` for the same path.
#[derive(Debug, Default)]
pub struct ConfigLocks {
    held: Mutex<BTreeMap<PathBuf, File>>,
}

impl ConfigLocks {
    /// An empty lock table.
    pub fn new() -> Self {
        ConfigLocks::default()
    }

    /// Performs one request (blocking) and returns its answer (job requests: see
    /// [`super::jobs`]).
    pub fn perform(&self, request: IoRequest) -> IoResult {
        if let Some(result) = super::jobs::perform(&request) {
            return result;
        }
        match request {
            IoRequest::ReadConfig { path, lock } => {
                if lock {
                    self.acquire(&path);
                }
                IoResult::Config {
                    result: read_config(&path),
                }
            }
            IoRequest::WriteConfig { path, contents } => {
                let result = write_config(&path, contents.as_bytes());
                self.release(&path);
                IoResult::Written { result }
            }
            IoRequest::UnlockConfig { path } => {
                self.release(&path);
                IoResult::Written { result: Ok(()) }
            }
            IoRequest::ProbeDirs {
                dirs,
                markers,
                read,
                max_bytes,
            } => IoResult::Probes {
                probes: probe_dirs(&dirs, &markers, &read, max_bytes),
            },
            // Answered by `jobs::perform` above.
            IoRequest::WriteJob { .. }
            | IoRequest::ListJobs { .. }
            | IoRequest::ReadJobs { .. }
            | IoRequest::DeleteJobs { .. } => unreachable!("job requests are handled above"),
        }
    }

    /// Takes the lock for `config`; on failure or timeout, logs and goes on unlocked
    /// (a stuck lock must not make the server unusable).
    fn acquire(&self, config: &Path) {
        match lock_config(config, CONFIG_LOCK_TIMEOUT) {
            Ok(Some(file)) => {
                self.table().insert(config.to_path_buf(), file);
            }
            Ok(None) => crate::log(
                LogLevel::Warn,
                &format!(
                    "{} is still locked after {} s; going on without the lock",
                    lock_path(config).display(),
                    CONFIG_LOCK_TIMEOUT.as_secs()
                ),
            ),
            Err(err) => crate::log(
                LogLevel::Warn,
                &format!(
                    "cannot lock {}: {err}; going on without the lock",
                    lock_path(config).display()
                ),
            ),
        }
    }

    /// Drops the lock for `config` (closing the file releases the `flock`).
    fn release(&self, config: &Path) {
        self.table().remove(config);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, File>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The lock file for a config: `<config>.lock`.
pub fn lock_path(config: &Path) -> PathBuf {
    let mut name = OsString::from(config.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive cross-process lock on `<config>.lock` (created 0600, its folder 0700),
/// retrying every 20 ms. `Ok(None)` when still busy after `timeout`. The lock lasts as long as
/// the returned file stays open.
pub fn lock_config(config: &Path, timeout: Duration) -> io::Result<Option<File>> {
    let path = lock_path(config);
    if let Some(dir) = parent_dir(&path) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(LOCK_RETRY)
            }
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(err)) => return Err(err),
        }
    }
}

/// Reads the config file; `Ok(None)` when it does not exist. Opened non-blocking so a FIFO
/// cannot hang the reader; only a regular file of at most [`MAX_CONFIG_BYTES`] is read (a
/// symlink to `/dev/zero` or a huge file is refused, not read into memory).
pub fn read_config(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let shown = path.display();
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read {shown}: {err}")),
    };
    let meta = file
        .metadata()
        .map_err(|err| format!("cannot read {shown}: {err}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let too_large = || format!("{shown} is larger than 4 MiB");
    let limit = MAX_CONFIG_BYTES as u64;
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read {shown}: {err}"))?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// Atomically replaces the config at `path`. A symlink is kept: the file it points to is
/// replaced. The file ends up 0600 in a 0700 folder; on any failure the old file is untouched
/// and no temporary file is left behind.
pub fn write_config(path: &Path, contents: &[u8]) -> Result<(), String> {
    let target =
        resolve_links(path).map_err(|err| format!("cannot resolve {}: {err}", path.display()))?;
    let shown = if target == path {
        path.display().to_string()
    } else {
        format!("{} (-> {})", path.display(), target.display())
    };
    replace_file(&target, contents).map_err(|err| format!("cannot write {shown}: {err}"))
}

/// Writes `contents` to a fresh temp file beside `target`, syncs it and renames it over
/// `target`. The temp file is removed on any failure, so a full disk leaves `target` intact.
fn replace_file(target: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = parent_dir(target).unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // Best effort: the folder may belong to someone else (the file's own mode still protects it).
    let _ = fs::set_permissions(dir, Permissions::from_mode(0o700));
    replace_atomically(dir, name, target, contents)
}

/// The one atomic write of config and job files: `contents` go to a fresh
/// `<stem>.<16 random hex>.tmp` (0600) in `dir`, are synced, and the temp file is renamed
/// over `target`; then the folder is synced. On any failure the temp file is removed and
/// `target` is untouched.
pub(super) fn replace_atomically(
    dir: &Path,
    stem: &std::ffi::OsStr,
    target: &Path,
    contents: &[u8],
) -> io::Result<()> {
    let (tmp, mut file) = create_temp(dir, stem)?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, target)
        });
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    // Make the rename itself durable; a failure here does not undo the write.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Creates `<stem>.<random hex>.tmp` in `dir`, mode 0600, failing rather than reusing a file.
fn create_temp(dir: &Path, stem: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    let mut attempts = 0;
    loop {
        let mut tmp_name = OsString::from(stem);
        tmp_name.push(format!(".{:016x}.tmp", fastrand::u64(..)));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(err) => return Err(err),
        }
    }
}

/// Follows symlinks at `path` (not in its folders) to the file they name, which may not exist
/// yet.
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&current)?;
                current = match parent_dir(&current) {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Ok(_) => return Ok(current),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// The folder part of a path, or `None` for a bare file name.
fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|dir| !dir.as_os_str().is_empty())
}

/// Probes each directory: what it is, where it really is, which markers exist, and the
/// beginning of each requested file. Results are in request order.
pub fn probe_dirs(
    dirs: &[PathBuf],
    markers: &[String],
    read: &[String],
    max_bytes: usize,
) -> Vec<DirProbe> {
    dirs.iter()
        .map(|dir| probe_dir(dir, markers, read, max_bytes))
        .collect()
}

fn probe_dir(dir: &Path, markers: &[String], read: &[String], max_bytes: usize) -> DirProbe {
    let mut probe = DirProbe {
        dir: dir.to_path_buf(),
        ..DirProbe::default()
    };
    let mut listing = Listing { names: None };
    probe.state = match fs::metadata(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => DirState::Missing,
        Err(err) => DirState::Unreadable(err.to_string()),
        Ok(meta) if !meta.is_dir() => DirState::NotADir,
        Ok(_) => match Listing::of(dir) {
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                DirState::Unreadable(err.to_string())
            }
            read => {
                listing.names = read.ok().flatten();
                DirState::Dir
            }
        },
    };
    if probe.state == DirState::Missing {
        return probe;
    }
    probe.resolved = fs::canonicalize(dir).ok();
    if probe.state != DirState::Dir {
        return probe;
    }
    for marker in markers {
        if let Some(kind) = listing.kind(dir, marker) {
            probe.markers.insert(marker.clone(), kind);
        }
    }
    for name in read {
        if listing.surely_absent(name) {
            continue;
        }
        if let Some(text) = read_prefix(&dir.join(name), max_bytes) {
            probe.files.insert(name.clone(), text);
        }
    }
    probe
}

/// The names directly in a directory, read once so that checking a dozen markers costs one
/// `getdents` instead of a `stat` each. Incomplete (then every check asks the file system)
/// when the directory cannot be read or holds more than [`Listing::MAX_NAMES`] entries.
struct Listing {
    names: Option<BTreeMap<OsString, fs::FileType>>,
}

impl Listing {
    /// Past this many entries, per-name `stat`s are cheaper than the listing.
    const MAX_NAMES: usize = 4096;

    /// The names in `dir`: `Ok(None)` when there are too many or an entry cannot be read.
    fn of(dir: &Path) -> io::Result<Option<BTreeMap<OsString, fs::FileType>>> {
        let mut names = BTreeMap::new();
        for entry in fs::read_dir(dir)? {
            let Ok(entry) = entry else { return Ok(None) };
            if names.len() == Self::MAX_NAMES {
                return Ok(None);
            }
            let Ok(kind) = entry.file_type() else {
                return Ok(None);
            };
            names.insert(entry.file_name(), kind);
        }
        Ok(Some(names))
    }

    /// The kind of `dir/name` (following a symbolic link, like `stat`), or `None` if absent.
    fn kind(&self, dir: &Path, name: &str) -> Option<EntryKind> {
        let kind_of = |is_dir: bool| {
            if is_dir {
                EntryKind::Dir
            } else {
                EntryKind::File
            }
        };
        match self.entry(name) {
            Some(Some(t)) if !t.is_symlink() => Some(kind_of(t.is_dir())),
            Some(None) => None,
            _ => fs::metadata(dir.join(name))
                .ok()
                .map(|m| kind_of(m.is_dir())),
        }
    }

    /// True when the listing shows `name` is not there (a path with `/` is never known).
    fn surely_absent(&self, name: &str) -> bool {
        matches!(self.entry(name), Some(None))
    }

    /// `Some(Some(type))` listed, `Some(None)` surely absent, `None` unknown.
    fn entry(&self, name: &str) -> Option<Option<&fs::FileType>> {
        let names = self.names.as_ref()?;
        if name.contains('/') || name.is_empty() || name == "." || name == ".." {
            return None;
        }
        Some(names.get(std::ffi::OsStr::new(name)))
    }
}

/// Reads up to `max_bytes` of a regular file as lossy UTF-8. A character cut by the limit is
/// dropped rather than shown as U+FFFD. `None` when it is not a readable regular file (a FIFO
/// named like a marker must not hang us).
fn read_prefix(path: &Path, max_bytes: usize) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    // Sized from the file so the read takes one call, not a ladder of small ones.
    let hint = usize::try_from(meta.len())
        .unwrap_or(max_bytes)
        .min(max_bytes);
    let mut bytes = Vec::with_capacity(hint + 1);
    File::open(path)
        .ok()?
        .take(max_bytes as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() == max_bytes {
        if let Err(err) = std::str::from_utf8(&bytes) {
            if err.error_len().is_none() {
                bytes.truncate(err.valid_up_to());
            }
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
