//! The Socket.IO server: namespaces over Engine.IO sessions, admission, events and acks, and
//! the per-session / per-socket state it keeps.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{BufMut, Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{Map, Value};

use super::packet::{self, Packet, PacketType};
use super::{Config, Event, Payload, Revision, SocketId, binary};
use crate::eio::{self, Message, SessionId};
use crate::ids::IdMap;
use crate::net::{self, AppEvent, ConnId, HttpRequest, Level, RequestId, WsFrame, earliest};

/// Most unanswered `emit_with_ack`s remembered per socket.
const MAX_AWAITED_ACKS: usize = 4096;

/// Seed offset separating the socket-id RNG from the session-id RNG.
const SOCKET_ID_STREAM: u64 = 0x5153_4f43_4b45_5453;

/// The Socket.IO server of one endpoint. See the [module docs](super).
#[derive(Debug)]
pub struct Server {
    config: Config,
    eio: eio::Server,
    rng: ChaCha20Rng,
    next_socket: u64,
    sessions: IdMap<SessionId, Session>,
    sockets: IdMap<SocketId, Socket>,
    connect_timers: BTreeSet<(Instant, SessionId)>,
    /// Events for the application, oldest first.
    events: VecDeque<Event>,
    /// Log lines of this layer, for the adapter.
    logs: VecDeque<AppEvent>,
}

impl Server {
    /// A server for `config`; every id it makes comes from RNGs seeded with `seed`.
    pub fn new(config: Config, seed: u64) -> Server {
        Server {
            eio: eio::Server::new(config.eio.clone(), seed),
            rng: ChaCha20Rng::seed_from_u64(seed ^ SOCKET_ID_STREAM),
            config,
            next_socket: 1,
            sessions: IdMap::default(),
            sockets: IdMap::default(),
            connect_timers: BTreeSet::new(),
            events: VecDeque::new(),
            logs: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True when the request path is this engine's endpoint (with or without trailing slash).
    pub fn matches_path(&self, path: &str) -> bool {
        self.eio.matches_path(path)
    }

    /// True when `conn` is a WebSocket of this engine.
    pub fn owns_conn(&self, conn: ConnId) -> bool {
        self.eio.owns_conn(conn)
    }

    /// An HTTP request whose path [`Server::matches_path`].
    pub fn handle_http(&mut self, id: RequestId, req: HttpRequest, now: Instant) {
        self.handle_timeout(now);
        self.eio.handle_http(id, req, now);
    }

    /// A request's peer went away.
    pub fn handle_http_aborted(&mut self, id: RequestId, now: Instant) {
        self.handle_timeout(now);
        self.eio.handle_http_aborted(id, now);
    }

    /// A frame on a WebSocket this engine [owns](Server::owns_conn).
    pub fn handle_ws_frame(&mut self, conn: ConnId, frame: WsFrame, now: Instant) {
        self.handle_timeout(now);
        self.eio.handle_ws_frame(conn, frame, now);
    }

    /// A WebSocket this engine owns closed.
    pub fn handle_ws_closed(&mut self, conn: ConnId, now: Instant) {
        self.handle_timeout(now);
        self.eio.handle_ws_closed(conn, now);
    }

    /// Runs every deadline due at `now` (the network inputs above run it first too).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.eio.handle_timeout(now);
        while let Some(&(at, session)) = self.connect_timers.first() {
            if at > now {
                break;
            }
            self.connect_timers.remove(&(at, session));
            let timed_out = self
                .sessions
                .get(&session)
                .is_some_and(|c| c.connect_deadline == Some(at));
            if timed_out {
                self.log(AppEvent::new(Level::Info, "Socket.IO connect timeout"));
                self.eio.close_session(session, "forced close", now);
            }
        }
    }

    /// The next thing for the adapter (this layer's log lines, then Engine.IO's output); `None`
    /// when there is nothing more now.
    pub fn poll_output(&mut self) -> Option<net::Output> {
        match self.logs.pop_front() {
            Some(event) => Some(net::Output::Event(event)),
            None => self.eio.poll_output(),
        }
    }

    /// The next event for the application. Everything Engine.IO reported is taken in first, so
    /// the application reacts to an input only once all of it has been read.
    pub fn poll_event(&mut self) -> Option<Event> {
        while let Some(event) = self.eio.poll_event() {
            self.on_eio_event(event);
        }
        self.events.pop_front()
    }

    /// When [`Server::handle_timeout`] is next due: the earlier of Engine.IO's deadlines and the
    /// first CONNECT deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let connect = self.connect_timers.first().map(|(at, _)| *at);
        earliest(self.eio.poll_timeout(), connect)
    }

