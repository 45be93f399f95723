//! A socket's life in a site namespace: CONNECT → auth (or reject with the original's error
//! text) → one store `Connect` per user room / public channel and `last_connected` → once every
//! device is registered, the CONNECT reply and `_settings` → the backlog in `_batch` pieces, one
//! per ack → live; and at the end, one store `Disconnect` per device and `last_disconnected`.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::auth::{MISSING_VALUE, auth_call, auth_outcome, demo_rooms};
use super::batch::batch_payload;
use super::clients::{AckPurpose, Client, Credentials, HeldDelivery, Registration};
use super::config::Site;
use super::engine::{CallWait, Gateway, StoreWait};
use super::store::{DeviceKey, QueuedItem, SocketRef, StoreCommand, StoreResult};
use super::user_update::{LastSeen, user_update_call};
use crate::eio::Handshake;
use crate::metrics::JoinOutcome;
use crate::net::{AppEvent, CallFailure, CallResult, Level};
use crate::sio::{Payload, Revision, SocketId};

/// The connect error for a namespace that is no site's.
pub const INVALID_NAMESPACE: &str = "Invalid namespace";

impl Gateway {
    /// A client asked to join `namespace`.
    pub(super) fn on_connect_request(
        &mut self,
        socket: SocketId,
        namespace: &str,
        auth: Option<&Map<String, Value>>,
        handshake: &Handshake,
        revision: Revision,
        now: Instant,
    ) {
        if namespace == "/" {
            // The original has no middleware on `/`: every engine session is admitted there.
            self.sio.accept(socket);
            return;
        }
        let site_name = namespace.strip_prefix('/').unwrap_or(namespace);
        let Some(site) = self.config.site(site_name).cloned() else {
            self.sio.reject(socket, INVALID_NAMESPACE);
            self.event(
                AppEvent::new(Level::Info, "Invalid namespace")
                    .with("namespace", namespace.to_owned()),
            );
            return;
        };
        // v4 (EIO3) clients: only the handshake query counts, whatever rides on the CONNECT
        // namespace (behaviour 5 in tests/README.md); v5: the CONNECT auth object first.
        let auth = if revision == Revision::V5 { auth } else { None };
        let credentials = credentials(handshake, auth);
        let log_id = format!("{namespace}#{}", self.sio.engine_sid(socket).unwrap_or(""));
        let token = credentials.token.clone();
        let meta = credentials.meta.clone();
        self.clients
            .insert(socket, Client::new(site.name.clone(), log_id, credentials));
        if site.demo {
            let rooms = demo_rooms(token.as_deref().unwrap_or(MISSING_VALUE));
            self.admit(socket, rooms, now);
            return;
        }
        // The original sends the literal text `undefined` for a missing token or meta
        // ([`MISSING_VALUE`]).
        match auth_call(
            &site,
            token.as_deref().unwrap_or(MISSING_VALUE),
            meta.as_deref(),
        ) {
            Ok(call) => {
                self.call(call, CallWait::Auth { socket }, now);
            }
            Err(message) => {
                self.count_join(&site.name, JoinOutcome::AuthRefused);
                self.refuse(socket, &message);
            }
        }
    }

    /// The auth call of `socket` finished (or timed out).
    pub(super) fn on_auth_result(
        &mut self,
        socket: SocketId,
        result: &CallResult,
        took: Duration,
        now: Instant,
    ) {
        let Some(client) = self.clients.get(socket) else {
            // The session closed while auth was in flight: drop the answer, as the original does.
            return;
        };
        let Some(site) = self.config.site(&client.site).cloned() else {
            return;
        };
        if let Some(counters) = self.counters.site(&site.name) {
            counters.auth_duration.observe_duration(took);
        }
        match auth_outcome(&site, result) {
            Ok(rooms) => self.admit(socket, rooms, now),
            Err(message) => {
                let outcome = match result {
                    CallResult::Failed(CallFailure::Timeout) => JoinOutcome::AuthTimeout,
                    CallResult::Failed(_) => JoinOutcome::AuthError,
                    CallResult::Response { status, .. } if *status == 200 || *status == 401 => {
                        JoinOutcome::AuthRefused
                    }
                    CallResult::Response { .. } => JoinOutcome::AuthError,
                };
                self.count_join(&site.name, outcome);
                self.refuse(socket, &message);
            }
        }
    }

