//! The Unix socket daemon: one core serving every session of the user on the machine.
//!
//! Each accepted connection is its own MCP client (its own `ClientId`, its own request ids),
//! so all sessions share one limiter, one cache and one job table, and a background job
//! outlives the session that started it.
//!
//! Who may connect is checked twice: the socket lives in a folder that must be ours and
//! `0700` ([`secure_dir`]), and each accepted connection's peer credentials
//! (`SO_PEERCRED`) must carry our uid; anyone else is disconnected at once, unanswered.
//!
//! Lifecycle: while it runs, a daemon holds an exclusive lock on `<socket>.pid` (which holds
//! its pid), so two daemons never serve one socket; a socket file left behind by a daemon that
//! was killed is replaced. SIGTERM, SIGINT and SIGHUP stop it cleanly (running jobs are marked
//! failed, children stopped), and the socket file is removed on the way out.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use agent_dispatch_core::{ClientId, Core, Input, LogLevel, Options, Timestamp};
use async_channel::Sender;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use smol::Async;

use crate::{read_client, Connector, Driver};

/// The longest socket path the kernel takes (`sun_path` holds 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// How long to pause after a failed `accept` (out of file descriptors, ...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Makes sure `dir` exists and only we can use it: created `0700` when missing (with any
/// missing parents), then refused unless it is a real directory (not a symlink) owned by our
/// uid with no group or world permissions. The error says what is wrong and how to fix it.
pub fn secure_dir(dir: &Path) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the socket folder {}: {e}", dir.display()))?;
    let meta = fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot examine the socket folder {}: {e}", dir.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() {
        return Err(format!(
            "refusing to use {} for the daemon's socket: it is not a directory (a symlink?)",
            dir.display()
        ));
    }
    if meta.uid() != me {
        return Err(format!(
            "refusing to use {} for the daemon's socket: it belongs to uid {}, not to us (uid {me}); \
             choose another folder with --socket",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "refusing to use {} for the daemon's socket: other users can reach it (mode {mode:04o}); \
             run: chmod 700 {}",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Whether the process at the other end of `stream` runs as our (effective) uid. `Err` says
/// who it is otherwise, or why its credentials could not be read.
pub fn check_peer(stream: &UnixStream) -> Result<(), String> {
    let cred = rustix::net::sockopt::socket_peercred(stream)
        .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    let me = rustix::process::geteuid();
    if cred.uid == me {
        Ok(())
    } else {
        Err(format!(
            "the peer (pid {}) runs as uid {}, not as uid {}",
            cred.pid.as_raw_nonzero(),
            cred.uid.as_raw(),
            me.as_raw()
        ))
    }
}

/// Connects to the daemon at `socket` and checks that it runs as our uid.
pub fn connect(socket: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(socket)?;
    check_peer(&stream).map_err(|why| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: not our daemon: {why}", socket.display()),
        )
    })?;
    Ok(stream)
}

/// `<socket><suffix>`: the files that go with a socket (`.pid`, `.lock`, ...).
pub fn sibling(socket: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(socket.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// A bound daemon socket, ready to [`serve`]. Dropping it removes the socket file (when it
/// is still ours) and releases the daemon lock.
#[derive(Debug)]
pub struct Listener {
    listener: Option<UnixListener>,
    path: PathBuf,
    /// The socket file's (device, inode), to remove only our own.
    id: (u64, u64),
    _pid_lock: File,
}

impl Listener {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        drop(self.listener.take());
        let ours = fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds the daemon socket at `socket` (`0600`, in a folder [`secure_dir`] accepts).
///
/// Refused when another daemon is live: it holds the lock on `<socket>.pid`, or something
/// accepts connections on the socket. A socket file nobody accepts on (left by a daemon that
/// was killed) is replaced.
pub fn bind(socket: &Path) -> Result<Listener, String> {
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(format!(
            "the socket path {} is {} bytes long; Unix sockets allow at most {MAX_SOCKET_PATH}: \
             choose a shorter one with --socket",
            socket.display(),
            socket.as_os_str().len()
        ));
    }
    let dir = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    secure_dir(dir)?;
    let pid_path = sibling(socket, ".pid");
    let mut pid_lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&pid_path)
        .map_err(|e| format!("cannot open {}: {e}", pid_path.display()))?;
    match pid_lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let pid = fs::read_to_string(&pid_path).unwrap_or_default();
            let pid = pid.trim();
            let who = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            return Err(format!(
                "another agent-dispatch daemon{who} is already serving {}",
                socket.display()
            ));
        }
        Err(TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", pid_path.display()))
        }
    }
    let _ = pid_lock
        .set_len(0)
        .and_then(|()| writeln!(pid_lock, "{}", std::process::id()));
    match UnixStream::connect(socket) {
        Ok(_) => {
            return Err(format!(
                "something already accepts connections on {}; not starting a second daemon",
                socket.display()
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => match fs::symlink_metadata(socket) {
            Ok(meta) if meta.file_type().is_socket() => {
                fs::remove_file(socket).map_err(|e| {
                    format!("cannot remove the stale socket {}: {e}", socket.display())
                })?;
                crate::log(
                    LogLevel::Info,
                    &format!("replaced the stale socket {}", socket.display()),
                );
            }
            Ok(_) => {
                return Err(format!(
                    "{} exists and is not a socket; not touching it",
                    socket.display()
                ))
            }
            Err(_) => {}
        },
    }
    let listener = UnixListener::bind(socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let meta = fs::symlink_metadata(socket)
        .map_err(|e| format!("cannot examine {}: {e}", socket.display()))?;
    let bound = Listener {
        listener: Some(listener),
        path: socket.to_path_buf(),
        id: (meta.dev(), meta.ino()),
        _pid_lock: pid_lock,
    };
    // The folder already keeps others out; the socket's own mode says the same.
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot make {} private: {e}", socket.display()))?;
    Ok(bound)
}

/// Serves MCP on `listener` until the core exits (SIGTERM/SIGINT/SIGHUP, or the idle exit of
/// `options.idle_exit`); returns the exit code. The socket file is removed before this
/// returns. Blocks the calling thread (it becomes the drive loop).
///
/// Fills `options.unix_time_at_epoch` from the driver's clock, and `options.seed` with a
/// random seed when it is 0.
pub fn serve(options: Options, listener: Listener) -> i32 {
    smol::block_on(serve_on(options, listener, true))
}

/// [`serve`] as a future; with `stop_signals` false, signals are left alone (for tests).
pub async fn serve_on(mut options: Options, mut listener: Listener, stop_signals: bool) -> i32 {
    let Some(std_listener) = listener.listener.take() else {
        return 1;
    };
    let socket = match Async::new(std_listener) {
        Ok(socket) => socket,
        Err(e) => {
            crate::log(
                LogLevel::Warn,
                &format!("cannot watch {}: {e}", listener.path.display()),
            );
            return 1;
        }
    };
    let driver = Driver::new();
    options.unix_time_at_epoch = driver.clock().unix_time_at_epoch();
    if options.seed == 0 {
        options.seed = fastrand::u64(1..);
    }
    let max_line = options.max_line_bytes;
    let core = Core::new(options, Timestamp::ZERO);
    let inputs = driver.inputs();
    if stop_signals {
        crate::signals::forward_stop_signals(inputs.clone());
    }
    crate::log(
        LogLevel::Info,
        &format!(
            "daemon (pid {}) listening on {}",
            std::process::id(),
            listener.path.display()
        ),
    );
    let connector = driver.connector();
    let code = future::or(
        driver.run(core),
        accept(&socket, connector, max_line, inputs),
    )
    .await;
    drop(socket);
    let path = listener.path.clone();
    drop(listener);
    crate::log(
        LogLevel::Info,
        &format!("daemon stopped; {} removed", path.display()),
    );
    code
}

/// Accepts connections for ever: each one from our uid becomes a client; others are closed
/// at once, unanswered, and logged.
async fn accept(
    listener: &Async<UnixListener>,
    connector: Connector,
    max_line: usize,
    inputs: Sender<Input>,
) -> i32 {
    let mut next = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                crate::log(LogLevel::Warn, &format!("accept failed: {e}"));
                smol::Timer::after(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if let Err(why) = check_peer(stream.get_ref()) {
            crate::log(
                LogLevel::Warn,
                &format!("refused a connection: {why}; only our own uid may use this daemon"),
            );
            continue;
        }
        let client = ClientId(next);
        next += 1;
        let stream = Arc::new(stream);
        if !connector.add_client(client, Half(stream.clone())) {
            return 1;
        }
        let inputs = inputs.clone();
        smol::spawn(async move {
            read_client(client, Half(stream), max_line, &inputs).await;
            // A socket client that hung up is gone: its calls are cancelled.
            let _ = inputs.send(Input::ClientClosed { client }).await;
        })
        .detach();
    }
}

/// One direction of a shared connection. Closing the write side shuts the socket's write
/// half, so the peer sees the end of our output even while we still read its input.
#[derive(Debug)]
pub(crate) struct Half(pub(crate) Arc<Async<UnixStream>>);

impl AsyncRead for Half {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Half {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut &*self.0).poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        match self.0.get_ref().shutdown(Shutdown::Write) {
            // Already gone: nothing left to shut.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ad-unix-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn the_socket_folder_is_created_private_and_an_open_one_is_refused() {
        let root = scratch("dir");
        let dir = root.join("a/b");
        secure_dir(&dir).expect("created");
        assert_eq!(mode(&dir), 0o700);
        secure_dir(&dir).expect("accepted again");

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).expect("chmod");
        let err = secure_dir(&dir).unwrap_err();
        assert!(
            err.contains("other users can reach it (mode 0750)"),
            "{err}"
        );
        assert!(
            err.contains(&format!("chmod 700 {}", dir.display())),
            "{err}"
        );

        let link = root.join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        let err = secure_dir(&link).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_second_daemon_is_refused_and_a_stale_socket_replaced() {
        let root = scratch("bind");
        let socket = root.join("run/d.sock");
        let first = bind(&socket).expect("first bind");
        assert_eq!(mode(&socket), 0o600);
        assert_eq!(mode(&root.join("run")), 0o700);
        let pid = fs::read_to_string(sibling(&socket, ".pid")).expect("pid file");
        assert_eq!(pid.trim(), std::process::id().to_string());
        let err = bind(&socket).unwrap_err();
        assert!(err.contains("already serving"), "{err}");
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );

        // Dropped: the socket file goes, and the next daemon binds.
        drop(first);
        assert!(!socket.exists());

        // A socket file nobody accepts on (its daemon was killed) is replaced.
        drop(UnixListener::bind(&socket).expect("a stale socket"));
        assert!(
            UnixStream::connect(&socket).is_err(),
            "nobody accepts on it"
        );
        let second = bind(&socket).expect("bind over a stale socket");
        assert!(UnixStream::connect(&socket).is_ok(), "a live socket again");
        drop(second);

        // Something that is not a socket is left alone.
        fs::write(&socket, "mine").expect("a plain file");
        let err = bind(&socket).unwrap_err();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(fs::read_to_string(&socket).expect("kept"), "mine");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn connections_from_our_uid_are_served_each_as_its_own_client() {
        let root = scratch("serve");
        let socket = root.join("run/s.sock");
        let listener = bind(&socket).expect("bind");
        let options = Options {
            config_path: root.join("agents.yaml"),
            jobs_dir: root.join("jobs"),
            home: root.clone(),
            cwd: root.clone(),
            seed: 3,
            idle_exit: Some(Duration::from_secs(1)),
            ..Options::default()
        };
        let server = std::thread::spawn(move || smol::block_on(serve_on(options, listener, false)));
        let ask = move |id: u64| -> Vec<String> {
            let stream = connect(&socket).expect("connect");
            let mut writer = stream.try_clone().expect("clone");
            writeln!(writer, r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#).expect("send");
            writer.shutdown(Shutdown::Write).expect("half close");
            BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
                .collect()
        };
        // Two clients with the same request id: each gets its own reply, then the end of
        // our output once its input has ended.
        let other = ask.clone();
        let a = std::thread::spawn(move || other(1));
        let b = ask(1);
        assert_eq!(b, [r#"{"jsonrpc":"2.0","id":1,"result":{}}"#]);
        assert_eq!(a.join().expect("client a"), b);
        // No clients and no work: the idle exit ends it, and the socket file goes with it.
        assert_eq!(server.join().expect("daemon thread"), 0);
        assert!(!root.join("run/s.sock").exists());
        let _ = fs::remove_dir_all(&root);
    }
}
