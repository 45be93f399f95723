//! What the application factory hands to the I/O layer: the engine and how to run it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use courier_core::gateway::config::IoOptions;
use courier_core::gateway::store::{Store, StoreCommand, StoreResult};
use courier_core::net::Engine;
/// The text of the optional configuration files, as read from disk (parsing them is the
/// factory's job).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFiles {
    /// `config.yml`: its path and text, when present.
    pub config_yml: Option<(PathBuf, String)>,
    /// `sites.yml`: its path and text, when present.
    pub sites_yml: Option<(PathBuf, String)>,
}

/// What the factory gets to build the application from.
#[derive(Debug, Clone)]
pub struct Startup {
    /// The configuration files.
    pub files: ConfigFiles,
    /// The process environment (variables that are not valid UTF-8 are left out).
    pub env: BTreeMap<String, String>,
    /// `--bind`: the address to listen on (the port comes from the configuration).
    pub bind: IpAddr,
    /// `--demo`.
    pub demo: bool,
    /// The runtime's wall clock at start (Unix ms): node ids begin with it.
    pub unix_ms: u64,
}

/// The application the factory built.
pub struct App {
    /// The engines to drive, one driver task each (`io.engines`; at least one). With more than
    /// one, engine `i` must mark its session ids with tag `i` (`GatewayOptions::engine`),
    /// so requests reach the engine that owns their session.
    pub engines: Vec<Box<dyn Engine + Send>>,
    /// The port to listen on.
    pub port: u16,
    /// How to run it.
    pub setup: Setup,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("engines", &self.engines.len())
            .field("port", &self.port)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

/// How the I/O layer runs an engine.
#[derive(Debug)]
pub struct Setup {
    /// The largest WebSocket message accepted (`maxHttpBufferSize`; longer messages close the
    /// socket), and the body limit the engine's [`Engine::body_rules`] is given: bodies over
    /// their route's limit reach the engine with `body_truncated`.
    pub max_payload: usize,
    /// Where store commands run.
    pub store: StoreSetup,
    /// The node id of each engine (same order as [`App::engines`]): recorded with its sockets,
    /// prefixed to its cluster messages, written in the node registry.
    pub node_ids: Vec<u64>,
    /// The message of the first log line, written once the port is bound (e.g. `App start`,
    /// logged with the `port`).
    pub first_log_line: String,
    /// Buffer sizes and timeouts; `Limits::default()` suits production.
    pub limits: Limits,
    /// Operations: the metrics address and the node heartbeat; `OpsSetup::default()` for none.
    pub ops: OpsSetup,
}

/// How a node reports on itself and tells other nodes it is alive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsSetup {
    /// A second address serving only `/metrics` and `/readyz` (both are on the main port too).
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// The node heartbeat in Redis (only used with the Redis store).
    pub heartbeat: Option<HeartbeatSetup>,
}

/// The node heartbeat: see `io/REDIS-LAYOUT.md`, "Node liveness".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSetup {
    /// How often the heartbeat is written and the registry read.
    pub interval: Duration,
    /// After how long without a heartbeat a node is dead.
    pub timeout: Duration,
    /// `device_ttl` (ms) that a dead node's devices get from its last heartbeat.
    pub device_ttl_ms: u64,
}

/// Buffer sizes and timeouts of the I/O layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Frames that may wait for one WebSocket peer; one more closes it as a slow consumer.
    pub ws_outbound_frames: usize,
    /// How long a shutdown waits for sockets to close and store commands to finish.
    pub shutdown_grace: Duration,
    /// The largest outbound-call response body read; a longer one fails the call.
    pub call_body_cap: usize,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive in full once its head is read; later, the
    /// request gets 408 and its connection is closed.
    pub request_timeout: Duration,
    /// The bytes all request bodies may hold together (at least `max_payload` is used); a
    /// request that would pass it gets 503.
    pub request_body_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // The request-body defaults are the configuration's, so they are written once.
        let io = IoOptions::default();
        Limits {
            ws_outbound_frames: 256,
            shutdown_grace: Duration::from_secs(5),
            call_body_cap: 1 << 20,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_millis(io.request_timeout_ms),
            request_body_budget: usize::try_from(io.request_body_budget).unwrap_or(usize::MAX),
        }
    }
}

/// Where store commands run.
pub enum StoreSetup {
    /// No store: the engine does not emit store commands (broadcast-only sites).
    None,
    /// An in-process store, run inline by the driver and swept periodically.
    Memory(MemoryStoreSetup),
    /// Redis (also turns on the cluster bus).
    Redis {
        /// Where: one node's `redis://` or `rediss://` URL, or a cluster's seed URLs.
        target: crate::redis_conn::RedisTarget,
        /// Prefix of every key and of the bus channel (default `courier`).
        prefix: String,
        /// Shards per site (`redis.shards`; see `io/REDIS-LAYOUT.md`).
        shards: u32,
    },
}

impl StoreSetup {
    /// An in-process store: `store` runs every command inline; `sweep(store, unix_ms)` runs
    /// every `sweep_every` to reclaim what expired (logical expiry needs no sweep to be
    /// correct; it only frees memory).
    pub fn memory<S, F>(store: S, sweep_every: Duration, sweep: F) -> StoreSetup
    where
        S: Store + Send + 'static,
        F: FnMut(&mut S, u64) + Send + 'static,
    {
        StoreSetup::Memory(MemoryStoreSetup {
            inner: Box::new(SweptStore {
                store,
                sweep,
                every: sweep_every.max(Duration::from_millis(10)),
            }),
        })
    }
}

impl fmt::Debug for StoreSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSetup::None => f.write_str("None"),
            StoreSetup::Memory(_) => f.write_str("Memory"),
            StoreSetup::Redis {
                target,
                prefix,
                shards,
            } => f
                .debug_struct("Redis")
                .field("target", target)
                .field("prefix", prefix)
                .field("shards", shards)
                .finish_non_exhaustive(),
        }
    }
}

/// An in-process store with its sweep; built by [`StoreSetup::memory`].
pub struct MemoryStoreSetup {
    pub(crate) inner: Box<dyn InlineStore>,
}

impl fmt::Debug for MemoryStoreSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryStoreSetup")
    }
}

/// A store the driver runs inline.
pub(crate) trait InlineStore: Send {
    fn execute(&mut self, command: StoreCommand) -> StoreResult;
    fn sweep(&mut self, unix_ms: u64);
    fn sweep_every(&self) -> Duration;
}

struct SweptStore<S, F> {
    store: S,
    sweep: F,
    every: Duration,
}

impl<S, F> InlineStore for SweptStore<S, F>
where
    S: Store + Send,
    F: FnMut(&mut S, u64) + Send,
{
    fn execute(&mut self, command: StoreCommand) -> StoreResult {
        self.store.execute(command)
    }

    fn sweep(&mut self, unix_ms: u64) {
        (self.sweep)(&mut self.store, unix_ms);
    }

    fn sweep_every(&self) -> Duration {
        self.every
    }
}
