//! Getting a `/send` to its recipients: broadcast mode (room emit, no storage) and user-room
//! mode (group expansion through the store, one `Enqueue` per user room, a live emit with an ack
//! to every device whose latest socket is connected — here, or on another node through the
//! cluster bus), then the acks that remove what was delivered and the `_resync` of a broken order.
//!
//! The HTTP answer is written once every store command of the send has answered, so every live
//! emit happens before it (behaviour 32 in tests/README.md); a store failure answers 503 so the
//! site can retry. Connected devices the store did not know (it lost them) get the message live
//! instead (`recovery`).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use super::clients::{AckPurpose, HeldDelivery, MAX_HELD_DELIVERIES};
use super::cluster::{
    MAX_REMOTE_TARGETS, RemoteHeader, RemoteMessage, RemoteTarget, UnregisteredRoom,
};
use super::engine::{Gateway, StoreWait};
use super::routes::{send_ok, text_response};
use super::send::SendRequest;
use super::store::{Delivery, DeviceKey, EnqueueStatus, QueuedItem, StoreCommand, StoreResult};
use crate::metrics::DeliveryPath;
use crate::net::{self, AppEvent, BusTarget, HttpResponse, Level, RequestId};
use crate::sio::{Payload, SocketId};

/// The body of the 503 a `/send` gets when the store could not take the message for every
/// recipient. Devices that did get it keep it; a retry may deliver it twice to those.
pub const STORE_UNAVAILABLE: &str =
    "Store unavailable: the message was not stored for every recipient. Retry later.";

/// A user-room `/send` waiting for its store commands.
#[derive(Debug)]
pub(super) struct PendingSend {
    pub(super) site: String,
    pub(super) item: QueuedItem,
    pub(super) payload: Payload,
    resync: bool,
    /// User rooms (and the public channel) the send named itself.
    direct: Vec<String>,
    /// Lowercased group rooms the send named.
    pub(super) groups: Vec<String>,
    /// Store commands not answered yet.
    outstanding: usize,
    /// Some command failed: answer 503.
    failed: bool,
    /// Rooms where other nodes may hold devices the store did not know: published as one
    /// [`RemoteHeader::Unregistered`] when the send is done.
    pub(super) unregistered: Vec<UnregisteredRoom>,
    /// Sockets on other nodes the item was stored for, across all the send's rooms, by node:
    /// published as one [`RemoteHeader::Deliver`] per node, addressed to it, when the send is
    /// done (or when that node's part reaches [`MAX_REMOTE_TARGETS`]), not one per room — a
    /// group send to N users of a node is one bus message, so that node gets N emits in one
    /// pass and its N acks go to the store together, and no other node hears of it.
    remote: BTreeMap<u64, Vec<RemoteTarget>>,
    /// What the send's one `info` line reports when it is done.
    tally: SendTally,
}

/// What one `/send` reached, for its one `info` line ([`Gateway::log_send_done`]).
#[derive(Debug, Clone, Copy)]
struct SendTally {
    /// When the request came in.
    started: Instant,
    /// Distinct rooms it named.
    rooms: usize,
    /// Devices whose queue got the message.
    stored: u64,
    /// Sockets of this node it was emitted to.
    live: u64,
    /// Sockets on other nodes it was handed to.
    remote: u64,
}

impl SendTally {
    fn new(started: Instant, rooms: usize) -> SendTally {
        SendTally {
            started,
            rooms,
            stored: 0,
            live: 0,
            remote: 0,
        }
    }
}

