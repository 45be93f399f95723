//! A lingering close for HTTP connections, as web servers do it.
//!
//! Courier answers some requests before it has read their whole body (413 over the route's
//! limit, 408 when the body is too slow) and then closes the connection. A client usually
//! writes its whole body before it reads the answer; closing a socket whose receive buffer still
//! holds unread bytes makes the kernel send a reset, and a client that sees the reset before it
//! has read the answer loses the answer (measured: a 256 KiB body over a 64-byte limit reset
//! the client every time on smol). So when hyper closes a connection, the write side is shut
//! first (the answer is out and the client sees the end of the stream), then what the client
//! still sends is read and dropped until it closes too, [`LINGER_BYTES`] have come or
//! [`LINGER_TIME`] has passed. Only then is the socket dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};

use crate::runtime::Runtime;

/// The longest a closing connection waits for its client to stop sending.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);
/// The most bytes a closing connection reads and drops (a client sending more is reset).
pub(crate) const LINGER_BYTES: usize = 4 << 20;

/// A server-side TCP stream whose close lingers (see the module docs).
pub(crate) struct Lingering<R: Runtime> {
    stream: R::Stream,
    runtime: R,
    /// Set once the write side is shut: the drain's deadline and the bytes it may still drop.
    draining: Option<(Pin<Box<R::Sleep>>, usize)>,
}

impl<R: Runtime> Lingering<R> {
    pub(crate) fn new(stream: R::Stream, runtime: R) -> Self {
        Lingering {
            stream,
            runtime,
            draining: None,
        }
    }
}

// Nothing is pinned in place: the stream is `Unpin`, the deadline is boxed, the runtime is
// only cloned from.
impl<R: Runtime> Unpin for Lingering<R> {}

impl<R: Runtime> AsyncRead for Lingering<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<R: Runtime> AsyncWrite for Lingering<R> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.draining.is_none() {
            // The answer is flushed and the client sees the end of the stream.
            ready!(Pin::new(&mut this.stream).poll_close(cx))?;
            this.draining = Some((Box::pin(this.runtime.sleep(LINGER_TIME)), LINGER_BYTES));
        }
        let Some((deadline, left)) = this.draining.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 2048];
        loop {
            if *left == 0 || deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.stream).poll_read(cx, &mut scratch)) {
                // The client closed (or broke off): nothing unread remains to cause a reset.
                Ok(0) | Err(_) => return Poll::Ready(Ok(())),
                Ok(read) => *left = left.saturating_sub(read),
            }
        }
    }
}
