//! The stdio transport: one client on stdin/stdout; logs go to stderr only.
//!
//! Signals ([`serve`] only): SIGTERM, SIGINT and SIGHUP become `Input::Shutdown`, so the core
//! drains and exits 0; a second one exits at once (see `signals`).

use agent_dispatch_core::{ClientId, Core, Input, Options, Timestamp};
use futures_lite::io::{AsyncRead, AsyncWrite};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;

use smol::{Async, Unblock};

use crate::{read_client, Driver};

/// The only client of a stdio server.
pub const CLIENT: ClientId = ClientId(0);

/// Serves MCP on this process's stdin/stdout until the core exits; returns the exit code.
///
/// Fills `options.unix_time_at_epoch` from the driver's clock, and `options.seed` with a
/// random seed when it is 0. Blocks the calling thread (it becomes the drive loop). Exit the
/// process with the returned code: a thread may still be blocked reading stdin.
pub fn serve(options: Options) -> i32 {
    let (stdin, stdout) = std_streams();
    smol::block_on(run(options, stdin, stdout, true))
}

/// This process's stdin and stdout as async streams.
///
/// A pipe or a socket (what an MCP client gives its server) is waited on by the drive loop
/// itself: no thread hand-off per message, which on an idle machine costs tens of µs each
/// way. A terminal or a regular file goes through a blocking thread and a 256 KiB buffer
/// (`Unblock`'s default, 8 MiB, is mapped afresh whenever the stream went idle).
pub(crate) fn std_streams() -> (Reader, Writer) {
    const BUFFER: usize = 256 * 1024;
    let stdin: Reader = match pollable(std::io::stdin().as_fd()) {
        Some(file) => Box::new(file),
        None => Box::new(Unblock::with_capacity(BUFFER, std::io::stdin())),
    };
    let stdout: Writer = match pollable(std::io::stdout().as_fd()) {
        Some(file) => Box::new(file),
        None => Box::new(Unblock::with_capacity(BUFFER, std::io::stdout())),
    };
    (stdin, stdout)
}

/// An async byte source (stdin).
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// An async byte sink (stdout).
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A duplicate of `fd` registered with the reactor (which makes the shared file description
/// non-blocking), when `fd` is a pipe or a socket; `None` for anything epoll cannot wait on
/// or that other processes may share in blocking mode (a terminal).
fn pollable(fd: BorrowedFd<'_>) -> Option<Async<File>> {
    let file = File::from(fd.try_clone_to_owned().ok()?);
    let kind = file.metadata().ok()?.file_type();
    if !(kind.is_fifo() || kind.is_socket()) {
        return None;
    }
    Async::new(file).ok()
}

/// [`serve`] over any byte streams (for tests and embedding). Signals are left alone.
pub async fn serve_on<R, W>(options: Options, reader: R, writer: W) -> i32
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    run(options, reader, writer, false).await
}

async fn run<R, W>(mut options: Options, reader: R, writer: W, stop_signals: bool) -> i32
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let mut driver = Driver::new();
    options.unix_time_at_epoch = driver.clock().unix_time_at_epoch();
    if options.seed == 0 {
        options.seed = fastrand::u64(1..);
    }
    let max_line = options.max_line_bytes;
    let core = Core::new(options, Timestamp::ZERO);
    driver.executor().add_client(CLIENT, writer);
    let inputs = driver.inputs();
    if stop_signals {
        crate::signals::forward_stop_signals(inputs.clone());
    }
    smol::spawn(async move {
        read_client(CLIENT, reader, max_line, &inputs).await;
        // stdio has one client: when it is gone, the server drains and exits.
        let _ = inputs.send(Input::Shutdown).await;
    })
    .detach();
    driver.run(core).await
}
