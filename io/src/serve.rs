//! Assembles a running server: listener, driver, store executor, cluster bus; and stops it.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};
use courier_core::body::BodyBudget;
use courier_core::net::Engine;
use futures_lite::future;

use crate::bus;
use crate::client::HttpClient;
use crate::driver::{Driver, Input, StoreSink};
use crate::logging;
use crate::redis_store::RedisStore;
use crate::request_body::BodyReading;
use crate::runtime::{BoxFuture, Runtime};
use crate::server::{self, Server};
use crate::setup::{Limits, Setup, StoreSetup};

/// Default `max_payload` when the application does not configure one (Engine.IO's 1e6).
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;
/// The most store commands sent to Redis in one pipeline.
const STORE_BATCH: usize = 256;

/// A server that is bound and ready; [`Running::run_until`] serves.
pub struct Running<R: Runtime> {
    runtime: R,
    local_addr: SocketAddr,
    listener: R::Listener,
    driver: Driver<R>,
    server: Arc<Server<R>>,
    grace: std::time::Duration,
    background: Vec<BoxFuture<()>>,
}

impl<R: Runtime> std::fmt::Debug for Running<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` and prepares `engine` to be served as `setup` says. Must run inside the
/// runtime (the Redis connection is created there).
pub async fn start<R: Runtime>(
    runtime: R,
    engine: Box<dyn Engine + Send>,
    setup: Setup,
    addr: SocketAddr,
) -> Result<Running<R>, String> {
    let (listener, local_addr) = server::bind(&runtime, addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    let client = HttpClient::new(runtime.clone(), setup.limits.call_body_cap)?;
    let mut background: Vec<BoxFuture<()>> = Vec::new();
    let (store, bus_sender, store_queue) = match setup.store {
        StoreSetup::None => (StoreSink::None, None, None),
        StoreSetup::Memory(memory) => {
            let next_sweep = std::time::Instant::now() + memory.inner.sweep_every();
            let sink = StoreSink::Inline {
                store: memory.inner,
                next_sweep,
            };
            (sink, None, None)
        }
        StoreSetup::Redis { url, prefix } => {
            let store = RedisStore::open(&url, &prefix)?;
            let (commands_tx, commands_rx) = async_channel::unbounded();
            let (bus_tx, bus_rx) = bus::queue();
            background.push(Box::pin(bus::publish_loop(
                store.connection(),
                bus::channel(&prefix),
                setup.node_id,
                bus_rx,
            )));
            (
                StoreSink::Queue(commands_tx),
                Some(bus_tx),
                Some((store, commands_rx, prefix)),
            )
        }
    };
    let max_payload = setup.max_payload.max(1);
    let body_rules = engine.body_rules(max_payload);
    let (driver, handle) = Driver::new(
        runtime.clone(),
        engine,
        store,
        client,
        bus_sender,
        setup.limits.ws_outbound_frames,
    );
    if let Some((store, commands, prefix)) = store_queue {
        let channel = bus::channel(&prefix);
        let first = bus::subscribe_first(
            &runtime,
            store.client(),
            &channel,
            bus::FIRST_SUBSCRIBE_PATIENCE,
        )
        .await;
        if first.is_none() {
            tracing::warn!(target: "courier", "cluster bus not subscribed yet (Redis unreachable); retrying in the background");
        }
        background.push(Box::pin(bus::subscribe_loop(
            runtime.clone(),
            store.client().clone(),
            channel,
            setup.node_id,
            handle.control.clone(),
            first,
        )));
        background.push(Box::pin(store_loop(
            store,
            commands,
            handle.control.clone(),
        )));
    }
    let server = Arc::new(Server {
        runtime: runtime.clone(),
        driver: handle,
        max_payload,
        header_read_timeout: setup.limits.header_read_timeout,
        bodies: BodyReading {
            rules: body_rules,
            timeout: setup.limits.request_timeout,
            budget: Mutex::new(BodyBudget::new(
                setup.limits.request_body_budget.max(max_payload),
            )),
        },
        ws_tasks: driver.task_counter(),
    });
    tracing::info!(target: "courier", port = local_addr.port(), "{}", setup.first_log_line);
    Ok(Running {
        runtime,
        local_addr,
        listener,
        driver,
        server,
        grace: setup.limits.shutdown_grace,
        background,
    })
}

impl<R: Runtime> Running<R> {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes; then stops accepting, lets the engine close its
    /// sessions (`handle_shutdown`), carries out what it emits within the grace period, and
    /// returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let Running {
            runtime,
            listener,
            driver,
            server,
            grace,
            background,
            ..
        } = self;
        // Background tasks stop when `stop` is dropped.
        let (stop_tx, stop_rx): (Sender<()>, Receiver<()>) = async_channel::bounded(1);
        for task in background {
            let stop = stop_rx.clone();
            runtime.spawn(Box::pin(async move {
                future::or(task, async {
                    let _ = stop.recv().await;
                })
                .await;
            }));
        }
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        runtime.spawn(Box::pin(async move {
            driver.run(grace).await;
            drop(done_tx);
        }));
        let control = server.driver.control.clone();
        future::or(Arc::clone(&server).accept_loop(listener), shutdown).await;
        // The listener is dropped here: no new connections.
        let _ = control.send(Input::Shutdown).await;
        let _ = done_rx.recv().await;
        drop(stop_tx);
    }
}

/// Executes Redis store commands in the order the engine emitted them, taking whatever has
/// queued up meanwhile as one batch (one pipelined round trip; see `RedisStore::execute_batch`).
async fn store_loop(
    store: RedisStore,
    commands: Receiver<(
        courier_core::net::StoreCmdId,
        courier_core::gateway::store::StoreCommand,
    )>,
    control: Sender<Input>,
) {
    while let Ok(first) = commands.recv().await {
        let mut batch = vec![first];
        while batch.len() < STORE_BATCH {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let (ids, batch): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let results = store.execute_batch(batch).await;
        for (id, result) in ids.into_iter().zip(results) {
            if control.send(Input::StoreResult(id, result)).await.is_err() {
                return;
            }
        }
    }
}

/// The port of the conformance server: 3000, as the Socket.IO protocol test-suites expect, or
/// `PORT` when set (tests run several at once).
pub fn conformance_port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(3000)
}

/// Serves `engine` on `bind` with no store until SIGTERM/SIGINT (for the conformance server
/// and other engines built on the Socket.IO layer). Logs the bound port first (one JSON line,
/// `{"message":"Listening","port":…}`), so port 0 works for tests.
///
/// The runtime crates' `examples/conformance*.rs` are a few lines around it.
pub fn serve_engine<R: Runtime>(
    runtime: R,
    engine: Box<dyn Engine + Send>,
    bind: SocketAddr,
) -> ExitCode {
    logging::init(std::env::var("RUST_LOG").ok().as_deref());
    let setup = Setup {
        max_payload: DEFAULT_MAX_PAYLOAD,
        store: StoreSetup::None,
        node_id: 0,
        first_log_line: "Listening".to_owned(),
        limits: Limits::default(),
    };
    run_to_exit(runtime, engine, setup, bind)
}

/// Starts and serves until a shutdown signal; errors go to stderr with exit code 2.
pub(crate) fn run_to_exit<R: Runtime>(
    runtime: R,
    engine: Box<dyn Engine + Send>,
    setup: Setup,
    bind: SocketAddr,
) -> ExitCode {
    let result = runtime.block_on(async {
        let running = start(runtime.clone(), engine, setup, bind).await?;
        running.run_until(runtime.shutdown_signal()).await;
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln_stderr(&message);
            ExitCode::from(2)
        }
    }
}

pub(crate) fn writeln_stderr(message: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    writeln!(stderr, "courier: {message}")
}
