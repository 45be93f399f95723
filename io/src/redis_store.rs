//! The Redis store: executes [`StoreCommand`]s as one Lua script each (EVALSHA) on one hash
//! slot. The layout is documented in `io/REDIS-LAYOUT.md`; the semantics are the store contract
//! of `courier_core::gateway::store` (logical expiry decided from `now_ms`, never from Redis's
//! clock; `PEXPIREAT` only reclaims memory, a minute after the logical expiry).
//!
//! Failures (Redis down, timeout, script error) become [`StoreResult::Failed`]; the connection
//! manager reconnects in the background, so the next command works again once Redis is back.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use courier_core::gateway::store::{
    Delivery, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, Store, StoreCommand, StoreResult,
};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError, Script};

use crate::runtime::Runtime;

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "courier";
/// How many SCAN calls a legacy import may make for one device (COUNT 1000 each).
const LEGACY_SCAN_CALLS: usize = 1000;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

struct Scripts {
    connect: Script,
    import: Script,
    disconnect: Script,
    enqueue: Script,
    ack: Script,
    ack_batch: Script,
}

impl Scripts {
    fn load() -> Scripts {
        Scripts {
            connect: script!("connect.lua"),
            import: script!("import.lua"),
            disconnect: script!("disconnect.lua"),
            enqueue: script!("enqueue.lua"),
            ack: script!("ack.lua"),
            ack_batch: script!("ack_batch.lua"),
        }
    }
}