    fn count_join(&mut self, site: &str, outcome: JoinOutcome) {
        let index = JoinOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        if let Some(counters) = self.counters.site(site) {
            counters.joins[index] += 1;
        }
    }

    fn refuse(&mut self, socket: SocketId, message: &str) {
        let client = self.clients.remove(socket);
        self.sio.reject(socket, message);
        let mut event =
            AppEvent::new(Level::Error, "Authentication error").with("reason", message.to_owned());
        if let Some(client) = client {
            event = event
                .with("site", client.site)
                .with("socketId", client.log_id)
                .with("deviceId", client.credentials.device);
        }
        self.event(event);
    }

    /// Admits `socket` with the rooms its site's auth gave.
    ///
    /// A socket with devices (user rooms, the public channel) is registered before it is told
    /// it is connected: the CONNECT reply and `_settings` go out only once the store has
    /// answered every `Connect` ([`Gateway::on_device_connected`]), so anything sent to the
    /// device after its client saw `_settings` is queued durably even if this node dies at
    /// once. The CONNECT reply waits too: a client told it is connected would treat events as
    /// deliverable and could not tell a lost registration from a quiet queue.
    fn admit(&mut self, socket: SocketId, rooms: Vec<String>, now: Instant) {
        self.clients.admit(socket, rooms);
        let Some(client) = self.clients.get(socket) else {
            return;
        };
        let Some(site) = self.config.site(&client.site).cloned() else {
            return;
        };
        let rooms = client.rooms.clone();
        let credentials = client.credentials.clone();
        self.count_join(&site.name, JoinOutcome::Admitted);

        let device_rooms: Vec<&String> = if site.user_rooms_enabled() {
            rooms
                .iter()
                .filter(|room| site.is_user_room(room))
                .collect()
        } else {
            Vec::new()
        };
        if device_rooms.is_empty() {
            self.tell_connected(socket);
            return;
        }

        let groups = group_rooms(&site, &rooms);
        let socket_ref = self.socket_ref(socket);
        let unix_ms = self.unix_ms(now);
        let limits = self.config.batch;
        let devices: Vec<DeviceKey> = device_rooms
            .iter()
            .map(|room| DeviceKey {
                site: site.name.clone(),
                room: (*room).clone(),
                device: credentials.device.clone(),
            })
            .collect();
        if let Some(client) = self.clients.get_mut(socket) {
            client.devices = devices.clone();
            client.registration = Some(Box::new(Registration {
                outstanding: devices.len(),
                ..Registration::default()
            }));
        }
        for device in devices {
            let public = site.public_channel.as_deref() == Some(device.room.as_str());
            let command = StoreCommand::Connect {
                device: device.clone(),
                socket: socket_ref,
                groups: (!public).then(|| groups.clone()),
                limits,
                now_ms: unix_ms,
            };
            let room = device.room.clone();
            self.store(command, StoreWait::Connect { socket, device }, now);
            if !public {
                self.update_user(&site.name, &room, &credentials, LastSeen::Connected, now);
            }
        }
    }

    /// Sends the CONNECT reply and `_settings`, and logs the connect.
    fn tell_connected(&mut self, socket: SocketId) {
        let Some(client) = self.clients.get(socket) else {
            return;
        };
        let event = AppEvent::new(Level::Info, "Socket connected")
            .with("site", client.site.clone())
            .with("socketId", client.log_id.clone())
            .with("deviceId", client.credentials.device.clone())
            .with("rooms", client.rooms.join(","));
        self.sio.accept(socket);
        let settings = settings_payload(self.config.device_ttl_s);
        self.sio.emit(socket, &settings);
        self.event(event);
    }

