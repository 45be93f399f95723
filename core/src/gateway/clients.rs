//! The gateway's view of its sockets: who is authenticating, who is admitted, which rooms and
//! devices each admitted socket holds, what each outstanding ack is for, and the room index that
//! broadcast-mode `/send` uses.
//!
//! Only sockets of site namespaces are tracked here; `/` is admitted without any state.

use std::collections::{BTreeSet, HashMap};

use super::store::{DeviceKey, QueuedItem};
use crate::ids::IdMap;
use crate::sio::{Payload, SocketId};

/// At most this many server acks are remembered per socket. A client that never acknowledges
/// cannot grow memory: past the cap the oldest entry is forgotten, and its message simply stays
/// queued for the next `_batch`.
pub const MAX_PENDING_ACKS: usize = 4096;

/// The credentials a socket presented (handshake query, or the v5 CONNECT auth object).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// `token`, passed to the site's auth and user-update calls.
    pub token: Option<String>,
    /// `deviceId`, `""` when absent.
    pub device: String,
    /// `meta`, passed as `X-META`.
    pub meta: Option<String>,
}

/// What a server ack id of one socket stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckPurpose {
    /// A live delivery of stored item `id` of queue `event` of `device`.
    Message {
        /// The device the item is queued for.
        device: DeviceKey,
        /// The event queue.
        event: String,
        /// The flake id.
        id: u64,
        /// Whether the ack does the head check.
        resync: bool,
    },
    /// A live delivery of a message the store did not store for this socket's device (the
    /// store had lost the device): its ack has nothing to remove.
    Unstored,
    /// A `_batch` piece: its ack removes exactly these items (and, when `more`, asks the
    /// store for the next piece).
    Batch {
        /// The device.
        device: DeviceKey,
        /// `(event, id)` of every item the piece carried.
        items: Vec<(String, u64)>,
        /// The device's backlog goes on after this piece.
        more: bool,
    },
}

/// A live delivery that may not go out yet: its socket is not told it is connected yet, or its
/// device is still draining its backlog (it must follow the backlog on the wire).
#[derive(Debug, Clone)]
pub struct HeldDelivery {
    /// The device the item is queued for.
    pub device: DeviceKey,
    /// The event queue.
    pub event: String,
    /// The flake id.
    pub id: u64,
    /// The encoded event.
    pub payload: Payload,
    /// `Some(resync)` when the item is in the device's queue (its ack removes it, with the
    /// head check when `resync`); `None` when the store did not store it for the device.
    pub stored: Option<bool>,
}

/// At most this many live deliveries are held for one socket while it registers or drains. A
/// socket that exceeds it is closed: its messages stay queued and it gets them on reconnect.
pub const MAX_HELD_DELIVERIES: usize = 4096;

/// Registration of an admitted socket's devices, until every store `Connect` has answered. The
/// client is told it is connected (CONNECT reply, `_settings`) only when all have succeeded.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// `Connect` commands not answered yet.
    pub outstanding: usize,
    /// Some `Connect` failed: the session is closed once all have answered.
    pub failed: bool,
    /// The first `_batch` piece of each registered device, sent after `_settings`, and whether
    /// its backlog goes on.
    pub pieces: Vec<(DeviceKey, Vec<QueuedItem>, bool)>,
}

/// Where a site socket is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the site's auth call (the call's wait, `CallWait::Auth`, names the socket).
    Authenticating,
    /// Admitted: CONNECT answered, rooms joined.
    Admitted,
}

/// One socket of a site namespace.
#[derive(Debug, Clone)]
pub struct Client {
    /// The site (its namespace without the `/`).
    pub site: String,
    /// `"/<site>#<engine sid>"`, the original's socket id, for logs.
    pub log_id: String,
    /// What the socket presented.
    pub credentials: Credentials,
    /// Where it is.
    pub phase: Phase,
    /// Rooms joined, in the auth answer's order, deduplicated.
    pub rooms: Vec<String>,
    /// Devices registered for it (one per user room or public channel it joined).
    pub devices: Vec<DeviceKey>,
    /// While its devices' registration is in flight: what has come back so far. `None` once
    /// the socket has been told it is connected.
    pub registration: Option<Box<Registration>>,
    /// Devices whose backlog is still being delivered in `_batch` pieces.
    pub draining: Vec<DeviceKey>,
    /// Live deliveries waiting for the registration or a drain to finish, in arrival order.
    pub held: std::collections::VecDeque<HeldDelivery>,
    /// Outstanding server acks, ordered by ack id. The Socket.IO layer issues a socket's ack
    /// ids in increasing order and clients mostly answer in that order, so issuing is a push at
    /// the back and answering usually a pop at the front — no hashing per delivery, and the
    /// oldest entry to forget past [`MAX_PENDING_ACKS`] is the first.
    acks: std::collections::VecDeque<(u64, AckPurpose)>,
}

