//! The one line reader of the line-based protocols (SMTP server, POP3 server and client):
//! received bytes in one buffer, taken a line at a time with a limit on a line's length.
//! It reads nothing by itself beyond [`LineBuffer::read_from`]; timeouts and shutdown are
//! the session's, because each protocol answers them in its own words.
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// A line longer than the limit. Reported once, as soon as the limit is passed; the rest
/// of that line is dropped as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

pub struct LineBuffer {
    /// Received bytes; those before `pos` are taken.
    buf: Vec<u8>,
    pos: usize,
    /// Inside a line already reported as too long: dropped up to its end.
    discarding: bool,
    /// Room made for each read.
    chunk: usize,
}

impl LineBuffer {
    pub fn new(chunk: usize) -> LineBuffer {
        LineBuffer {
            buf: Vec::with_capacity(chunk),
            pos: 0,
            discarding: false,
            chunk,
        }
    }

    /// The next complete line without its line end (CRLF, or a bare LF); `None` when more
    /// input is needed. A line longer than `max` bytes (line end not counted) is [`TooLong`].
    pub fn next_line(&mut self, max: usize) -> Option<Result<&[u8], TooLong>> {
        loop {
            let pending = &self.buf[self.pos..];
            let Some(lf) = memchr::memchr(b'\n', pending) else {
                if self.discarding || pending.len() > max + 1 {
                    // `max + 1`: the CR of a line of exactly `max` bytes may be here already.
                    let reported = self.discarding;
                    self.clear();
                    self.discarding = true;
                    return (!reported).then_some(Err(TooLong));
                }
                return None;
            };
            let start = self.pos;
            self.pos += lf + 1;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            let end = match lf > 0 && self.buf[start + lf - 1] == b'\r' {
                true => start + lf - 1,
                false => start + lf,
            };
            if end - start > max {
                return Some(Err(TooLong));
            }
            return Some(Ok(&self.buf[start..end]));
        }
    }

    /// A line, or more than a line's worth of bytes, is waiting: [`LineBuffer::next_line`]
    /// answers without more input.
    pub fn line_ready(&self, max: usize) -> bool {
        let pending = self.pending();
        pending.len() > max + 1 || memchr::memchr(b'\n', pending).is_some()
    }

    /// Bytes received and not yet taken (a DATA body, a skipped chunk).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Takes `n` bytes of [`LineBuffer::pending`].
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// Drops everything received: after STARTTLS/STLS, bytes that came in plaintext must
    /// never be read as commands of the encrypted session (RFC 3207 §4.2, RFC 2595 §4).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.discarding = false;
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// One read from `stream` into the buffer; 0 at the end of the stream.
    pub async fn read_from<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(self.chunk);
        stream.read_buf(&mut self.buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(bytes: &[u8]) -> LineBuffer {
        let mut b = LineBuffer::new(16);
        b.buf.extend_from_slice(bytes);
        b
    }

    #[test]
    fn lines_end_with_crlf_or_a_bare_lf() {
        let mut b = fed(b"NOOP\r\nQUIT\nRE");
        assert_eq!(b.next_line(10), Some(Ok(&b"NOOP"[..])));
        assert_eq!(b.next_line(10), Some(Ok(&b"QUIT"[..])));
        assert_eq!(b.next_line(10), None);
        assert_eq!(b.pending(), b"RE");
    }

    #[test]
    fn a_long_line_is_reported_once_and_dropped_to_its_end() {
        let mut b = fed(b"0123456789ABC");
        assert_eq!(b.next_line(10), Some(Err(TooLong)));
        assert_eq!(b.next_line(10), None);
        b.buf.extend_from_slice(b"more of it\r\nNEXT\r\n");
        assert_eq!(b.next_line(10), Some(Ok(&b"NEXT"[..])));
        // A long line that ends in one piece is reported at its end.
        let mut b = fed(b"0123456789AB\r\nok\r\n");
        assert_eq!(b.next_line(10), Some(Err(TooLong)));
        assert_eq!(b.next_line(10), Some(Ok(&b"ok"[..])));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_taken() {
        let mut b = fed(b"0123456789\r");
        assert_eq!(b.next_line(10), None);
        b.buf.extend_from_slice(b"\n");
        assert_eq!(b.next_line(10), Some(Ok(&b"0123456789"[..])));
    }

    #[tokio::test]
    async fn reads_append_after_what_was_taken() {
        let mut b = fed(b"A\r\nB");
        assert_eq!(b.next_line(10), Some(Ok(&b"A"[..])));
        let mut input: &[u8] = b"C\r\n";
        assert_eq!(b.read_from(&mut input).await.unwrap(), 3);
        assert_eq!(b.next_line(10), Some(Ok(&b"BC"[..])));
        assert!(b.is_empty());
        b.consume(5);
        assert!(b.is_empty());
    }
}
