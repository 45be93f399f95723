//! When the store loses its data under running gateways (Redis restarted without persistence,
//! or a failover to a replica that had not caught up), the devices connected to every node are
//! unknown to it: without this module a `/send` to their users would store nothing and reach
//! nobody. Two checks find out, and the gateway repairs what it holds:
//!
//! - **The epoch.** Every [`super::EPOCH_CHECK_INTERVAL`] (and at start) the gateway asks the
//!   store for its epoch ([`StoreCommand::CheckEpoch`]), a value written once into an empty
//!   store. A different epoch than last time means everything was lost: the gateway registers
//!   every device of its admitted sockets again at once (a `Connect` each) and tells the other
//!   nodes ([`RemoteHeader::StoreReset`]) so they need not wait for their own next check.
//! - **Use.** Every `Enqueue` answer lists the devices the store knows for the room. An admitted
//!   socket of this node in that room whose device is not among them is a device the store lost
//!   (a lagging replica keeps the epoch but loses recent registrations): it gets the message
//!   live at once and its device is registered again. Other nodes do the same for their sockets
//!   when a send found a user unknown ([`RemoteHeader::Unregistered`]).
//!
//! For a short while after an epoch change ([`RECOVERY_WINDOWS`] check intervals, in which
//! every node has noticed) a send also asks the other nodes to serve the devices the store did
//! not know in the rooms where it did store the message, since some of a user's devices may be
//! registered again before the others.
//!
//! A message delivered live this way is not in any queue: its ack removes nothing, and a client
//! that misses it (disconnects before reading it) does not get it in a later `_batch`.

use std::time::{Duration, Instant};

use super::cluster::{RemoteHeader, UnregisteredRoom};
use super::engine::{Gateway, StoreWait};
use super::store::{Delivery, DeviceKey, EnqueueStatus, StoreCommand, StoreResult};
use crate::metrics::DeliveryPath;
use crate::net::{AppEvent, Level, RequestId};
use crate::sio::{Payload, SocketId};

/// How many epoch-check intervals after noticing a loss a send still asks other nodes to serve
/// devices the store did not know: one for every node to notice, one for its `Connect`s.
pub(super) const RECOVERY_WINDOWS: u32 = 2;

/// What the gateway knows of the store's epoch.
#[derive(Debug, Default)]
pub(super) struct EpochWatch {
    /// The epoch seen last; `None` before the first answer.
    known: Option<u64>,
    /// When the next check is due; `None` before the first input.
    due: Option<Instant>,
    /// A check is in flight.
    in_flight: bool,
    /// Until when sends ask other nodes to serve unknown devices of stored rooms too.
    recovering_until: Option<Instant>,
    /// Shutting down: no more checks.
    stopped: bool,
}

/// One message to serve to the sockets of a room whose devices the store did not know.
struct Unregistered<'a> {
    site: &'a str,
    room: &'a str,
    /// The send's lowercased group rooms when the room was reached only through them.
    via_groups: Option<&'a [String]>,
    /// Devices the store stored the message for, sorted.
    known: &'a [String],
    event: &'a str,
    id: u64,
    payload: &'a Payload,
}

impl Gateway {
    /// Makes the first epoch check due at `now` unless one was scheduled already.
    pub(super) fn start_epoch_watch(&mut self, now: Instant) {
        if self.options.epoch_check.is_some() && self.epoch.due.is_none() {
            self.epoch.due = Some(now);
        }
    }

    /// No more epoch checks: the gateway is shutting down and owes the store nothing new.
    pub(super) fn stop_epoch_watch(&mut self) {
        self.epoch.due = None;
        self.epoch.stopped = true;
    }

    /// Emits an epoch check when one is due (called after every input).
    pub(super) fn watch_epoch(&mut self, now: Instant) {
        if self.options.epoch_check.is_none() || self.epoch.in_flight || self.epoch.stopped {
            return;
        }
        let due = *self.epoch.due.get_or_insert(now);
        if due > now {
            return;
        }
        let now_ms = self.unix_ms(now);
        // A flake id: later than every epoch any node wrote before, so never mistaken for one.
        let candidate = self.flake.next_id(now_ms);
        self.epoch.in_flight = true;
        self.store(
            StoreCommand::CheckEpoch { candidate, now_ms },
            StoreWait::Epoch,
            now,
        );
    }

    /// When the gateway wants to be woken for its next epoch check.
    pub(super) fn epoch_deadline(&self) -> Option<Instant> {
        self.options.epoch_check?;
        if self.epoch.in_flight || self.epoch.stopped {
            None
        } else {
            self.epoch.due
        }
    }

    /// Sends in the window after an epoch change publish [`RemoteHeader::Unregistered`] for the
    /// rooms they stored too.
    pub(super) fn recovering(&self, now: Instant) -> bool {
        self.epoch.recovering_until.is_some_and(|until| now < until)
    }

