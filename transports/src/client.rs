//! Reading one client's input stream as `Input`s (shared by stdio and socket transports).

use agent_dispatch_core::{ClientId, Input, LogLevel};
use async_channel::Sender;
use futures_lite::io::AsyncRead;

use crate::lines::{LineReader, MAX_LINE};

/// What the stdio proxy forwards for a client line longer than [`MAX_LINE`]: not JSON, and
/// read back by [`read_client`] as `ClientLineTooLong`, so a daemon's client gets the same
/// "line too long" error as a `serve` client.
pub const OVERSIZED_LINE: &str =
    "<agent-dispatch: input line longer than settings.limits.max_line_bytes was discarded>";

/// Feeds `ClientConnected`, then one `ClientLine` per line of `reader` (lossy UTF-8, `\r\n`
/// accepted); a line longer than `max_line` bytes (capped at [`MAX_LINE`]) becomes
/// `ClientLineTooLong`. Returns at EOF or on a read error (or when nobody listens any more);
/// what the end of a client's input means is the caller's to say (`ClientClosed` for a
/// socket, `Shutdown` for stdio).
pub async fn read_client<R>(client: ClientId, reader: R, max_line: usize, inputs: &Sender<Input>)
where
    R: AsyncRead + Unpin,
{
    if inputs
        .send(Input::ClientConnected { client })
        .await
        .is_err()
    {
        return;
    }
    let limit = max_line.clamp(1024, MAX_LINE);
    let mut lines = LineReader::new(reader, limit);
    loop {
        let input = match lines.next_line().await {
            Ok(Some(line)) if line.truncated || line.bytes == OVERSIZED_LINE.as_bytes() => {
                Input::ClientLineTooLong { client, limit }
            }
            Ok(Some(line)) => Input::ClientLine {
                client,
                line: line.into_text(),
            },
            Ok(None) => break,
            Err(err) => {
                crate::log(LogLevel::Warn, &format!("{client}: read failed: {err}"));
                break;
            }
        };
        if inputs.send(input).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_over_the_cap_is_reported_not_delivered() {
        let (tx, rx) = async_channel::unbounded();
        let mut input = vec![b'x'; 3000];
        input.extend_from_slice(b"\n{}\n");
        // What the proxy forwards for a line over its own cap.
        input.extend_from_slice(OVERSIZED_LINE.as_bytes());
        input.extend_from_slice(b"\n");
        smol::block_on(read_client(ClientId(1), &input[..], 2048, &tx));
        drop(tx);
        let got: Vec<Input> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let c = ClientId(1);
        assert_eq!(
            got,
            vec![
                Input::ClientConnected { client: c },
                Input::ClientLineTooLong {
                    client: c,
                    limit: 2048
                },
                Input::ClientLine {
                    client: c,
                    line: "{}".into()
                },
                Input::ClientLineTooLong {
                    client: c,
                    limit: 2048
                },
            ]
        );
    }

    #[test]
    fn lines_follow_connect_and_the_end_is_the_callers() {
        let (tx, rx) = async_channel::unbounded();
        smol::block_on(read_client(
            ClientId(3),
            &b"{\"a\":1}\r\nbad \xff\n"[..],
            MAX_LINE,
            &tx,
        ));
        drop(tx);
        let got: Vec<Input> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let c = ClientId(3);
        assert_eq!(
            got,
            vec![
                Input::ClientConnected { client: c },
                Input::ClientLine {
                    client: c,
                    line: "{\"a\":1}".into()
                },
                Input::ClientLine {
                    client: c,
                    line: "bad \u{FFFD}".into()
                },
            ]
        );
    }
}
