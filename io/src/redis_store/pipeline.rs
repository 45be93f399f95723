//! A batch of store commands as one pipelined round trip, grouped by shard.
//!
//! The commands on users' keys (`Connect`, `NextBatch`, `Disconnect`, `Enqueue`, `Ack`,
//! `AckBatch`) of one batch go out as one script call per shard touched, each carrying that
//! shard's commands in batch order; the script answers one result per command. Shards share no
//! key, so running each shard's commands together gives exactly what running the batch one by
//! one gives. The commands on other slots (`ResolveGroups`, `ForgetGroupMember` on the site's
//! group index, `CheckEpoch`) are barriers: the shard calls gathered before one go out before
//! it, so it sees every effect of the commands before it, and the commands after it run after.
//! A `Connect`'s group-index update (`SADD` on the site's slot) follows its segment's shard
//! calls, in the same pipeline: a join is one round trip.
//!
//! Errors stay per reply (`ignore_errors`): a failed call fails the commands it carried and
//! nothing else. The calls are `FCALL`s of the store's function library (`library`); a pipeline
//! cannot load a missing library and retry in place without reordering, so the store loads it
//! at the head of the pipeline whenever it cannot be sure Redis has it (at start, after a
//! connection error, after a call answered that the function is missing).

use std::collections::BTreeMap;

use courier_core::gateway::store::{BatchLimits, DeviceKey, SocketRef, StoreCommand, StoreResult};
use std::sync::atomic::Ordering;

use redis::{Cmd, FromRedisValue, RedisError, RedisResult, Value};

use super::RedisStore;
use super::keys::{
    member, padded, parse_connected, parse_enqueued, parse_piece, protocol_error, shard_of,
    socket_text,
};
use crate::redis_conn::NOT_CONFIRMED;

/// How one command's result is read from its shard call's reply.
enum Kind {
    /// Kept whole: a device not imported yet is imported after the pipeline.
    Connect {
        device: DeviceKey,
        socket: SocketRef,
        limits: BatchLimits,
        now_ms: u64,
    },
    NextBatch,
    Disconnect,
    Enqueue,
    Ack,
    AckBatch,
}

/// What one reply (or run of replies) of the pipeline answers.
enum Expect {
    /// A shard call: the commands it carried (their index in the batch and kind).
    Shard(Vec<(usize, Kind)>),
    /// `SUNION` of group sets for command `usize`.
    Users(usize),
    /// `n` plain replies, then `Done` for the command (none: a connect's index update, whose
    /// failure only costs a hint).
    Done(Option<usize>, usize),
    /// `SET NX` + `GET` of the epoch key, then `GET` of the layout key.
    Epoch(usize),
}

impl Expect {
    fn replies(&self) -> usize {
        match self {
            Expect::Done(_, n) => *n,
            Expect::Epoch(_) => 3,
            _ => 1,
        }
    }
}

/// The shard calls and group-index updates gathered since the last barrier.
#[derive(Default)]
struct Segment {
    shards: BTreeMap<(String, u32), ShardCall>,
    index_updates: Vec<(String, String, Vec<String>)>,
}

/// One script call being gathered.
struct ShardCall {
    cmd: Cmd,
    kinds: Vec<(usize, Kind)>,
    /// The message the call's `Enqueue`s store now (`M` sets it), so consecutive `Enqueue`s
    /// of one `/send` pass it once.
    message: Option<Message>,
}

/// What an `M` step sets: `(id, event, now, via groups, json)`.
type Message = (u64, String, u64, Option<Vec<String>>, bytes::Bytes);

