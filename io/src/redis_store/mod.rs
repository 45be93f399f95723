//! The Redis store: executes [`StoreCommand`]s as one Lua script each (EVALSHA) on one hash
//! slot. The layout is documented in `io/REDIS-LAYOUT.md`; the semantics are the store contract
//! of `courier_core::gateway::store` (logical expiry decided from `now_ms`, never from Redis's
//! clock; `PEXPIREAT` only reclaims memory, a minute after the logical expiry).
//!
//! Failures (Redis down, timeout, script error) become [`StoreResult::Failed`]; the connection
//! manager reconnects in the background, so the next command works again once Redis is back.

mod keys;
mod pipeline;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use courier_core::gateway::store::{
    BatchLimits, DeviceKey, SocketRef, Store, StoreCommand, StoreResult,
};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError, Script};

use crate::runtime::Runtime;
pub use keys::escape;
use keys::{
    glob_escape, member, parse_connected, parse_piece, protocol_error, socket_text,
    split_legacy_entry,
};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "courier";
/// How many SCAN calls a legacy import may make for one device (COUNT 1000 each).
const LEGACY_SCAN_CALLS: usize = 1000;

macro_rules! script_code {
    ($file:literal) => {
        concat!(
            include_str!("../lua/common.lua"),
            "\n",
            include_str!(concat!("../lua/", $file))
        )
    };
}

const CONNECT: &str = script_code!("connect.lua");
const IMPORT: &str = script_code!("import.lua");
const DISCONNECT: &str = script_code!("disconnect.lua");
const ENQUEUE: &str = script_code!("enqueue.lua");
const ACK: &str = script_code!("ack.lua");
const ACK_BATCH: &str = script_code!("ack_batch.lua");
const NEXT_BATCH: &str = script_code!("next_batch.lua");

struct Scripts {
    connect: Script,
    import: Script,
    disconnect: Script,
    enqueue: Script,
    ack: Script,
    ack_batch: Script,
    next_batch: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            connect: Script::new(CONNECT),
            import: Script::new(IMPORT),
            disconnect: Script::new(DISCONNECT),
            enqueue: Script::new(ENQUEUE),
            ack: Script::new(ACK),
            ack_batch: Script::new(ACK_BATCH),
            next_batch: Script::new(NEXT_BATCH),
        }
    }

    /// The text of every script, for `SCRIPT LOAD`.
    fn all_code(&self) -> [&'static str; 7] {
        [
            CONNECT, IMPORT, DISCONNECT, ENQUEUE, ACK, ACK_BATCH, NEXT_BATCH,
        ]
    }
}

