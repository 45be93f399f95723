//! Several engines in one process (`io.engines`): routing requests to them and the in-process
//! part of the cluster bus between them.
//!
//! One driver task owns one engine, so a process with one engine does its protocol work on one
//! core whatever the machine. With `io.engines: N` the process runs N whole gateways, each a
//! node of the cluster in its own right: its own node id (in the node registry like any node),
//! driver task, sessions, timers and store executor, all on the one Redis store. Nothing is
//! shared between them but the listener, the HTTP client, the Redis connection and the
//! counters of the I/O layer; the core does not know it is one of several.
//!
//! - **Routing.** Each engine marks the Engine.IO session ids it makes with its index
//!   ([`courier_core::eio::session_tag`]), so every later request of a session (polling GET and
//!   POST, the WebSocket upgrade) reaches the engine that owns it from its `sid` alone, on
//!   whatever TCP connection it comes. A request naming no session (a handshake, `/send`,
//!   `/healthcheck`, the pages) goes to the next engine, round-robin.
//! - **Bus.** What an engine publishes for other nodes is handed at once to the engines of this
//!   process it concerns (a delivery only to the engines holding its targets, anything else to
//!   all), and published on Redis only when a node outside the process may need it: a delivery
//!   whose targets are all in the process costs no Redis round trip. What arrives from Redis is
//!   dropped when one of this process's engines published it (they already had it) and handed
//!   to the engines it concerns otherwise.
//! - **Reports.** `/metrics` and `/status.json` sum the engines' counters: a process reports
//!   as one node would (the node registry and `/status.json` list every engine's node id).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use courier_core::gateway::cluster::RemoteMessage;
use courier_core::metrics::Snapshot;

use crate::driver::{DriverHandle, Input};
use crate::ops::Ops;

/// The engines of this process, as the HTTP side reaches them.
#[derive(Debug)]
pub(crate) struct Engines {
    handles: Vec<DriverHandle>,
    /// The engine the next request naming no session goes to.
    next: AtomicUsize,
}

impl Engines {
    /// Engines reached through `handles`, in engine-index (session tag) order.
    pub(crate) fn new(handles: Vec<DriverHandle>) -> Engines {
        assert!(!handles.is_empty(), "a process runs at least one engine");
        Engines {
            handles,
            next: AtomicUsize::new(0),
        }
    }

    /// Every engine, in index order.
    pub(crate) fn all(&self) -> &[DriverHandle] {
        &self.handles
    }

    /// The engine a request with this query string goes to: the owner of the session its `sid`
    /// names, else the next one round-robin.
    pub(crate) fn route(&self, query: Option<&str>) -> &DriverHandle {
        let count = self.handles.len();
        if count == 1 {
            return &self.handles[0];
        }
        let owner = query
            .and_then(|query| courier_core::urlencoded::first(query, "sid"))
            .and_then(|sid| courier_core::eio::session_tag(&sid))
            .map(usize::from);
        // An id with a tag past the engine count names no session here: any engine answers
        // it the same way (unknown sid).
        let index = match owner {
            Some(tag) => tag % count,
            None => self.next.fetch_add(1, Ordering::Relaxed) % count,
        };
        &self.handles[index]
    }

    /// The counters of every engine, summed (`None` when no engine answered).
    pub(crate) async fn metrics(&self) -> Option<Snapshot> {
        gather_metrics(None, self.handles.iter().map(|handle| &handle.control)).await
    }
}

/// `own` (a snapshot already taken) plus those of the engines behind `controls`, summed; an
/// engine that has stopped is left out.
pub(crate) async fn gather_metrics<'a>(
    own: Option<Snapshot>,
    controls: impl Iterator<Item = &'a Sender<Input>>,
) -> Option<Snapshot> {
    let mut total = own;
    for control in controls {
        let (reply, answer) = async_channel::bounded(1);
        if control.send(Input::Metrics(reply)).await.is_err() {
            continue;
        }
        if let Ok(Some(snapshot)) = answer.recv().await {
            match &mut total {
                Some(total) => total.merge(&snapshot),
                None => total = Some(snapshot),
            }
        }
    }
    total
}

/// The engines of this process as the cluster bus sees them: their node ids and where their
/// remote messages go.
#[derive(Debug)]
pub(crate) struct LocalNodes {
    /// Node id of each engine, in index order.
    ids: Vec<u64>,
    /// Each engine's control channel (unbounded: handing a message over never waits).
    controls: Vec<Sender<Input>>,
}

impl LocalNodes {
    /// The engines with these node ids and control channels (same order).
    pub(crate) fn new(ids: Vec<u64>, controls: Vec<Sender<Input>>) -> LocalNodes {
        LocalNodes { ids, controls }
    }