impl RedisStore {
    /// Runs commands in order; one result per command, in order, as if run one by one. One
    /// round trip (plus, before the first batch and after a connection failure, the layout
    /// check; plus the legacy import of a device seen for the first time, when the original's
    /// lists may exist).
    ///
    /// On a cluster, the idempotent writes (`Ack`, `AckBatch`, `Disconnect`,
    /// `ForgetGroupMember`) that failed because of a failover (see [`is_failover`]) are tried
    /// again for up to [`super::RETRY_FOR`]: an acknowledged delivery must not come back after
    /// the promotion because its ack died with the old master. Their results are the retries'.
    pub async fn execute_batch(&self, commands: Vec<StoreCommand>) -> Vec<StoreResult> {
        if !self.connection.is_cluster() || self.clock.is_none() {
            return self.execute_once(commands).await.0;
        }
        let again: Vec<Option<StoreCommand>> = commands
            .iter()
            .map(|command| idempotent(command).then(|| command.clone()))
            .collect();
        let (mut results, failover) = self.execute_once(commands).await;
        let mut pending: Vec<usize> = (0..results.len())
            .filter(|&index| failover[index] && again[index].is_some())
            .collect();
        let deadline = self.now().map(|now| now + super::RETRY_FOR);
        while !pending.is_empty()
            && matches!((self.now(), deadline), (Some(now), Some(deadline)) if now < deadline)
            && self.pause(super::RETRY_PAUSE).await
        {
            let retry = pending
                .iter()
                .filter_map(|&index| again[index].clone())
                .collect();
            let (outcomes, failover) = self.execute_once(retry).await;
            let mut still = Vec::new();
            for ((index, outcome), failed) in pending.into_iter().zip(outcomes).zip(failover) {
                results[index] = outcome;
                if failed {
                    still.push(index);
                }
            }
            pending = still;
        }
        results
    }