/// Executes store commands on Redis. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    client: redis::Client,
    prefix: String,
    scripts: std::sync::Arc<Scripts>,
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
            scripts: std::sync::Arc::new(Scripts::load()),
        })
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
        match self.try_execute(command).await {
            Ok(result) => result,
            Err(error) => StoreResult::Failed(error.to_string()),
        }
    }

    async fn try_execute(&self, command: StoreCommand) -> Result<StoreResult, RedisError> {
        let mut connection = self.connection.clone();
        match command {
            StoreCommand::Connect {
                device,
                socket,
                groups,
                now_ms,
            } => self.connect(device, socket, groups, now_ms).await,
            StoreCommand::Disconnect {
                device,
                socket,
                now_ms,
                ttl_ms,
            } => {
                let _: i64 = self
                    .scripts
                    .disconnect
                    .key(self.user_base(&device.site, &device.room))
                    .arg(&device.device)
                    .arg(socket_text(socket))
                    .arg(now_ms)
                    .arg(ttl_ms)
                    .invoke_async(&mut connection)
                    .await?;
                Ok(StoreResult::Done)
            }
            StoreCommand::ResolveGroups { site, groups, .. } => {
                if groups.is_empty() {
                    return Ok(StoreResult::Users(Vec::new()));
                }
                let keys: Vec<String> = groups.iter().map(|g| self.group_key(&site, g)).collect();
                let mut users: Vec<String> = connection.sunion(keys).await?;
                users.sort();
                users.dedup();
                Ok(StoreResult::Users(users))
            }
            StoreCommand::Enqueue {
                site,
                room,
                item,
                via_groups,
                now_ms,
            } => {
                let mut invocation = self.scripts.enqueue.key(self.user_base(&site, &room));
                invocation
                    .arg(&item.event)
                    .arg(member(item.id, &item.json))
                    .arg(now_ms);
                match &via_groups {
                    None => invocation.arg(-1),
                    Some(groups) => invocation.arg(groups.len()).arg(groups),
                };
                let reply: Vec<Vec<u8>> = invocation.invoke_async(&mut connection).await?;
                parse_enqueued(&reply).ok_or_else(|| protocol_error("enqueue reply"))
            }
            StoreCommand::Ack {
                device,
                event,
                id,
                resync,
                now_ms,
            } => {
                let reply: String = self
                    .scripts
                    .ack
                    .key(self.user_base(&device.site, &device.room))
                    .arg(&device.device)
                    .arg(&event)
                    .arg(id)
                    .arg(padded(id))
                    .arg(if resync { "1" } else { "0" })
                    .arg(now_ms)
                    .invoke_async(&mut connection)
                    .await?;
                match reply.as_str() {
                    "removed" => Ok(StoreResult::Acked { removed: true }),
                    "kept" => Ok(StoreResult::Acked { removed: false }),
                    "resync" => Ok(StoreResult::Resync),
                    _ => Err(protocol_error("ack reply")),
                }
            }
            StoreCommand::AckBatch {
                device,
                items,
                now_ms,
            } => {
                let mut invocation = self
                    .scripts
                    .ack_batch
                    .key(self.user_base(&device.site, &device.room));
                invocation.arg(&device.device).arg(now_ms);
                for (event, id) in &items {
                    invocation.arg(event).arg(id).arg(padded(*id));
                }
                let _: i64 = invocation.invoke_async(&mut connection).await?;
                Ok(StoreResult::Done)
            }
            StoreCommand::ForgetGroupMember {
                site, room, groups, ..
            } => {
                let mut pipe = redis::pipe();
                for group in &groups {
                    pipe.srem(self.group_key(&site, group), &room).ignore();
                }
                let () = pipe.query_async(&mut connection).await?;
                Ok(StoreResult::Done)
            }
        }
    }

    async fn connect(
        &self,
        device: DeviceKey,
        socket: SocketRef,
        groups: Option<Vec<String>>,
        now_ms: u64,
    ) -> Result<StoreResult, RedisError> {
        let mut connection = self.connection.clone();
        let mut invocation = self
            .scripts
            .connect
            .key(self.user_base(&device.site, &device.room));
        invocation
            .arg(&device.device)
            .arg(socket_text(socket))
            .arg(now_ms);
        match &groups {
            None => invocation.arg("0"),
            Some(groups) => invocation.arg("1").arg(groups),
        };
        let reply: Vec<Vec<u8>> = invocation.invoke_async(&mut connection).await?;
        let (imported, old_groups, mut items) =
            parse_connected(&reply).ok_or_else(|| protocol_error("connect reply"))?;

        if let Some(groups) = &groups {
            // The group index lives on the site's slot: a second, pipelined step. It is a hint
            // (Enqueue re-checks membership), so a failure here loses nothing.
            let mut pipe = redis::pipe();
            for group in groups {
                pipe.sadd(self.group_key(&device.site, group), &device.room)
                    .ignore();
            }
            for old in old_groups.iter().filter(|old| !groups.contains(old)) {
                pipe.srem(self.group_key(&device.site, old), &device.room)
                    .ignore();
            }
            let indexed: Result<(), RedisError> = pipe.query_async(&mut connection).await;
            if let Err(error) = indexed {
                // The connect itself happened; the index is a hint that the next auth repairs.
                tracing::warn!(target: "courier", error = %error, "group index update failed");
            }
        }
        if !imported {
            match self.import_legacy(&device).await {
                Ok(legacy) => {
                    items.extend(legacy);
                    items.sort_by(|a, b| (a.id, &a.event).cmp(&(b.id, &b.event)));
                    items.dedup_by(|a, b| a.id == b.id && a.event == b.event);
                }
                // The lists stay where they are and the device stays unmarked: the next
                // connect imports them.
                Err(error) => {
                    tracing::warn!(target: "courier", error = %error, "legacy queue import failed")
                }
            }
        }
        Ok(StoreResult::Connected { items })
    }

    /// Moves the original's lists `/<site>:socket.io:<room>:<device>:<event>` of `<id>:<json>`
    /// into this layout, once per device. Returns what it imported.
    async fn import_legacy(&self, device: &DeviceKey) -> Result<Vec<QueuedItem>, RedisError> {
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
        let mut items = Vec::new();
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
                items.push(QueuedItem {
                    id,
                    event: event.to_owned(),
                    json: Bytes::copy_from_slice(json),
                });
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
        Ok(items)
    }

    /// `<prefix>:{E(site):E(room)}:` — the start of every key of one user room.
    fn user_base(&self, site: &str, room: &str) -> String {
        format!("{}:{{{}:{}}}:", self.prefix, escape(site), escape(room))
    }

    /// `<prefix>:{E(site)}:g:E(group)` — the index of one group room.
    fn group_key(&self, site: &str, group: &str) -> String {
        format!("{}:{{{}}}:g:{}", self.prefix, escape(site), escape(group))
    }
}

/// Escapes `%`, `:`, `{` and `}` as `%XX`, so names can be joined with `:` inside a hash tag.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            other => out.push(other),
        }
    }
    out
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn padded(id: u64) -> String {
    format!("{id:020}")
}

