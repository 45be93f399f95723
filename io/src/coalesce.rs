//! A stream wrapper that lets a WebSocket task write a run of queued frames with one `write(2)`.
//!
//! The WebSocket library writes every frame to its stream as soon as it is sent (its own write
//! buffer is kept at zero so an idle connection holds none). When several frames wait for one
//! connection, the task [holds](Coalesce::hold) the stream, sends them all — each lands in
//! [`Coalesce`]'s buffer — [releases](Coalesce::release) it and flushes: one system call for
//! the run. The buffer lives only for the run: it is freed as soon as it has been written, so
//! an idle connection keeps no storage here either.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_io::{AsyncRead, AsyncWrite};

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Coalesce<S> {
    inner: S,
    /// Bytes written while held and not yet passed on (no storage between runs).
    held: Vec<u8>,
    holding: bool,
}

impl<S> Coalesce<S> {
    /// Wraps a stream; writes pass straight through until [`Coalesce::hold`].
    pub(crate) fn new(inner: S) -> Coalesce<S> {
        Coalesce {
            inner,
            held: Vec::new(),
            holding: false,
        }
    }

    /// From now on writes are collected (and flushes do nothing) until [`Coalesce::release`].
    pub(crate) fn hold(&mut self) {
        self.holding = true;
    }

    /// Stops collecting; the next write or flush first passes on what was collected.
    pub(crate) fn release(&mut self) {
        self.holding = false;
    }

    /// The wrapped stream.
    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes collected and not yet passed on.
    pub(crate) fn held_len(&self) -> usize {
        self.held.len()
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Passes on what was collected, then frees the buffer.
    fn poll_pass_on(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..written);
        }
        if self.held.capacity() > 0 {
            self.held = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_pass_on(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.holding {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_pass_on(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.holding = false;
        ready!(this.poll_pass_on(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future;
    use futures_lite::io::AsyncWriteExt;

    use super::*;

    /// Records each write call separately; accepts at most `chunk` bytes per call.
    struct Recorder {
        writes: Vec<Vec<u8>>,
        chunk: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            self.get_mut().writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn recorder(chunk: usize) -> Coalesce<Recorder> {
        Coalesce::new(Recorder {
            writes: Vec::new(),
            chunk,
        })
    }

    #[test]
    fn writes_pass_straight_through_when_not_held() {
        let mut stream = recorder(usize::MAX);
        future::block_on(async {
            stream.write_all(b"one").await.expect("write");
            stream.write_all(b"two").await.expect("write");
            stream.flush().await.expect("flush");
        });
        assert_eq!(stream.inner.writes, [b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn a_held_run_goes_out_in_one_write_and_frees_its_buffer() {
        let mut stream = recorder(usize::MAX);
        future::block_on(async {
            stream.hold();
            for frame in [&b"a"[..], b"bb", b"ccc"] {
                stream.write_all(frame).await.expect("write");
                stream
                    .flush()
                    .await
                    .expect("a flush while held does nothing");
            }
            assert!(stream.inner.writes.is_empty());
            assert_eq!(stream.held_len(), 6);
            stream.release();
            stream.flush().await.expect("flush");
        });
        assert_eq!(stream.inner.writes, [b"abbccc".to_vec()]);
        assert_eq!(stream.held.capacity(), 0, "no storage kept after the run");
    }

    #[test]
    fn a_partial_write_keeps_the_rest_in_order() {
        let mut stream = recorder(4);
        future::block_on(async {
            stream.hold();
            stream.write_all(b"0123456789").await.expect("write");
            stream.release();
            stream.write_all(b"ab").await.expect("write");
            stream.flush().await.expect("flush");
        });
        assert_eq!(stream.inner.writes.concat(), b"0123456789ab".to_vec());
        assert_eq!(stream.held.capacity(), 0);
    }
}
