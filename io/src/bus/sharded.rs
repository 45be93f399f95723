//! The bus on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7).
//!
//! A sharded channel lives on the shard of its slot (hashed like a key), so a message for one
//! node costs that node's shard alone — where a plain `PUBLISH` on a cluster is forwarded to
//! every node of every shard. The subscriber is the `redis` crate's cluster client over RESP3:
//! each channel is subscribed on the master of its slot and its messages arrive as push
//! messages. The client subscribes a node's channels again when it reconnects to it or learns a
//! new topology (a failover, a resharding).
//!
//! What the client cannot notice by itself, the probes catch: a subscriber only reads, so a
//! master that died may go unnoticed until a command to it fails, and a slot moved elsewhere
//! drops its subscribers with an `SUNSUBSCRIBE`. Every [`PROBE_INTERVAL`] the node publishes an
//! empty frame (its node id alone) on each channel it listens on and expects to hear it back; a
//! channel silent for [`PROBE_PATIENCE`] is subscribed again (the command also makes the client
//! find the slot's new master), and meanwhile the node reports the bus as not subscribed
//! (`/readyz`, `courier_cluster_bus_subscribed`); after [`REBUILD_AFTER`] of silence the whole
//! connection is made anew. What is published while a channel is not subscribed is lost to its
//! node (pub/sub keeps nothing); the queue holds every stored message until it is acked.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisResult};

use super::{Channels, Ended, frame, receive};
use crate::engines::LocalNodes;
use crate::ops::Ops;
use crate::redis_conn::CONNECT_TIMEOUT;
use crate::runtime::Runtime;

/// How often the node publishes a probe on each of its channels.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A channel whose probe has not come back for this long is subscribed again.
const PROBE_PATIENCE: Duration = Duration::from_millis(2500);
/// A channel silent for this long gets a new connection.
const REBUILD_AFTER: Duration = Duration::from_secs(15);
/// How long one reply (a subscription, a probe) may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A cluster connection subscribed to the bus channels, and where its push messages arrive.
pub(crate) struct Sharded {
    connection: ClusterConnection,
    pushes: Receiver<PushInfo>,
}

/// A new cluster connection (over RESP3, from any seed that answers) subscribed to `names`.
pub(super) async fn subscribe(seeds: &[String], names: &[String]) -> RedisResult<Sharded> {
    let (pushed, pushes) = async_channel::unbounded();
    let client = ClusterClient::builder(seeds.iter().map(String::as_str))
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(move |push: PushInfo| pushed.try_send(push))
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        // A probe or a subscription to a node that is gone fails soon; the next round tries
        // again on the topology the failure made the client read.
        .retries(2)
        .build()?;
    let mut connection = client.get_async_connection().await?;
    // One command per channel: the channels live in different slots.
    for name in names {
        connection.ssubscribe(name).await?;
    }
    Ok(Sharded { connection, pushes })
}

/// Hands the messages of `subscription` to the engines and probes its channels until it is
/// lost or the engines are gone. The bus counts as subscribed while every channel's probe
/// comes back.
pub(super) async fn serve<R: Runtime>(
    runtime: &R,
    subscription: Sharded,
    channels: &Channels,
    names: &[String],
    local: &LocalNodes,
    ops: &Ops,
) -> Ended {
    let Sharded { connection, pushes } = subscription;
    // When each channel last heard this node's probe (`None`: the server dropped the
    // subscription).
    let heard = Mutex::new(vec![Some(runtime.now()); names.len()]);
    let mark = |channel: &str, at: Option<Instant>| {
        if let Some(index) = names.iter().position(|name| name == channel) {
            heard.lock().unwrap_or_else(|e| e.into_inner())[index] = at;
        }
    };
    let messages = async {
        while let Ok(push) = pushes.recv().await {
            match push.kind {
                PushKind::SMessage => {
                    let Some(message) = redis::Msg::from_push_info(push) else {
                        continue;
                    };
                    if is_own_probe(local, message.get_payload_bytes()) {
                        mark(message.get_channel_name(), Some(runtime.now()));
                    } else if receive(channels, local, ops, &message).is_err() {
                        return Ended::EnginesGone;
                    }
                }
                PushKind::SUnsubscribe => {
                    if let Some(channel) = push.data.first().and_then(channel_name) {
                        mark(&channel, None);
                    }
                }
                _ => {}
            }
        }
        Ended::Lost
    };
    let probes = async {
        let mut connection = connection.clone();
        let probe = frame(local.ids()[0], b"");
        let mut silent_since: Option<Instant> = None;
        loop {
            let now = runtime.now();
            let silent: Vec<usize> = heard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .enumerate()
                .filter(|(_, at)| at.is_none_or(|at| now.duration_since(at) > PROBE_PATIENCE))
                .map(|(index, _)| index)
                .collect();
            if silent.is_empty() {
                if silent_since.take().is_some() {
                    ops.bus_subscribed.store(true, Ordering::Release);
                    tracing::info!(target: "courier", "cluster bus subscribed");
                }
            } else {
                let since = *silent_since.get_or_insert_with(|| {
                    ops.bus_subscribed.store(false, Ordering::Release);
                    tracing::warn!(target: "courier", channels = silent.len(), "cluster bus channel silent; subscribing again");
                    now
                });
                if now.duration_since(since) > REBUILD_AFTER {
                    return Ended::Lost;
                }
                for &index in &silent {
                    // Failing is fine: the next round tries again.
                    let _ = connection.ssubscribe(&names[index]).await;
                }
            }
            for name in names {
                let _: RedisResult<redis::Value> = redis::cmd("SPUBLISH")
                    .arg(name)
                    .arg(&probe)
                    .query_async(&mut connection)
                    .await;
            }
            runtime.sleep_until(now + PROBE_INTERVAL).await;
        }
    };
    futures_lite::future::or(messages, probes).await
}

/// Whether a bus frame is a probe (a node id and nothing else) of this process.
fn is_own_probe(local: &LocalNodes, payload: &[u8]) -> bool {
    payload.len() == 8
        && payload
            .first_chunk::<8>()
            .is_some_and(|node| local.contains(u64::from_be_bytes(*node)))
}

fn channel_name(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        _ => None,
    }
}
