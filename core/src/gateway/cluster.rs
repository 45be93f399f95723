//! Messages between Courier nodes that share one Redis (README Differences #12).
//!
//! A node that takes a `/send` stores the message (the queue and the device registry are shared
//! in the store) and emits to the sockets it holds itself; whatever must reach sockets held by
//! other nodes goes out on the cluster bus ([`crate::net::Output::Publish`]) as one
//! [`RemoteMessage`] per `/send` **per node holding recipients**, addressed to that node
//! ([`BusTarget::Node`]) — one for all the send's rooms, published when the send's last room is
//! stored (split every [`MAX_REMOTE_TARGETS`] targets). One message per room would cost a
//! publish and a pub/sub delivery per recipient in Redis, a decode and a wakeup per recipient on
//! the receiving node, and would scatter that node's acks over many store round trips instead
//! of batching them as a local fan-out does; one message for every node would make each node
//! read every delivery of the cluster.
//!
//! What the publisher cannot address goes to every node ([`BusTarget::AllNodes`]): a
//! broadcast-mode send ([`RemoteHeader::Broadcast`]: rooms are not stored, any node may hold
//! sockets in them), and, when the store has lost its data (see
//! [`super::store::StoreCommand::CheckEpoch`]), the two messages that keep connected devices
//! served until they are registered again: [`RemoteHeader::Unregistered`] carries a message to
//! the sockets of devices the store did not know (so it cannot say where they are), and
//! [`RemoteHeader::StoreReset`] tells every node at once that the epoch changed.
//!
//! Wire form: one line of JSON (the header), `\n`, then the event payload — the compact JSON
//! array `[event, ...args]` exactly as it is emitted — unescaped, so no node re-encodes it.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::net::BusTarget;

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
    /// check when `resync`). Published addressed to the node of its targets, which all name
    /// that node; the receiver still skips targets of other nodes (a publisher of an older
    /// version put every node's targets in one message).
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
        /// Sockets on the receiving node.
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