    /// The store answered the `Connect` of one device of `socket`: its first `_batch` piece,
    /// or a failure. When every device has answered, the socket is told it is connected and
    /// gets its pieces — or, if a registration failed, its session is closed so that the client
    /// reconnects and registers again (it must not look connected while the store does not
    /// know it: `/send` would answer "User not connected" and drop its messages).
    pub(super) fn on_device_connected(
        &mut self,
        socket: SocketId,
        device: DeviceKey,
        result: StoreResult,
    ) {
        let outcome = match result {
            StoreResult::Connected { items, more } => Ok((items, more)),
            StoreResult::Failed(reason) => Err(reason),
            other => Err(format!("unexpected result {other:?}")),
        };
        let Some(registration) = self
            .clients
            .get_mut(socket)
            .and_then(|client| client.registration.as_mut())
        else {
            // Gone already: the items stay queued for the next connect.
            return;
        };
        registration.outstanding = registration.outstanding.saturating_sub(1);
        let done = registration.outstanding == 0;
        match outcome {
            Ok((items, more)) => registration.pieces.push((device, items, more)),
            Err(reason) => {
                registration.failed = true;
                self.event(
                    AppEvent::new(Level::Error, "Store command failed")
                        .with("command", "connect")
                        .with("site", device.site)
                        .with("room", device.room)
                        .with("deviceId", device.device)
                        .with("reason", reason),
                );
            }
        }
        if done {
            self.finish_registration(socket);
        }
    }

    fn finish_registration(&mut self, socket: SocketId) {
        let Some(registration) = self
            .clients
            .get_mut(socket)
            .and_then(|client| client.registration.take())
        else {
            return;
        };
        if registration.failed {
            let log_id = self.clients.log_id(socket);
            self.event(
                AppEvent::new(Level::Error, "Registration failed, closing the session")
                    .with("socketId", log_id)
                    .with(
                        "reason",
                        "the store did not register every device; the client reconnects",
                    ),
            );
            self.sio
                .abort_connection(socket, "store registration failed");
            return;
        }
        self.tell_connected(socket);
        for (device, items, more) in registration.pieces {
            if more && let Some(client) = self.clients.get_mut(socket) {
                client.draining.push(device.clone());
            }
            self.send_piece(socket, device, items, more);
        }
        self.release_held(socket);
    }

    /// Sends one `_batch` piece of `device`'s backlog to `socket`, with an ack that removes
    /// exactly what it carried (and, when `more`, fetches the next piece).
    pub(super) fn send_piece(
        &mut self,
        socket: SocketId,
        device: DeviceKey,
        items: Vec<QueuedItem>,
        more: bool,
    ) {
        if items.is_empty() || !self.sio.is_connected(socket) {
            // Gone already: the items stay queued for the next connect.
            return;
        }
        let payload = batch_payload(items.iter().map(|item| item.json.as_ref()));
        let Some(ack) = self.sio.emit_with_ack(socket, &payload) else {
            return;
        };
        let count = items.len();
        if let Some(counters) = self.counters.site(&device.site) {
            counters.batches += 1;
            counters.batch_messages += u64::try_from(count).unwrap_or(u64::MAX);
            counters.batch_size.observe(count as f64);
        }
        let carried = items
            .into_iter()
            .map(|item| (item.event, item.id))
            .collect();
        let log_id = match self.clients.get_mut(socket) {
            Some(client) => {
                client.expect_ack(
                    ack,
                    AckPurpose::Batch {
                        device: device.clone(),
                        items: carried,
                        more,
                    },
                );
                client.log_id.clone()
            }
            None => String::new(),
        };
        self.event(
            AppEvent::new(Level::Info, "Batch event")
                .with("site", device.site)
                .with("room", device.room)
                .with("deviceId", device.device)
                .with("socketId", log_id)
                .with("count", u64::try_from(count).unwrap_or(u64::MAX))
                .with("more", more),
        );
    }