    /// Admits a pending socket: sends the CONNECT reply, then reports [`Event::Connected`].
    pub fn accept(&mut self, socket: SocketId) {
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        let admission = s.admission;
        if admission == Admission::Connected {
            return;
        }
        s.admission = Admission::Connected;
        if admission == Admission::Pending {
            let (session, revision) = (s.session, s.revision);
            let data = match revision {
                Revision::V5 => Some(format!("{{\"sid\":\"{}\"}}", s.sid)),
                Revision::V4 => None,
            };
            let header = packet::encode_header(
                PacketType::Connect,
                0,
                &s.namespace,
                None,
                data.is_some(),
                revision,
            );
            let text = header + data.as_deref().unwrap_or("");
            self.eio.send(session, Message::text(text));
        }
        self.events.push_back(Event::Connected { socket });
    }

    /// Refuses a pending socket with `message` (`44/nsp,"…"` in v4, `44/nsp,{"message":"…"}`
    /// in v5). The Engine.IO session stays open.
    pub fn reject(&mut self, socket: SocketId, message: &str) {
        let Some(s) = self.sockets.get(&socket) else {
            return;
        };
        if s.is_connected() {
            return;
        }
        let data = match s.revision {
            Revision::V4 => Value::String(message.to_owned()),
            Revision::V5 => {
                let mut map = Map::new();
                map.insert("message".to_owned(), Value::String(message.to_owned()));
                Value::Object(map)
            }
        };
        let header = packet::encode_header(
            PacketType::ConnectError,
            0,
            &s.namespace,
            None,
            true,
            s.revision,
        );
        let session = s.session;
        self.eio
            .send(session, Message::text(header + &data.to_string()));
        self.remove_socket(socket);
    }

    /// Emits to a connected socket; false if it is not connected.
    pub fn emit(&mut self, socket: SocketId, payload: &Payload) -> bool {
        self.send_payload(socket, PacketType::Event, None, payload)
    }

    /// Emits to every connected socket of `sockets`, encoding the packet once per namespace and
    /// revision (a room's sockets share both) and sharing its bytes; returns how many got it.
    pub fn emit_shared(&mut self, sockets: &[SocketId], payload: &Payload) -> u64 {
        let mut packets: Vec<(Revision, String, Bytes)> = Vec::new();
        let mut sent = 0;
        for &socket in sockets {
            if !payload.attachments().is_empty() {
                sent += u64::from(self.send_payload(socket, PacketType::Event, None, payload));
                continue;
            }
            let Some(s) = self.sockets.get(&socket).filter(|s| s.is_connected()) else {
                continue;
            };
            let cached = packets.iter().find(|(revision, namespace, _)| {
                *revision == s.revision && *namespace == s.namespace
            });
            let packet = match cached {
                Some((_, _, packet)) => packet.clone(),
                None => {
                    let packet =
                        text_packet(PacketType::Event, &s.namespace, None, s.revision, payload);
                    packets.push((s.revision, s.namespace.clone(), packet.clone()));
                    packet
                }
            };
            let session = s.session;
            sent += u64::from(self.eio.send_text_packet(session, packet));
        }
        sent
    }

