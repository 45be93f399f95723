//! The store commands the gateway emits and the results it is handed back.
//!
//! The core decides, a store executes: every command is one atomic decision about one user room
//! (or, for [`StoreCommand::ResolveGroups`] / [`StoreCommand::ForgetGroupMember`], about one
//! site's group index). A Redis store runs each atomically on one hash slot: the commands of one
//! pipeline that touch one shard of users share one script call, executed one after the other
//! (`io/REDIS-LAYOUT.md`); the in-memory store runs it as a plain function. Both must give the
//! same result for the same sequence of commands; the model ([`super::Model`]) defines that
//! result.
//!
//! Time: every command carries the wall clock (`now_ms`, Unix milliseconds) the core computed.
//! Expiry is *logical*: a store decides whether a device has expired from `now_ms` and the
//! timestamps it recorded, never from its own clock, so every store gives the same answer for
//! the same commands (and a property test can move time at will). A device expires when it has
//! been disconnected for longer than the `ttl_ms` given at its disconnect; an expired device, its
//! queue and its registration are treated as absent by every command, exactly as if deleted.
//! Native expiry (Redis `PEXPIREAT`) only reclaims memory and is never set earlier than the
//! logical expiry. `ttl_ms == 0` means "keep until acknowledged, never expire". A device is
//! still alive at exactly `disconnected_at + ttl_ms`. A user room is known while it has at
//! least one alive device; its recorded groups vanish with its last device. Commands arrive
//! with non-decreasing `now_ms`.
//!
//! Order: each event's queue of a device is kept in flake-id order, which is send order
//! (README "Differences from the original", #6). An item usually lands at the tail; one from a
//! node whose clock lags (an older id that arrives after newer ones) is inserted at its place
//! by id, not appended. Reads ([`StoreCommand::Connect`], [`StoreCommand::NextBatch`]) and the
//! resync head check ([`StoreCommand::Ack`]) therefore follow ids, never arrival order.
//!
//! The group index ([`StoreCommand::ResolveGroups`]) is a hint that may name users who have left
//! a group since; [`StoreCommand::Enqueue`] re-checks membership (`via_groups`) on the user's
//! own record, so a stale index entry never delivers a message. Only
//! [`StoreCommand::Connect`] adds to the index and only [`StoreCommand::ForgetGroupMember`]
//! removes from it; expiry leaves it alone (the gateway forgets stale entries when an
//! [`StoreCommand::Enqueue`] reports them).
//!
//! A store can lose everything it held (Redis restarted without persistence, or a failover to a
//! replica that had not caught up) while the gateways that use it keep running. The *epoch*
//! ([`StoreCommand::CheckEpoch`]) lets a gateway notice: it is a value written once into an
//! empty store and kept with the data, so a different epoch than the one a gateway saw before
//! means the data it registered is gone, and the gateway registers its connected devices again.

use bytes::Bytes;

pub use crate::gateway::batch::BatchLimits;

/// One device of one user room of one site: the unit that owns a queue.
///
/// `room` is a user room (starts with the site's `userRoomPrefix`) or the site's public channel;
/// `device` is the client's `deviceId` (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    /// Site name (the namespace without its `/`).
    pub site: String,
    /// The user room or public channel.
    pub room: String,
    /// The device id, `""` when the client sent none.
    pub device: String,
}

/// Where a socket lives: the node (process) that holds it and its id there.
///
/// Recorded as the device's latest socket so that any node can tell whether a live delivery is
/// its own to make. Stored as `"<node>:<socket>"` in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketRef {
    /// Random per-process node id.
    pub node: u64,
    /// The socket's id on that node.
    pub socket: u64,
}

/// One queued message: a flake id and the JSON array `[event, ...args]` sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueuedItem {
    /// Flake id (64-bit, time-ordered); unique per `/send`.
    pub id: u64,
    /// The event name (the first element of `json`), the queue it belongs to.
    pub event: String,
    /// The compact JSON text `[event, ...args]`, shared, never re-encoded.
    pub json: Bytes,
}

/// A device that [`StoreCommand::Enqueue`] stored the message for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// The device id.
    pub device: String,
    /// Its latest socket when the device is connected and live; `None` while it is
    /// disconnected or still draining its backlog.
    pub socket: Option<SocketRef>,
}

