//! The cluster bus over Redis pub/sub: every node publishes its [`Output::Publish`] messages on
//! `<prefix>:bus`, prefixed with its 8-byte node id (big-endian), and hands every message of
//! another node to its engine ([`Engine::handle_remote`]).
//!
//! [`Output::Publish`]: courier_core::net::Output::Publish
//! [`Engine::handle_remote`]: courier_core::net::Engine::handle_remote

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use futures_lite::StreamExt;

use crate::engines::LocalNodes;
use crate::ops::Ops;
use crate::runtime::Runtime;

/// How many published messages may wait for Redis before new ones are dropped.
pub(crate) const BUS_BACKLOG: usize = 4096;
/// The most messages one publish pipeline carries.
const PUBLISH_PIPELINE: usize = 64;
/// How long startup waits for the first bus subscription before serving anyway (the loop
/// keeps trying).
pub(crate) const FIRST_SUBSCRIBE_PATIENCE: Duration = Duration::from_secs(5);
/// Pause between attempts to (re)subscribe while Redis is away.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(500);

/// The bus channel name for a key prefix.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}:bus")
}

/// Frames a message for the bus: node id, then the message.
pub fn frame(node_id: u64, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + message.len());
    out.extend_from_slice(&node_id.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The message of a bus frame unless it is this node's own (or too short to be a frame).
pub fn unframe(own_node: u64, payload: &[u8]) -> Option<Bytes> {
    unframe_foreign(&[own_node], payload)
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
/// write per pipeline rather than per message.
pub(crate) async fn publish_loop(
    mut connection: crate::redis_conn::RedisConnection,
    channel: String,
    node_id: u64,
    messages: Receiver<Bytes>,
    ops: Arc<Ops>,
) {
    let mut batch = Vec::new();
    while let Ok(message) = messages.recv().await {
        batch.push(message);
        while batch.len() < PUBLISH_PIPELINE {
            match messages.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        for message in batch.drain(..) {
            pipe.publish(&channel, frame(node_id, &message)).ignore();
        }
        let result: redis::RedisResult<()> = pipe.query_async(&mut connection).await;
        if let Err(error) = result {
            // A failed pipeline may have published some of its messages; count them all.
            Ops::add(
                &ops.bus_dropped,
                u64::try_from(pipe.len()).unwrap_or(u64::MAX),
            );
            tracing::warn!(target: "courier", error = %error, "cluster publish failed");
        }
    }
}

/// A subscription to the bus channel.
pub(crate) type Subscription = redis::aio::PubSub;

/// Subscribes to `channel`, giving up after `patience` (Redis away at startup): `start` waits
/// for this before it serves, so a node never admits clients whose live messages published by
/// other nodes it would not hear yet.
pub(crate) async fn subscribe_first<R: Runtime>(
    runtime: &R,
    client: &redis::Client,
    channel: &str,
    patience: Duration,
) -> Option<Subscription> {
    let attempt = async { subscribe(client, channel).await.ok() };
    let give_up = async {
        runtime.sleep(patience).await;
        None
    };
    futures_lite::future::or(attempt, give_up).await
}

/// Feeds other nodes' messages from the bus to the engines of this process they concern
/// (`crate::engines`), starting with `first` when startup already subscribed; resubscribes
/// after Redis comes back. Ends when the drivers are gone.
pub(crate) async fn subscribe_loop<R: Runtime>(
    runtime: R,
    client: redis::Client,
    channel: String,
    local: Arc<LocalNodes>,
    first: Option<Subscription>,
    ops: Arc<Ops>,
) {
    let mut warned = false;
    let mut ready = first;
    loop {
        let subscribed = match ready.take() {
            Some(pubsub) => Ok(pubsub),
            None => subscribe(&client, &channel).await,
        };
        match subscribed {
            Ok(mut pubsub) => {
                warned = false;
                ops.bus_subscribed.store(true, Ordering::Release);
                // Messages published while a node is not subscribed are lost to it; this line
                // says from when on it hears the others again (after a Redis restart, too).
                tracing::info!(target: "courier", "cluster bus subscribed");
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    if let Some(message) = unframe_foreign(local.ids(), message.get_payload_bytes())
                    {
                        Ops::add(&ops.bus_received, 1);
                        if local.hand_over(&message, None).is_err() {
                            return;
                        }
                    }
                }
                ops.bus_subscribed.store(false, Ordering::Release);
            }
            Err(error) => warn_once(&mut warned, &error),
        }
        if local.closed() {
            return;
        }
        runtime.sleep(RESUBSCRIBE_PAUSE).await;
    }
}

/// A new pub/sub connection subscribed to `channel`.
async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<Subscription> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

fn warn_once(warned: &mut bool, error: &redis::RedisError) {
    if !*warned {
        tracing::warn!(target: "courier", error = %error, "cluster bus subscription lost; retrying");
        *warned = true;
    }
}

/// Bounded queue between the driver and the publisher.
pub(crate) fn queue() -> (Sender<Bytes>, Receiver<Bytes>) {
    async_channel::bounded(BUS_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_node_and_own_frames_are_skipped() {
        let framed = frame(7, b"hello");
        assert_eq!(framed.len(), 13);
        assert_eq!(unframe(7, &framed), None);
        assert_eq!(unframe(8, &framed), Some(Bytes::from_static(b"hello")));
        assert_eq!(unframe(8, b"short"), None);
        // Several engines in one process: none hears what any of them published.
        assert_eq!(unframe_foreign(&[8, 7], &framed), None);
        assert!(unframe_foreign(&[8, 9], &framed).is_some());
    }
}
