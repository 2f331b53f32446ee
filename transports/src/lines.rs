//! Bounded line splitting for child stdout and client input.
//!
//! Why not `AsyncBufReadExt::read_line`: it buffers a line of any length. A runaway child or
//! client must never make us hold more than [`MAX_LINE`] bytes for one line.

use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt};

/// The longest line we keep (64 MiB). Bytes beyond it, up to the next `\n`, are discarded.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// Bytes read from the stream at a time, at most.
const READ_CHUNK: usize = 64 * 1024;
/// The first buffer: most children and clients write a few short lines, and a fresh 64 KiB
/// buffer per child was a sizeable share of a dispatch's cost. It doubles each time a read
/// fills it, up to [`READ_CHUNK`].
const FIRST_CHUNK: usize = 4 * 1024;

/// One line as read, without its `\n` (and without a trailing `\r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The bytes kept: the whole line, or its first `cap` bytes when `truncated`.
    pub bytes: Vec<u8>,
    /// True when the line was longer than the cap and its tail was discarded.
    pub truncated: bool,
}

impl Line {
    /// The line as text; undecodable bytes become U+FFFD.
    pub fn into_text(self) -> String {
        match String::from_utf8(self.bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        }
    }
}

/// Splits a byte stream on `\n`, keeping at most `cap` bytes of any one line.
///
/// Buffers by hand rather than through `futures_lite::io::BufReader::fill_buf`, whose future
/// panics when a reader (such as `Unblock<Stdin>`) is pending again right after reporting EOF.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    cap: usize,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps `reader`; lines longer than `cap` bytes are cut to `cap`.
    pub fn new(reader: R, cap: usize) -> Self {
        LineReader {
            inner: reader,
            buf: vec![0; FIRST_CHUNK],
            start: 0,
            end: 0,
            cap,
            eof: false,
        }
    }

    /// Reads the next line. `Ok(None)` at EOF; a final line without `\n` is still returned.
    pub async fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut bytes = Vec::new();
        let mut truncated = false;
        let mut seen_any = false;
        loop {
            if self.start == self.end && (self.eof || !self.refill().await?) {
                if !seen_any {
                    return Ok(None);
                }
                break;
            }
            seen_any = true;
            let available = &self.buf[self.start..self.end];
            let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            let room = self.cap.saturating_sub(bytes.len());
            if chunk.len() > room {
                truncated = true;
            }
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.start += used;
            if done {
                break;
            }
        }
        if !truncated && bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Ok(Some(Line { bytes, truncated }))
    }

    /// Reads more bytes into the (empty) buffer; false at EOF.
    async fn refill(&mut self) -> io::Result<bool> {
        loop {
            match self.inner.read(&mut self.buf).await {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    if n == self.buf.len() && n < READ_CHUNK {
                        // Keep the bytes just read: the caller consumes them from here.
                        self.buf.resize(n * 2, 0);
                    }
                    return Ok(true);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// Decodes a byte stream chunk by chunk, holding back an incomplete UTF-8 sequence at the end
/// of a chunk so a character split across two reads does not turn into U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    /// Decodes `chunk` (after any held-back bytes); returns the text that is complete.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let keep = match std::str::from_utf8(&self.pending) {
            Ok(_) => 0,
            // `error_len() == None`: the input ends inside a character; wait for the rest.
            Err(err) if err.error_len().is_none() => self.pending.len() - err.valid_up_to(),
            Err(_) => tail_incomplete(&self.pending),
        };
        let rest = self.pending.split_off(self.pending.len() - keep);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }

    /// Decodes whatever is held back (at EOF).
    pub(crate) fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// How many trailing bytes form the start of a multi-byte character that is not finished yet.
fn tail_incomplete(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead byte
        }
        let need = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<Line> {
        smol::block_on(async {
            let mut reader = LineReader::new(input, cap);
            let mut out = Vec::new();
            while let Some(line) = reader.next_line().await.expect("read") {
                out.push(line);
            }
            out
        })
    }

    fn line(text: &str, truncated: bool) -> Line {
        Line {
            bytes: text.as_bytes().to_vec(),
            truncated,
        }
    }

    #[test]
    fn splits_strips_cr_and_keeps_last_partial_line() {
        assert_eq!(
            lines(b"a\r\n\nbc\nlast", 100),
            vec![
                line("a", false),
                line("", false),
                line("bc", false),
                line("last", false)
            ]
        );
        assert!(lines(b"", 100).is_empty());
    }

    #[test]
    fn long_line_is_cut_and_the_next_line_survives() {
        assert_eq!(
            lines(b"abcdefgh\nxy\n", 3),
            vec![line("abc", true), line("xy", false)]
        );
        assert_eq!(lines(b"abc\n", 3), vec![line("abc", false)]);
    }

    #[test]
    fn lines_across_the_buffer_growing_survive_intact() {
        // Lengths from 0 to ~9 KiB cross every buffer size from 4 KiB to 64 KiB and back.
        let texts: Vec<String> = (0..400u32)
            .map(|i| {
                let len = (i as usize * 7919) % 9000;
                format!("{i}:{}", "x".repeat(len))
            })
            .collect();
        let input = texts.join("\n");
        assert!(input.len() > 4 * READ_CHUNK, "{}", input.len());
        let got = lines(input.as_bytes(), MAX_LINE);
        assert_eq!(got.len(), texts.len());
        for (got, want) in got.iter().zip(&texts) {
            assert_eq!(got, &line(want, false));
        }
    }

    #[test]
    fn a_reader_that_is_pending_again_after_eof_is_fine() {
        // `Unblock` starts a new blocking read when polled after EOF; `BufReader::fill_buf`
        // used to panic on exactly that with stdin.
        let reader = smol::Unblock::new(std::io::Cursor::new(b"a\nb".to_vec()));
        let got = smol::block_on(async {
            let mut reader = LineReader::new(reader, 100);
            let mut out = Vec::new();
            while let Some(line) = reader.next_line().await.expect("read") {
                out.push(line.into_text());
            }
            out
        });
        assert_eq!(got, ["a", "b"]);
    }

    #[test]
    fn utf8_chunks_join_split_characters() {
        let mut dec = Utf8Chunks::default();
        let snow = "☃".as_bytes();
        assert_eq!(dec.push(&[b'a', snow[0]]), "a");
        assert_eq!(dec.push(&snow[1..]), "☃");
        // A broken sequence followed by more text is replaced, not held forever.
        assert_eq!(dec.push(&[0xFF, b'b']), "\u{FFFD}b");
        assert_eq!(dec.push(&[0xE2, 0x98]), "");
        assert_eq!(dec.finish(), "\u{FFFD}");
    }
}