/// A command for the store. See the module docs for atomicity and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreCommand {
    /// A socket connected as `device` (auth succeeded and `device.room` qualifies).
    ///
    /// Atomically: record `socket` as the device's latest socket and mark the device connected
    /// (it is never pruned while connected); cancel any expiry of the device and of its queue;
    /// when `groups` is `Some`, replace the user's recorded group rooms (lowercased) with it
    /// (`None` for the public channel, which is not a user); a Redis store also imports the
    /// device's queues from the original's layout the first time it sees the device. An expired
    /// device starts afresh (empty queue; a user with no alive device also loses its groups).
    /// When `groups` is `Some`, the room is added to each group's index (never removed here).
    /// Result: [`StoreResult::Connected`] with the first piece of the device's queues: its
    /// items sorted by id across events (ties, which flake ids never produce, by event name,
    /// then arrival), as many as `limits` admit ([`BatchLimits::admits`]), and whether more
    /// remain.
    ///
    /// When more remain, the device is *draining*: connected, but [`StoreCommand::Enqueue`]
    /// reports it without a socket (no live delivery; the item is only queued, behind the
    /// backlog) until a [`StoreCommand::NextBatch`] reads the last piece. Otherwise it is *live*
    /// at once: every later `Enqueue` names its socket.
    Connect {
        /// The device.
        device: DeviceKey,
        /// The socket that is now its latest.
        socket: SocketRef,
        /// The user's group rooms from this auth, lowercased and deduplicated.
        groups: Option<Vec<String>>,
        /// How large the first piece may be.
        limits: BatchLimits,
        /// Wall clock.
        now_ms: u64,
    },
    /// The client acknowledged a `_batch` piece of a draining device and wants the next one.
    ///
    /// Atomically: remove exactly the `acked` `(event, id)` items, as
    /// [`StoreCommand::AckBatch`] does; then, if the device is connected, `socket` is its latest
    /// socket and it is draining, read the next piece as [`StoreCommand::Connect`] does (from
    /// the head: what the acked pieces carried is gone, so nothing is read twice, and an item a
    /// lagging node inserted before the last piece's ids is read, not skipped) and, when no
    /// more remain after it,
    /// make the device live in the same step. Otherwise (another socket owns the device, it is
    /// gone, or it is already live) read nothing. Result: [`StoreResult::Connected`]
    /// (`items` empty and `more: false` when nothing was read).
    NextBatch {
        /// The device.
        device: DeviceKey,
        /// The socket draining it.
        socket: SocketRef,
        /// What the acknowledged piece carried.
        acked: Vec<(String, u64)>,
        /// How large the next piece may be.
        limits: BatchLimits,
        /// Wall clock.
        now_ms: u64,
    },
    /// Socket `socket` of `device` went away.
    ///
    /// If the device is connected and `socket` is still its latest socket: mark the device
    /// disconnected at `now_ms` and, when `ttl_ms > 0`, let the device and its queue expire
    /// after `now_ms + ttl_ms`. Otherwise (a newer socket owns the device, or it is already
    /// disconnected or gone) change nothing. Result: [`StoreResult::Done`].
    Disconnect {
        /// The device.
        device: DeviceKey,
        /// The socket that went away.
        socket: SocketRef,
        /// Wall clock.
        now_ms: u64,
        /// `device_ttl` in milliseconds; 0 keeps the queue until it is acknowledged.
        ttl_ms: u64,
    },
    /// Which user rooms of `site` are listed in the index of any of these group rooms
    /// (lowercase)? The index may hold stale entries, including users whose devices all
    /// expired (see the module docs). Result: [`StoreResult::Users`], sorted and deduplicated.
    ResolveGroups {
        /// Site name.
        site: String,
        /// Lowercased group room names.
        groups: Vec<String>,
        /// Wall clock.
        now_ms: u64,
    },
    /// Store `item` in queue `item.event`, at its place by id (see the module docs on order),
    /// of every unexpired device of user room `room` (connected, or disconnected within its
    /// ttl); forget expired devices and their queues. No unexpired device left: store nothing, [`EnqueueStatus::UnknownUser`]. When
    /// `via_groups` is `Some`, the room was reached through group expansion only: store nothing
    /// ([`EnqueueStatus::NotInGroups`]) unless the user's recorded groups (from its latest
    /// [`StoreCommand::Connect`] with groups) contain one of them. A device is reported with
    /// its socket only while it is connected and live (not draining). Result:
    /// [`StoreResult::Enqueued`].
    Enqueue {
        /// Site name.
        site: String,
        /// User room or public channel.
        room: String,
        /// The message.
        item: QueuedItem,
        /// `None` when `/send` named the room itself; otherwise the lowercased group rooms of the
        /// `/send` that expanded to it.
        via_groups: Option<Vec<String>>,
        /// Wall clock.
        now_ms: u64,
    },
    /// The client acknowledged item `id` of queue `event` of `device`.
    ///
    /// Without `resync`: remove the first item with that id from that event's queue, wherever
    /// it is ([`StoreResult::Acked`], `removed: false` when absent, the device included). With
    /// `resync`: if it is the head of that event's queue (its smallest id; see the module docs
    /// on order), remove it ([`StoreResult::Acked`] with `removed: true`); otherwise (not
    /// first, or gone, or the device unknown) delete that event's whole queue for that device
    /// and answer [`StoreResult::Resync`]. The device's other queues are untouched.
    Ack {
        /// The device.
        device: DeviceKey,
        /// The event queue.
        event: String,
        /// The flake id acknowledged.
        id: u64,
        /// The `/send` asked for the head check.
        resync: bool,
        /// Wall clock.
        now_ms: u64,
    },
    /// The client acknowledged a `_batch`: remove exactly these `(event, id)` items, wherever
    /// they are; items queued after the batch was read stay. Result: [`StoreResult::Done`].
    AckBatch {
        /// The device.
        device: DeviceKey,
        /// What the batch carried.
        items: Vec<(String, u64)>,
        /// Wall clock.
        now_ms: u64,
    },
    /// A group expansion named `room`, but the user is unknown or no longer in those groups
    /// ([`EnqueueStatus`]): drop it from these groups' indexes. Result: [`StoreResult::Done`].
    ForgetGroupMember {
        /// Site name.
        site: String,
        /// The user room to drop.
        room: String,
        /// Lowercased group rooms to drop it from.
        groups: Vec<String>,
        /// Wall clock.
        now_ms: u64,
    },
    /// The store's epoch: when the store holds none (it is new, or lost everything since one
    /// was written), `candidate` becomes the epoch. Result: [`StoreResult::Epoch`] with the
    /// epoch the store holds now (the one written by whichever gateway asked first).
    CheckEpoch {
        /// The epoch to write into an empty store; a flake id, so never one seen before.
        candidate: u64,
        /// Wall clock.
        now_ms: u64,
    },
}

