//! Runs of single-step store commands as one pipelined round trip.
//!
//! Every command except `Connect` is one script call (or, for the group index and the epoch,
//! plain commands) whose outcome does not depend on a reply the store must see first, so a run of them
//! goes out as one pipeline, in order, and Redis executes them in that order. Errors stay per
//! command (`ignore_errors`): a failed command is [`StoreResult::Failed`] and nothing of it
//! happened; the others are unaffected.
//!
//! Scripts run by `EVALSHA`. A pipeline cannot load a missing script and retry in place without
//! reordering, so the store loads all its scripts at the head of the pipeline whenever it cannot
//! be sure Redis has them (at start, after a connection error, after a `NOSCRIPT`).

use courier_core::gateway::store::{StoreCommand, StoreResult};
use redis::{Cmd, FromRedisValue, Pipeline, RedisResult, Value};

use super::RedisStore;
use super::keys::{member, padded, parse_enqueued, parse_piece, protocol_error, socket_text};

/// How a command's replies are read back.
enum Expect {
    /// Answered without Redis.
    Ready(StoreResult),
    Disconnect,
    Enqueue,
    Ack,
    AckBatch,
    NextBatch,
    Users,
    /// `SET NX` then `GET` of the epoch key.
    Epoch,
    /// `n` plain replies, then `Done`.
    Done(usize),
}

impl Expect {
    fn replies(&self) -> usize {
        match self {
            Expect::Ready(_) => 0,
            Expect::Done(n) => *n,
            Expect::Epoch => 2,
            _ => 1,
        }
    }
}

