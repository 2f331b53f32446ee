//! The stdio transport end to end, through the real core: lines in, replies out, and the
//! server ends when its input does.

mod support;

use std::time::Duration;

use agent_dispatch_core::Options;
use agent_dispatch_transports::stdio;
use serde_json::Value;

use support::Sink;

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