    /// Emits asking for an ack; the id the [`Event::Ack`] will carry, or `None` if the socket
    /// is not connected.
    pub fn emit_with_ack(&mut self, socket: SocketId, payload: &Payload) -> Option<u64> {
        let s = self.sockets.get_mut(&socket).filter(|s| s.is_connected())?;
        let id = s.next_ack;
        s.next_ack += 1;
        s.awaiting_acks.insert(id);
        if s.awaiting_acks.len() > MAX_AWAITED_ACKS {
            // A client that never acks must not grow memory: the oldest expectation goes, and
            // its ack, should it come after all, is ignored like any unknown id.
            s.awaiting_acks.pop_first();
        }
        self.send_payload(socket, PacketType::Event, Some(id), payload)
            .then_some(id)
    }

    /// Answers a client's ack request `id` with `args`.
    pub fn ack(&mut self, socket: SocketId, id: u64, args: &[Value]) {
        let payload = Payload::from_values(args);
        self.send_payload(socket, PacketType::Ack, Some(id), &payload);
    }

    /// Disconnects a socket from its namespace (`41`); the Engine.IO session stays open.
    pub fn disconnect(&mut self, socket: SocketId) {
        let Some(s) = self.sockets.get(&socket) else {
            return;
        };
        let header = packet::encode_header(
            PacketType::Disconnect,
            0,
            &s.namespace,
            None,
            false,
            s.revision,
        );
        let (session, connected) = (s.session, s.is_connected());
        self.eio.send(session, Message::text(header));
        self.remove_socket(socket);
        if connected {
            self.events.push_back(Event::Disconnected {
                socket,
                reason: "server namespace disconnect",
            });
        }
    }

    /// Closes the socket's whole Engine.IO session (every namespace on it) at `now`.
    pub fn close_connection(&mut self, socket: SocketId, now: Instant) {
        if let Some(session) = self.sockets.get(&socket).map(|s| s.session) {
            self.eio.close_session(session, "forced close", now);
        }
    }

    /// Drops the socket's whole Engine.IO session as a failed transport would: a WebSocket is
    /// closed without the Engine.IO `1`. Clients treat that as a lost connection and reconnect
    /// by themselves (python-socketio does not reconnect after a clean `1`), which is what a
    /// server that cannot serve the session yet wants.
    pub fn abort_connection(&mut self, socket: SocketId, reason: &'static str) {
        if let Some(session) = self.sockets.get(&socket).map(|s| s.session) {
            self.eio.abort_session(session, reason);
        }
    }

    /// Closes every session cleanly at `now` (shutdown).
    pub fn close_all(&mut self, now: Instant) {
        self.eio.close_all(now);
    }

    /// The socket's namespace.
    pub fn namespace(&self, socket: SocketId) -> Option<&str> {
        self.sockets.get(&socket).map(|s| s.namespace.as_str())
    }

    /// The socket's Engine.IO handshake record.
    pub fn handshake(&self, socket: SocketId) -> Option<Arc<eio::Handshake>> {
        let session = self.sockets.get(&socket)?.session;
        self.sessions.get(&session).map(|c| c.handshake.clone())
    }

    /// The socket's protocol revision.
    pub fn revision(&self, socket: SocketId) -> Option<Revision> {
        self.sockets.get(&socket).map(|s| s.revision)
    }

    /// True once accepted and until disconnected.
    pub fn is_connected(&self, socket: SocketId) -> bool {
        self.sockets.get(&socket).is_some_and(Socket::is_connected)
    }

    /// The transport of the socket's session (`true` for WebSocket) and its protocol.
    pub fn transport(&self, socket: SocketId) -> Option<(bool, eio::Protocol)> {
        self.eio.transport(self.sockets.get(&socket)?.session)
    }

    /// The Engine.IO sid of the socket's session.
    pub fn engine_sid(&self, socket: SocketId) -> Option<&str> {
        self.eio.sid(self.sockets.get(&socket)?.session)
    }