impl Client {
    /// A socket that just asked to join `site`.
    pub fn new(site: String, log_id: String, credentials: Credentials) -> Client {
        Client {
            site,
            log_id,
            credentials,
            phase: Phase::Authenticating,
            rooms: Vec::new(),
            devices: Vec::new(),
            registration: None,
            draining: Vec::new(),
            held: std::collections::VecDeque::new(),
            acks: std::collections::VecDeque::new(),
        }
    }

    /// Whether the socket has been admitted.
    pub fn is_admitted(&self) -> bool {
        self.phase == Phase::Admitted
    }

    /// Whether a live delivery to `device` must wait (see [`HeldDelivery`]).
    pub fn must_hold(&self, device: &DeviceKey) -> bool {
        self.registration.is_some() || self.draining.contains(device)
    }

    /// Remembers what ack `id` is for.
    pub fn expect_ack(&mut self, id: u64, purpose: AckPurpose) {
        if self.acks.len() >= MAX_PENDING_ACKS {
            self.acks.pop_front();
        }
        match self.acks.back() {
            Some((last, _)) if *last >= id => {
                // Out of order (never from the Socket.IO layer): keep the order by id; an id
                // already waiting is replaced, as a map would.
                match self.acks.binary_search_by_key(&id, |(waiting, _)| *waiting) {
                    Ok(at) => self.acks[at].1 = purpose,
                    Err(at) => self.acks.insert(at, (id, purpose)),
                }
            }
            _ => self.acks.push_back((id, purpose)),
        }
    }

    /// Takes what ack `id` was for; `None` when unknown or already answered (each ack counts
    /// once).
    pub fn take_ack(&mut self, id: u64) -> Option<AckPurpose> {
        if self.acks.front().is_some_and(|(first, _)| *first == id) {
            return self.acks.pop_front().map(|(_, purpose)| purpose);
        }
        let at = self
            .acks
            .binary_search_by_key(&id, |(waiting, _)| *waiting)
            .ok()?;
        self.acks.remove(at).map(|(_, purpose)| purpose)
    }
}

/// Every tracked socket plus the broadcast room index.
#[derive(Debug, Default)]
pub struct Clients {
    by_socket: IdMap<SocketId, Client>,
    /// site → room → admitted sockets in it (nested, so a lookup by `&str` allocates nothing).
    /// Ordered sets so a broadcast reaches sockets in a stable order.
    rooms: HashMap<String, HashMap<String, BTreeSet<SocketId>>>,
    admitted: usize,
}

impl Clients {
    /// Starts tracking a socket that asked to join a site.
    pub fn insert(&mut self, socket: SocketId, client: Client) {
        if let Some(previous) = self.by_socket.insert(socket, client) {
            // Socket ids are never reused; keep the index right even so.
            self.unindex(socket, &previous);
        }
    }

    /// The socket's state.
    pub fn get(&self, socket: SocketId) -> Option<&Client> {
        self.by_socket.get(&socket)
    }

    /// The socket's state, mutable.
    pub fn get_mut(&mut self, socket: SocketId) -> Option<&mut Client> {
        self.by_socket.get_mut(&socket)
    }

    /// Marks the socket admitted with these rooms (deduplicated, order kept) and indexes them.
    pub fn admit(&mut self, socket: SocketId, rooms: Vec<String>) {
        let Some(client) = self.by_socket.get_mut(&socket) else {
            return;
        };
        let mut seen = BTreeSet::new();
        client.rooms = rooms
            .into_iter()
            .filter(|room| seen.insert(room.clone()))
            .collect();
        if client.phase != Phase::Admitted {
            client.phase = Phase::Admitted;
            self.admitted += 1;
        }
        let site_rooms = self.rooms.entry(client.site.clone()).or_default();
        for room in &client.rooms {
            site_rooms.entry(room.clone()).or_default().insert(socket);
        }
    }

