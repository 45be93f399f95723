//! The cluster bus over Redis pub/sub.
//!
//! Every node listens on its own channel, `<prefix>:bus:<node id>`, and on the all-nodes
//! channel `<prefix>:bus`. A message the core addresses to one node
//! ([`BusTarget::Node`]: the deliveries of a `/send` to that node's sockets) is published on
//! that node's channel alone, so it costs Redis one publish and one delivery, and the other
//! nodes nothing; what concerns every node ([`BusTarget::AllNodes`]: broadcast-mode sends, the
//! store's epoch changed, devices the store forgot) goes on the all-nodes channel. A process
//! running several engines listens on each engine's channel. Every message is framed with its
//! publisher's 8-byte node id (big-endian), so a node drops what it published itself on the
//! all-nodes channel, and handed to the engine it is for ([`Engine::handle_remote`]).
//!
//! On a single Redis the channels are plain pub/sub (`PUBLISH`, `SUBSCRIBE`); on a Redis Cluster
//! they are sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`: [`sharded`]), each channel on the shard of
//! its slot, so a delivery to a node costs one shard. The all-nodes channel is one sharded
//! channel too: on a 3-master cluster with 4 subscribed nodes, a 300-byte message cost the
//! cluster's Redis processes about 10 µs of CPU as one `SPUBLISH` on it, 29 µs as a plain
//! `PUBLISH` (forwarded to every node of the cluster) and 30 µs as an `SPUBLISH` on each node's
//! channel.
//!
//! [`Engine::handle_remote`]: courier_core::net::Engine::handle_remote

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use courier_core::net::BusTarget;
use futures_lite::StreamExt;

use crate::engines::LocalNodes;
use crate::ops::Ops;
use crate::redis_conn::RedisConnection;
use crate::runtime::Runtime;

mod sharded;

/// How many published messages may wait for Redis before new ones are dropped.
pub(crate) const BUS_BACKLOG: usize = 4096;
/// The most messages one publish pipeline carries.
const PUBLISH_PIPELINE: usize = 64;
/// How long startup waits for the first bus subscription before serving anyway (the loop
/// keeps trying).
pub(crate) const FIRST_SUBSCRIBE_PATIENCE: Duration = Duration::from_secs(5);
/// Pause between attempts to (re)subscribe while Redis is away.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(500);

/// A message for the bus and whom it is for, as the driver hands it over.
pub(crate) type Published = (BusTarget, Bytes);

/// The all-nodes channel name for a key prefix (the one channel of every message before
/// messages were addressed to a node, so a node still hears older versions' deliveries).
pub fn channel(prefix: &str) -> String {
    format!("{prefix}:bus")
}

/// The channel of one node for a key prefix: the all-nodes channel, `:`, the node id.
pub fn node_channel(prefix: &str, node: u64) -> String {
    Channels::new(prefix).for_target(BusTarget::Node(node))
}

/// The bus channels of one key prefix: which to publish a message on, and whom a message
/// heard on a channel is for.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    all: String,
    /// `<prefix>:bus:`, the start of every node's channel.
    node_prefix: String,
}

impl Channels {
    pub(crate) fn new(prefix: &str) -> Channels {
        let all = channel(prefix);
        let node_prefix = format!("{all}:");
        Channels { all, node_prefix }
    }

    /// The channel a message for `to` is published on.
    pub(crate) fn for_target(&self, to: BusTarget) -> String {
        match to {
            BusTarget::Node(node) => format!("{}{node}", self.node_prefix),
            BusTarget::AllNodes => self.all.clone(),
        }
    }

    /// The channels a process whose engines are `nodes` listens on: the all-nodes channel,
    /// then each engine's.
    pub(crate) fn to_subscribe(&self, nodes: &[u64]) -> Vec<String> {
        std::iter::once(self.all.clone())
            .chain(
                nodes
                    .iter()
                    .map(|&node| self.for_target(BusTarget::Node(node))),
            )
            .collect()
    }

    /// Whom a message heard on `channel` is for (`None` for a channel that is not the bus's).
    pub(crate) fn target_of(&self, channel: &str) -> Option<BusTarget> {
        if channel == self.all {
            return Some(BusTarget::AllNodes);
        }
        channel
            .strip_prefix(&self.node_prefix)?
            .parse()
            .ok()
            .map(BusTarget::Node)
    }
}

