//! An adapter from futures-io streams (glommio's `TcpStream`, a futures-rustls TLS stream) to
//! hyper's own `Read`/`Write` traits.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};

/// The largest part of hyper's read buffer zeroed per read. hyper hands over uninitialized
/// memory, and futures-io can only read into initialized bytes, so each read first zeroes the
/// part it offers; a bound keeps that cost small when hyper's buffer is large.
const READ_CHUNK_MAX: usize = 64 * 1024;

/// Wraps a futures-io stream so hyper can drive it.
#[derive(Debug)]
pub(crate) struct HyperIo<T> {
    inner: T,
}

impl<T> HyperIo<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T) -> Self {
        Self { inner }
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let len = buf.remaining().min(READ_CHUNK_MAX);
        let dst = buf.initialize_unfilled_to(len);
        let n = match Pin::new(&mut self.inner).poll_read(cx, dst) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        debug_assert!(n <= len, "a reader claimed more bytes than it was given");
        // SAFETY: `initialize_unfilled_to(len)` initialized the first `len` unfilled bytes, and
        // the reader filled `n <= len` of them.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
