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
use smol::{Executor, Timer};

/// smol behind Courier's [`Runtime`] trait: one process-wide executor run by one thread per
/// core (plus whichever thread is inside [`Runtime::block_on`]).
#[derive(Debug, Clone)]
pub struct SmolRuntime {
    executor: Arc<Executor<'static>>,
}

impl SmolRuntime {
    /// The process-wide smol runtime (started on first use).
    pub fn new() -> SmolRuntime {
        static EXECUTOR: OnceLock<Arc<Executor<'static>>> = OnceLock::new();
        let executor = EXECUTOR.get_or_init(|| {
            let executor = Arc::new(Executor::new());
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            for index in 0..threads {
                let executor = Arc::clone(&executor);
                // If a thread cannot be started, the others (and block_on) still run tasks.
                let _ = std::thread::Builder::new()
                    .name(format!("courier-smol-{index}"))
                    .spawn(move || smol::block_on(executor.run(smol::future::pending::<()>())));
            }
            executor
        });
        SmolRuntime {
            executor: Arc::clone(executor),
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
    type Stream = smol::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        // Small writes (WebSocket frames, polling answers) must not wait for Nagle.
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
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
    type Stream = smol::net::TcpStream;
    type Listener = SmolListener;
    type Sleep = SmolSleep;
    const NAME: &'static str = "smol";

    fn spawn(&self, future: BoxFuture<()>) {
        self.executor.spawn(future).detach();
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
            Ok(stream)
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
        smol::block_on(self.executor.run(future))
    }
}
