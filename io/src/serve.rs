//! Assembles a running server: listener, driver, store executor, cluster bus; and stops it.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};
use courier_core::body::BodyBudget;
use courier_core::gateway::store::StoreResult;
use courier_core::net::Engine;
use futures_lite::future;

use crate::bus;
use crate::client::HttpClient;
use crate::driver::{Driver, Input, StoreBatch, StoreSink};
use crate::engines::{self, Engines, LocalNodes};
use crate::logging;
use crate::nodes;
use crate::ops::Ops;
use crate::redis_conn::RedisTarget;
use crate::redis_store::{LayoutError, RedisStore};
use crate::request_body::BodyReading;
use crate::runtime::{BoxFuture, Runtime};
use crate::server::{self, Server};
use crate::setup::{Limits, OpsSetup, Setup, StoreSetup};

/// Default `max_payload` when the application does not configure one (Engine.IO's 1e6).
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;
/// The most store commands sent to Redis in one pipeline.
const STORE_BATCH: usize = 256;

/// A server that is bound and ready; [`Running::run_until`] serves.
pub struct Running<R: Runtime> {
    runtime: R,
    local_addr: SocketAddr,
    listener: R::Listener,
    drivers: Vec<Driver<R>>,
    server: Arc<Server<R>>,
    metrics_server: Option<(Arc<Server<R>>, R::Listener, SocketAddr)>,
    ops: Arc<Ops>,
    grace: std::time::Duration,
    background: Vec<BoxFuture<()>>,
}

impl<R: Runtime> std::fmt::Debug for Running<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("local_addr", &self.local_addr)
            .field("engines", &self.drivers.len())
            .finish_non_exhaustive()
    }
}

