//! courier-smol: Courier's [`Runtime`] on smol. The binary in `main.rs` hands it to
//! [`courier_io::cli_main`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use courier_io::{BoxFuture, Listener, Runtime};
use futures_lite::StreamExt;
use smol::io::{AsyncRead, AsyncWrite};
use smol::{Async, Executor, Timer, ready};

/// smol behind Courier's [`Runtime`] trait: one process-wide executor run by one thread per
/// core. The thread inside [`Runtime::block_on`] only drives the future it was given (unless no
/// worker thread could be started): a third thread taking tasks on a two-core machine only
/// adds thread wake-ups and moves tasks between threads.
#[derive(Debug, Clone)]
pub struct SmolRuntime {
    executor: Arc<Executor<'static>>,
    workers: usize,
}

impl SmolRuntime {
    /// The process-wide smol runtime (started on first use).
    pub fn new() -> SmolRuntime {
        static EXECUTOR: OnceLock<(Arc<Executor<'static>>, usize)> = OnceLock::new();
        let (executor, workers) = EXECUTOR.get_or_init(|| {
            let executor = Arc::new(Executor::new());
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let mut workers = 0;
            for index in 0..threads {
                let executor = Arc::clone(&executor);
                // If a thread cannot be started, the others (and block_on) still run tasks.
                let started = std::thread::Builder::new()
                    .name(format!("courier-smol-{index}"))
                    .spawn(move || smol::block_on(executor.run(smol::future::pending::<()>())));
                workers += usize::from(started.is_ok());
            }
            (executor, workers)
        });
        SmolRuntime {
            executor: Arc::clone(executor),
            workers: *workers,
        }
    }
}

impl Default for SmolRuntime {
    fn default() -> Self {
        SmolRuntime::new()
    }
}

/// A bound smol listener.
#[derive(Debug)]
pub struct SmolListener(smol::net::TcpListener);

impl Listener for SmolListener {
    type Stream = SmolStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        // Small writes (WebSocket frames, polling answers) must not wait for Nagle.
        stream.set_nodelay(true)?;
        Ok((SmolStream::from(stream), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A TCP stream that reads only when the socket may hold data. smol's own stream tries a read
/// before every wait for readiness; after a read that left the socket empty that attempt is a
/// `recvfrom` answering `EAGAIN`, one wasted system call for every frame an idle WebSocket
/// receives (each pong). This one remembers that the last read drained the socket (it returned
/// less than asked, or `EAGAIN`) and then waits for readiness first.
#[derive(Debug)]
pub struct SmolStream {
    io: Arc<Async<std::net::TcpStream>>,
    /// The socket may hold data: read before waiting.
    maybe_readable: bool,
}

impl From<smol::net::TcpStream> for SmolStream {
    fn from(stream: smol::net::TcpStream) -> SmolStream {
        SmolStream {
            io: stream.into(),
            maybe_readable: true,
        }
    }
}

impl AsyncRead for SmolStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if !self.maybe_readable {
                ready!(self.io.poll_readable(cx))?;
                self.maybe_readable = true;
            }
            match io::Read::read(&mut self.io.get_ref(), buf) {
                Ok(read) => {
                    // A short read emptied the socket (an end of stream reads as readable).
                    self.maybe_readable = read == buf.len();
                    return Poll::Ready(Ok(read));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_readable = false;
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for SmolStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_flush(cx)
    }

    /// Flushes, then shuts the write side as tokio's TCP stream does (async-io's close only
    /// flushes): the peer sees the end of the stream at once, while a lingering close
    /// (courier-io's `linger`) still reads what it sends.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut &*self.io).poll_flush(cx))?;
        Poll::Ready(self.io.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// [`Timer`] completing with `()`.
#[derive(Debug)]
pub struct SmolSleep(Timer);

impl Future for SmolSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Runtime for SmolRuntime {
    type Stream = SmolStream;
    type Listener = SmolListener;
    type Sleep = SmolSleep;
    const NAME: &'static str = "smol";

    fn spawn(&self, future: BoxFuture<()>) {
        self.executor.spawn(future).detach();
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        courier_io::system_unix_ms()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        SmolSleep(Timer::at(deadline))
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        smol::net::TcpListener::bind(addr).await.map(SmolListener)
    }

    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let host = host.to_owned();
        async move {
            let stream = smol::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(SmolStream::from(stream))
        }
    }

    fn shutdown_signal(&self) -> BoxFuture<()> {
        use async_signal::{Signal, Signals};
        // Registered now, not at the first poll: a signal arriving in between is not lost.
        let signals = Signals::new([Signal::Term, Signal::Int]);
        Box::pin(async move {
            match signals {
                Ok(mut signals) => {
                    let _ = signals.next().await;
                }
                // No signal handling (should not happen on Unix): serve until killed.
                Err(_) => smol::future::pending::<()>().await,
            }
        })
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        if self.workers > 0 {
            smol::block_on(future)
        } else {
            smol::block_on(self.executor.run(future))
        }
    }
}
