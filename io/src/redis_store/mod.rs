//! The Redis store: executes [`StoreCommand`]s on Redis with one Lua function call (`FCALL`)
//! per shard touched. Users are hashed into a fixed number of shards per site (one hash tag each);
//! the commands that queued up for one pipeline are grouped by shard, so a `/send` to N users
//! or N acknowledgements cost one script call per shard, not N. The layout is documented in
//! `io/REDIS-LAYOUT.md`; the semantics are the store contract of
//! `courier_core::gateway::store` (logical expiry decided from `now_ms`, never from Redis's
//! clock; `PEXPIREAT` only reclaims memory, a minute after the logical expiry).
//!
//! Failures (Redis down, timeout, script error, a layout of another version) become
//! [`StoreResult::Failed`]; the connection manager reconnects in the background, so the next
//! command works again once Redis is back.

mod keys;
mod layout;
mod library;
mod pipeline;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use courier_core::gateway::store::{DeviceKey, Store, StoreCommand, StoreResult};
use redis::{AsyncCommands, RedisError};

use crate::redis_conn::{RedisConnection, RedisTarget, ReplicaWait};
use crate::runtime::{BoxFuture, Runtime};
pub use keys::{escape, shard_of};
use keys::{glob_escape, member, split_legacy_entry};
pub use layout::{LAYOUT_VERSION, LayoutError};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "courier";
/// Default number of shards per site (`redis.shards`, io/REDIS-LAYOUT.md "Shards, and why").
pub const DEFAULT_SHARDS: u32 = courier_core::gateway::config::DEFAULT_REDIS_SHARDS;
/// The most shards per site `redis.shards` accepts.
pub const MAX_SHARDS: u32 = courier_core::gateway::config::MAX_REDIS_SHARDS;
/// Node ids carry their start time (Unix ms) above this many low random bits, so that a store
/// script can tell a node pruned from the registry long ago (dead) from one started since the
/// registry was last read (alive). `common.lua` divides by `2^NODE_ID_RANDOM_BITS`.
pub const NODE_ID_RANDOM_BITS: u32 = 22;

/// A node id for a process started at `start_unix_ms` (42 bits of milliseconds last until the
/// year 2109) with `random` low bits.
pub fn node_id(start_unix_ms: u64, random: u64) -> u64 {
    (start_unix_ms << NODE_ID_RANDOM_BITS) | (random & ((1 << NODE_ID_RANDOM_BITS) - 1))
}
/// How many SCAN calls a legacy import may make for one device (COUNT 1000 each).
const LEGACY_SCAN_CALLS: usize = 1000;

/// Executes store commands on Redis. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisStore {
    connection: RedisConnection,
    client: redis::Client,
    /// Where Redis is (a cluster's seeds, for connections of other kinds, e.g. pub/sub).
    target: RedisTarget,
    prefix: String,
    shards: u32,
    library: Arc<library::Library>,
    state: Arc<StoreState>,
    /// What this node last read from the node registry, passed to every script.
    liveness: Arc<Mutex<Liveness>>,
    /// The runtime's clock and timer ([`RedisStore::on_runtime`]); without one, the cluster
    /// topology is read again only after a failure, and failed writes are not retried.
    clock: Option<StoreClock>,
}

/// The runtime's clock and timer: io reads time only through [`Runtime`], and the store is not
/// generic over it.
#[derive(Clone)]
struct StoreClock {
    now: Arc<dyn Fn() -> Instant + Send + Sync>,
    sleep: Arc<dyn Fn(Duration) -> BoxFuture<()> + Send + Sync>,
}

impl StoreClock {
    fn of<R: Runtime>(runtime: &R) -> StoreClock {
        let (clock, timer) = (runtime.clone(), runtime.clone());
        StoreClock {
            now: Arc::new(move || clock.now()),
            sleep: Arc::new(move |duration| Box::pin(timer.sleep(duration))),
        }
    }
}

