//! Per-session and per-socket state of the Socket.IO layer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::packet::Packet;
use super::{Revision, SocketId};
use crate::eio::{self, SessionId};

/// A binary packet waiting for its attachments.
#[derive(Debug)]
pub(crate) struct PartialPacket {
    pub(crate) packet: Packet,
    pub(crate) attachments: Vec<Bytes>,
}

/// One Engine.IO session seen from Socket.IO.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) revision: Revision,
    pub(crate) handshake: Arc<eio::Handshake>,
    /// Namespace → socket (pending or connected).
    pub(crate) namespaces: HashMap<String, SocketId>,
    /// v5: close the session if no CONNECT arrives by then.
    pub(crate) connect_deadline: Option<Instant>,
    pub(crate) partial: Option<PartialPacket>,
}

/// Where a socket stands with the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Waiting for `accept` / `reject`.
    Pending,
    /// v4's implicit `/`: its `40` is already on the wire, the application has not answered.
    PendingImplicit,
    /// Accepted.
    Connected,
}

/// One namespace socket.
#[derive(Debug)]
pub(crate) struct Socket {
    pub(crate) session: SessionId,
    pub(crate) namespace: String,
    pub(crate) revision: Revision,
    pub(crate) admission: Admission,
    /// v5: the id sent in the CONNECT reply.
    pub(crate) sid: String,
    pub(crate) next_ack: u64,
    /// Ack ids of our `emit_with_ack`s not answered yet.
    pub(crate) awaiting_acks: HashSet<u64>,
}

impl Socket {
    pub(crate) fn is_connected(&self) -> bool {
        self.admission == Admission::Connected
    }
}
