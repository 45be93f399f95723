//! Messages between Courier nodes that share one Redis (README Differences #12).
//!
//! A node that takes a `/send` stores the message (the queue and the device registry are shared
//! in the store) and emits to the sockets it holds itself; whatever must reach sockets held by
//! other nodes goes out as one [`RemoteMessage`] per `/send` on the cluster bus
//! ([`crate::net::Output::Publish`]) — one for all the send's rooms, published when the send's
//! last room is stored (split every [`MAX_REMOTE_TARGETS`] targets). One message per room
//! would cost a publish and a pub/sub delivery per recipient in Redis, a decode and a wakeup
//! per recipient on the receiving node, and would scatter that node's acks over many store
//! round trips instead of batching them as a local fan-out does. Every node receives every message and acts on the part
//! that names it.
//!
//! When the store has lost its data (see [`super::store::StoreCommand::CheckEpoch`]), two more
//! messages keep connected devices served until they are registered again:
//! [`RemoteHeader::Unregistered`] carries a message to the sockets of devices the store did not
//! know, and [`RemoteHeader::StoreReset`] tells every node at once that the epoch changed.
//!
//! Wire form: one line of JSON (the header), `\n`, then the event payload — the compact JSON
//! array `[event, ...args]` exactly as it is emitted — unescaped, so no node re-encodes it.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::store::SocketRef;

/// The most targets one [`RemoteHeader::Deliver`] carries (about 100 bytes each): a send
/// publishes one message for all its rooms, split at this size so a bus message stays far
/// below Redis's pub/sub output-buffer limits however large the send.
pub const MAX_REMOTE_TARGETS: usize = 2048;

/// A socket on some node that should receive a stored message live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTarget {
    /// Node id of the socket's node.
    pub node: u64,
    /// Socket id on that node.
    pub socket: u64,
    /// The user room (or public channel) the message was stored under.
    pub room: String,
    /// The device it was stored for.
    pub device: String,
}

impl RemoteTarget {
    /// The socket this target names.
    pub fn socket_ref(&self) -> SocketRef {
        SocketRef {
            node: self.node,
            socket: self.socket,
        }
    }
}

/// A user room of a `/send` whose connected devices the store may not know (see
/// [`RemoteHeader::Unregistered`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisteredRoom {
    /// The user room (or public channel).
    pub room: String,
    /// The room was reached through the send's group rooms, not named by it: only sockets in
    /// one of those groups get the message.
    pub via_groups: bool,
    /// Device ids the store stored the message for, sorted (they get it through the queue, as
    /// usual).
    pub known: Vec<String>,
}

/// The header of a cluster message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemoteHeader {
    /// User-room mode: emit the stored message (flake `id`, queue `event`) with an ack to each
    /// target held by the receiving node; the ack removes it from the store (with the head
    /// check when `resync`).
    Deliver {
        /// Node that published it (it ignores its own messages).
        origin: u64,
        /// Site name.
        site: String,
        /// Event name, the queue the item is in.
        event: String,
        /// Flake id of the stored item.
        id: u64,
        /// Whether the ack does the resync head check.
        resync: bool,
        /// Sockets on other nodes.
        targets: Vec<RemoteTarget>,
    },
    /// Broadcast mode: emit to every socket of these rooms the receiving node holds, no ack.
    Broadcast {
        /// Node that published it.
        origin: u64,
        /// Site name.
        site: String,
        /// Room names, exact and deduplicated.
        rooms: Vec<String>,
    },
    /// User-room mode, after the store lost data: emit message `id` live (its ack removes
    /// nothing) to every socket the receiving node holds in one of `rooms` whose device is not
    /// among the room's `known` devices, and register those devices in the store again.
    Unregistered {
        /// Node that published it.
        origin: u64,
        /// Site name.
        site: String,
        /// Event name.
        event: String,
        /// Flake id of the message.
        id: u64,
        /// Lowercased group rooms the send named (for rooms reached through them).
        groups: Vec<String>,
        /// The rooms to serve.
        rooms: Vec<UnregisteredRoom>,
    },
    /// The store's epoch changed to `epoch`: it lost its data; register every connected device
    /// again.
    StoreReset {
        /// Node that noticed first.
        origin: u64,
        /// The new epoch.
        epoch: u64,
    },
}

impl RemoteHeader {
    /// The node that published the message.
    pub fn origin(&self) -> u64 {
        match self {
            RemoteHeader::Deliver { origin, .. }
            | RemoteHeader::Broadcast { origin, .. }
            | RemoteHeader::Unregistered { origin, .. }
            | RemoteHeader::StoreReset { origin, .. } => *origin,
        }
    }
}

