//! An adapter from futures-io streams (glommio's `TcpStream`, a futures-rustls TLS stream) to
//! hyper's own `Read`/`Write` traits; on server connections it also runs the `:authority`
//! filter (`authority.rs`) over what the client sends.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};

use super::authority::AuthorityFilter;

/// The largest part of hyper's read buffer zeroed per read. hyper hands over uninitialized
/// memory, and futures-io can only read into initialized bytes, so each read first zeroes the
/// part it offers; a bound keeps that cost small when hyper's buffer is large.
const READ_CHUNK_MAX: usize = 64 * 1024;

/// The bytes an HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Wraps a futures-io stream so hyper can drive it.
///
/// It also watches the first bytes read for the moment the client's protocol is known (the
/// whole HTTP/2 preface arrived, or a byte that cannot start it, meaning HTTP/1), so that a
/// connection that never gets that far can be closed: hyper's own timers start only after it.
#[derive(Debug)]
pub(crate) struct HyperIo<T> {
    inner: T,
    /// How many leading bytes matched the HTTP/2 preface so far.
    preface_matched: usize,
    /// Set once the protocol is known; shared with the connection task.
    protocol_known: Rc<Cell<bool>>,
    /// The `:authority` filter over what is read (a server's connections only). Boxed: most
    /// of a connection's life it is not touched, and it is large.
    authority: Option<Box<AuthorityFilter>>,
}

impl<T> HyperIo<T> {
    /// Wraps `inner`; `protocol_known` is set once the first bytes reveal the protocol.
    pub(crate) fn new(inner: T, protocol_known: Rc<Cell<bool>>) -> Self {
        Self {
            inner,
            preface_matched: 0,
            protocol_known,
            authority: None,
        }
    }

    /// Like [`new`](Self::new), for a server connection: what the client sends goes through
    /// `filter` before hyper reads it.
    pub(crate) fn with_authority_filter(
        inner: T,
        protocol_known: Rc<Cell<bool>>,
        filter: AuthorityFilter,
    ) -> Self {
        Self {
            authority: Some(Box::new(filter)),
            ..Self::new(inner, protocol_known)
        }
    }

    /// Follows the HTTP/2 preface through newly read `bytes` until the protocol is known.
    fn observe(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte != H2_PREFACE[self.preface_matched] {
                // Not HTTP/2: hyper reads it as HTTP/1, whose header timeout takes over.
                self.protocol_known.set(true);
                return;
            }
            self.preface_matched += 1;
            if self.preface_matched == H2_PREFACE.len() {
                self.protocol_known.set(true);
                return;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            // What the filter produced beyond the bytes it left in place goes first.
            if let Some(filter) = &mut self.authority {
                let pending = filter.pending();
                if !pending.is_empty() {
                    let n = pending.len().min(buf.remaining());
                    buf.put_slice(&pending[..n]);
                    filter.consume_pending(n);
                    return Poll::Ready(Ok(()));
                }
            }
            let len = buf.remaining().min(READ_CHUNK_MAX);
            let dst = buf.initialize_unfilled_to(len);
            let n = match Pin::new(&mut self.inner).poll_read(cx, dst) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            debug_assert!(n <= len, "a reader claimed more bytes than it was given");
            if !self.protocol_known.get() {
                self.observe(&dst[..n]);
            }
            // The filter may keep back some of what was read (a header block until it is
            // whole): unless that was the end of the stream, read on rather than hand hyper an
            // empty read, which it would take for the end.
            let kept = match &mut self.authority {
                Some(filter) if n > 0 => filter.process(&dst[..n]),
                _ => n,
            };
            // SAFETY: `initialize_unfilled_to(len)` initialized the first `len` unfilled bytes,
            // and the reader filled `kept <= n <= len` of them.
            unsafe { buf.advance(kept) };
            if kept > 0 || n == 0 {
                return Poll::Ready(Ok(()));
            }
        }
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