/// How [`StoreCommand::Enqueue`] went for the user room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnqueueStatus {
    /// The user room is known; the item was stored for each device in `devices` (at least one).
    Stored,
    /// The store knows no unexpired device of this user room; nothing was stored.
    UnknownUser,
    /// Reached through groups the user no longer has; nothing was stored. The gateway drops the
    /// room from those groups' indexes ([`StoreCommand::ForgetGroupMember`]).
    NotInGroups,
}

/// The outcome of a [`StoreCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreResult {
    /// For [`StoreCommand::Connect`] and [`StoreCommand::NextBatch`]: one piece of the device's
    /// queue in id order.
    Connected {
        /// Queued items, oldest first.
        items: Vec<QueuedItem>,
        /// More items remain queued after these: the device is draining.
        more: bool,
    },
    /// For [`StoreCommand::ResolveGroups`].
    Users(Vec<String>),
    /// For [`StoreCommand::Enqueue`].
    Enqueued {
        /// Whether anything was stored, and if not, why.
        status: EnqueueStatus,
        /// The devices the item was stored for, sorted by device id (empty unless `Stored`).
        devices: Vec<Delivery>,
    },
    /// For [`StoreCommand::Ack`]: whether an item was removed.
    Acked {
        /// An item was removed.
        removed: bool,
    },
    /// For [`StoreCommand::Ack`] with resync: the item was not the head; that event's queue for
    /// that device is now empty. The gateway sends `_resync`.
    Resync,
    /// For [`StoreCommand::CheckEpoch`]: the store's epoch.
    Epoch(u64),
    /// For commands with no other result.
    Done,
    /// The store could not run the command (connection lost, script error). Nothing may be
    /// assumed to have happened; the text is for logs.
    Failed(String),
}

/// Something that executes store commands synchronously (the model, the in-memory store, or an
/// async store behind a blocking wrapper in tests). The shared property suite is written
/// against it.
pub trait Store {
    /// Runs one command atomically.
    fn execute(&mut self, command: StoreCommand) -> StoreResult;
}