/// Binds `addr` and prepares `engines` (one driver each, see [`crate::App::engines`]) to be
/// served as `setup` says. Must run inside the runtime (the Redis connection is created there).
pub async fn start<R: Runtime>(
    runtime: R,
    engines: Vec<Box<dyn Engine + Send>>,
    setup: Setup,
    addr: SocketAddr,
) -> Result<Running<R>, String> {
    let count = engines.len();
    if count == 0 || count != setup.node_ids.len() {
        return Err(format!(
            "{count} engines but {} node ids: each engine needs one",
            setup.node_ids.len()
        ));
    }
    let (listener, local_addr) = server::bind(&runtime, addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    let client = HttpClient::new(runtime.clone(), setup.limits.call_body_cap)?;
    let redis = matches!(setup.store, StoreSetup::Redis { .. });
    let ops = Arc::new(Ops::with_engines(
        R::NAME,
        setup.node_ids.clone(),
        redis,
        runtime.now(),
    ));
    let metrics_listener = match setup.ops.metrics_bind {
        Some(addr) => Some(
            server::bind(&runtime, addr)
                .await
                .map_err(|error| format!("cannot listen on {addr} (metrics.bind): {error}"))?,
        ),
        None => None,
    };
    let mut background: Vec<BoxFuture<()>> = Vec::new();
    // Where each engine's store commands go: the in-memory store serves one engine only (its
    // queues live in that engine's driver); Redis serves any number, one executor each.
    let mut inline = None;
    let mut shared_store = None;
    match setup.store {
        StoreSetup::None => {}
        StoreSetup::Memory(memory) => {
            if count > 1 {
                return Err(format!(
                    "io.engines is {count}, but the in-memory store serves one engine only \
                     (configure redis or set io.engines to 1)"
                ));
            }
            let next_sweep = runtime.now() + memory.inner.sweep_every();
            inline = Some(StoreSink::Inline {
                store: memory.inner,
                next_sweep,
            });
        }
        StoreSetup::Redis {
            target,
            prefix,
            shards,
        } => {
            let store = RedisStore::open_target(&target, &prefix, shards)?.on_runtime(&runtime);
            // A Redis that holds another layout is refused before serving anyone; one that is
            // not reachable yet is checked before the first store command instead.
            let give_up = async {
                runtime.sleep(bus::FIRST_SUBSCRIBE_PATIENCE).await;
                Ok(())
            };
            if let Err(LayoutError::Mismatch(text)) =
                future::or(store.check_layout(), give_up).await
            {
                return Err(text);
            }
            shared_store = Some((store, prefix));
        }
    }
    let max_payload = setup.max_payload.max(1);
    let body_rules = engines[0].body_rules(max_payload);
    let mut drivers = Vec::with_capacity(count);
    let mut handles = Vec::with_capacity(count);
    // Engine index, what its driver publishes, and its Redis publisher's queue (several
    // engines only: see `engines::route_published`).
    let mut routes = Vec::new();
    for (index, engine) in engines.into_iter().enumerate() {
        let node_id = setup.node_ids[index];
        let mut commands = None;
        let mut bus_sender = None;
        let sink = match &shared_store {
            Some((store, prefix)) => {
                let (commands_tx, commands_rx) = async_channel::unbounded();
                commands = Some(commands_rx);
                let (publish_tx, publish_rx) = bus::queue();
                background.push(Box::pin(bus::publish_loop(
                    store.connection(),
                    bus::Channels::new(prefix),
                    node_id,
                    publish_rx,
                    Arc::clone(&ops),
                )));
                if count == 1 {
                    bus_sender = Some(publish_tx);
                } else {
                    let (engine_tx, engine_rx) = bus::queue();
                    routes.push((index, engine_rx, publish_tx));
                    bus_sender = Some(engine_tx);
                }
                StoreSink::Queue(commands_tx)
            }
            None => inline.take().unwrap_or(StoreSink::None),
        };
        let (driver, handle) = Driver::new(
            runtime.clone(),
            engine,
            sink,
            client.clone(),
            bus_sender,
            setup.limits.ws_outbound_frames,
            Arc::clone(&ops),
        );
        if let (Some((store, _)), Some(commands)) = (&shared_store, commands) {
            background.push(Box::pin(store_loop(
                store.clone(),
                commands,
                handle.control.clone(),
                Arc::clone(&ops),
            )));
        }
        drivers.push(driver);
        handles.push(handle);
    }
    // Every WebSocket task counts in one counter that every driver's shutdown waits for (the
    // engines stop together); `/status.json` of one engine sums all of them.
    let ws_tasks = drivers[0].task_counter();
    let controls: Vec<_> = handles
        .iter()
        .map(|handle| handle.control.clone())
        .collect();
    for (index, driver) in drivers.iter_mut().enumerate() {
        let siblings = controls
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, control)| control.clone())
            .collect();
        driver.join_engines(siblings, ws_tasks.clone());
    }
    let local = Arc::new(LocalNodes::new(setup.node_ids.clone(), controls));
    for (index, published, publisher) in routes {
        background.push(Box::pin(engines::route_published(
            index,
            published,
            Arc::clone(&local),
            publisher,
            Arc::clone(&ops),
        )));
    }
    if let Some((store, prefix)) = shared_store {
        if let Some(heartbeat) = setup.ops.heartbeat {
            // The first heartbeat before serving (bounded), so readiness is known at once and
            // other nodes list this one before it admits anyone.
            let key = nodes::registry_key(&prefix);
            // The loop judges liveness once its own heartbeats have gone through for a whole
            // timeout; this first one only registers the node and reads the registry.
            let mut not_judging = None;
            let first = nodes::beat(
                &store,
                &key,
                &heartbeat,
                &setup.node_ids,
                &ops,
                &mut not_judging,
                runtime.unix_ms(),
            );
            let give_up = async {
                runtime.sleep(bus::FIRST_SUBSCRIBE_PATIENCE).await;
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer from Redis in time",
                )))
            };
            let mut warned = false;
            nodes::record(&ops, future::or(first, give_up).await, &mut warned);
            background.push(Box::pin(nodes::heartbeat_loop(
                runtime.clone(),
                store.clone(),
                heartbeat,
                setup.node_ids.clone(),
                Arc::clone(&ops),
            )));
        }
        let channels = bus::Channels::new(&prefix);
        // On a cluster the bus subscribes through the cluster client (sharded pub/sub), from
        // any seed that answers.
        let bus_source = match store.target() {
            RedisTarget::Cluster(seeds) => bus::BusSource::Cluster(seeds.clone()),
            RedisTarget::Node(_) => bus::BusSource::Node(Box::new(store.client().clone())),
        };
        let first = bus::subscribe_first(
            &runtime,
            &bus_source,
            &channels.to_subscribe(local.ids()),
            bus::FIRST_SUBSCRIBE_PATIENCE,
        )
        .await;
        if first.is_none() {
            tracing::warn!(target: "courier", "cluster bus not subscribed yet (Redis unreachable); retrying in the background");
        }
        background.push(Box::pin(bus::subscribe_loop(
            runtime.clone(),
            bus_source,
            channels,
            local,
            first,
            Arc::clone(&ops),
        )));
    }
    let engines = Arc::new(Engines::new(handles));
    let server = Arc::new(Server {
        runtime: runtime.clone(),
        engines: Arc::clone(&engines),
        max_payload,
        header_read_timeout: setup.limits.header_read_timeout,
        bodies: BodyReading {
            rules: body_rules,
            timeout: setup.limits.request_timeout,
            budget: Mutex::new(BodyBudget::new(
                setup.limits.request_body_budget.max(max_payload),
            )),
        },
        ws_tasks: ws_tasks.clone(),
        ops: Arc::clone(&ops),
        ops_only: false,
    });
    let metrics_server = metrics_listener.map(|(listener, addr)| {
        tracing::info!(target: "courier", address = %addr, "Metrics listening");
        let server = Arc::new(Server {
            runtime: runtime.clone(),
            engines,
            max_payload: 1,
            header_read_timeout: setup.limits.header_read_timeout,
            // It serves no route that reads a body.
            bodies: BodyReading {
                rules: courier_core::body::BodyRules {
                    engine_io: None,
                    send: None,
                    other: courier_core::body::BodyLimit::Ignore,
                },
                timeout: setup.limits.request_timeout,
                budget: Mutex::new(BodyBudget::new(1)),
            },
            ws_tasks,
            ops: Arc::clone(&ops),
            ops_only: true,
        });
        (server, listener, addr)
    });
    if count > 1 {
        tracing::info!(target: "courier", port = local_addr.port(), engines = count, "{}", setup.first_log_line);
    } else {
        tracing::info!(target: "courier", port = local_addr.port(), "{}", setup.first_log_line);
    }
    Ok(Running {
        runtime,
        local_addr,
        listener,
        drivers,
        server,
        metrics_server,
        ops,
        grace: setup.limits.shutdown_grace,
        background,
    })
}