impl Gateway {
    /// A parsed, authorised `/send`.
    pub(super) fn dispatch_send(&mut self, request: RequestId, send: SendRequest, now: Instant) {
        let Some(site) = self.config.site(&send.site).cloned() else {
            // parse_send only returns known sites; answer as for an unknown one regardless.
            self.counters.send_answered(None, 200);
            self.respond(request, send_ok());
            return;
        };
        let unix_ms = self.unix_ms(now);
        let id = self.flake.next_id(unix_ms);
        let rooms = dedup(send.rooms);
        if self.logs(Level::Debug) {
            self.event(
                AppEvent::new(Level::Debug, "New message")
                    .with("site", site.name.clone())
                    .with("requestId", id.to_string())
                    .with("event", send.event.clone())
                    .with("rooms", rooms.join(",")),
            );
        }
        let mut tally = SendTally::new(now, rooms.len());
        let payload = Payload::new(send.payload.clone());
        if !site.user_rooms_enabled() {
            tally.live = self.broadcast_local(&site.name, &rooms, &payload);
            self.log_send_done(&site.name, &send.event, id, tally, 200, now);
            if self.options.clustered && !rooms.is_empty() {
                let header = RemoteHeader::Broadcast {
                    origin: self.options.node_id,
                    site: site.name.clone(),
                    rooms,
                };
                self.publish(BusTarget::AllNodes, header, send.payload);
            }
            self.counters.send_answered(Some(&site.name), 200);
            self.respond(request, send_ok());
            return;
        }

        let (direct, group_rooms): (Vec<String>, Vec<String>) =
            rooms.into_iter().partition(|room| site.is_user_room(room));
        let groups = dedup(group_rooms.iter().map(|room| room.to_lowercase()).collect());
        let pending = PendingSend {
            site: site.name.clone(),
            item: QueuedItem {
                id,
                event: send.event,
                json: send.payload,
            },
            payload,
            resync: send.resync,
            direct,
            groups,
            outstanding: 0,
            failed: false,
            unregistered: Vec::new(),
            remote: BTreeMap::new(),
            tally,
        };
        if pending.groups.is_empty() {
            self.sends.insert(request, pending);
            self.enqueue_all(request, Vec::new(), now);
        } else {
            let command = StoreCommand::ResolveGroups {
                site: pending.site.clone(),
                groups: pending.groups.clone(),
                now_ms: unix_ms,
            };
            self.sends.insert(request, pending);
            self.store(command, StoreWait::Resolve { request }, now);
        }
    }

    /// The store named the users of the send's group rooms.
    pub(super) fn on_groups_resolved(
        &mut self,
        request: RequestId,
        result: StoreResult,
        now: Instant,
    ) {
        match result {
            StoreResult::Users(users) => self.enqueue_all(request, users, now),
            other => {
                self.store_failed_for_send(request, "resolve groups", &other);
                if let Some(pending) = self.sends.get_mut(&request) {
                    pending.failed = true;
                }
                self.finish_send_if_done(request, now);
            }
        }
    }

    /// One `Enqueue` per distinct user room: the named ones, then the group members not named.
    fn enqueue_all(&mut self, request: RequestId, group_members: Vec<String>, now: Instant) {
        let unix_ms = self.unix_ms(now);
        let Some(pending) = self.sends.get_mut(&request) else {
            return;
        };
        let mut commands = Vec::new();
        for room in &pending.direct {
            commands.push((room.clone(), false));
        }
        for room in group_members {
            if !pending.direct.contains(&room) {
                commands.push((room, true));
            }
        }
        pending.outstanding += commands.len();
        let site = pending.site.clone();
        let item = pending.item.clone();
        let groups = pending.groups.clone();
        for (room, via_groups) in commands {
            let command = StoreCommand::Enqueue {
                site: site.clone(),
                room: room.clone(),
                item: item.clone(),
                via_groups: via_groups.then(|| groups.clone()),
                now_ms: unix_ms,
            };
            // The send keeps its groups: the wait only says whether the room came through them.
            let wait = StoreWait::Enqueue {
                request,
                room,
                via_groups,
            };
            self.store(command, wait, now);
        }
        self.finish_send_if_done(request, now);
    }

