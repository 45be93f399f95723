//! courier-tokio: Courier's [`Runtime`] on tokio (multi-threaded). The binary in `main.rs`
//! hands it to [`courier_io::cli_main`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use courier_io::{BoxFuture, Listener, Runtime};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// The tokio runtime behind Courier's [`Runtime`] trait. Clones share one tokio runtime.
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    runtime: Arc<OwnedRuntime>,
}

/// Owns the tokio runtime. Tasks hold clones of [`TokioRuntime`], so the last one may be
/// dropped by a task on a worker thread, where dropping a runtime normally panics; shutting it
/// down in the background is allowed anywhere.
#[derive(Debug)]
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        // Only `Drop` takes it out.
        match &self.0 {
            Some(runtime) => runtime,
            None => unreachable!("the runtime is only taken when dropped"),
        }
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl TokioRuntime {
    /// A multi-threaded tokio runtime with one worker per core.
    pub fn new() -> io::Result<TokioRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("courier-tokio")
            .build()?;
        Ok(TokioRuntime {
            runtime: Arc::new(OwnedRuntime(Some(runtime))),
        })
    }

    /// [`TokioRuntime::new`] for a binary's `main`: on failure the error is printed to stderr,
    /// naming `program`, and the exit code to return is given instead.
    pub fn for_main(program: &str) -> Result<TokioRuntime, std::process::ExitCode> {
        TokioRuntime::new().map_err(|error| {
            let message = format!("{program}: cannot start tokio: {error}\n");
            let _ = io::Write::write_all(&mut io::stderr(), message.as_bytes());
            std::process::ExitCode::from(2)
        })
    }
}

/// A bound tokio listener.
#[derive(Debug)]
pub struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    type Stream = Compat<tokio::net::TcpStream>;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        // Small writes (WebSocket frames, polling answers) must not wait for Nagle.
        stream.set_nodelay(true)?;
        Ok((stream.compat(), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Runtime for TokioRuntime {
    type Stream = Compat<tokio::net::TcpStream>;
    type Listener = TokioListener;
    type Sleep = tokio::time::Sleep;
    const NAME: &'static str = "tokio";

    fn spawn(&self, future: BoxFuture<()>) {
        drop(self.runtime.get().spawn(future));
    }

    fn now(&self) -> Instant {
        // Tokio's clock, which `sleep_until` waits on (and which tokio can pause in tests).
        tokio::time::Instant::now().into_std()
    }

    fn unix_ms(&self) -> u64 {
        courier_io::system_unix_ms()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        // Entering makes this work from any thread, not only from inside a task.
        let _context = self.runtime.get().enter();
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await.map(TokioListener)
    }

    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let host = host.to_owned();
        async move {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(stream.compat())
        }
    }

    fn shutdown_signal(&self) -> BoxFuture<()> {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered now, not at the first poll: a signal arriving in between is not lost.
        let _context = self.runtime.get().enter();
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        Box::pin(async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                // No signal handling (should not happen on Unix): serve until killed.
                _ => std::future::pending::<()>().await,
            }
        })
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.get().block_on(future)
    }
}