    /// The store answered an epoch check.
    pub(super) fn on_epoch(&mut self, result: StoreResult, now: Instant) {
        self.epoch.in_flight = false;
        let every = self.options.epoch_check.unwrap_or(Duration::ZERO);
        if !self.epoch.stopped {
            self.epoch.due = Some(now + every);
        }
        match result {
            StoreResult::Epoch(epoch) => self.adopt_epoch(epoch, true, now),
            StoreResult::Failed(reason) => self.event(
                AppEvent::new(Level::Warn, "Store command failed")
                    .with("command", "check epoch")
                    .with("reason", reason),
            ),
            other => self.event(
                AppEvent::new(Level::Error, "Unexpected store result")
                    .with("command", "check epoch")
                    .with("result", format!("{other:?}")),
            ),
        }
    }

    /// Another node found the store's epoch changed.
    pub(super) fn on_remote_store_reset(&mut self, epoch: u64, now: Instant) {
        self.adopt_epoch(epoch, false, now);
    }

    /// `epoch` is the store's epoch now; a change means the store lost its data. `announce`:
    /// this node found out itself and tells the others.
    fn adopt_epoch(&mut self, epoch: u64, announce: bool, now: Instant) {
        let previous = self.epoch.known.replace(epoch);
        if previous.is_none_or(|previous| previous == epoch) {
            return;
        }
        let devices = self.clients.admitted_devices();
        self.event(
            AppEvent::new(Level::Warn, "Store lost its data")
                .with("epoch", epoch.to_string())
                .with("devices", u64::try_from(devices.len()).unwrap_or(u64::MAX)),
        );
        if let Some(every) = self.options.epoch_check {
            self.epoch.recovering_until = Some(now + every * RECOVERY_WINDOWS);
        }
        for (socket, device) in devices {
            self.reregister(socket, device, now);
        }
        if announce && self.options.clustered {
            let origin = self.options.node_id;
            self.publish(
                RemoteHeader::StoreReset { origin, epoch },
                Default::default(),
            );
        }
    }

    /// Registers a device of an admitted socket in the store again, as its admission did.
    fn reregister(&mut self, socket: SocketId, device: DeviceKey, now: Instant) {
        let Some(client) = self.clients.get(socket) else {
            return;
        };
        let Some(site) = self.config.site(&device.site) else {
            return;
        };
        let public = site.public_channel.as_deref() == Some(device.room.as_str());
        let groups = (!public).then(|| super::admission::group_rooms(site, &client.rooms));
        let command = StoreCommand::Connect {
            device: device.clone(),
            socket: self.socket_ref(socket),
            groups,
            limits: self.config.batch,
            now_ms: self.unix_ms(now),
        };
        self.store(command, StoreWait::Reregister { socket, device }, now);
    }

    /// The store registered a lost device again. Its `_batch` piece is never sent: after a
    /// real loss the store has nothing queued for the device, and otherwise the device was
    /// registered again twice (a send found it unknown and the epoch check noticed the loss,
    /// in either order, or two sends found it unknown): the later `Connect` finds it connected
    /// through this socket, and its queue holds what the store has routed live to this socket
    /// since the earlier one — sent already and waiting for its ack, acknowledged while the
    /// `Connect` was in flight, or still on its way over the cluster bus. Sending that again
    /// would duplicate it; what is left queued comes in the next connect's `_batch`. When more
    /// than a piece was queued, the store now holds the device as draining (no live delivery)
    /// behind messages this socket has live: the session is closed, and the client's
    /// reconnect reads its backlog from the head of the queue, where only what it has not
    /// acknowledged is left. A device draining its backlog already goes on with its drain.
    pub(super) fn on_reregistered(
        &mut self,
        socket: SocketId,
        device: DeviceKey,
        result: StoreResult,
    ) {
        let log_id = self.clients.log_id(socket);
        let event = match result {
            StoreResult::Connected { more, .. } => {
                let draining = self
                    .clients
                    .get(socket)
                    .is_some_and(|client| client.draining.contains(&device));
                if more && !draining {
                    self.event(
                        AppEvent::new(
                            Level::Warn,
                            "Backlog behind live messages, closing the session",
                        )
                        .with("site", device.site.clone())
                        .with("room", device.room.clone())
                        .with("deviceId", device.device.clone())
                        .with("socketId", log_id.clone()),
                    );
                    self.sio
                        .abort_connection(socket, "registered again behind live messages");
                }
                AppEvent::new(Level::Info, "Device registered again")
            }
            // The next send that finds the device unknown, or the next epoch change, tries again.
            StoreResult::Failed(reason) => AppEvent::new(Level::Error, "Store command failed")
                .with("command", "connect again")
                .with("reason", reason),
            other => AppEvent::new(Level::Error, "Unexpected store result")
                .with("command", "connect again")
                .with("result", format!("{other:?}")),
        };
        self.event(
            event
                .with("site", device.site)
                .with("room", device.room)
                .with("deviceId", device.device)
                .with("socketId", log_id),
        );
    }