    /// The socket's Socket.IO id as the client knows it: the id of the v5 CONNECT reply; in v4
    /// the engine sid for `/` and `/nsp#<engine sid>` otherwise.
    pub fn socket_sid(&self, socket: SocketId) -> Option<String> {
        let s = self.sockets.get(&socket)?;
        match s.revision {
            Revision::V5 => Some(s.sid.clone()),
            Revision::V4 => {
                let engine = self.eio.sid(s.session)?;
                Some(if s.namespace == "/" {
                    engine.to_owned()
                } else {
                    format!("{}#{engine}", s.namespace)
                })
            }
        }
    }

    /// Number of sockets, pending or connected.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// The Engine.IO layer (for inspection).
    pub fn engine(&self) -> &eio::Server {
        &self.eio
    }

    fn log(&mut self, event: AppEvent) {
        self.logs.push_back(event);
    }

    fn on_eio_event(&mut self, event: eio::Event) {
        match event {
            eio::Event::Opened {
                session,
                handshake,
                at,
            } => self.on_open(session, handshake, at),
            eio::Event::Message { session, message } => self.on_message(session, message),
            eio::Event::Closed { session, reason } => {
                let Some(closed) = self.sessions.remove(&session) else {
                    return;
                };
                if let Some(at) = closed.connect_deadline {
                    self.connect_timers.remove(&(at, session));
                }
                let mut sockets: Vec<SocketId> = closed.namespaces.into_values().collect();
                sockets.sort();
                for socket in sockets {
                    self.sockets.remove(&socket);
                    self.events
                        .push_back(Event::Disconnected { socket, reason });
                }
            }
        }
    }

    fn on_open(&mut self, session: SessionId, handshake: Arc<eio::Handshake>, opened: Instant) {
        let revision = Revision::of(handshake.protocol());
        let connect_deadline =
            (revision == Revision::V5).then(|| opened + self.config.connect_timeout);
        if let Some(at) = connect_deadline {
            self.connect_timers.insert((at, session));
        }
        self.sessions.insert(
            session,
            Session {
                revision,
                handshake,
                namespaces: HashMap::new(),
                connect_deadline,
                partial: None,
            },
        );
        if revision == Revision::V4 {
            // socket.io 1.x/2.x servers connect `/` at once and say so right after the open.
            self.eio.send(session, Message::text("0"));
            self.new_socket(session, "/".to_owned(), None, Admission::PendingImplicit);
        }
    }

