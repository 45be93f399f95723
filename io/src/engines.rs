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
//!   process it is for (a message addressed to one node to that engine alone, one for all
//!   nodes to every other engine), and published on Redis only when a node outside the process
//!   may need it: a delivery addressed to an engine of the process costs no Redis round trip.
//!   The process listens on every engine's bus channel; what arrives from Redis goes to the
//!   engine whose channel it came on (an all-nodes message to all of them), and is dropped when
//!   one of this process's engines published it (they already had it).
//! - **Reports.** `/metrics` and `/status.json` sum the engines' counters: a process reports
//!   as one node would (the node registry and `/status.json` list every engine's node id).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use courier_core::metrics::Snapshot;
use courier_core::net::BusTarget;

use crate::bus::Published;
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

    /// Hands `message`, addressed `to`, to the engines of this process it is for, except
    /// engine `from` (its publisher). True when it is for an engine of this process alone (no
    /// need for Redis). `Err` when the engines are gone.
    pub(crate) fn hand_over(
        &self,
        message: &Bytes,
        to: BusTarget,
        from: Option<usize>,
    ) -> Result<bool, ()> {
        let mut delivered = false;
        for (index, (id, control)) in self.ids.iter().zip(&self.controls).enumerate() {
            let not_for_it = matches!(to, BusTarget::Node(node) if node != *id);
            if Some(index) == from || not_for_it {
                continue;
            }
            if control.try_send(Input::Remote(message.clone())).is_ok() {
                delivered = true;
            }
        }
        if !delivered && self.closed() {
            return Err(());
        }
        Ok(matches!(to, BusTarget::Node(node) if self.contains(node)))
    }
}

/// Carries what engine `index` publishes: to the engines of this process it is for at once,
/// and to `redis` (that engine's publisher) unless it is for an engine of this process alone.
/// Ends when the engine's driver drops its sender.
pub(crate) async fn route_published(
    index: usize,
    published: Receiver<Published>,
    local: Arc<LocalNodes>,
    redis: Sender<Published>,
    ops: Arc<Ops>,
) {
    while let Ok((to, message)) = published.recv().await {
        let Ok(local_only) = local.hand_over(&message, to, Some(index)) else {
            return;
        };
        if !local_only && redis.try_send((to, message)).is_err() {
            Ops::add(&ops.bus_dropped, 1);
            tracing::warn!(target: "courier", "cluster bus backlog full; message dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(queue: &Receiver<Input>) -> usize {
        std::iter::from_fn(|| queue.try_recv().ok()).count()
    }

    #[test]
    fn a_message_reaches_only_the_engines_it_is_for() {
        let queues: Vec<_> = (0..3).map(|_| async_channel::unbounded()).collect();
        let local = LocalNodes::new(
            vec![10, 11, 12],
            queues.iter().map(|(tx, _)| tx.clone()).collect(),
        );
        let message = Bytes::from_static(b"m");
        let counts = || -> Vec<usize> { queues.iter().map(|(_, rx)| received(rx)).collect() };
        // Engine 0 publishes for engine 2 only: nothing for Redis.
        assert_eq!(
            local.hand_over(&message, BusTarget::Node(12), Some(0)),
            Ok(true)
        );
        assert_eq!(counts(), [0, 0, 1]);
        // For a node of another process: nothing here, all for Redis.
        assert_eq!(
            local.hand_over(&message, BusTarget::Node(99), Some(0)),
            Ok(false)
        );
        assert_eq!(counts(), [0, 0, 0]);
        // For all nodes: every engine but its publisher, and Redis too.
        assert_eq!(
            local.hand_over(&message, BusTarget::AllNodes, Some(1)),
            Ok(false)
        );
        assert_eq!(counts(), [1, 0, 1]);
        // From Redis (no local publisher): to the engine named, or to all.
        assert_eq!(
            local.hand_over(&message, BusTarget::Node(10), None),
            Ok(true)
        );
        assert_eq!(counts(), [1, 0, 0]);
        assert_eq!(
            local.hand_over(&message, BusTarget::AllNodes, None),
            Ok(false)
        );
        assert_eq!(counts(), [1, 1, 1]);
        drop(queues);
        assert!(local.closed());
        assert_eq!(
            local.hand_over(&message, BusTarget::Node(12), None),
            Err(())
        );
    }
}