    /// [`RedisStore::execute_batch`] once: the results, and per command whether it failed
    /// because of a failover.
    async fn execute_once(&self, commands: Vec<StoreCommand>) -> (Vec<StoreResult>, Vec<bool>) {
        let mut failover = vec![false; commands.len()];
        let legacy = match self.state.layout() {
            Some(Ok(legacy)) => legacy,
            _ => match self.check_layout().await {
                Ok(()) => self.state.layout().and_then(Result::ok).unwrap_or(true),
                Err(error) => {
                    if matches!(error, super::LayoutError::Unreachable(_)) {
                        self.state.connection_lost();
                    }
                    let text = error.to_string();
                    if matches!(error, super::LayoutError::Unreachable(_)) {
                        failover.fill(true);
                    }
                    let results = commands
                        .iter()
                        .map(|_| StoreResult::Failed(text.clone()))
                        .collect();
                    return (results, failover);
                }
            },
        };
        let mut results: Vec<Option<StoreResult>> = vec![None; commands.len()];
        let mut pipe: Vec<Cmd> = Vec::new();
        let mut load_library = !self.state.library_loaded.load(Ordering::Acquire);
        if load_library && self.connection.is_cluster() {
            // Every primary needs the library; `FUNCTION LOAD` is sent to each (the redis
            // crate fans it out) before the calls, which go to the primaries of their slots.
            let loaded: RedisResult<Value> = self
                .library
                .load()
                .query_async(&mut self.connection.clone())
                .await;
            self.library_load_outcome(loaded.map(|_| ()));
            load_library = false;
        } else if load_library {
            pipe.push(self.library.load());
        }
        let liveness = self.liveness_args();
        let mut expectations = Vec::new();
        let mut segment = Segment::default();
        for (index, command) in commands.into_iter().enumerate() {
            match command {
                StoreCommand::ResolveGroups { site, groups, .. } => {
                    self.flush(&mut pipe, &mut expectations, &mut segment, &liveness);
                    if groups.is_empty() {
                        results[index] = Some(StoreResult::Users(Vec::new()));
                        continue;
                    }
                    let mut cmd = redis::cmd("SUNION");
                    for group in &groups {
                        cmd.arg(self.group_key(&site, group));
                    }
                    pipe.push(cmd);
                    expectations.push(Expect::Users(index));
                }
                StoreCommand::ForgetGroupMember {
                    site, room, groups, ..
                } => {
                    if groups.is_empty() {
                        results[index] = Some(StoreResult::Done);
                        continue;
                    }
                    self.flush(&mut pipe, &mut expectations, &mut segment, &liveness);
                    for group in &groups {
                        let mut cmd = redis::cmd("SREM");
                        cmd.arg(self.group_key(&site, group)).arg(&room);
                        pipe.push(cmd);
                    }
                    expectations.push(Expect::Done(Some(index), groups.len()));
                }
                StoreCommand::CheckEpoch { candidate, .. } => {
                    self.flush(&mut pipe, &mut expectations, &mut segment, &liveness);
                    // Back to back in one pipeline: the `GET` reads whichever epoch the `SET NX`
                    // (or an earlier gateway) wrote. The layout key is read along, so a node
                    // notices within one epoch check when Redis lost it or holds another.
                    let key = self.epoch_key();
                    let mut set = redis::cmd("SET");
                    set.arg(&key).arg(candidate).arg("NX");
                    let mut get = redis::cmd("GET");
                    get.arg(&key);
                    let mut layout = redis::cmd("GET");
                    layout.arg(self.layout_key());
                    pipe.extend([set, get, layout]);
                    expectations.push(Expect::Epoch(index));
                }
                command => self.gather(&mut segment, index, command, legacy),
            }
        }
        self.flush(&mut pipe, &mut expectations, &mut segment, &liveness);

        let mut imports = Vec::new();
        if !expectations.is_empty() || load_library {
            let wait = self.replica_wait().await;
            let replies = self
                .connection
                .pipeline_by_slot(pipe, wait.as_deref())
                .await;
            match replies {
                Ok((replies, short)) => {
                    self.replica_outcome(short);
                    if replies
                        .iter()
                        .any(|reply| reply.as_ref().is_err_and(|error| error.is_cluster_error()))
                    {
                        // A slot moved or its master is being replaced.
                        self.state.forget_topology();
                    }
                    if replies
                        .iter()
                        .any(|reply| reply.as_ref().is_err_and(is_transport))
                    {
                        // A slot's master was unreachable (a cluster's pipelines fail per
                        // slot): check the layout and load the library again before the next.
                        self.state.connection_lost();
                    }
                    let mut replies = replies.into_iter();
                    if load_library {
                        let loaded = replies
                            .next()
                            .unwrap_or_else(|| Err(protocol_error("function load reply")));
                        self.library_load_outcome(loaded.map(|_| ()));
                    }
                    for expect in expectations {
                        let mine: Vec<RedisResult<Value>> =
                            replies.by_ref().take(expect.replies()).collect();
                        self.read(expect, mine, &mut results, &mut failover, &mut imports);
                    }
                }
                Err(error) => {
                    self.state.connection_lost();
                    let text = error.to_string();
                    let failed = is_failover(&error);
                    for (result, failover) in results.iter_mut().zip(failover.iter_mut()) {
                        if result.is_none() {
                            *result = Some(StoreResult::Failed(text.clone()));
                            *failover = failed;
                        }
                    }
                }
            }
        }
        for (index, device, socket, limits, now_ms) in imports {
            results[index] = Some(self.import_then_read(device, socket, limits, now_ms).await);
        }
        let results = results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| StoreResult::Failed("no reply".to_owned())))
            .collect();
        (results, failover)
    }

    /// Adds a command on a user's keys to its shard's call in `segment`.
    fn gather(&self, segment: &mut Segment, index: usize, command: StoreCommand, legacy: bool) {
        let mut args: Vec<Vec<u8>> = Vec::new();
        let text = |value: &dyn ToString| value.to_string().into_bytes();
        let (site, room, op, kind) = match command {
            StoreCommand::Connect {
                device,
                socket,
                groups,
                limits,
                now_ms,
            } => {
                args.push(self.user_base(&device.site, &device.room).into_bytes());
                args.push(device.device.clone().into_bytes());
                args.push(socket_text(socket).into_bytes());
                args.push(text(&now_ms));
                args.push(text(&limits.max_items));
                args.push(text(&limits.max_bytes));
                args.push(if legacy { b"0".to_vec() } else { b"1".to_vec() });
                match &groups {
                    None => args.push(b"0".to_vec()),
                    Some(groups) => {
                        args.push(b"1".to_vec());
                        args.extend(groups.iter().map(|g| g.clone().into_bytes()));
                        if !groups.is_empty() {
                            segment.index_updates.push((
                                device.site.clone(),
                                device.room.clone(),
                                groups.clone(),
                            ));
                        }
                    }
                }
                let kind = Kind::Connect {
                    device: device.clone(),
                    socket,
                    limits,
                    now_ms,
                };
                (device.site, device.room, "C", kind)
            }
            StoreCommand::NextBatch {
                device,
                socket,
                acked,
                limits,
                now_ms,
            } => {
                push_piece_args(&mut args, self, &device, socket, limits, now_ms);
                push_pairs(&mut args, &acked);
                (device.site, device.room, "N", Kind::NextBatch)
            }
            StoreCommand::Disconnect {
                device,
                socket,
                now_ms,
                ttl_ms,
            } => {
                args.push(self.user_base(&device.site, &device.room).into_bytes());
                args.push(device.device.into_bytes());
                args.push(socket_text(socket).into_bytes());
                args.push(text(&now_ms));
                args.push(text(&ttl_ms));
                (device.site, device.room, "D", Kind::Disconnect)
            }
            StoreCommand::Enqueue {
                site,
                room,
                item,
                via_groups,
                now_ms,
            } => {
                let call = self.shard_call(segment, &site, &room);
                let key = (item.id, item.event, now_ms, via_groups, item.json.clone());
                if call.message.as_ref() != Some(&key) {
                    let mut message: Vec<Vec<u8>> = vec![
                        key.1.clone().into_bytes(),
                        member(item.id, &item.json),
                        text(&now_ms),
                    ];
                    match &key.3 {
                        None => message.push(b"-1".to_vec()),
                        Some(groups) => {
                            message.push(text(&groups.len()));
                            message.extend(groups.iter().map(|g| g.clone().into_bytes()));
                        }
                    }
                    call.cmd.arg("M").arg(message.len()).arg(&message);
                    call.message = Some(key);
                }
                call.cmd.arg("E").arg(1).arg(self.user_base(&site, &room));
                call.kinds.push((index, Kind::Enqueue));
                return;
            }
            StoreCommand::Ack {
                device,
                event,
                id,
                resync,
                now_ms,
            } => {
                args.push(self.user_base(&device.site, &device.room).into_bytes());
                args.push(device.device.into_bytes());
                args.push(event.into_bytes());
                args.push(padded(id).into_bytes());
                args.push(if resync { b"1".to_vec() } else { b"0".to_vec() });
                args.push(text(&now_ms));
                (device.site, device.room, "A", Kind::Ack)
            }
            StoreCommand::AckBatch {
                device,
                items,
                now_ms,
            } => {
                args.push(self.user_base(&device.site, &device.room).into_bytes());
                args.push(device.device.into_bytes());
                args.push(text(&now_ms));
                push_pairs(&mut args, &items);
                (device.site, device.room, "B", Kind::AckBatch)
            }
            StoreCommand::ResolveGroups { .. }
            | StoreCommand::ForgetGroupMember { .. }
            | StoreCommand::CheckEpoch { .. } => {
                unreachable!("execute_batch runs the commands on other slots itself")
            }
        };
        let call = self.shard_call(segment, &site, &room);
        call.cmd.arg(op).arg(args.len()).arg(&args);
        call.kinds.push((index, kind));
    }

    /// The call being gathered for the shard of `room`.
    fn shard_call<'a>(
        &self,
        segment: &'a mut Segment,
        site: &str,
        room: &str,
    ) -> &'a mut ShardCall {
        let shard = shard_of(room, self.shards);
        segment
            .shards
            .entry((site.to_owned(), shard))
            .or_insert_with(|| ShardCall {
                cmd: self.library.call(&self.shard_base(site, shard)),
                kinds: Vec::new(),
                message: None,
            })
    }

    /// Adds the gathered shard calls and then the group-index updates to `pipe`.
    fn flush(
        &self,
        pipe: &mut Vec<Cmd>,
        expectations: &mut Vec<Expect>,
        segment: &mut Segment,
        liveness: &[String],
    ) {
        for (_, mut call) in std::mem::take(&mut segment.shards) {
            call.cmd.arg(liveness);
            pipe.push(call.cmd);
            expectations.push(Expect::Shard(call.kinds));
        }
        // The group index lives on the site's slot. It is a hint (Enqueue re-checks membership),
        // so a failure here loses nothing. Entries of groups the user left stay until a send
        // finds them stale and the gateway sends `ForgetGroupMember` — the model's rule, so
        // every store resolves groups alike.
        for (site, room, groups) in std::mem::take(&mut segment.index_updates) {
            for group in &groups {
                let mut cmd = redis::cmd("SADD");
                cmd.arg(self.group_key(&site, group)).arg(&room);
                pipe.push(cmd);
            }
            expectations.push(Expect::Done(None, groups.len()));
        }
    }

    /// The call of the shard of one user room, for a single command run on its own (`FCALL
    /// <function> 1 <shard base>`; the caller appends the arguments and the liveness).
    pub(super) fn fcall(&self, site: &str, room: &str) -> Cmd {
        self.library
            .call(&self.shard_base(site, shard_of(room, self.shards)))
    }

    /// Records whether loading the function library worked (logged when it did not).
    fn library_load_outcome(&self, outcome: RedisResult<()>) {
        if let Err(error) = &outcome {
            tracing::warn!(target: "courier", error = %error, "loading the store's function library failed");
        }
        self.state
            .library_loaded
            .store(outcome.is_ok(), Ordering::Release);
    }

    /// Runs one call on its own, loading the library first when Redis lost it.
    pub(super) async fn load_and_run<T: FromRedisValue>(&self, cmd: Cmd) -> RedisResult<T> {
        let mut connection = self.connection.clone();
        match cmd.query_async(&mut connection).await {
            Err(error) if super::library::is_missing(&error) => {
                let _: Value = self.library.load().query_async(&mut connection).await?;
                cmd.query_async(&mut connection).await
            }
            other => other,
        }
    }

    /// A device seen for the first time while the original's lists may exist: its `Connect`
    /// left it draining with no piece. Import its lists, then read the first piece from
    /// everything now queued (nothing was delivered live meanwhile, so nothing is read twice).
    async fn import_then_read(
        &self,
        device: DeviceKey,
        socket: SocketRef,
        limits: BatchLimits,
        now_ms: u64,
    ) -> StoreResult {
        if let Err(error) = self.import_legacy(&device).await {
            // The lists stay where they are and the device stays unmarked: the next connect
            // imports them.
            tracing::warn!(target: "courier", error = %error, "legacy queue import failed");
        }
        let mut args = Vec::new();
        push_piece_args(&mut args, self, &device, socket, limits, now_ms);
        let mut cmd = self.fcall(&device.site, &device.room);
        cmd.arg("N")
            .arg(args.len())
            .arg(&args)
            .arg(self.liveness_args());
        let outcome: RedisResult<StoreResult> = self
            .load_and_run::<Vec<Vec<Vec<u8>>>>(cmd)
            .await
            .and_then(|replies| {
                replies
                    .first()
                    .and_then(|reply| parse_piece(reply))
                    .ok_or_else(|| protocol_error("next batch reply"))
            });
        outcome.unwrap_or_else(|error| StoreResult::Failed(error.to_string()))
    }

    fn read(
        &self,
        expect: Expect,
        replies: Vec<RedisResult<Value>>,
        results: &mut [Option<StoreResult>],
        failover: &mut [bool],
        imports: &mut Vec<(usize, DeviceKey, SocketRef, BatchLimits, u64)>,
    ) {
        let mut values = Vec::with_capacity(replies.len());
        let mut failure: Option<RedisError> = None;
        for reply in replies {
            match reply {
                Ok(value) => values.push(value),
                Err(error) => {
                    if super::library::is_missing(&error) {
                        // Lost behind our back (FUNCTION FLUSH, a failover to a server without
                        // it): load it again with the next pipeline.
                        self.state.library_loaded.store(false, Ordering::Release);
                    }
                    failure.get_or_insert(error);
                }
            }
        }
        match expect {
            Expect::Shard(kinds) => {
                let items = match (failure, values.pop()) {
                    (None, Some(Value::Array(items))) if items.len() == kinds.len() => items,
                    (Some(error), _) => {
                        let text = error.to_string();
                        for (index, _) in kinds {
                            results[index] = Some(StoreResult::Failed(text.clone()));
                            failover[index] = is_failover(&error);
                        }
                        return;
                    }
                    _ => {
                        for (index, _) in kinds {
                            results[index] = Some(StoreResult::Failed(
                                protocol_error("shard reply").to_string(),
                            ));
                        }
                        return;
                    }
                };
                for ((index, kind), item) in kinds.into_iter().zip(items) {
                    results[index] = Some(read_one(kind, index, item, imports));
                }
            }
            Expect::Done(index, _) => match (index, failure) {
                (Some(index), None) => results[index] = Some(StoreResult::Done),
                (Some(index), Some(error)) => {
                    results[index] = Some(StoreResult::Failed(error.to_string()));
                    failover[index] = is_failover(&error);
                }
                (None, Some(error)) => {
                    // The connect itself happened; the index is a hint that the next auth
                    // repairs.
                    tracing::warn!(target: "courier", error = %error, "group index update failed");
                }
                (None, None) => {}
            },
            Expect::Users(index) => {
                let outcome = match failure {
                    Some(error) => Err(error),
                    None => Vec::<String>::from_redis_value(values.pop().unwrap_or(Value::Nil))
                        .map_err(Into::into),
                };
                results[index] = Some(match outcome {
                    Ok(mut users) => {
                        users.sort();
                        users.dedup();
                        StoreResult::Users(users)
                    }
                    Err(error) => StoreResult::Failed(error.to_string()),
                });
            }
            Expect::Epoch(index) => {
                if let Some(error) = failure {
                    results[index] = Some(StoreResult::Failed(error.to_string()));
                    return;
                }
                let mut values = values.into_iter().skip(1);
                let epoch = u64::from_redis_value(values.next().unwrap_or(Value::Nil));
                match Option::<String>::from_redis_value(values.next().unwrap_or(Value::Nil)) {
                    // Gone with the rest of the data: the next batch writes it again.
                    Ok(None) => self.state.connection_lost(),
                    Ok(Some(found)) => {
                        let _ = self.accept_layout(&found);
                    }
                    Err(_) => {}
                }
                results[index] = Some(match epoch {
                    Ok(epoch) => StoreResult::Epoch(epoch),
                    Err(_) => StoreResult::Failed(protocol_error("epoch reply").to_string()),
                });
            }
        }
    }
}