    fn on_message(&mut self, session: SessionId, message: Message) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let packet = match (message, state.partial.take()) {
            (Message::Binary(bytes), Some(mut partial)) => {
                partial.attachments.push(bytes);
                if partial.attachments.len() < partial.packet.attachments {
                    state.partial = Some(partial);
                    return;
                }
                let mut packet = partial.packet;
                let joined = match &mut packet.data {
                    Some(data) => binary::reconstruct(data, &partial.attachments).is_ok(),
                    None => true,
                };
                if !joined {
                    return self.protocol_error(session, "Socket.IO placeholder out of range");
                }
                packet
            }
            (Message::Binary(_), None) => {
                return self.protocol_error(session, "Socket.IO unexpected binary message");
            }
            (Message::Text(_), Some(_)) => {
                return self.protocol_error(session, "Socket.IO attachments missing");
            }
            (Message::Text(text), None) => {
                let decoded = std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| packet::decode(t, self.config.max_attachments).ok());
                let Some(packet) = decoded else {
                    return self.protocol_error(session, "Socket.IO invalid packet");
                };
                if packet.kind.is_binary() && packet.attachments > 0 {
                    state.partial = Some(PartialPacket {
                        packet,
                        attachments: Vec::new(),
                    });
                    return;
                }
                packet
            }
        };
        self.on_packet(session, packet);
    }

    fn on_packet(&mut self, session: SessionId, packet: Packet) {
        let state = self.sessions.get_mut(&session).expect("caller checked");
        let revision = state.revision;
        let (namespace, query) = match packet.namespace.split_once('?') {
            Some((ns, q)) => (ns.to_owned(), Some(q.to_owned())),
            None => (packet.namespace.clone(), None),
        };
        let existing = state.namespaces.get(&namespace).copied();
        match packet.kind {
            PacketType::Connect => {
                if let Some(at) = state.connect_deadline.take() {
                    self.connect_timers.remove(&(at, session));
                }
                if existing.is_some() {
                    if revision == Revision::V4 {
                        return; // socket.io 2.x ignores a CONNECT for a joined namespace
                    }
                    return self.protocol_error(session, "Socket.IO namespace already joined");
                }
                let auth = match (revision, packet.data, query) {
                    (Revision::V5, Some(Value::Object(map)), _) => Some(map),
                    (Revision::V4, _, Some(query)) => Some(
                        crate::urlencoded::pairs(&query)
                            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                            .collect(),
                    ),
                    _ => None,
                };
                self.new_socket(session, namespace, auth, Admission::Pending);
            }
            PacketType::Disconnect => {
                if let Some(socket) = existing {
                    self.remove_socket(socket);
                    self.events.push_back(Event::Disconnected {
                        socket,
                        reason: "client namespace disconnect",
                    });
                }
            }
            PacketType::Event
            | PacketType::BinaryEvent
            | PacketType::Ack
            | PacketType::BinaryAck => {
                // A packet for a namespace that is not (yet) joined: socket.io 1.x/2.x servers
                // route packets through the namespaces the client has joined and drop the rest
                // (the session stays usable); socket.io 3+ servers close the session.
                let joined = existing.and_then(|socket| {
                    let admission = self.sockets.get(&socket).expect("indexed socket").admission;
                    (admission == Admission::Connected).then_some(socket)
                });
                let Some(socket) = joined else {
                    let message = match existing {
                        None => "Socket.IO packet for unjoined namespace",
                        Some(_) => "Socket.IO packet before connect",
                    };
                    if revision == Revision::V4 {
                        return self.log(AppEvent::new(Level::Debug, message));
                    }
                    return self.protocol_error(session, message);
                };
                let s = self.sockets.get_mut(&socket).expect("indexed socket");
                let args = match packet.data {
                    Some(Value::Array(args)) => args,
                    _ => Vec::new(),
                };
                if matches!(packet.kind, PacketType::Event | PacketType::BinaryEvent) {
                    self.events.push_back(Event::ClientEvent {
                        socket,
                        args,
                        ack: packet.id,
                    });
                } else {
                    match packet.id {
                        Some(id) if s.awaiting_acks.remove(&id) => {
                            self.events.push_back(Event::Ack { socket, id, args });
                        }
                        Some(_) => {
                            self.log(AppEvent::new(Level::Debug, "Socket.IO unknown ack id"))
                        }
                        None => self.protocol_error(session, "Socket.IO ack without id"),
                    }
                }
            }
            PacketType::ConnectError => {
                self.protocol_error(session, "Socket.IO CONNECT_ERROR from client");
            }
        }
    }

    fn new_socket(
        &mut self,
        session: SessionId,
        namespace: String,
        auth: Option<Map<String, Value>>,
        admission: Admission,
    ) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let socket = SocketId(self.next_socket);
        self.next_socket += 1;
        state.namespaces.insert(namespace.clone(), socket);
        let (revision, handshake) = (state.revision, state.handshake.clone());
        let sid = if revision == Revision::V5 {
            let mut bytes = [0u8; 15];
            self.rng.fill_bytes(&mut bytes);
            URL_SAFE_NO_PAD.encode(bytes)
        } else {
            String::new()
        };
        self.sockets.insert(
            socket,
            Socket {
                session,
                namespace: namespace.clone(),
                revision,
                admission,
                sid,
                next_ack: 0,
                awaiting_acks: BTreeSet::new(),
            },
        );
        self.events.push_back(Event::ConnectRequest {
            socket,
            namespace,
            auth,
            handshake,
            revision,
        });
    }

    fn remove_socket(&mut self, socket: SocketId) {
        if let Some(s) = self.sockets.remove(&socket)
            && let Some(state) = self.sessions.get_mut(&s.session)
        {
            state.namespaces.remove(&s.namespace);
        }
    }

    /// A packet broke the protocol: the whole Engine.IO session closes.
    fn protocol_error(&mut self, session: SessionId, message: &'static str) {
        self.log(AppEvent::new(Level::Info, message));
        self.eio.abort_session(session, "parse error");
    }

    fn send_payload(
        &mut self,
        socket: SocketId,
        kind: PacketType,
        id: Option<u64>,
        payload: &Payload,
    ) -> bool {
        let Some(s) = self.sockets.get(&socket).filter(|s| s.is_connected()) else {
            return false;
        };
        let attachments = payload.attachments();
        if attachments.is_empty() {
            // The common case: one buffer, Engine.IO type and all, handed down without copies.
            let packet = text_packet(kind, &s.namespace, id, s.revision, payload);
            let session = s.session;
            return self.eio.send_text_packet(session, packet);
        }
        let kind = match kind {
            PacketType::Event => PacketType::BinaryEvent,
            PacketType::Ack => PacketType::BinaryAck,
            kind => kind,
        };
        let header =
            packet::encode_header(kind, attachments.len(), &s.namespace, id, true, s.revision);
        let mut text = BytesMut::with_capacity(header.len() + payload.json().len());
        text.put_slice(header.as_bytes());
        text.put_slice(payload.json());
        let session = s.session;
        let mut sent = self.eio.send(session, Message::Text(text.freeze()));
        for attachment in attachments {
            sent &= self
                .eio
                .send(session, Message::Binary(Bytes::clone(attachment)));
        }
        sent
    }
}

