//! What the fuzz targets share: a current-thread runtime and an in-memory stream that
//! plays the fuzz input as the peer's bytes.
use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Runtime;

/// One runtime for every iteration: building one per input would cost more than most
/// inputs take to run.
pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// `FUZZ_ECHO=1` copies what the code under test writes to standard error, to see what a
/// seed or a crash input gets answered.
static ECHO: LazyLock<bool> = LazyLock::new(|| std::env::var_os("FUZZ_ECHO").is_some());

/// The peer's side of a connection: reads give `input`, at most `chunk` bytes each, then
/// end of stream; whatever is written is counted and dropped. Never pending, so no timeout
/// of the code under test fires.
pub struct Script<'a> {
    input: &'a [u8],
    chunk: usize,
    pub written: usize,
}

impl<'a> Script<'a> {
    pub fn new(input: &'a [u8], chunk: usize) -> Self {
        Script {
            input,
            chunk: chunk.max(1),
            written: 0,
        }
    }
}

/// The first input byte picks the largest read: 0 (or no byte) for reads as large as the
/// reader's buffer, `n` for reads of at most `n` bytes, so lines and literals are also
/// seen split across reads. Returns the read size and the rest of the input.
pub fn read_size(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((0, rest)) => (usize::MAX, rest),
        Some((n, rest)) => (usize::from(*n), rest),
        None => (usize::MAX, data),
    }
}

impl AsyncRead for Script<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.input.len().min(buf.remaining()).min(this.chunk);
        let (head, tail) = this.input.split_at(n);
        buf.put_slice(head);
        this.input = tail;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().written += buf.len();
        if *ECHO {
            use std::io::Write;
            let _ = std::io::stderr().write_all(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