/// A queue member: `<20-digit id>:<json>`, so equal scores still sort by id.
fn member(id: u64, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(21 + json.len());
    out.extend_from_slice(padded(id).as_bytes());
    out.push(b':');
    out.extend_from_slice(json);
    out
}

fn parse_member(event: &[u8], member: &[u8]) -> Option<QueuedItem> {
    let id = std::str::from_utf8(member.get(..20)?).ok()?.parse().ok()?;
    if member.get(20) != Some(&b':') {
        return None;
    }
    Some(QueuedItem {
        id,
        event: String::from_utf8(event.to_vec()).ok()?,
        json: Bytes::copy_from_slice(&member[21..]),
    })
}

fn split_legacy_entry(entry: &[u8]) -> Option<(u64, &[u8])> {
    let colon = entry.iter().position(|&b| b == b':')?;
    let id = std::str::from_utf8(&entry[..colon]).ok()?.parse().ok()?;
    Some((id, &entry[colon + 1..]))
}

fn socket_text(socket: SocketRef) -> String {
    format!("{}:{}", socket.node, socket.socket)
}

fn parse_socket(text: &[u8]) -> Option<SocketRef> {
    let text = std::str::from_utf8(text).ok()?;
    let (node, socket) = text.split_once(':')?;
    Some(SocketRef {
        node: node.parse().ok()?,
        socket: socket.parse().ok()?,
    })
}

/// `(imported, old_groups, items in id order)`.
fn parse_connected(reply: &[Vec<u8>]) -> Option<(bool, Vec<String>, Vec<QueuedItem>)> {
    let imported = reply.first()? == b"1";
    let n_old: usize = std::str::from_utf8(reply.get(1)?).ok()?.parse().ok()?;
    let old_groups = reply
        .get(2..2 + n_old)?
        .iter()
        .map(|g| String::from_utf8(g.clone()).ok())
        .collect::<Option<Vec<_>>>()?;
    let rest = reply.get(2 + n_old..)?;
    let mut items = rest
        .chunks(2)
        .map(|pair| match pair {
            [event, member] => parse_member(event, member),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    items.sort_by(|a, b| (a.id, &a.event).cmp(&(b.id, &b.event)));
    Some((imported, old_groups, items))
}

fn parse_enqueued(reply: &[Vec<u8>]) -> Option<StoreResult> {
    let status = match reply.first()?.as_slice() {
        b"stored" => EnqueueStatus::Stored,
        b"unknown" => EnqueueStatus::UnknownUser,
        b"not_in_groups" => EnqueueStatus::NotInGroups,
        _ => return None,
    };
    let mut devices = reply[1..]
        .chunks(2)
        .map(|pair| match pair {
            [device, socket] => Some(Delivery {
                device: String::from_utf8(device.clone()).ok()?,
                socket: if socket.is_empty() {
                    None
                } else {
                    Some(parse_socket(socket)?)
                },
            }),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    devices.sort_by(|a, b| a.device.cmp(&b.device));
    Some(StoreResult::Enqueued { status, devices })
}

fn protocol_error(what: &'static str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected script reply",
        what.to_owned(),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_separators_and_hash_tag_braces() {
        assert_eq!(escape("a:b{c}%d"), "a%3Ab%7Bc%7D%25d");
        assert_eq!(escape("user_1"), "user_1");
    }

    #[test]
    fn members_sort_by_id_and_parse_back() {
        let small = member(9, b"[\"e\"]");
        let large = member(10_000_000_000_000_000_000, b"[\"e\",1]");
        assert!(small < large);
        let item = parse_member(b"e", &large).expect("parses");
        assert_eq!(item.id, 10_000_000_000_000_000_000);
        assert_eq!(&item.json[..], b"[\"e\",1]");
        assert_eq!(parse_member(b"e", b"12:x"), None);
    }

    #[test]
    fn legacy_entries_split_at_the_first_colon() {
        assert_eq!(
            split_legacy_entry(b"42:[\"a:b\",1]"),
            Some((42, &b"[\"a:b\",1]"[..]))
        );
        assert_eq!(split_legacy_entry(b"x:[]"), None);
        assert_eq!(
            glob_escape("/s:socket.io:r*:d?:"),
            "/s:socket.io:r\\*:d\\?:"
        );
    }
}