impl RedisStore {
    /// Executes `commands` (none of them `Connect`) as one pipeline; one result per command,
    /// in order.
    pub(super) async fn execute_pipelined(&self, commands: Vec<StoreCommand>) -> Vec<StoreResult> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let load_scripts = !self.scripts_loaded();
        if load_scripts {
            for code in self.scripts.all_code() {
                pipe.cmd("SCRIPT").arg("LOAD").arg(code);
            }
        }
        let expectations: Vec<Expect> = commands
            .into_iter()
            .map(|command| self.push(&mut pipe, command))
            .collect();
        let total: usize = expectations.iter().map(Expect::replies).sum();
        if total == 0 {
            return expectations.into_iter().map(ready_or_done).collect();
        }
        let mut connection = self.connection.clone();
        let replies: RedisResult<Vec<RedisResult<Value>>> = pipe.query_async(&mut connection).await;
        let mut replies = match replies {
            Ok(replies) => replies.into_iter(),
            Err(error) => {
                self.set_scripts_loaded(false);
                let text = error.to_string();
                return expectations
                    .into_iter()
                    .map(|expect| match expect {
                        Expect::Ready(result) => result,
                        _ => StoreResult::Failed(text.clone()),
                    })
                    .collect();
            }
        };
        if load_scripts {
            let loaded = replies
                .by_ref()
                .take(self.scripts.all_code().len())
                .all(|reply| reply.is_ok());
            self.set_scripts_loaded(loaded);
        }
        expectations
            .into_iter()
            .map(|expect| {
                let mine: Vec<RedisResult<Value>> =
                    replies.by_ref().take(expect.replies()).collect();
                self.read(expect, mine)
            })
            .collect()
    }

    fn push(&self, pipe: &mut Pipeline, command: StoreCommand) -> Expect {
        match command {
            // Callers route Connect elsewhere; answering it here would skip its import.
            StoreCommand::Connect { .. } => Expect::Ready(StoreResult::Failed(
                "Connect cannot be pipelined".to_owned(),
            )),
            StoreCommand::Disconnect {
                device,
                socket,
                now_ms,
                ttl_ms,
            } => {
                let mut cmd = self.evalsha(&self.scripts.disconnect, &device.site, &device.room);
                cmd.arg(&device.device)
                    .arg(socket_text(socket))
                    .arg(now_ms)
                    .arg(ttl_ms);
                pipe.add_command(cmd);
                Expect::Disconnect
            }
            StoreCommand::ResolveGroups { site, groups, .. } => {
                if groups.is_empty() {
                    return Expect::Ready(StoreResult::Users(Vec::new()));
                }
                let mut cmd = redis::cmd("SUNION");
                for group in &groups {
                    cmd.arg(self.group_key(&site, group));
                }
                pipe.add_command(cmd);
                Expect::Users
            }
            StoreCommand::Enqueue {
                site,
                room,
                item,
                via_groups,
                now_ms,
            } => {
                let mut cmd = self.evalsha(&self.scripts.enqueue, &site, &room);
                cmd.arg(&item.event)
                    .arg(member(item.id, &item.json))
                    .arg(now_ms);
                match &via_groups {
                    None => cmd.arg(-1),
                    Some(groups) => cmd.arg(groups.len()).arg(groups),
                };
                pipe.add_command(cmd);
                Expect::Enqueue
            }
            StoreCommand::Ack {
                device,
                event,
                id,
                resync,
                now_ms,
            } => {
                let mut cmd = self.evalsha(&self.scripts.ack, &device.site, &device.room);
                cmd.arg(&device.device)
                    .arg(&event)
                    .arg(id)
                    .arg(padded(id))
                    .arg(if resync { "1" } else { "0" })
                    .arg(now_ms);
                pipe.add_command(cmd);
                Expect::Ack
            }
            StoreCommand::AckBatch {
                device,
                items,
                now_ms,
            } => {
                let mut cmd = self.evalsha(&self.scripts.ack_batch, &device.site, &device.room);
                cmd.arg(&device.device).arg(now_ms);
                for (event, id) in &items {
                    cmd.arg(event).arg(id).arg(padded(*id));
                }
                pipe.add_command(cmd);
                Expect::AckBatch
            }
            StoreCommand::NextBatch {
                device,
                socket,
                acked,
                limits,
                now_ms,
            } => {
                let mut cmd = self.evalsha(&self.scripts.next_batch, &device.site, &device.room);
                cmd.arg(&device.device)
                    .arg(socket_text(socket))
                    .arg(now_ms)
                    .arg(limits.max_items)
                    .arg(limits.max_bytes);
                for (event, id) in &acked {
                    cmd.arg(event).arg(id).arg(padded(*id));
                }
                pipe.add_command(cmd);
                Expect::NextBatch
            }
            StoreCommand::ForgetGroupMember {
                site, room, groups, ..
            } => {
                for group in &groups {
                    pipe.cmd("SREM")
                        .arg(self.group_key(&site, group))
                        .arg(&room);
                }
                Expect::Done(groups.len())
            }
            StoreCommand::CheckEpoch { candidate, .. } => {
                // Two commands in one pipeline run back to back: the second reads whichever
                // epoch the first (or an earlier gateway) wrote.
                let key = self.epoch_key();
                pipe.cmd("SET").arg(&key).arg(candidate).arg("NX");
                pipe.cmd("GET").arg(&key);
                Expect::Epoch
            }
        }
    }

    /// `EVALSHA <sha> 1 <user room base>` — the caller appends the script's arguments.
    fn evalsha(&self, script: &redis::Script, site: &str, room: &str) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash())
            .arg(1)
            .arg(self.user_base(site, room));
        cmd
    }

    fn read(&self, expect: Expect, replies: Vec<RedisResult<Value>>) -> StoreResult {
        let mut values = Vec::with_capacity(replies.len());
        for reply in replies {
            match reply {
                Ok(value) => values.push(value),
                Err(error) => {
                    if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                        // Flushed behind our back: load them again with the next pipeline.
                        self.set_scripts_loaded(false);
                    }
                    return StoreResult::Failed(error.to_string());
                }
            }
        }
        let single = || values.first().cloned().unwrap_or(Value::Nil);
        let outcome: RedisResult<StoreResult> = match expect {
            Expect::Ready(result) => Ok(result),
            Expect::Done(_) | Expect::Disconnect | Expect::AckBatch => Ok(StoreResult::Done),
            Expect::Enqueue => Vec::<Vec<u8>>::from_redis_value(single())
                .map_err(Into::into)
                .and_then(|reply| {
                    parse_enqueued(&reply).ok_or_else(|| protocol_error("enqueue reply"))
                }),
            Expect::NextBatch => Vec::<Vec<u8>>::from_redis_value(single())
                .map_err(Into::into)
                .and_then(|reply| {
                    parse_piece(&reply).ok_or_else(|| protocol_error("next batch reply"))
                }),
            Expect::Ack => String::from_redis_value(single())
                .map_err(Into::into)
                .and_then(|reply| match reply.as_str() {
                    "removed" => Ok(StoreResult::Acked { removed: true }),
                    "kept" => Ok(StoreResult::Acked { removed: false }),
                    "resync" => Ok(StoreResult::Resync),
                    _ => Err(protocol_error("ack reply")),
                }),
            Expect::Epoch => u64::from_redis_value(values.get(1).cloned().unwrap_or(Value::Nil))
                .map(StoreResult::Epoch)
                .map_err(|_| protocol_error("epoch reply")),
            Expect::Users => Vec::<String>::from_redis_value(single())
                .map_err(Into::into)
                .map(|mut users| {
                    users.sort();
                    users.dedup();
                    StoreResult::Users(users)
                }),
        };
        outcome.unwrap_or_else(|error| StoreResult::Failed(error.to_string()))
    }
}

fn ready_or_done(expect: Expect) -> StoreResult {
    match expect {
        Expect::Ready(result) => result,
        _ => StoreResult::Done,
    }
}
