//! The stdio transport end to end, through the real core: lines in, replies out, and the
//! server ends when its input does.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use agent_dispatch_core::Options;
use agent_dispatch_transports::stdio;
use futures_lite::io::AsyncWrite;
use serde_json::Value;

/// A writer that keeps what it is given.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().expect("sink").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn replies_in_order_then_exits_at_eof() {
    let input = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\nnot json\n".to_vec();
    // `Unblock` over a reader behaves like real stdin (a blocking read on a thread).
    let reader = smol::Unblock::new(std::io::Cursor::new(input));
    let sink = Sink::default();
    let code = smol::block_on(futures_lite::future::or(
        async { Some(stdio::serve_on(Options::default(), reader, sink.clone()).await) },
        async {
            smol::Timer::after(Duration::from_secs(15)).await;
            None
        },
    ));
    assert_eq!(code, Some(0), "the server did not exit at EOF");
    let out = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
    let replies: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(replies.len(), 2, "{out}");
    assert_eq!(replies[0]["id"], 1);
    assert!(replies[0].get("result").is_some(), "{out}");
    assert_eq!(replies[1]["id"], Value::Null);
    assert_eq!(replies[1]["error"]["code"], -32700);
}