impl<R: Runtime> Running<R> {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes; then stops accepting, lets every engine close its
    /// sessions (`handle_shutdown`), carries out what they emit within the grace period, and
    /// returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let Running {
            runtime,
            listener,
            drivers,
            server,
            metrics_server,
            ops,
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
        // `done_rx` ends when the last driver has dropped its sender.
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        for driver in drivers {
            let done = done_tx.clone();
            runtime.spawn(Box::pin(async move {
                driver.run(grace).await;
                drop(done);
            }));
        }
        drop(done_tx);
        if let Some((metrics, listener, _)) = metrics_server {
            // Serves until the process stops, through the drain (`/readyz` says 503 then).
            let stop = stop_rx.clone();
            runtime.spawn(Box::pin(async move {
                future::or(metrics.accept_loop(listener), async {
                    let _ = stop.recv().await;
                })
                .await;
            }));
        }
        let engines = Arc::clone(&server.engines);
        future::or(Arc::clone(&server).accept_loop(listener), shutdown).await;
        // Not ready any more, before anything closes: load balancers polling `/readyz` (on a
        // kept-alive connection or `metrics.bind`) stop sending new clients here.
        ops.draining
            .store(true, std::sync::atomic::Ordering::Release);
        // The listener is dropped here: no new connections.
        for engine in engines.all() {
            let _ = engine.control.send(Input::Shutdown).await;
        }
        let _ = done_rx.recv().await;
        drop(stop_tx);
    }
}

/// Executes Redis store commands in the order the engine emitted them, taking whatever has
/// queued up meanwhile as one batch (one pipelined round trip; see `RedisStore::execute_batch`).
async fn store_loop(
    store: RedisStore,
    commands: Receiver<StoreBatch>,
    control: Sender<Input>,
    ops: Arc<Ops>,
) {
    // What the driver handed over and no pipeline has taken yet, in emission order.
    let mut waiting = std::collections::VecDeque::new();
    loop {
        if waiting.is_empty() {
            let Ok(first) = commands.recv().await else {
                return;
            };
            waiting.extend(first);
        }
        while waiting.len() < STORE_BATCH {
            match commands.try_recv() {
                Ok(more) => waiting.extend(more),
                Err(_) => break,
            }
        }
        let take = waiting.len().min(STORE_BATCH);
        let (ids, batch): (Vec<_>, Vec<_>) = waiting.drain(..take).unzip();
        let results = store.execute_batch(batch).await;
        if results
            .iter()
            .any(|result| !matches!(result, StoreResult::Failed(_)))
        {
            ops.store_reachable
                .store(true, std::sync::atomic::Ordering::Release);
        }
        ops.set_store_refusal(store.layout_error());
        let results = ids.into_iter().zip(results).collect();
        if control.send(Input::StoreResults(results)).await.is_err() {
            return;
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
    logging::init(&runtime, std::env::var("RUST_LOG").ok().as_deref());
    let setup = Setup {
        max_payload: DEFAULT_MAX_PAYLOAD,
        store: StoreSetup::None,
        node_ids: vec![0],
        first_log_line: "Listening".to_owned(),
        limits: Limits::default(),
        ops: OpsSetup::default(),
    };
    run_to_exit(runtime, vec![engine], setup, bind)
}

/// Starts and serves until a shutdown signal; errors go to stderr with exit code 2.
pub(crate) fn run_to_exit<R: Runtime>(
    runtime: R,
    engines: Vec<Box<dyn Engine + Send>>,
    setup: Setup,
    bind: SocketAddr,
) -> ExitCode {
    let result = runtime.block_on(async {
        let running = start(runtime.clone(), engines, setup, bind).await?;
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
