//! The stdio transport: one client on stdin/stdout; logs go to stderr only.
//!
//! Signals: SIGTERM/SIGINT are not handled yet (no signal crate is available). They keep
//! their default action, which ends the process; children die with it through their
//! parent-death signal, and stale jobs are recovered on the next start.

use agent_dispatch_core::{ClientId, Core, Input, Options, Timestamp};
use futures_lite::io::{AsyncRead, AsyncWrite};
use smol::Unblock;

use crate::{read_client, Driver};

/// The only client of a stdio server.
pub const CLIENT: ClientId = ClientId(0);

/// Serves MCP on this process's stdin/stdout until the core exits; returns the exit code.
///
/// Fills `options.unix_time_at_epoch` from the driver's clock, and `options.seed` with a
/// random seed when it is 0. Blocks the calling thread (it becomes the drive loop). Exit the
/// process with the returned code: a thread may still be blocked reading stdin.
pub fn serve(options: Options) -> i32 {
    smol::block_on(serve_on(
        options,
        Unblock::new(std::io::stdin()),
        Unblock::new(std::io::stdout()),
    ))
}

/// [`serve`] over any byte streams (for tests and embedding).
pub async fn serve_on<R, W>(mut options: Options, reader: R, writer: W) -> i32
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let mut driver = Driver::new();
    options.unix_time_at_epoch = driver.clock().unix_time_at_epoch();
    if options.seed == 0 {
        options.seed = fastrand::u64(1..);
    }
    let core = Core::new(options, Timestamp::ZERO);
    driver.executor().add_client(CLIENT, writer);
    let inputs = driver.inputs();
    smol::spawn(async move {
        read_client(CLIENT, reader, &inputs).await;
        // stdio has one client: when it is gone, the server drains and exits.
        let _ = inputs.send(Input::Shutdown).await;
    })
    .detach();
    driver.run(core).await
}