/// Executes store commands on Redis. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    client: redis::Client,
    prefix: String,
    scripts: Arc<Scripts>,
    /// Whether Redis is known to hold every script (see `pipeline`).
    scripts_loaded: Arc<AtomicBool>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis at `url` with key prefix `prefix`. Connects lazily: Redis may be
    /// down now; commands fail until it is up. Must be called inside the runtime (the redis
    /// crate spawns its connection task there). Fails only on a malformed URL.
    pub fn open(url: &str, prefix: &str) -> Result<RedisStore, String> {
        let client =
            redis::Client::open(url).map_err(|error| format!("redis URL {url:?}: {error}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|error| format!("redis: {error}"))?;
        Ok(RedisStore {
            connection,
            client,
            prefix: prefix.to_owned(),
            scripts: Arc::new(Scripts::new()),
            scripts_loaded: Arc::new(AtomicBool::new(false)),
        })
    }

    /// [`RedisStore::open`] inside `runtime` (for callers outside it, such as tests).
    pub fn open_in<R: Runtime>(runtime: &R, url: &str, prefix: &str) -> Result<RedisStore, String> {
        runtime.block_on(async { RedisStore::open(url, prefix) })
    }

    /// The client (for the cluster bus's subscriber connection).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection (for publishing on the cluster bus).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs one command; errors become [`StoreResult::Failed`].
    pub async fn execute(&self, command: StoreCommand) -> StoreResult {
        let mut results = self.execute_batch(vec![command]).await;
        results
            .pop()
            .unwrap_or_else(|| StoreResult::Failed("no result".to_owned()))
    }

    /// Runs commands in order; one result per command, in order. Consecutive commands other
    /// than `Connect` share one pipelined round trip; a `Connect` (several steps) runs alone.
    pub async fn execute_batch(&self, commands: Vec<StoreCommand>) -> Vec<StoreResult> {
        let mut results = Vec::with_capacity(commands.len());
        let mut run = Vec::new();
        for command in commands {
            if let StoreCommand::Connect {
                device,
                socket,
                groups,
                limits,
                now_ms,
            } = command
            {
                if !run.is_empty() {
                    results.extend(self.execute_pipelined(std::mem::take(&mut run)).await);
                }
                let result = self.connect(device, socket, groups, limits, now_ms).await;
                results.push(result.unwrap_or_else(|error| StoreResult::Failed(error.to_string())));
            } else {
                run.push(command);
            }
        }
        if !run.is_empty() {
            results.extend(self.execute_pipelined(run).await);
        }
        results
    }

    fn scripts_loaded(&self) -> bool {
        self.scripts_loaded.load(Ordering::Acquire)
    }

    fn set_scripts_loaded(&self, loaded: bool) {
        self.scripts_loaded.store(loaded, Ordering::Release);
    }

    async fn connect(
        &self,
        device: DeviceKey,
        socket: SocketRef,
        groups: Option<Vec<String>>,
        limits: BatchLimits,
        now_ms: u64,
    ) -> Result<StoreResult, RedisError> {
        let mut connection = self.connection.clone();
        let mut invocation =
            self.piece_invocation(&self.scripts.connect, &device, socket, limits, now_ms);
        match &groups {
            None => invocation.arg("0"),
            Some(groups) => invocation.arg("1").arg(groups),
        };
        let reply: Vec<Vec<u8>> = invocation.invoke_async(&mut connection).await?;
        let (imported, _previous_groups, piece) =
            parse_connected(&reply).ok_or_else(|| protocol_error("connect reply"))?;

        if let Some(groups) = groups.as_ref().filter(|groups| !groups.is_empty()) {
            // The group index lives on the site's slot: a second, pipelined step. It is a hint
            // (Enqueue re-checks membership), so a failure here loses nothing. Entries of groups
            // the user left stay until a send finds them stale and the gateway sends
            // `ForgetGroupMember` — the model's rule, so every store resolves groups alike.
            let mut pipe = redis::pipe();
            for group in groups {
                pipe.sadd(self.group_key(&device.site, group), &device.room)
                    .ignore();
            }
            let indexed: Result<(), RedisError> = pipe.query_async(&mut connection).await;
            if let Err(error) = indexed {
                // The connect itself happened; the index is a hint that the next auth repairs.
                tracing::warn!(target: "courier", error = %error, "group index update failed");
            }
        }
        if imported {
            return Ok(piece);
        }
        // Not imported yet: the script left the device draining with no piece. Import the
        // original's lists, then read the first piece from everything now queued (nothing was
        // delivered live meanwhile, so nothing is read twice).
        if let Err(error) = self.import_legacy(&device).await {
            // The lists stay where they are and the device stays unmarked: the next connect
            // imports them.
            tracing::warn!(target: "courier", error = %error, "legacy queue import failed");
        }
        let invocation =
            self.piece_invocation(&self.scripts.next_batch, &device, socket, limits, now_ms);
        let reply: Vec<Vec<u8>> = invocation.invoke_async(&mut connection).await?;
        parse_piece(&reply).ok_or_else(|| protocol_error("next batch reply"))
    }

    /// `script` on the device's slot with the arguments `connect.lua` and `next_batch.lua`
    /// start with: device, socket, now_ms, max_items, max_bytes.
    fn piece_invocation<'a>(
        &self,
        script: &'a Script,
        device: &DeviceKey,
        socket: SocketRef,
        limits: BatchLimits,
        now_ms: u64,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.key(self.user_base(&device.site, &device.room));
        invocation
            .arg(&device.device)
            .arg(socket_text(socket))
            .arg(now_ms)
            .arg(limits.max_items)
            .arg(limits.max_bytes);
        invocation
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
        let mut cursor: u64 = 0;
        for _ in 0..LEGACY_SCAN_CALLS {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("list")
                .query_async(&mut connection)
                .await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        if cursor != 0 {
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
        let mut invocation = self
            .scripts
            .import
            .key(self.user_base(&device.site, &device.room));
        invocation.arg(&device.device);
        for (event, member) in &pairs {
            invocation.arg(event).arg(member);
        }
        let _: i64 = invocation.invoke_async(&mut connection).await?;
        if !keys.is_empty() {
            let () = connection.del(&keys).await?;
        }
        Ok(())
    }

    /// `<prefix>:{E(site):E(room)}:` — the start of every key of one user room.
    fn user_base(&self, site: &str, room: &str) -> String {
        format!("{}:{{{}:{}}}:", self.prefix, escape(site), escape(room))
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
        let store = runtime.block_on(async { RedisStore::open(url, prefix) })?;
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