    /// One room of a send was stored (or not).
    pub(super) fn on_enqueued(
        &mut self,
        request: RequestId,
        room: String,
        via_groups: bool,
        result: StoreResult,
        now: Instant,
    ) {
        let Some(pending) = self.sends.get_mut(&request) else {
            return;
        };
        pending.outstanding = pending.outstanding.saturating_sub(1);
        let site = pending.site.clone();
        let item = pending.item.clone();
        let payload = pending.payload.clone();
        let resync = pending.resync;
        self.serve_devices_the_store_lost(request, &room, via_groups, &result, now);
        match result {
            StoreResult::Enqueued {
                status: EnqueueStatus::Stored,
                devices,
            } => {
                let stored = u64::try_from(devices.len()).unwrap_or(u64::MAX);
                if self.logs(Level::Debug) {
                    self.event(
                        AppEvent::new(Level::Debug, "Message stored")
                            .with("site", site.clone())
                            .with("room", room.clone())
                            .with("event", item.event.clone())
                            .with("dataId", item.id.to_string())
                            .with("devices", stored),
                    );
                }
                let (live, remote) = self.deliver(&site, &room, &item, &payload, resync, devices);
                if let Some(pending) = self.sends.get_mut(&request) {
                    pending.tally.stored += stored;
                    pending.tally.live += live;
                    pending.tally.remote += u64::try_from(remote.len()).unwrap_or(u64::MAX);
                }
                self.add_remote_targets(request, remote);
            }
            StoreResult::Enqueued { status, .. } => {
                if self.logs(Level::Debug) {
                    self.event(
                        AppEvent::new(Level::Debug, "User not connected")
                            .with("site", site.clone())
                            .with("room", room.clone()),
                    );
                }
                if let (EnqueueStatus::UnknownUser | EnqueueStatus::NotInGroups, true) =
                    (status, via_groups)
                {
                    let groups = self
                        .sends
                        .get(&request)
                        .map(|pending| pending.groups.clone())
                        .unwrap_or_default();
                    let command = StoreCommand::ForgetGroupMember {
                        site,
                        room,
                        groups,
                        now_ms: self.unix_ms(now),
                    };
                    self.store(
                        command,
                        StoreWait::Logged {
                            what: "forget group member",
                        },
                        now,
                    );
                }
            }
            other => {
                self.store_failed_for_send(request, "enqueue", &other);
                if let Some(pending) = self.sends.get_mut(&request) {
                    pending.failed = true;
                }
            }
        }
        self.finish_send_if_done(request, now);
    }

    /// Live emits for the devices an item was stored for in one room: ours directly; other
    /// nodes' sockets are returned, to go out with the send's cluster message. Returns how many
    /// went out live here, and the other nodes' targets.
    fn deliver(
        &mut self,
        site: &str,
        room: &str,
        item: &QueuedItem,
        payload: &Payload,
        resync: bool,
        devices: Vec<Delivery>,
    ) -> (u64, Vec<RemoteTarget>) {
        let mut remote = Vec::new();
        let (mut live, mut queued) = (0, 0);
        for delivery in devices {
            let Some(socket) = delivery.socket else {
                queued += 1;
                continue;
            };
            let device = DeviceKey {
                site: site.to_owned(),
                room: room.to_owned(),
                device: delivery.device,
            };
            if socket.node == self.options.node_id {
                // A socket that left meanwhile gets the item with its device's next `_batch`.
                let emitted = self.deliver_local(
                    SocketId(socket.socket),
                    device,
                    item.event.clone(),
                    item.id,
                    payload,
                    Some(resync),
                );
                if emitted {
                    live += 1;
                } else {
                    queued += 1;
                }
            } else {
                remote.push(RemoteTarget {
                    node: socket.node,
                    socket: socket.socket,
                    room: device.room,
                    device: device.device,
                });
            }
        }
        // Without a cluster a foreign node id is a socket of an earlier run of this process:
        // gone, and the item waits for that device's next `_batch`.
        if !self.options.clustered {
            queued += u64::try_from(remote.len()).unwrap_or(u64::MAX);
            remote.clear();
        }
        let remote_count = u64::try_from(remote.len()).unwrap_or(u64::MAX);
        if let Some(counters) = self.counters.site(site) {
            counters.delivered(DeliveryPath::Live, live);
            counters.delivered(DeliveryPath::Queued, queued);
            counters.delivered(DeliveryPath::Remote, remote_count);
        }
        (live, remote)
    }

