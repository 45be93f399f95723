//! Adapters between hyper's runtime traits and ours: a hyper `Timer` (and clock) over [`Runtime`], and
//! `futures-io` over a hyper connection (for the upgraded WebSocket). The other direction
//! (`futures-io` streams under hyper) is `smol_hyper::rt::FuturesIo`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::runtime::Runtime;

/// hyper's timer (header-read timeouts) on top of a [`Runtime`].
#[derive(Debug, Clone)]
pub(crate) struct RuntimeTimer<R>(pub(crate) R);

struct TimerSleep(Pin<Box<dyn Future<Output = ()> + Send + Sync>>);

impl Future for TimerSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for TimerSleep {}

impl<R: Runtime> hyper::rt::Timer for RuntimeTimer<R> {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(TimerSleep(Box::pin(self.0.sleep(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(TimerSleep(Box::pin(self.0.sleep_until(deadline))))
    }

    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// `futures-io` traits over something that implements hyper's `Read`/`Write` (an upgraded
/// connection), so async-tungstenite can run on it.
#[derive(Debug)]
pub(crate) struct HyperIo<T>(pub(crate) T);

impl<T: hyper::rt::Read + Unpin> futures_io::AsyncRead for HyperIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read_buf = hyper::rt::ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, read_buf.unfilled()) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read_buf.filled().len())),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: hyper::rt::Write + Unpin> futures_io::AsyncWrite for HyperIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