    /// The node ids of this process's engines.
    pub(crate) fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Whether every engine has stopped.
    pub(crate) fn closed(&self) -> bool {
        self.controls.iter().all(Sender::is_closed)
    }

    /// Whether `node` is one of this process's engines.
    pub(crate) fn contains(&self, node: u64) -> bool {
        self.ids.contains(&node)
    }

    /// Hands `message` to the engines of this process it concerns, except engine `from` (its
    /// publisher). True when every node it concerns is in this process (no need for Redis).
    /// False when the engines are gone.
    pub(crate) fn hand_over(&self, message: &Bytes, from: Option<usize>) -> Result<bool, ()> {
        // One engine alone gets everything, undecoded, as a single-engine node always did.
        let addressed = if self.ids.len() == 1 {
            None
        } else {
            RemoteMessage::addressed_nodes(message)
        };
        let mut delivered = false;
        for (index, (id, control)) in self.ids.iter().zip(&self.controls).enumerate() {
            if Some(index) == from {
                continue;
            }
            if addressed
                .as_ref()
                .is_some_and(|nodes| nodes.binary_search(id).is_err())
            {
                continue;
            }
            if control.try_send(Input::Remote(message.clone())).is_ok() {
                delivered = true;
            }
        }
        if !delivered && self.closed() {
            return Err(());
        }
        Ok(addressed.is_some_and(|nodes| nodes.iter().all(|node| self.contains(*node))))
    }
}

/// Carries what engine `index` publishes: to the engines of this process it concerns at once,
/// and to `redis` (that engine's publisher) unless it concerns no node outside the process.
/// Ends when the engine's driver drops its sender.
pub(crate) async fn route_published(
    index: usize,
    published: Receiver<Bytes>,
    local: Arc<LocalNodes>,
    redis: Sender<Bytes>,
    ops: Arc<Ops>,
) {
    while let Ok(message) = published.recv().await {
        let Ok(local_only) = local.hand_over(&message, Some(index)) else {
            return;
        };
        if !local_only && redis.try_send(message).is_err() {
            Ops::add(&ops.bus_dropped, 1);
            tracing::warn!(target: "courier", "cluster bus backlog full; message dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use courier_core::gateway::cluster::{RemoteHeader, RemoteMessage, RemoteTarget};

    use super::*;

    fn deliver(nodes: &[u64]) -> Bytes {
        RemoteMessage {
            header: RemoteHeader::Deliver {
                origin: 10,
                site: "s".into(),
                event: "e".into(),
                id: 1,
                resync: false,
                targets: nodes
                    .iter()
                    .map(|&node| RemoteTarget {
                        node,
                        socket: 1,
                        room: "user_1".into(),
                        device: "d".into(),
                    })
                    .collect(),
            },
            payload: Bytes::from_static(b"[\"e\"]"),
        }
        .encode()
    }

    fn received(queue: &Receiver<Input>) -> usize {
        std::iter::from_fn(|| queue.try_recv().ok()).count()
    }

    #[test]
    fn a_delivery_reaches_only_the_engines_it_names() {
        let queues: Vec<_> = (0..3).map(|_| async_channel::unbounded()).collect();
        let local = LocalNodes::new(
            vec![10, 11, 12],
            queues.iter().map(|(tx, _)| tx.clone()).collect(),
        );
        // Engine 0 publishes for engine 2 only: nothing for Redis.
        assert_eq!(local.hand_over(&deliver(&[12]), Some(0)), Ok(true));
        let counts: Vec<_> = queues.iter().map(|(_, rx)| received(rx)).collect();
        assert_eq!(counts, [0, 0, 1]);
        // A target in another process: the local part in-process, the rest over Redis.
        assert_eq!(local.hand_over(&deliver(&[11, 99]), Some(0)), Ok(false));
        let counts: Vec<_> = queues.iter().map(|(_, rx)| received(rx)).collect();
        assert_eq!(counts, [0, 1, 0]);
        // Any other kind (here: undecodable) reaches every engine but its publisher.
        assert_eq!(
            local.hand_over(&Bytes::from_static(b"x"), Some(1)),
            Ok(false)
        );
        let counts: Vec<_> = queues.iter().map(|(_, rx)| received(rx)).collect();
        assert_eq!(counts, [1, 0, 1]);
        // From Redis (no local publisher): to the engines named.
        assert_eq!(local.hand_over(&deliver(&[10, 12]), None), Ok(true));
        let counts: Vec<_> = queues.iter().map(|(_, rx)| received(rx)).collect();
        assert_eq!(counts, [1, 0, 1]);
        drop(queues);
        assert!(local.closed());
        assert_eq!(local.hand_over(&deliver(&[12]), None), Err(()));
    }
}