    /// Collects a room's remote targets into the send's cluster message for their node,
    /// publishing a node's message at once when it is full.
    fn add_remote_targets(&mut self, request: RequestId, targets: Vec<RemoteTarget>) {
        let Some(pending) = self.sends.get_mut(&request) else {
            return;
        };
        let mut full = Vec::new();
        for target in targets {
            let node = target.node;
            let part = pending.remote.entry(node).or_default();
            part.push(target);
            if part.len() >= MAX_REMOTE_TARGETS {
                full.push((node, std::mem::take(part)));
            }
        }
        for (node, targets) in full {
            self.publish_deliver(request, node, targets);
        }
    }

    /// One [`RemoteHeader::Deliver`] of the send's item to `targets`, all on `node`.
    fn publish_deliver(&mut self, request: RequestId, node: u64, targets: Vec<RemoteTarget>) {
        let Some(pending) = self.sends.get(&request) else {
            return;
        };
        if targets.is_empty() {
            return;
        }
        let header = RemoteHeader::Deliver {
            origin: self.options.node_id,
            site: pending.site.clone(),
            event: pending.item.event.clone(),
            id: pending.item.id,
            resync: pending.resync,
            targets,
        };
        let payload = pending.item.json.clone();
        self.publish(BusTarget::Node(node), header, payload);
    }

    /// Emits item `id` to one of this node's sockets with an ack, if it is still there; holds
    /// it while the socket registers or the device drains its backlog
    /// ([`super::clients::HeldDelivery`]). True when it was emitted or held (it goes out with
    /// the backlog), false when the socket is gone (it stays queued for the next `_batch`).
    /// `stored`: `Some(resync)` when the item is in the device's queue (the ack removes it,
    /// with the head check when `resync`); `None` when the store did not store it for the
    /// device (the ack removes nothing).
    pub(super) fn deliver_local(
        &mut self,
        socket: SocketId,
        device: DeviceKey,
        event: String,
        id: u64,
        payload: &Payload,
        stored: Option<bool>,
    ) -> bool {
        let Some(client) = self.clients.get_mut(socket) else {
            return false;
        };
        if !client.is_admitted() || client.site != device.site {
            return false;
        }
        if client.must_hold(&device) {
            if client.held.len() < MAX_HELD_DELIVERIES {
                client.held.push_back(HeldDelivery {
                    device,
                    event,
                    id,
                    payload: payload.clone(),
                    stored,
                });
                return true;
            }
            // It stays queued; the client gets it in a `_batch` when it reconnects.
            let log_id = client.log_id.clone();
            self.event(
                AppEvent::new(Level::Warn, "Too many deliveries held, closing the session")
                    .with("socketId", log_id)
                    .with("site", device.site)
                    .with("room", device.room)
                    .with("deviceId", device.device),
            );
            self.sio
                .abort_connection(socket, "too many held deliveries");
            return false;
        }
        if !self.sio.is_connected(socket) {
            return false;
        }
        let Some(ack) = self.sio.emit_with_ack(socket, payload) else {
            return false;
        };
        if self.logs(Level::Debug) {
            let log_id = self.clients.log_id(socket);
            self.event(
                AppEvent::new(Level::Debug, "Message sent")
                    .with("site", device.site.clone())
                    .with("room", device.room.clone())
                    .with("deviceId", device.device.clone())
                    .with("socketId", log_id)
                    .with("event", event.clone())
                    .with("dataId", id.to_string())
                    .with("stored", stored.is_some()),
            );
        }
        let purpose = match stored {
            Some(resync) => AckPurpose::Message {
                device,
                event,
                id,
                resync,
            },
            None => AckPurpose::Unstored,
        };
        if let Some(client) = self.clients.get_mut(socket) {
            client.expect_ack(ack, purpose);
        }
        true
    }