/// The Engine.IO message packet `4<type>[<namespace>,][<id>]<json>` of an event or ack without
/// attachments, written into one exactly sized buffer.
fn text_packet(
    kind: PacketType,
    namespace: &str,
    id: Option<u64>,
    revision: Revision,
    payload: &Payload,
) -> Bytes {
    // Type digits, separators and a 20-digit id fit in 24 bytes.
    let mut out = BytesMut::with_capacity(24 + namespace.len() + payload.json().len());
    out.put_u8(b'4');
    packet::write_header(&mut out, kind, 0, namespace, id, true, revision);
    out.put_slice(payload.json());
    out.freeze()
}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
struct PartialPacket {
    packet: Packet,
    attachments: Vec<Bytes>,
}

/// What Socket.IO keeps about one Engine.IO session: its namespaces, the CONNECT deadline and
/// a binary packet still waiting for attachments.
#[derive(Debug)]
struct Session {
    revision: Revision,
    handshake: Arc<eio::Handshake>,
    /// Namespace → socket (pending or connected).
    namespaces: HashMap<String, SocketId>,
    /// v5: close the session if no CONNECT arrives by then.
    connect_deadline: Option<Instant>,
    partial: Option<PartialPacket>,
}

/// Where a socket stands with the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Waiting for `accept` / `reject`.
    Pending,
    /// v4's implicit `/`: its `40` is already on the wire, the application has not answered.
    PendingImplicit,
    /// Accepted.
    Connected,
}

/// One namespace socket.
#[derive(Debug)]
struct Socket {
    session: SessionId,
    namespace: String,
    revision: Revision,
    admission: Admission,
    /// v5: the id sent in the CONNECT reply.
    sid: String,
    next_ack: u64,
    /// Ack ids of our `emit_with_ack`s not answered yet.
    awaiting_acks: BTreeSet<u64>,
}

impl Socket {
    fn is_connected(&self) -> bool {
        self.admission == Admission::Connected
    }
}