    /// Stops tracking a socket; returns its state.
    pub fn remove(&mut self, socket: SocketId) -> Option<Client> {
        let client = self.by_socket.remove(&socket)?;
        self.unindex(socket, &client);
        Some(client)
    }

    /// Admitted sockets of `site` in `room`, in socket-id order.
    pub fn in_room<'a>(&'a self, site: &str, room: &str) -> impl Iterator<Item = SocketId> + 'a {
        self.rooms
            .get(site)
            .and_then(|rooms| rooms.get(room))
            .into_iter()
            .flat_map(|sockets| sockets.iter().copied())
    }

    /// Every device of every admitted socket, with its socket, in socket-id order.
    pub fn admitted_devices(&self) -> Vec<(SocketId, DeviceKey)> {
        let mut devices: Vec<(SocketId, DeviceKey)> = self
            .by_socket
            .iter()
            .filter(|(_, client)| client.is_admitted())
            .flat_map(|(socket, client)| {
                client
                    .devices
                    .iter()
                    .map(move |device| (*socket, device.clone()))
            })
            .collect();
        devices.sort();
        devices
    }

    /// The socket's id for logs (`"/<site>#<engine sid>"`), empty when untracked.
    pub fn log_id(&self, socket: SocketId) -> String {
        self.by_socket
            .get(&socket)
            .map(|client| client.log_id.clone())
            .unwrap_or_default()
    }

    /// Every admitted socket (for metrics; not for hot paths).
    pub fn admitted(&self) -> impl Iterator<Item = (SocketId, &Client)> + '_ {
        self.by_socket
            .iter()
            .filter(|(_, client)| client.is_admitted())
            .map(|(socket, client)| (*socket, client))
    }

    /// How many sockets are admitted.
    pub fn admitted_count(&self) -> usize {
        self.admitted
    }

    fn unindex(&mut self, socket: SocketId, client: &Client) {
        if client.phase != Phase::Admitted {
            return;
        }
        self.admitted -= 1;
        let Some(site_rooms) = self.rooms.get_mut(&client.site) else {
            return;
        };
        for room in &client.rooms {
            if let Some(sockets) = site_rooms.get_mut(room) {
                sockets.remove(&socket);
                if sockets.is_empty() {
                    site_rooms.remove(room);
                }
            }
        }
        if site_rooms.is_empty() {
            self.rooms.remove(&client.site);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64) -> AckPurpose {
        AckPurpose::Message {
            device: DeviceKey {
                site: "s".to_owned(),
                room: "user_1".to_owned(),
                device: "d".to_owned(),
            },
            event: "e".to_owned(),
            id,
            resync: false,
        }
    }

    fn client() -> Client {
        Client::new("s".to_owned(), "/s#x".to_owned(), Credentials::default())
    }

    #[test]
    fn acks_are_taken_once_in_any_order() {
        let mut client = client();
        for id in 0..5 {
            client.expect_ack(id, message(id));
        }
        assert_eq!(client.take_ack(2), Some(message(2)));
        assert_eq!(client.take_ack(2), None);
        assert_eq!(client.take_ack(0), Some(message(0)));
        assert_eq!(client.take_ack(9), None);
        // Issued out of order (the Socket.IO layer never does): still found, still once.
        client.expect_ack(1, AckPurpose::Unstored);
        assert_eq!(client.take_ack(1), Some(AckPurpose::Unstored));
        assert_eq!(client.take_ack(4), Some(message(4)));
        assert_eq!(client.take_ack(3), Some(message(3)));
        assert_eq!(client.take_ack(3), None);
    }

    #[test]
    fn the_oldest_ack_is_forgotten_past_the_cap() {
        let mut client = client();
        let total = u64::try_from(MAX_PENDING_ACKS).expect("small") + 2;
        for id in 0..total {
            client.expect_ack(id, AckPurpose::Unstored);
        }
        assert_eq!(client.take_ack(0), None);
        assert_eq!(client.take_ack(1), None);
        assert_eq!(client.take_ack(2), Some(AckPurpose::Unstored));
        assert_eq!(client.take_ack(total - 1), Some(AckPurpose::Unstored));
    }
}