    /// After one room of a send was enqueued: this node's sockets of the room whose device the
    /// store neither stored the message for nor reported as not in the send's groups get it
    /// live; other nodes are asked to do the same for an unknown user (and, while recovering,
    /// for every room) through the send's [`RemoteHeader::Unregistered`].
    pub(super) fn serve_devices_the_store_lost(
        &mut self,
        request: RequestId,
        room: &str,
        via_groups: bool,
        result: &StoreResult,
        now: Instant,
    ) {
        let StoreResult::Enqueued {
            status: EnqueueStatus::Stored | EnqueueStatus::UnknownUser,
            devices,
        } = result
        else {
            return;
        };
        let Some(pending) = self.sends.get(&request) else {
            return;
        };
        // The usual case costs no copies: every socket here has a device the store knew, and
        // no other node needs to hear of the room.
        if !devices.is_empty()
            && !self.recovering(now)
            && !self.holds_unknown_device(&pending.site, room, devices)
        {
            return;
        }
        // Sorted already (the store contract); sorting again keeps the lookups right anyway.
        let mut known: Vec<String> = devices.iter().map(|d| d.device.clone()).collect();
        known.sort();
        let (site, item, payload) = (
            pending.site.clone(),
            pending.item.clone(),
            pending.payload.clone(),
        );
        let groups = if via_groups {
            pending.groups.clone()
        } else {
            Vec::new()
        };
        let message = Unregistered {
            site: &site,
            room,
            via_groups: via_groups.then_some(groups.as_slice()),
            known: &known,
            event: &item.event,
            id: item.id,
            payload: &payload,
        };
        self.serve_unregistered(&message, now);
        // Other nodes hear of every unknown user room (offline users: one message per send at
        // most); of stored rooms only while the store is recovering from a loss.
        if (known.is_empty() || self.recovering(now))
            && let Some(pending) = self.sends.get_mut(&request)
        {
            pending.unregistered.push(UnregisteredRoom {
                room: room.to_owned(),
                via_groups,
                known,
            });
        }
    }

    /// Whether an admitted socket of `room` here has a device that is not among `known`.
    fn holds_unknown_device(&self, site: &str, room: &str, known: &[Delivery]) -> bool {
        let node = self.options.node_id;
        self.clients.in_room(site, room).any(|socket| {
            // The usual case, without looking at the socket: the store named it as its device's
            // latest socket, so the device it registered for this room is known.
            let listed = known.iter().any(|k| {
                k.socket
                    .is_some_and(|at| at.node == node && at.socket == socket.0)
            });
            !listed
                && self.clients.get(socket).is_some_and(|client| {
                    client.devices.iter().any(|device| {
                        device.room == room && !known.iter().any(|k| k.device == device.device)
                    })
                })
        })
    }

    /// Delivers a message live to this node's admitted sockets of `message.room` whose device
    /// the store did not know (not among `message.known`), and registers those devices again.
    fn serve_unregistered(&mut self, message: &Unregistered<'_>, now: Instant) {
        let sockets: Vec<SocketId> = self.clients.in_room(message.site, message.room).collect();
        for socket in sockets {
            let Some(client) = self.clients.get(socket) else {
                continue;
            };
            let Some(device) = client
                .devices
                .iter()
                .find(|device| device.room == message.room)
                .cloned()
            else {
                continue;
            };
            if message.known.binary_search(&device.device).is_ok() {
                continue;
            }
            if let Some(groups) = message.via_groups
                && !client
                    .rooms
                    .iter()
                    .any(|room| groups.contains(&room.to_lowercase()))
            {
                continue;
            }
            self.event(
                AppEvent::new(Level::Warn, "Device unknown to the store")
                    .with("site", device.site.clone())
                    .with("room", device.room.clone())
                    .with("deviceId", device.device.clone())
                    .with("dataId", message.id.to_string()),
            );
            let emitted = self.deliver_local(
                socket,
                device.clone(),
                message.event.to_owned(),
                message.id,
                message.payload,
                None,
            );
            if emitted && let Some(counters) = self.counters.site(&device.site) {
                counters.delivered(DeliveryPath::Live, 1);
            }
            self.reregister(socket, device, now);
        }
    }

    /// A send asked every node to serve the devices the store did not know in these rooms.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_remote_unregistered(
        &mut self,
        site: &str,
        event: &str,
        id: u64,
        groups: &[String],
        rooms: &[UnregisteredRoom],
        payload: &Payload,
        now: Instant,
    ) {
        for room in rooms {
            let message = Unregistered {
                site,
                room: &room.room,
                via_groups: room.via_groups.then_some(groups),
                known: &room.known,
                event,
                id,
                payload,
            };
            self.serve_unregistered(&message, now);
        }
    }
}