/// On a Redis Cluster: how long a write waits for a replica (`WAIT`) before it fails. A healthy
/// replica confirms within a millisecond (p99.9 20 ms, max 92 ms on a 2-core machine at load
/// 4–6); the `WAIT` blocks this node's connection to that master while it waits, which costs
/// only while a replica is failing (io/REDIS-LAYOUT.md, "Redis Cluster").
pub(crate) const REPLICA_WAIT: Duration = Duration::from_millis(1000);
/// On a Redis Cluster: how often the store reads which primaries have replicas (and at once
/// after a connection error, a redirection or a write no replica confirmed).
const TOPOLOGY_EVERY: Duration = Duration::from_secs(10);
/// On a Redis Cluster: how long an idempotent write (an ack, a disconnect, a group-index
/// removal) that failed because of a failover is tried again: a promotion takes the
/// cluster's `cluster-node-timeout` plus an election (about 2 s with the tests' 1 s), and the
/// gateway gives up on a store command after `STORE_TIMEOUT` (10 s).
const RETRY_FOR: Duration = Duration::from_secs(6);
/// The pause between two tries of [`RETRY_FOR`].
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// What a store learns from Redis and shares among its clones.
#[derive(Debug, Default)]
struct StoreState {
    /// On a cluster: when the topology was last read (`None` without a clock) and which slots'
    /// writes wait for a replica (see `RedisConnection::pipeline_by_slot`). `None`: read it
    /// before the next write.
    topology: Mutex<Option<(Option<Instant>, Arc<ReplicaWait>)>>,
    /// A write's `WAIT` found no replica in time (logged once per change).
    replica_lagging: AtomicBool,
    /// Whether Redis is known to hold the function library (see `pipeline`).
    library_loaded: AtomicBool,
    /// The outcome of the last layout check: `None` before one (or after a connection failure),
    /// `Ok(legacy)` when the layout matches, `Err(message)` when it does not.
    layout: Mutex<Option<Result<bool, String>>>,
}

impl StoreState {
    fn layout(&self) -> Option<Result<bool, String>> {
        self.layout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_layout(&self, outcome: Result<bool, String>) {
        let mut layout = self.layout.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(text) = &outcome {
            // Logged once per change, not with every failed command.
            if !matches!(&*layout, Some(Err(old)) if old == text) {
                tracing::error!(target: "courier", "{text}");
            }
        }
        *layout = Some(outcome);
    }

    /// A master failed or moved, or a write's `WAIT` came back short: read the topology again
    /// before the next write.
    fn forget_topology(&self) {
        *self.topology.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// After a connection failure: check the layout again before the next command (Redis may
    /// have come back empty, or be another server). A mismatch stays until a check clears it.
    fn connection_lost(&self) {
        self.library_loaded.store(false, Ordering::Release);
        self.forget_topology();
        let mut layout = self.layout.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(&*layout, Some(Ok(_))) {
            *layout = None;
        }
    }
}

/// What the scripts need to know about dead nodes (see `io/REDIS-LAYOUT.md`, "Node liveness").
/// A script cannot read the node registry (it lives in another hash slot), so each command
/// carries this node's latest reading of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Nodes the registry lists whose heartbeat expired, with that last heartbeat (Unix ms).
    pub dead: Vec<(u64, u64)>,
    /// The registry keeps nodes whose heartbeat is newer than this (Unix ms); a node id that
    /// started before it and is not listed was pruned, so it is dead. 0 before the first read.
    pub horizon_ms: u64,
    /// `device_ttl` (ms) that a device of a dead node gets from its node's last heartbeat.
    pub device_ttl_ms: u64,
}

impl Liveness {
    /// The arguments appended to every script: `(node, heartbeat)` pairs, their count, the
    /// horizon and the ttl (the scripts' common part takes them off the end).
    fn script_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(self.dead.len() * 2 + 3);
        for (node, heartbeat) in &self.dead {
            args.push(node.to_string());
            args.push(heartbeat.to_string());
        }
        args.push(self.dead.len().to_string());
        args.push(self.horizon_ms.to_string());
        args.push(self.device_ttl_ms.to_string());
        args
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis at `url` with key prefix `prefix` and [`DEFAULT_SHARDS`] shards per
    /// site. See [`RedisStore::open_sharded`].
    pub fn open(url: &str, prefix: &str) -> Result<RedisStore, String> {
        RedisStore::open_sharded(url, prefix, DEFAULT_SHARDS)
    }

