//! The little an async runtime must provide for Courier (quinn style): spawning, the clocks, a
//! timer, TCP, the shutdown signal and `block_on`. Everything else in this crate is written once
//! against it, so the tokio and smol binaries share every line of I/O logic, and it reads time
//! only through [`Runtime::now`] and [`Runtime::unix_ms`], so a runtime with a simulated clock
//! can drive it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future, as handed to [`Runtime::spawn`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A TCP stream as `futures-io` sees it.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection for T {}

/// A bound TCP listener.
pub trait Listener: Send + Sync + 'static {
    /// The streams it accepts.
    type Stream: Connection;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// The address actually bound (the port when 0 was asked for).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// An async runtime. Cheap to clone; clones share the runtime.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected TCP stream.
    type Stream: Connection;
    /// A bound TCP listener accepting [`Self::Stream`]s.
    type Listener: Listener<Stream = Self::Stream>;
    /// The future returned by [`Runtime::sleep_until`]; `Sync` because hyper's timer needs it.
    type Sleep: Future<Output = ()> + Send + Sync + 'static;
    /// The runtime's name (`tokio`, `smol`), as `/metrics` (`courier_build_info{runtime=…}`)
    /// and the status page report it.
    const NAME: &'static str;

    /// Runs `future` to completion in the background. It is detached: nothing waits for it.
    fn spawn(&self, future: BoxFuture<()>);

    /// The monotonic clock: the `now` of every engine input and every deadline, on the same
    /// clock as [`Runtime::sleep_until`].
    fn now(&self) -> Instant;

    /// The wall clock in milliseconds since the Unix epoch: message ids, device expiry, node
    /// heartbeats, log lines.
    fn unix_ms(&self) -> u64;

    /// A future that completes at `deadline` (at once when it is past).
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// A future that completes `duration` after [`Runtime::now`].
    fn sleep(&self, duration: Duration) -> Self::Sleep {
        self.sleep_until(self.now() + duration)
    }

    /// Binds a TCP listener.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// Resolves `host` and connects to the first address that answers (TCP_NODELAY set).
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Completes when the process is asked to stop (SIGTERM or SIGINT). The handlers are
    /// installed by the call itself, so a signal sent after it returns is never missed.
    fn shutdown_signal(&self) -> BoxFuture<()>;

    /// Runs `future` on this runtime, blocking the calling thread until it completes.
    fn block_on<F: Future>(&self, future: F) -> F::Output;
}

/// The operating system's wall clock in Unix milliseconds (0 before 1970), for runtimes whose
/// [`Runtime::unix_ms`] is the real one.
pub fn system_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
