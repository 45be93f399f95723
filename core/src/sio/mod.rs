//! Socket.IO protocol revisions 4 and 5: packets, binary attachments, namespaces and acks.
//!
//! [`Server`] sits on one [`crate::eio::Server`] and multiplexes namespaces over each Engine.IO
//! session. It is driven like its Engine.IO server: `handle_*(…, now)` inputs,
//! [`Server::poll_output`] for the adapter, [`Server::poll_event`] for the application (which
//! pulls Engine.IO's events in), [`Server::poll_timeout`] folding both layers' deadlines. The
//! application admits every namespace CONNECT itself ([`Event::ConnectRequest`] →
//! [`Server::accept`] / [`Server::reject`]), possibly much later (asynchronous auth), and talks
//! to accepted sockets with [`Server::emit`], [`Server::emit_with_ack`] and [`Server::ack`]:
//! these only queue packets, they never run timers.
//!
//! Revision 4 (Engine.IO 3, socket.io 1.x/2.x clients): `/` is connected implicitly — its `40`
//! leaves right after the open packet, and the application still sees a `ConnectRequest` for
//! it (accepting sends nothing more; rejecting sends `44"…"`); a query in the CONNECT namespace
//! (`40/chat?token=x`) becomes the request's `auth`. Revision 5 (Engine.IO 4): the client must
//! CONNECT within `connect_timeout`, may send an auth object, and gets `40/nsp,{"sid":…}`.

pub mod binary;
pub mod packet;
mod server;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

pub use packet::{DecodeError, Packet, PacketType};
pub use server::Server;

use crate::eio;

/// Names one namespace socket for the life of a [`Server`]: unique, monotonic from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

/// A Socket.IO protocol revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Revision {
    /// Socket.IO 4, over Engine.IO 3 (socket.io 1.x/2.x clients).
    V4,
    /// Socket.IO 5, over Engine.IO 4 (socket.io 3.x/4.x clients).
    V5,
}

impl Revision {
    /// The revision carried by an Engine.IO protocol.
    pub fn of(protocol: eio::Protocol) -> Revision {
        match protocol {
            eio::Protocol::V3 => Revision::V4,
            eio::Protocol::V4 => Revision::V5,
        }
    }
}

/// Socket.IO settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Engine.IO endpoint underneath.
    pub eio: eio::Config,
    /// Revision 5: how long a new session may go without sending CONNECT.
    pub connect_timeout: Duration,
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            eio: eio::Config::default(),
            connect_timeout: Duration::from_millis(45_000),
            max_attachments: 10,
        }
    }
}

/// The arguments of an emit, `["event",arg,…]`, encoded once and shared by every socket it is
/// sent to (cloning is cheap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    json: Bytes,
    attachments: Arc<[Bytes]>,
}

impl Payload {
    /// Wraps compact JSON array text `["event",arg,…]` (trusted: the caller encoded it).
    pub fn new(json: Bytes) -> Payload {
        Payload {
            json,
            attachments: Arc::from(Vec::new()),
        }
    }

    /// Encodes values; binary values (see [`binary`]) become attachments.
    pub fn from_values(values: &[Value]) -> Payload {
        let mut array = Value::Array(values.to_vec());
        let mut attachments = Vec::new();
        binary::deconstruct(&mut array, &mut attachments);
        Payload {
            json: Bytes::from(array.to_string()),
            attachments: Arc::from(attachments),
        }
    }

    /// The JSON array text (with placeholders when there are attachments).
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The binary attachments, in placeholder order.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }
}

/// Something the application must know or decide.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A client asks to join a namespace; answer with [`Server::accept`] or [`Server::reject`].
    ConnectRequest {
        /// The socket it would become.
        socket: SocketId,
        /// The namespace, query stripped (`/chat`).
        namespace: String,
        /// v5: the CONNECT auth object; v4: the query carried in the namespace, if any.
        auth: Option<Map<String, Value>>,
        /// The Engine.IO handshake request.
        handshake: Arc<eio::Handshake>,
        /// Protocol revision of the client.
        revision: Revision,
    },
    /// The socket's CONNECT reply is on the wire.
    Connected {
        /// The socket.
        socket: SocketId,
    },
    /// The client emitted an event (`args[0]` is its name) and maybe asked for an ack.
    ClientEvent {
        /// The socket.
        socket: SocketId,
        /// `["event", arg, …]`; binary attachments appear as binary values.
        args: Vec<Value>,
        /// The ack id to answer with [`Server::ack`], if the client wants one.
        ack: Option<u64>,
    },
    /// The client answered an [`Server::emit_with_ack`].
    Ack {
        /// The socket.
        socket: SocketId,
        /// The id returned by `emit_with_ack`.
        id: u64,
        /// The ack's arguments.
        args: Vec<Value>,
    },
    /// The socket is gone: once per accepted socket, and for a pending request whose client
    /// left or whose transport died.
    Disconnected {
        /// The socket.
        socket: SocketId,
        /// Why, in socket.io's words (`client namespace disconnect`, `transport close`, …).
        reason: &'static str,
    },
}
