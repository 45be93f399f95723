//! The little an async runtime must provide for Courier (quinn style): spawning, a timer, TCP,
//! the shutdown signal and `block_on`. Everything else in this crate is written once against it,
//! so the tokio and smol binaries share every line of I/O logic.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

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
    /// The runtime's name as the status page shows it (`tokio`, `smol`).
    const NAME: &'static str;

    /// Runs `future` to completion in the background. It is detached: nothing waits for it.
    fn spawn(&self, future: BoxFuture<()>);

    /// A future that completes at `deadline` (at once when it is past).
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

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