/// Whether `error` says the server could not be reached (rather than answered an error).
fn is_transport(error: &RedisError) -> bool {
    error.is_io_error() || error.is_timeout() || error.is_connection_dropped()
}

/// Whether `error` comes from a master failing or being replaced: unreachable, a redirection
/// or `CLUSTERDOWN`/`TRYAGAIN` the client gave up on, a read-only or loading node, a write no
/// replica confirmed. Such a command may have run or not.
fn is_failover(error: &RedisError) -> bool {
    is_transport(error)
        || error.is_connection_refusal()
        || error.is_cluster_error()
        || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || error.to_string().contains(NOT_CONFIRMED)
}

/// Whether running `command` twice leaves what running it once leaves (an ack removes exactly
/// the ids it carries; a disconnect names its socket; a group-index removal is an `SREM`).
fn idempotent(command: &StoreCommand) -> bool {
    matches!(
        command,
        StoreCommand::Ack { .. }
            | StoreCommand::AckBatch { .. }
            | StoreCommand::Disconnect { .. }
            | StoreCommand::ForgetGroupMember { .. }
    )
}

/// One command's result within its shard call's reply.
fn read_one(
    kind: Kind,
    index: usize,
    item: Value,
    imports: &mut Vec<(usize, DeviceKey, SocketRef, BatchLimits, u64)>,
) -> StoreResult {
    let outcome: RedisResult<StoreResult> =
        match kind {
            Kind::Connect {
                device,
                socket,
                limits,
                now_ms,
            } => Vec::<Vec<u8>>::from_redis_value(item)
                .map_err(Into::into)
                .and_then(|reply| parse_connected(&reply).ok_or_else(|| protocol_error("connect")))
                .map(|(imported, piece)| {
                    if !imported {
                        imports.push((index, device, socket, limits, now_ms));
                    }
                    piece
                }),
            Kind::NextBatch => Vec::<Vec<u8>>::from_redis_value(item)
                .map_err(Into::into)
                .and_then(|reply| parse_piece(&reply).ok_or_else(|| protocol_error("next batch"))),
            Kind::Disconnect | Kind::AckBatch => Ok(StoreResult::Done),
            Kind::Enqueue => Vec::<Vec<u8>>::from_redis_value(item)
                .map_err(Into::into)
                .and_then(|reply| parse_enqueued(&reply).ok_or_else(|| protocol_error("enqueue"))),
            Kind::Ack => String::from_redis_value(item)
                .map_err(Into::into)
                .and_then(|reply| match reply.as_str() {
                    "removed" => Ok(StoreResult::Acked { removed: true }),
                    "kept" => Ok(StoreResult::Acked { removed: false }),
                    "resync" => Ok(StoreResult::Resync),
                    _ => Err(protocol_error("ack reply")),
                }),
        };
    outcome.unwrap_or_else(|error| StoreResult::Failed(error.to_string()))
}

/// The arguments `NextBatch` starts with: user base, device, socket, now, piece limits.
fn push_piece_args(
    args: &mut Vec<Vec<u8>>,
    store: &RedisStore,
    device: &DeviceKey,
    socket: SocketRef,
    limits: BatchLimits,
    now_ms: u64,
) {
    args.push(store.user_base(&device.site, &device.room).into_bytes());
    args.push(device.device.clone().into_bytes());
    args.push(socket_text(socket).into_bytes());
    args.push(now_ms.to_string().into_bytes());
    args.push(limits.max_items.to_string().into_bytes());
    args.push(limits.max_bytes.to_string().into_bytes());
}

/// `(event, padded id)` pairs of acknowledged items.
fn push_pairs(args: &mut Vec<Vec<u8>>, items: &[(String, u64)]) {
    for (event, id) in items {
        args.push(event.clone().into_bytes());
        args.push(padded(*id).into_bytes());
    }
}