/// A whole cluster message: header plus the shared event payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMessage {
    /// What to do.
    pub header: RemoteHeader,
    /// The compact JSON array `[event, ...args]`.
    pub payload: Bytes,
}

impl RemoteMessage {
    /// Encodes for [`crate::net::Output::Publish`].
    pub fn encode(&self) -> Bytes {
        // Serialising plain strings and numbers cannot fail.
        let header = serde_json::to_vec(&self.header).unwrap_or_default();
        let mut out = BytesMut::with_capacity(header.len() + 1 + self.payload.len());
        out.put_slice(&header);
        out.put_u8(b'\n');
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// The nodes that act on an encoded message: `Some` (sorted, deduplicated) for a
    /// [`RemoteHeader::Deliver`], which only the nodes of its targets act on; `None` when every
    /// node must see it (the other kinds, and anything that does not decode — its receivers
    /// count it as malformed). Lets a process that runs several gateways hand a message only to
    /// those it names, and skip the bus when they all live in the process.
    pub fn addressed_nodes(message: &[u8]) -> Option<Vec<u64>> {
        let newline = message.iter().position(|&b| b == b'\n')?;
        match serde_json::from_slice(&message[..newline]).ok()? {
            RemoteHeader::Deliver { targets, .. } => {
                let mut nodes: Vec<u64> = targets.iter().map(|target| target.node).collect();
                nodes.sort_unstable();
                nodes.dedup();
                Some(nodes)
            }
            _ => None,
        }
    }

    /// Decodes a message from the bus; `None` for anything malformed (another version of
    /// Courier, or foreign traffic on the channel), which the gateway logs and drops.
    pub fn decode(message: &Bytes) -> Option<RemoteMessage> {
        let newline = message.iter().position(|&b| b == b'\n')?;
        let header = serde_json::from_slice(&message[..newline]).ok()?;
        Some(RemoteMessage {
            header,
            payload: message.slice(newline + 1..),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_the_payload_bytes() {
        let message = RemoteMessage {
            header: RemoteHeader::Deliver {
                origin: 7,
                site: "goodcity".into(),
                event: "update_store".into(),
                id: 7_530_115_940_332_077_057,
                resync: true,
                targets: vec![RemoteTarget {
                    node: 9,
                    socket: 3,
                    room: "user_3".into(),
                    device: "d:1".into(),
                }],
            },
            payload: Bytes::from_static(b"[\"update_store\",\"user\",{\"id\":1}]"),
        };
        let wire = message.encode();
        assert!(wire.ends_with(b"\n[\"update_store\",\"user\",{\"id\":1}]"));
        assert_eq!(RemoteMessage::decode(&wire), Some(message));
        assert_eq!(RemoteMessage::addressed_nodes(&wire), Some(vec![9]));
    }

    #[test]
    fn only_a_delivery_names_its_nodes() {
        let target = |node| RemoteTarget {
            node,
            socket: 1,
            room: "user_1".into(),
            device: "d".into(),
        };
        let deliver = RemoteMessage {
            header: RemoteHeader::Deliver {
                origin: 1,
                site: "s".into(),
                event: "e".into(),
                id: 5,
                resync: false,
                targets: vec![target(8), target(3), target(8)],
            },
            payload: Bytes::from_static(b"[\"e\"]"),
        };
        assert_eq!(
            RemoteMessage::addressed_nodes(&deliver.encode()),
            Some(vec![3, 8])
        );
        let reset = RemoteMessage {
            header: RemoteHeader::StoreReset {
                origin: 1,
                epoch: 2,
            },
            payload: Bytes::new(),
        };
        assert_eq!(RemoteMessage::addressed_nodes(&reset.encode()), None);
        assert_eq!(RemoteMessage::addressed_nodes(b"garbage"), None);
    }

    #[test]
    fn rejects_foreign_traffic() {
        assert_eq!(RemoteMessage::decode(&Bytes::from_static(b"hello")), None);
        assert_eq!(
            RemoteMessage::decode(&Bytes::from_static(b"{\"kind\":\"x\"}\n[]")),
            None
        );
        let broadcast = RemoteMessage {
            header: RemoteHeader::Broadcast {
                origin: 1,
                site: "s".into(),
                rooms: vec!["staff".into()],
            },
            payload: Bytes::from_static(b"[\"e\",null]"),
        };
        assert_eq!(
            RemoteMessage::decode(&broadcast.encode()).map(|m| m.header.origin()),
            Some(1)
        );
    }
}