    /// Broadcast mode: every admitted socket of each room gets the event, once per room.
    /// Returns how many emits went out.
    fn broadcast_local(&mut self, site: &str, rooms: &[String], payload: &Payload) -> u64 {
        let mut total = 0;
        for room in rooms {
            let sockets: Vec<SocketId> = self.clients.in_room(site, room).collect();
            let reached = u64::try_from(sockets.len()).unwrap_or(u64::MAX);
            self.sio.emit_shared(&sockets, payload);
            if let Some(counters) = self.counters.site(site) {
                counters.delivered(DeliveryPath::Live, reached);
            }
            total += reached;
        }
        total
    }

    /// A client acknowledged one of our emits.
    pub(super) fn on_client_ack(&mut self, socket: SocketId, ack: u64, now: Instant) {
        let Some(purpose) = self
            .clients
            .get_mut(socket)
            .and_then(|client| client.take_ack(ack))
        else {
            return;
        };
        let now_ms = self.unix_ms(now);
        match purpose {
            AckPurpose::Message {
                device,
                event,
                id,
                resync,
            } => {
                if let Some(counters) = self.counters.site(&device.site) {
                    counters.acks += 1;
                }
                let command = StoreCommand::Ack {
                    device: device.clone(),
                    event: event.clone(),
                    id,
                    resync,
                    now_ms,
                };
                let wait = StoreWait::Ack {
                    socket,
                    device,
                    event,
                    id,
                };
                self.store(command, wait, now);
            }
            AckPurpose::Batch {
                device,
                items,
                more: true,
            } => self.request_next_piece(socket, device, items, now),
            AckPurpose::Batch {
                device,
                items,
                more: false,
            } => {
                let command = StoreCommand::AckBatch {
                    device,
                    items,
                    now_ms,
                };
                self.store(command, StoreWait::Logged { what: "batch ack" }, now);
            }
            AckPurpose::Unstored => {}
        }
    }

    /// The store removed an acknowledged item, or found the order broken.
    pub(super) fn on_acked(
        &mut self,
        socket: SocketId,
        device: DeviceKey,
        event: String,
        id: u64,
        result: StoreResult,
    ) {
        let log = |message, level| {
            AppEvent::new(level, message)
                .with("site", device.site.clone())
                .with("room", device.room.clone())
                .with("deviceId", device.device.clone())
                .with("event", event.clone())
                .with("dataId", id.to_string())
        };
        match result {
            StoreResult::Acked { removed } => {
                if self.logs(Level::Debug) {
                    let message = if removed {
                        "Message removed"
                    } else {
                        "Message already removed"
                    };
                    self.event(log(message, Level::Debug));
                }
            }
            StoreResult::Resync => {
                if self.sio.is_connected(socket) {
                    self.sio.emit(socket, &resync_payload());
                    if let Some(counters) = self.counters.site(&device.site) {
                        counters.resyncs += 1;
                    }
                }
                self.event(log("Resync event", Level::Error));
            }
            StoreResult::Failed(reason) => {
                self.event(log("Store command failed", Level::Error).with("reason", reason));
            }
            other => self.event(
                log("Unexpected store result", Level::Error).with("result", format!("{other:?}")),
            ),
        }
    }

    /// A message from another node of the cluster.
    pub(super) fn on_remote_message(&mut self, message: &Bytes, now: Instant) {
        let Some(message) = RemoteMessage::decode(message) else {
            self.counters.remote_malformed += 1;
            self.event(
                AppEvent::new(Level::Warn, "Cluster message dropped").with("reason", "malformed"),
            );
            return;
        };
        if message.header.origin() == self.options.node_id {
            return;
        }
        let payload = Payload::new(message.payload);
        match message.header {
            RemoteHeader::Deliver {
                site,
                event,
                id,
                resync,
                targets,
                ..
            } => {
                let node = self.options.node_id;
                let mut live = 0;
                for target in targets.into_iter().filter(|target| target.node == node) {
                    let device = DeviceKey {
                        site: site.clone(),
                        room: target.room,
                        device: target.device,
                    };
                    // The sender counted it as remote (and the store holds it either way).
                    live += u64::from(self.deliver_local(
                        SocketId(target.socket),
                        device,
                        event.clone(),
                        id,
                        &payload,
                        Some(resync),
                    ));
                }
                if let Some(counters) = self.counters.site(&site) {
                    counters.delivered(DeliveryPath::Live, live);
                }
            }
            RemoteHeader::Broadcast { site, rooms, .. } => {
                self.broadcast_local(&site, &rooms, &payload);
            }
            RemoteHeader::Unregistered {
                site,
                event,
                id,
                groups,
                rooms,
                ..
            } => self.on_remote_unregistered(&site, &event, id, &groups, &rooms, &payload, now),
            RemoteHeader::StoreReset { epoch, .. } => self.on_remote_store_reset(epoch, now),
        }
    }