    /// A store on the Redis at `url` with key prefix `prefix` and `shards` shards per site
    /// (1 to [`MAX_SHARDS`]). Connects lazily: Redis may be down now; commands fail until it is
    /// up. Must be called inside the runtime (the redis crate spawns its connection task
    /// there). Fails only on a malformed URL or shard count.
    pub fn open_sharded(url: &str, prefix: &str, shards: u32) -> Result<RedisStore, String> {
        RedisStore::open_target(&RedisTarget::Node(url.to_owned()), prefix, shards)
    }

    /// A store on a single Redis or a Redis Cluster (`target`), as
    /// [`RedisStore::open_sharded`] describes. On a cluster, at least one seed must answer
    /// once for commands to run; any of them may be down.
    pub fn open_target(
        target: &RedisTarget,
        prefix: &str,
        shards: u32,
    ) -> Result<RedisStore, String> {
        if !(1..=MAX_SHARDS).contains(&shards) {
            return Err(format!(
                "redis shards must be from 1 to {MAX_SHARDS}, got {shards}"
            ));
        }
        let (connection, client) = RedisConnection::open(target)?;
        Ok(RedisStore {
            connection,
            client,
            target: target.clone(),
            prefix: prefix.to_owned(),
            shards,
            library: Arc::new(library::Library::new()),
            state: Arc::new(StoreState::default()),
            liveness: Arc::new(Mutex::new(Liveness::default())),
            clock: None,
        })
    }

    /// This store reading time and sleeping through `runtime` (the topology's age, the retries
    /// of idempotent writes across a failover).
    pub fn on_runtime<R: Runtime>(mut self, runtime: &R) -> RedisStore {
        self.clock = Some(StoreClock::of(runtime));
        self
    }

    /// Replaces what the scripts are told about dead nodes (shared by every clone).
    pub fn set_liveness(&self, liveness: Liveness) {
        *self.liveness.lock().unwrap_or_else(PoisonError::into_inner) = liveness;
    }

    /// The liveness arguments for the scripts run now.
    fn liveness_args(&self) -> Vec<String> {
        self.liveness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .script_args()
    }

    /// [`RedisStore::open`] inside `runtime` (for callers outside it, such as tests).
    pub fn open_in<R: Runtime>(runtime: &R, url: &str, prefix: &str) -> Result<RedisStore, String> {
        RedisStore::open_sharded_in(runtime, url, prefix, DEFAULT_SHARDS)
    }

    /// [`RedisStore::open_sharded`] inside `runtime`.
    pub fn open_sharded_in<R: Runtime>(
        runtime: &R,
        url: &str,
        prefix: &str,
        shards: u32,
    ) -> Result<RedisStore, String> {
        Ok(runtime
            .block_on(async { RedisStore::open_sharded(url, prefix, shards) })?
            .on_runtime(runtime))
    }

    /// The client for the cluster bus's subscriber connection on a single Redis (on a Redis
    /// Cluster the bus subscribes through the cluster client instead: `crate::bus`).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Where Redis is: one node's URL or a cluster's seed URLs.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The shared connection (for publishing on the cluster bus).
    pub(crate) fn connection(&self) -> RedisConnection {
        self.connection.clone()
    }

    /// On a cluster: how writes wait for a replica now (the topology is read again every
    /// [`TOPOLOGY_EVERY`] and after a failure, see [`StoreState::forget_topology`]).
    async fn replica_wait(&self) -> Option<Arc<ReplicaWait>> {
        if !self.connection.is_cluster() {
            return None;
        }
        let now = self.now();
        let known = self
            .state
            .topology
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((read, wait)) = &known {
            let fresh = match (read, now) {
                (Some(read), Some(now)) => now.saturating_duration_since(*read) < TOPOLOGY_EVERY,
                _ => true,
            };
            if fresh {
                return Some(Arc::clone(wait));
            }
        }
        match self.connection.topology().await {
            Ok(primaries) => {
                let wait = Arc::new(ReplicaWait::from_topology(REPLICA_WAIT, &primaries));
                *self
                    .state
                    .topology
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((now, Arc::clone(&wait)));
                Some(wait)
            }
            // Unknown (read again next time): every slot waits, so nothing is acknowledged
            // that no replica holds.
            Err(_) => Some(Arc::new(ReplicaWait {
                timeout: REPLICA_WAIT,
                unreplicated: Default::default(),
            })),
        }
    }

