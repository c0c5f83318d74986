//! The bytes of one IRC connection: a TCP socket read line by line into a bounded buffer
//! (a server that never sends a line end cannot make it grow), and written a line at a time.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::line::{Line, MAX_LINE, MAX_TAGS};

/// The most bytes kept while waiting for a line end: a tagged line at its longest.
const MAX_BUFFERED: usize = MAX_LINE + MAX_TAGS;

/// Reads lines from an IRC server. Lines longer than allowed are skipped whole.
pub struct LineReader<R> {
    io: R,
    buf: Vec<u8>,
    /// Inside an overlong line: drop bytes until its end.
    discarding: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(io: R) -> Self {
        LineReader {
            io,
            buf: Vec::with_capacity(1024),
            discarding: false,
        }
    }

    /// The next line's bytes without the line end; `None` at end of stream. Cancel-safe:
    /// bytes read are kept in the buffer, so it can race other branches in `select!`.
    pub async fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if std::mem::take(&mut self.discarding) || line.len() > MAX_BUFFERED {
                    debug!("dropped an IRC line longer than {MAX_BUFFERED} bytes");
                    continue;
                }
                if line.is_empty() {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_BUFFERED {
                self.buf.clear();
                self.discarding = true;
            }
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Writes `line`; a line that cannot be serialized (too long, forbidden characters) is
/// logged and left out rather than sent truncated or injected.
pub async fn write_line<W: AsyncWrite + Unpin>(io: &mut W, line: &Line) -> io::Result<()> {
    match line.to_wire() {
        Ok(wire) => {
            debug!(line = %wire.trim_end(), "irc out");
            io.write_all(wire.as_bytes()).await
        }
        Err(e) => {
            debug!(command = %line.command, error = %e, "irc line not sent");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_skips_overlong_ones() {
        let mut input = Vec::new();
        input.extend_from_slice(b"PING :a\r\n\r\n");
        input.extend_from_slice(&vec![b'x'; MAX_BUFFERED + 100]);
        input.extend_from_slice(b"\r\nPING :b\nPARTIAL");
        let mut reader = LineReader::new(&input[..]);
        assert_eq!(reader.next_line().await.unwrap(), Some(b"PING :a".to_vec()));
        assert_eq!(reader.next_line().await.unwrap(), Some(b"PING :b".to_vec()));
        assert_eq!(reader.next_line().await.unwrap(), None);
    }
}