    /// The client acknowledged a `_batch` piece after which its backlog goes on: remove what it
    /// carried and read the next piece, in one store step.
    pub(super) fn request_next_piece(
        &mut self,
        socket: SocketId,
        device: DeviceKey,
        acked: Vec<(String, u64)>,
        now: Instant,
    ) {
        let command = StoreCommand::NextBatch {
            device: device.clone(),
            socket: self.socket_ref(socket),
            acked,
            limits: self.config.batch,
            now_ms: self.unix_ms(now),
        };
        self.store(command, StoreWait::NextBatch { socket, device }, now);
    }

    /// The store answered a `NextBatch`: send the piece; after the last one the device is live
    /// and the deliveries held for it go out, behind the backlog.
    ///
    /// Why every message arrives once and in order across the switch from draining to live:
    /// - while the store marks the device draining, `Enqueue` only queues (no live delivery),
    ///   behind the backlog, so it is read by a later piece — on this node or any other;
    /// - the piece that empties the backlog flips the device to live in the same atomic store
    ///   step that reads it, so every message is either in a piece (queued before the flip) or
    ///   delivered live (queued after), never both;
    /// - a live delivery can reach this node before the result of the flip (results and the
    ///   cluster bus are separate channels); it is held until the last piece has been sent, so
    ///   on the wire it follows the backlog;
    /// - each piece is read from the head of the queue after the previous one was removed by
    ///   its ack, so nothing is read twice and nothing queued in between is skipped.
    pub(super) fn on_next_piece(
        &mut self,
        socket: SocketId,
        device: DeviceKey,
        result: StoreResult,
    ) {
        match result {
            StoreResult::Connected { items, more } => {
                self.send_piece(socket, device.clone(), items, more);
                if !more {
                    if let Some(client) = self.clients.get_mut(socket) {
                        client.draining.retain(|draining| draining != &device);
                    }
                    self.release_held(socket);
                }
            }
            other => {
                let reason = match other {
                    StoreResult::Failed(reason) => reason,
                    other => format!("unexpected result {other:?}"),
                };
                // The drain cannot go on: the client reconnects and starts it again from what
                // is still queued (an unremoved piece comes again: at least once).
                let log_id = self.clients.log_id(socket);
                self.event(
                    AppEvent::new(Level::Error, "Store command failed, closing the session")
                        .with("command", "next batch")
                        .with("site", device.site)
                        .with("room", device.room)
                        .with("deviceId", device.device)
                        .with("socketId", log_id)
                        .with("reason", reason),
                );
                self.sio.abort_connection(socket, "store command failed");
            }
        }
    }

    /// Sends the held live deliveries that may go now, in arrival order.
    pub(super) fn release_held(&mut self, socket: SocketId) {
        let Some(client) = self.clients.get_mut(socket) else {
            return;
        };
        if client.registration.is_some() || client.held.is_empty() {
            return;
        }
        let (ready, waiting): (Vec<HeldDelivery>, Vec<HeldDelivery>) = client
            .held
            .drain(..)
            .partition(|held| !client.draining.contains(&held.device));
        client.held = waiting.into();
        for held in ready {
            self.deliver_local(
                socket,
                held.device,
                held.event,
                held.id,
                &held.payload,
                held.stored,
            );
        }
    }

    /// A socket left (client disconnect, transport close, timeout, shutdown).
    pub(super) fn on_disconnected(&mut self, socket: SocketId, reason: &'static str, now: Instant) {
        let Some(client) = self.clients.remove(socket) else {
            return;
        };
        if !client.is_admitted() {
            return;
        }
        self.event(
            AppEvent::new(Level::Info, "Socket disconnected")
                .with("site", client.site.clone())
                .with("socketId", client.log_id.clone())
                .with("deviceId", client.credentials.device.clone())
                .with("reason", reason),
        );
        let Some(site) = self.config.site(&client.site).cloned() else {
            return;
        };
        let socket_ref = self.socket_ref(socket);
        let unix_ms = self.unix_ms(now);
        let ttl_ms = self.config.device_ttl_ms();
        for device in client.devices {
            let public = site.public_channel.as_deref() == Some(device.room.as_str());
            if !public {
                self.update_user(
                    &site.name,
                    &device.room,
                    &client.credentials,
                    LastSeen::Disconnected,
                    now,
                );
            }
            let command = StoreCommand::Disconnect {
                device,
                socket: socket_ref,
                now_ms: unix_ms,
                ttl_ms,
            };
            self.store(command, StoreWait::Logged { what: "disconnect" }, now);
        }
    }