    /// Records whether a write's `WAIT` came back short (logged once per change).
    fn replica_outcome(&self, short: bool) {
        let was_lagging = self.state.replica_lagging.swap(short, Ordering::AcqRel);
        if short {
            self.state.forget_topology();
            if !was_lagging {
                tracing::warn!(
                    target: "courier",
                    "a write was not confirmed by a replica within {} ms: its commands failed \
                     (a /send answers 503); reading the cluster's topology again",
                    REPLICA_WAIT.as_millis()
                );
            }
        }
    }

    /// Sleeps `duration` on the runtime; `false` without one (nothing is retried then).
    async fn pause(&self, duration: Duration) -> bool {
        match &self.clock {
            Some(clock) => {
                (clock.sleep)(duration).await;
                true
            }
            None => false,
        }
    }

    /// The runtime's clock, if the store has one.
    fn now(&self) -> Option<Instant> {
        self.clock.as_ref().map(|clock| (clock.now)())
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Why store commands fail although Redis answers: the layout it holds is not this node's
    /// (see [`RedisStore::check_layout`]). `None` while no mismatch is known.
    pub fn layout_error(&self) -> Option<String> {
        self.state.layout().and_then(Result::err)
    }

    /// Runs one command; errors become [`StoreResult::Failed`].
    pub async fn execute(&self, command: StoreCommand) -> StoreResult {
        let mut results = self.execute_batch(vec![command]).await;
        results
            .pop()
            .unwrap_or_else(|| StoreResult::Failed("no result".to_owned()))
    }

    /// Moves the original's lists `/<site>:socket.io:<room>:<device>:<event>` of `<id>:<json>`
    /// into this layout, once per device.
    async fn import_legacy(&self, device: &DeviceKey) -> Result<(), RedisError> {
        let mut connection = self.connection.clone();
        let prefix = format!(
            "/{}:socket.io:{}:{}:",
            device.site, device.room, device.device
        );
        let pattern = format!("{}*", glob_escape(&prefix));
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut complete = true;
        // The original's lists are spread over every slot: each primary is scanned (a single
        // node: itself), and each list is then read where it lives.
        for node in scan_targets(&self.connection).await? {
            let mut cursor: u64 = 0;
            for _ in 0..LEGACY_SCAN_CALLS {
                let (next, batch) =
                    scan_lists(&self.connection, node.as_ref(), cursor, &pattern).await?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            complete &= cursor == 0;
        }
        if !complete {
            tracing::warn!(
                target: "courier",
                site = %device.site,
                room = %device.room,
                deviceId = %device.device,
                "legacy queue import stopped at its scan bound; some lists may remain"
            );
        }
        let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
        for key in &keys {
            let Some(event) = key
                .strip_prefix(prefix.as_bytes())
                .and_then(|rest| std::str::from_utf8(rest).ok())
            else {
                continue;
            };
            let entries: Vec<Vec<u8>> = connection.lrange(key, 0, -1).await?;
            for entry in entries {
                // `<id>:<json>`; an entry that is not is not a message the original wrote.
                let Some((id, json)) = split_legacy_entry(&entry) else {
                    continue;
                };
                pairs.push((event.to_owned(), member(id, json)));
            }
        }
        let mut cmd = self.fcall(&device.site, &device.room);
        cmd.arg("I")
            .arg(2 + 2 * pairs.len())
            .arg(self.user_base(&device.site, &device.room))
            .arg(&device.device);
        for (event, member) in &pairs {
            cmd.arg(event).arg(member);
        }
        cmd.arg(self.liveness_args());
        let added: Vec<i64> = self.load_and_run(cmd).await?;
        if added.first().is_some_and(|&added| added < 0) {
            // The device is gone (forgotten since its connect): the lists stay for its next
            // connect, which imports them.
            return Ok(());
        }
        // One key per `DEL`: on a cluster the lists live in different slots.
        for key in &keys {
            let () = connection.del(key).await?;
        }
        Ok(())
    }

    /// `<prefix>:{E(site):<shard>}:` — the start of every key of one shard (its hash tag).
    fn shard_base(&self, site: &str, shard: u32) -> String {
        format!("{}:{{{}:{shard}}}:", self.prefix, escape(site))
    }

    /// `<prefix>:{E(site):<shard>}:E(room):` — the start of every key of one user room.
    fn user_base(&self, site: &str, room: &str) -> String {
        let mut base = self.shard_base(site, shard_of(room, self.shards));
        base.push_str(&escape(room));
        base.push(':');
        base
    }

    /// `<prefix>:epoch` — the store's epoch (see `StoreCommand::CheckEpoch`).
    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// `<prefix>:{E(site)}:g:E(group)` — the index of one group room.
    fn group_key(&self, site: &str, group: &str) -> String {
        format!("{}:{{{}}}:g:{}", self.prefix, escape(site), escape(group))
    }
}

/// The nodes a key-space `SCAN` must visit: every primary of a cluster, or the one node
/// (`None`).
async fn scan_targets(
    connection: &RedisConnection,
) -> Result<Vec<Option<(String, u16)>>, RedisError> {
    if !connection.is_cluster() {
        return Ok(vec![None]);
    }
    Ok(connection
        .primaries()
        .await?
        .into_iter()
        .map(Some)
        .collect())
}

/// One `SCAN` step on `node` over the lists whose names match `pattern` (the original's
/// queues): the next cursor and the names found.
async fn scan_lists(
    connection: &RedisConnection,
    node: Option<&(String, u16)>,
    cursor: u64,
    pattern: &str,
) -> Result<(u64, Vec<Vec<u8>>), RedisError> {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000)
        .arg("TYPE")
        .arg("list");
    let reply = connection.on_node(node, &cmd).await?;
    Ok(redis::from_redis_value(reply)?)
}

/// A [`RedisStore`] behind the synchronous [`Store`] trait, blocking on the runtime for each
/// command: for tests (the shared store property suite), not for serving.
pub struct BlockingRedisStore<R: Runtime> {
    runtime: R,
    store: RedisStore,
}

impl<R: Runtime> fmt::Debug for BlockingRedisStore<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingRedisStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> BlockingRedisStore<R> {
    /// Opens a store (see [`RedisStore::open`]) on `runtime`.
    pub fn open(runtime: R, url: &str, prefix: &str) -> Result<Self, String> {
        BlockingRedisStore::open_sharded(runtime, url, prefix, DEFAULT_SHARDS)
    }

    /// Opens a store with `shards` shards per site (see [`RedisStore::open_sharded`]).
    pub fn open_sharded(runtime: R, url: &str, prefix: &str, shards: u32) -> Result<Self, String> {
        let target = RedisTarget::Node(url.to_owned());
        BlockingRedisStore::open_target(runtime, &target, prefix, shards)
    }

    /// Opens a store on a single Redis or a Redis Cluster (see [`RedisStore::open_target`]).
    pub fn open_target(
        runtime: R,
        target: &RedisTarget,
        prefix: &str,
        shards: u32,
    ) -> Result<Self, String> {
        let store = runtime
            .block_on(async { RedisStore::open_target(target, prefix, shards) })?
            .on_runtime(&runtime);
        Ok(BlockingRedisStore { runtime, store })
    }

    /// The async store inside.
    pub fn inner(&self) -> &RedisStore {
        &self.store
    }
}

impl<R: Runtime> Store for BlockingRedisStore<R> {
    fn execute(&mut self, command: StoreCommand) -> StoreResult {
        self.runtime.block_on(self.store.execute(command))
    }
}