    pub(super) fn publish(&mut self, to: BusTarget, header: RemoteHeader, payload: Bytes) {
        let message = RemoteMessage { header, payload };
        self.push(net::Output::Publish(to, message.encode()));
    }

    fn store_failed_for_send(
        &mut self,
        request: RequestId,
        what: &'static str,
        result: &StoreResult,
    ) {
        let site = self
            .sends
            .get(&request)
            .map(|pending| pending.site.clone())
            .unwrap_or_default();
        let reason = match result {
            StoreResult::Failed(reason) => reason.clone(),
            other => format!("unexpected result {other:?}"),
        };
        self.event(
            AppEvent::new(Level::Error, "Store command failed")
                .with("command", what)
                .with("site", site)
                .with("reason", reason),
        );
    }

    fn finish_send_if_done(&mut self, request: RequestId, now: Instant) {
        let done = self
            .sends
            .get(&request)
            .is_some_and(|pending| pending.outstanding == 0);
        if !done {
            return;
        }
        // Live deliveries go out before the answer (behaviour 32), remote ones included.
        let remote = self
            .sends
            .get_mut(&request)
            .map(|pending| std::mem::take(&mut pending.remote))
            .unwrap_or_default();
        for (node, targets) in remote {
            self.publish_deliver(request, node, targets);
        }
        let Some(pending) = self.sends.remove(&request) else {
            return;
        };
        if self.options.clustered && !pending.unregistered.is_empty() {
            let header = RemoteHeader::Unregistered {
                origin: self.options.node_id,
                site: pending.site.clone(),
                event: pending.item.event.clone(),
                id: pending.item.id,
                groups: pending.groups.clone(),
                rooms: pending.unregistered,
            };
            self.publish(BusTarget::AllNodes, header, pending.item.json.clone());
        }
        let response = if pending.failed {
            text_response(503, "text/plain; charset=utf-8", STORE_UNAVAILABLE)
        } else {
            send_ok()
        };
        self.counters
            .send_answered(Some(&pending.site), response.status);
        self.log_send_done(
            &pending.site,
            &pending.item.event,
            pending.item.id,
            pending.tally,
            response.status,
            now,
        );
        self.respond(request, response);
    }

    /// The one `info` line of a `/send` (the per-delivery lines are `debug`): what it reached
    /// and how long it took from the request to its last store result.
    fn log_send_done(
        &mut self,
        site: &str,
        event: &str,
        id: u64,
        tally: SendTally,
        status: u16,
        now: Instant,
    ) {
        if !self.logs(Level::Info) {
            return;
        }
        let took = now.saturating_duration_since(tally.started);
        self.event(
            AppEvent::new(Level::Info, "Message dispatched")
                .with("site", site.to_owned())
                .with("event", event.to_owned())
                .with("dataId", id.to_string())
                .with("rooms", u64::try_from(tally.rooms).unwrap_or(u64::MAX))
                .with("stored", tally.stored)
                .with("live", tally.live)
                .with("remote", tally.remote)
                .with("status", u64::from(status))
                .with("durationMs", took),
        );
    }

    pub(super) fn respond(&mut self, request: RequestId, response: HttpResponse) {
        self.push(net::Output::HttpResponse(request, response));
    }
}

/// `["_resync"]`: no arguments, no ack.
fn resync_payload() -> Payload {
    Payload::new(Bytes::from_static(br#"["_resync"]"#))
}

/// Removes repeated strings, keeping the first of each (exact comparison, as the original).
fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}