    /// A client emitted an event. The gateway has no client events: it is ignored and never
    /// acknowledged (README Differences #9), whatever its name.
    pub(super) fn on_client_event(&mut self, socket: SocketId, args: &[Value]) {
        let name = args
            .first()
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let log_id = self.clients.log_id(socket);
        self.event(
            AppEvent::new(Level::Debug, "Client event ignored")
                .with("socketId", log_id)
                .with("event", name),
        );
    }

    /// This node's reference to one of its sockets, as recorded in the store.
    pub(super) fn socket_ref(&self, socket: SocketId) -> SocketRef {
        SocketRef {
            node: self.options.node_id,
            socket: socket.0,
        }
    }

    fn update_user(
        &mut self,
        site_name: &str,
        room: &str,
        credentials: &Credentials,
        seen: LastSeen,
        now: Instant,
    ) {
        let Some(site) = self.config.site(site_name) else {
            return;
        };
        let token = credentials.token.as_deref().unwrap_or(MISSING_VALUE);
        let Some(call) = user_update_call(site, room, token, seen, self.unix_ms(now)) else {
            return;
        };
        let wait = CallWait::UserUpdate {
            site: site_name.to_owned(),
            room: room.to_owned(),
        };
        self.call(call, wait, now);
    }

    /// A user-update PUT finished: only logged (fire-and-forget, no retries, as the original).
    pub(super) fn on_user_updated(&mut self, site: String, room: String, result: &CallResult) {
        let event = match result {
            CallResult::Response { status, .. } if (200..300).contains(status) => {
                AppEvent::new(Level::Info, "User updated")
            }
            CallResult::Response { status, .. } => {
                AppEvent::new(Level::Error, "User update error").with("status", u64::from(*status))
            }
            CallResult::Failed(failure) => AppEvent::new(Level::Error, "User update error")
                .with("reason", format!("{failure:?}")),
        };
        self.event(event.with("site", site).with("room", room));
    }
}

/// `token`, `deviceId` and `meta` from the handshake query; a v5 CONNECT auth object's string
/// values take precedence (kept from the original's contract).
fn credentials(handshake: &Handshake, auth: Option<&Map<String, Value>>) -> Credentials {
    let pick = |name: &str| -> Option<String> {
        auth.and_then(|auth| auth.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| handshake.query(name).map(|value| value.to_string()))
    };
    Credentials {
        token: pick("token"),
        device: pick("deviceId").unwrap_or_default(),
        meta: pick("meta"),
    }
}

/// The group rooms among a socket's `rooms`, lowercased, sorted and deduplicated: recorded on
/// each user's record for `/send` expansion, refreshed by every successful auth (README Differences
/// #4).
pub(super) fn group_rooms(site: &Site, rooms: &[String]) -> Vec<String> {
    let mut groups: Vec<String> = rooms
        .iter()
        .filter(|room| !site.is_user_room(room))
        .map(|room| room.to_lowercase())
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// `["_settings",{"device_ttl":n}]` — always a JSON number (README Differences #7).
pub(super) fn settings_payload(device_ttl_s: u64) -> Payload {
    Payload::new(format!(r#"["_settings",{{"device_ttl":{device_ttl_s}}}]"#).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_is_a_number() {
        assert_eq!(
            &settings_payload(3600).json()[..],
            br#"["_settings",{"device_ttl":3600}]"#
        );
    }
}