/// Frames a message for the bus: node id, then the message.
pub(crate) fn frame(node_id: u64, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + message.len());
    out.extend_from_slice(&node_id.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The message of a bus frame unless one of `own_nodes` (this process's engines) published it
/// (or it is too short to be a frame).
fn unframe_foreign(own_nodes: &[u64], payload: &[u8]) -> Option<Bytes> {
    let (node, message) = payload.split_first_chunk::<8>()?;
    (!own_nodes.contains(&u64::from_be_bytes(*node))).then(|| Bytes::copy_from_slice(message))
}

/// Publishes what the driver hands over, in order, until the driver drops its sender. What
/// queued up while the previous round trip was in flight goes out as one pipeline (at most
/// [`PUBLISH_PIPELINE`] messages), so a burst of sends costs Redis one read and one reply
/// write per pipeline rather than per message. On a Redis Cluster each message is an
/// `SPUBLISH`, served by the shard of its channel's slot, and the pipeline is split by slot
/// (messages for one node stay in order: one channel, one slot).
pub(crate) async fn publish_loop(
    connection: RedisConnection,
    channels: Channels,
    node_id: u64,
    messages: Receiver<Published>,
    ops: Arc<Ops>,
) {
    let publish = if connection.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    let mut batch = Vec::new();
    while let Ok(message) = messages.recv().await {
        batch.push(message);
        while batch.len() < PUBLISH_PIPELINE {
            match messages.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let commands: Vec<redis::Cmd> = batch
            .drain(..)
            .map(|(to, message)| {
                let mut command = redis::cmd(publish);
                command
                    .arg(channels.for_target(to))
                    .arg(frame(node_id, &message));
                command
            })
            .collect();
        let count = commands.len();
        // Pub/sub keeps nothing: no replica to wait for.
        let failed = match connection.pipeline_by_slot(commands, None).await {
            Ok((replies, _)) => replies.iter().filter(|reply| reply.is_err()).count(),
            Err(error) => {
                tracing::warn!(target: "courier", error = %error, "cluster publish failed");
                // A failed pipeline may have published some of its messages; count them all.
                count
            }
        };
        if failed > 0 {
            Ops::add(&ops.bus_dropped, u64::try_from(failed).unwrap_or(u64::MAX));
        }
    }
}

/// How serving a subscription ended.
enum Ended {
    /// The subscription is gone (the connection dropped, or a channel stayed silent): make a
    /// new one.
    Lost,
    /// The engines are gone: stop.
    EnginesGone,
}

/// Where the bus subscribes: a single Redis (through this client), or a Redis Cluster (through
/// any of these seed URLs).
#[derive(Debug, Clone)]
pub(crate) enum BusSource {
    /// A single Redis.
    Node(Box<redis::Client>),
    /// A Redis Cluster's seed URLs.
    Cluster(Vec<String>),
}

/// A subscription to the bus channels.
pub(crate) enum Subscription {
    /// Plain pub/sub on a single Redis.
    Node(redis::aio::PubSub),
    /// Sharded pub/sub on a Redis Cluster.
    Cluster(sharded::Sharded),
}

/// Subscribes to `channels`, giving up after `patience` (Redis away at startup): `start` waits
/// for this before it serves, so a node never admits clients whose live messages published by
/// other nodes it would not hear yet.
pub(crate) async fn subscribe_first<R: Runtime>(
    runtime: &R,
    source: &BusSource,
    channels: &[String],
    patience: Duration,
) -> Option<Subscription> {
    let attempt = async { subscribe(source, channels).await.ok() };
    let give_up = async {
        runtime.sleep(patience).await;
        None
    };
    futures_lite::future::or(attempt, give_up).await
}

/// Feeds other nodes' messages from the bus to the engines of this process they concern
/// (`crate::engines`), starting with `first` when startup already subscribed; resubscribes
/// after Redis comes back (on a cluster, also after a failover: see [`sharded`]). Ends when the
/// drivers are gone.
pub(crate) async fn subscribe_loop<R: Runtime>(
    runtime: R,
    source: BusSource,
    channels: Channels,
    local: Arc<LocalNodes>,
    first: Option<Subscription>,
    ops: Arc<Ops>,
) {
    let mut warned = false;
    let mut ready = first;
    let names = channels.to_subscribe(local.ids());
    loop {
        let subscribed = match ready.take() {
            Some(subscription) => Ok(subscription),
            None => subscribe(&source, &names).await,
        };
        match subscribed {
            Ok(subscription) => {
                warned = false;
                ops.bus_subscribed.store(true, Ordering::Release);
                // Messages published while a node is not subscribed are lost to it; this line
                // says from when on it hears the others again (after a Redis restart, too).
                tracing::info!(target: "courier", "cluster bus subscribed");
                let ended = match subscription {
                    Subscription::Node(mut pubsub) => {
                        let mut messages = pubsub.on_message();
                        let mut ended = Ended::Lost;
                        while let Some(message) = messages.next().await {
                            if receive(&channels, &local, &ops, &message).is_err() {
                                ended = Ended::EnginesGone;
                                break;
                            }
                        }
                        ended
                    }
                    Subscription::Cluster(subscription) => {
                        sharded::serve(&runtime, subscription, &channels, &names, &local, &ops)
                            .await
                    }
                };
                ops.bus_subscribed.store(false, Ordering::Release);
                if matches!(ended, Ended::EnginesGone) {
                    return;
                }
            }
            Err(error) => warn_once(&mut warned, &error),
        }
        if local.closed() {
            return;
        }
        runtime.sleep(RESUBSCRIBE_PAUSE).await;
    }
}

/// Hands a message heard on the bus to the engine(s) of this process it is for, unless one of
/// them published it. `Err` when the engines are gone.
fn receive(
    channels: &Channels,
    local: &LocalNodes,
    ops: &Ops,
    message: &redis::Msg,
) -> Result<(), ()> {
    let Some(to) = channels.target_of(message.get_channel_name()) else {
        return Ok(());
    };
    let Some(message) = unframe_foreign(local.ids(), message.get_payload_bytes()) else {
        return Ok(());
    };
    if message.is_empty() {
        // Another node's probe ([`sharded`]).
        return Ok(());
    }
    Ops::add(&ops.bus_received, 1);
    local.hand_over(&message, to, None).map(|_| ())
}

/// A new subscription to `channels`.
async fn subscribe(source: &BusSource, channels: &[String]) -> redis::RedisResult<Subscription> {
    match source {
        BusSource::Node(client) => {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channels).await?;
            Ok(Subscription::Node(pubsub))
        }
        BusSource::Cluster(seeds) => sharded::subscribe(seeds, channels)
            .await
            .map(Subscription::Cluster),
    }
}

fn warn_once(warned: &mut bool, error: &redis::RedisError) {
    if !*warned {
        tracing::warn!(target: "courier", error = %error, "cluster bus subscription lost; retrying");
        *warned = true;
    }
}

/// Bounded queue between the driver and the publisher.
pub(crate) fn queue() -> (Sender<Published>, Receiver<Published>) {
    async_channel::bounded(BUS_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_node_and_own_frames_are_skipped() {
        let framed = frame(7, b"hello");
        assert_eq!(framed.len(), 13);
        assert_eq!(unframe_foreign(&[7], &framed), None);
        assert_eq!(
            unframe_foreign(&[8], &framed),
            Some(Bytes::from_static(b"hello"))
        );
        assert_eq!(unframe_foreign(&[8], b"short"), None);
        // Several engines in one process: none hears what any of them published.
        assert_eq!(unframe_foreign(&[8, 7], &framed), None);
        assert!(unframe_foreign(&[8, 9], &framed).is_some());
    }

    #[test]
    fn a_message_is_heard_on_the_channel_of_whom_it_is_for() {
        let channels = Channels::new("courier");
        let to_node = channels.for_target(BusTarget::Node(42));
        assert_eq!(to_node, node_channel("courier", 42));
        assert_eq!(to_node, "courier:bus:42");
        assert_eq!(channels.target_of(&to_node), Some(BusTarget::Node(42)));
        let to_all = channels.for_target(BusTarget::AllNodes);
        assert_eq!(to_all, "courier:bus");
        assert_eq!(channels.target_of(&to_all), Some(BusTarget::AllNodes));
        assert_eq!(channels.target_of("courier:bus:x"), None);
        assert_eq!(channels.target_of("other:bus"), None);
        assert_eq!(
            channels.to_subscribe(&[7, 9]),
            ["courier:bus", "courier:bus:7", "courier:bus:9"]
        );
    }
}
