//! The Engine.IO endpoint: routes requests and WebSocket frames to sessions, runs heartbeats
//! and upgrades, and reports what happened to the layer above as [`Event`]s.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::http::{self, ErrorCode};
use super::packet::{Message, Packet};
use super::session::{Heartbeat, PollingFormat, Session, Transport};
use super::{Config, Handshake, Protocol};
use crate::ids::IdMap;
use crate::metrics::EngineCounters;
use crate::net::{
    self, AppEvent, ConnId, Headers, HttpRequest, HttpResponse, Level, Method, RequestId, WsFrame,
};

/// The characters of a session id, in base64url order (a session tag is an index into it).
pub(super) const SID_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// How long a due ping waits while a WebSocket probe is under way.
const PING_RETRY_WHILE_UPGRADING: Duration = Duration::from_millis(100);

/// Names one Engine.IO session inside one [`Server`] (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// What happened to a session, for the layer above.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A handshake succeeded; the open packet is on its way.
    Opened {
        /// The new session.
        session: SessionId,
        /// Its handshake request.
        handshake: Arc<Handshake>,
        /// When the handshake was served: the layer above starts its own deadlines from it.
        at: Instant,
    },
    /// The client sent a message packet.
    Message {
        /// The session.
        session: SessionId,
        /// The message.
        message: Message,
    },
    /// The session is gone (reported once, whatever the cause).
    Closed {
        /// The session.
        session: SessionId,
        /// `transport close`, `transport error`, `ping timeout`, `parse error`,
        /// `forced close` or `server shutting down`.
        reason: &'static str,
    },
}

/// Who ends a session, which decides what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closer {
    /// The client sent `1`: a parked GET is released with a noop.
    Client,
    /// The application closed it at this instant: the client gets `1`, delivered by the next
    /// GET if needed (the session waits for that GET until a pong would be due).
    Application(Instant),
    /// A failure (timeout, bad input, lost transport): a parked GET gets `1`, nothing waits.
    Failure,
}

/// All Engine.IO sessions of one endpoint path.
#[derive(Debug)]
pub struct Server {
    pub(super) config: Config,
    pub(super) rng: ChaCha20Rng,
    pub(super) next_session: u64,
    pub(super) sessions: IdMap<SessionId, Session>,
    pub(super) by_sid: HashMap<String, SessionId>,
    pub(super) parked_gets: IdMap<RequestId, SessionId>,
    pub(super) conns: IdMap<ConnId, SessionId>,
    pub(super) timers: BTreeSet<(Instant, SessionId)>,
    /// Polling sessions with buffered packets and, possibly, a parked GET to answer.
    pub(super) dirty: Vec<SessionId>,
    pub(super) io: VecDeque<net::Output>,
    pub(super) events: VecDeque<Event>,
    /// What `/metrics` reports about this endpoint.
    pub(super) counters: EngineCounters,
    /// Handshake budget of `max_handshakes_per_second` (see [`HandshakeBudget`]).
    pub(super) handshake_budget: HandshakeBudget,
    /// Handshakes refused by a limit since the last warning line (one line a second at most,
    /// so a flood of refusals cannot flood the log).
    refused_unlogged: u64,
    last_refusal_log: Option<Instant>,
}

/// A token bucket for handshakes: holds up to one second's worth, refilled continuously.
/// Counted in thousandths of a handshake so the refill needs no floating point.
#[derive(Debug, Clone, Default)]
pub(super) struct HandshakeBudget {
    milli_tokens: u64,
    refilled_at: Option<Instant>,
}

impl HandshakeBudget {
    /// Takes one handshake from a bucket refilled at `per_second`; false when it is empty.
    fn take(&mut self, per_second: u32, now: Instant) -> bool {
        let capacity = u64::from(per_second) * 1000;
        let refill = match self.refilled_at {
            None => capacity,
            Some(at) => {
                let micros = now.saturating_duration_since(at).as_micros();
                u64::try_from(micros.saturating_mul(u128::from(per_second)) / 1000)
                    .unwrap_or(u64::MAX)
            }
        };
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(capacity);
        self.refilled_at = Some(now);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

impl Server {
    /// A server for `config`; session ids come from a ChaCha RNG seeded with `seed`.
    pub fn new(config: Config, seed: u64) -> Server {
        Server {
            config,
            rng: ChaCha20Rng::seed_from_u64(seed),
            next_session: 1,
            sessions: IdMap::default(),
            by_sid: HashMap::new(),
            parked_gets: IdMap::default(),
            conns: IdMap::default(),
            timers: BTreeSet::new(),
            dirty: Vec::new(),
            io: VecDeque::new(),
            events: VecDeque::new(),
            counters: EngineCounters::default(),
            handshake_budget: HandshakeBudget::default(),
            refused_unlogged: 0,
            last_refusal_log: None,
        }
    }

    /// What this endpoint counted (sessions opened and closed, refusals, polling traffic).
    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// The session's transport (`true` for WebSocket) and protocol, while it exists.
    pub fn transport(&self, session: SessionId) -> Option<(bool, Protocol)> {
        self.sessions
            .get(&session)
            .map(|s| (matches!(s.transport, Transport::WebSocket(_)), s.protocol))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True when `path` is this endpoint (with or without the trailing slash).
    pub fn matches_path(&self, path: &str) -> bool {
        super::matches_path(&self.config.path, path)
    }

    /// True when `conn` is a WebSocket of one of this server's sessions.
    pub fn owns_conn(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The session's sid, while it is open.
    pub fn sid(&self, session: SessionId) -> Option<&str> {
        self.sessions.get(&session).map(|s| s.sid.as_str())
    }

    /// The session's handshake record, while it is open.
    pub fn handshake(&self, session: SessionId) -> Option<&Arc<Handshake>> {
        self.sessions.get(&session).map(|s| &s.handshake)
    }

    /// Number of sessions (including ones delivering their final close packet), for metrics.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// An HTTP request for this endpoint.
    pub fn handle_http(&mut self, id: RequestId, req: HttpRequest, now: Instant) {
        self.handle_timeout(now);
        let cors = http::cors_headers(&self.config, &req.headers);
        if req.method == Method::Options {
            let response = http::preflight_response(&self.config, &req.headers);
            self.respond(id, response);
            return;
        }
        let query = req.query.as_str();
        let transport = crate::urlencoded::first(query, "transport");
        let websocket_transport = match transport.as_deref() {
            Some("polling") if self.config.transports.polling => false,
            Some("websocket") if self.config.transports.websocket => true,
            _ => return self.refuse(id, ErrorCode::TransportUnknown, cors),
        };
        let protocol = match crate::urlencoded::first(query, "EIO")
            .as_deref()
            .and_then(Protocol::from_query)
        {
            Some(Protocol::V3) if !self.config.allow_eio3 => None,
            other => other,
        };
        let Some(protocol) = protocol else {
            return self.refuse(id, ErrorCode::UnsupportedProtocolVersion, cors);
        };
        if websocket_transport != req.websocket {
            return self.refuse(id, ErrorCode::BadRequest, cors);
        }
        match crate::urlencoded::first(query, "sid") {
            None => {
                if req.method != Method::Get {
                    return self.refuse(id, ErrorCode::BadHandshakeMethod, cors);
                }
                if let Some(code) = self.over_limit(now) {
                    return self.refuse_over_limit(id, code, cors, now);
                }
                self.open_session(id, &req, protocol, websocket_transport, cors, now);
            }
            Some(sid) => {
                let Some(&session) = self.by_sid.get(sid.as_ref()) else {
                    return self.refuse(id, ErrorCode::UnknownSid, cors);
                };
                if self.sessions[&session].protocol != protocol {
                    return self.refuse(id, ErrorCode::BadRequest, cors);
                }
                if websocket_transport {
                    self.start_upgrade(id, session, now);
                } else if !self.sessions[&session].is_polling() {
                    self.refuse(id, ErrorCode::BadRequest, cors);
                } else {
                    match req.method {
                        Method::Get => self.poll(id, session, cors, now),
                        Method::Post => self.receive_post(id, session, &req, cors, now),
                        _ => self.refuse(id, ErrorCode::BadRequest, cors),
                    }
                }
            }
        }
    }

    /// A parked GET's peer went away. As in engine.io ("poll connection closed prematurely"),
    /// the session ends: the client either left or lost its connection.
    pub fn handle_http_aborted(&mut self, id: RequestId, now: Instant) {
        self.handle_timeout(now);
        if let Some(session) = self.parked_gets.remove(&id)
            && let Some(s) = self.sessions.get_mut(&session)
            && s.pending_get.as_ref().is_some_and(|g| g.request == id)
        {
            s.pending_get = None;
            self.log(Level::Debug, "Engine.IO poll closed prematurely", session);
            self.close(session, "transport error", Closer::Failure);
        }
    }

    /// A frame on one of this server's WebSockets.
    pub fn handle_ws_frame(&mut self, conn: ConnId, frame: WsFrame, now: Instant) {
        self.handle_timeout(now);
        let Some((session, protocol, on_main)) = self.conns.get(&conn).and_then(|session| {
            let s = self.sessions.get(session)?;
            Some((
                *session,
                s.protocol,
                s.transport == Transport::WebSocket(conn),
            ))
        }) else {
            return;
        };
        let frame_len = match &frame {
            WsFrame::Text(b) | WsFrame::Binary(b) => b.len(),
        };
        if frame_len > self.config.max_payload {
            self.log(Level::Info, "Engine.IO frame over maxPayload", session);
            self.io.push_back(net::Output::WsClose(conn, 1009));
            self.conns.remove(&conn);
            if on_main {
                self.close(session, "transport error", Closer::Failure);
            } else {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.upgrade = None;
                }
                self.reschedule(session);
            }
            return;
        }
        let packet = Packet::from_ws_frame(&frame, protocol);
        if on_main {
            match packet {
                Ok(packet) => self.on_packet(session, packet, now),
                Err(_) => {
                    self.log(Level::Info, "Engine.IO invalid frame", session);
                    self.close(session, "parse error", Closer::Failure);
                }
            }
        } else {
            self.on_probe_packet(session, conn, packet.ok(), now);
        }
    }

    /// One of this server's WebSockets closed.
    pub fn handle_ws_closed(&mut self, conn: ConnId, now: Instant) {
        self.handle_timeout(now);
        let Some(session) = self.conns.remove(&conn) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.transport == Transport::WebSocket(conn) {
            self.close(session, "transport close", Closer::Failure);
        } else if s.upgrade.is_some_and(|u| u.conn == conn) {
            s.upgrade = None;
            self.reschedule(session);
        }
    }

    /// Runs every deadline that is due at `now`. The network inputs above run it first too, so a
    /// request arriving after a deadline the adapter has not delivered yet sees its effect.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, session)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, session));
            if let Some(s) = self.sessions.get_mut(&session) {
                s.scheduled = None;
                self.on_deadline(session, now);
            }
        }
    }

    /// Sends a message; false when the session is gone or closing.
    pub fn send(&mut self, session: SessionId, message: Message) -> bool {
        self.send_packet(session, Packet::Message(message))
    }

    /// Sends a text message already in its packet form `4<text>`, as the layer above encodes
    /// it once for many sessions: a WebSocket gets these very bytes as its frame (no copy), a
    /// polling session the text after the `4`. False when the session is gone or closing.
    pub fn send_text_packet(&mut self, session: SessionId, packet: Bytes) -> bool {
        debug_assert_eq!(packet.first(), Some(&b'4'), "a message packet");
        let message = Packet::Message(Message::Text(packet.slice(1..)));
        self.send_encoded(session, message, Some(WsFrame::Text(packet)))
    }

    /// Closes a session from the application side at `now`: the client is sent `1`.
    pub fn close_session(&mut self, session: SessionId, reason: &'static str, now: Instant) {
        if self.is_open(session) {
            self.close(session, reason, Closer::Application(now));
            self.reschedule(session);
        }
    }

    /// Ends a session because its client broke the protocol above Engine.IO: a parked GET gets
    /// `1`, a WebSocket is closed, nothing waits for delivery.
    pub fn abort_session(&mut self, session: SessionId, reason: &'static str) {
        if self.is_open(session) {
            self.close(session, reason, Closer::Failure);
        }
    }

    /// Closes every open session (shutdown), reason `server shutting down`.
    pub fn close_all(&mut self, now: Instant) {
        let mut open: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.closing_deadline.is_none())
            .map(|(id, _)| *id)
            .collect();
        open.sort();
        for session in open {
            self.close_session(session, "server shutting down", now);
        }
    }

    /// The next thing for the adapter, `None` when there is nothing more now. Parked GETs are
    /// answered here, once the queue is empty, so that every packet the inputs so far produced
    /// leaves in one response.
    pub fn poll_output(&mut self) -> Option<net::Output> {
        if self.io.is_empty() {
            self.flush();
        }
        self.io.pop_front()
    }

    /// The next event for the layer above (opened, message, closed).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Server::handle_timeout`] is next due: the earliest deadline of any session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    pub(super) fn is_open(&self, session: SessionId) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|s| s.closing_deadline.is_none())
    }

    pub(super) fn respond(&mut self, id: RequestId, response: HttpResponse) {
        self.io.push_back(net::Output::HttpResponse(id, response));
    }

    pub(super) fn refuse(&mut self, id: RequestId, code: ErrorCode, cors: Headers) {
        self.io.push_back(net::Output::Event(
            AppEvent::new(Level::Debug, "Engine.IO request refused").with("error", code.log_name()),
        ));
        self.respond(id, http::error_response(code, cors));
    }

    /// Which limit a new handshake at `now` is over, if any (`io.maxConnections` first: a
    /// handshake refused for it does not use up the rate budget).
    fn over_limit(&mut self, now: Instant) -> Option<ErrorCode> {
        if let Some(max) = self.config.max_sessions
            && self.sessions.len() >= max
        {
            self.counters.refused_max_connections += 1;
            return Some(ErrorCode::TooManyConnections);
        }
        if let Some(rate) = self.config.max_handshakes_per_second
            && !self.handshake_budget.take(rate, now)
        {
            self.counters.refused_handshake_rate += 1;
            return Some(ErrorCode::TooManyHandshakes);
        }
        None
    }

    /// Answers 503 with the Engine.IO error body, and logs one warning a second at most with
    /// how many were refused since the last one.
    fn refuse_over_limit(&mut self, id: RequestId, code: ErrorCode, cors: Headers, now: Instant) {
        self.refused_unlogged += 1;
        let due = self
            .last_refusal_log
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        if due {
            self.io.push_back(net::Output::Event(
                AppEvent::new(Level::Warn, "Engine.IO handshake refused")
                    .with("reason", code.log_name())
                    .with("refused", self.refused_unlogged)
                    .with(
                        "sessions",
                        u64::try_from(self.sessions.len()).unwrap_or(u64::MAX),
                    ),
            ));
            self.refused_unlogged = 0;
            self.last_refusal_log = Some(now);
        }
        self.respond(id, http::error_response(code, cors));
    }

    /// Answers a polling request with a payload, counting it.
    pub(super) fn respond_payload(
        &mut self,
        id: RequestId,
        body: Bytes,
        kind: http::BodyKind,
        headers: Headers,
    ) {
        self.counters.polling_out_requests += 1;
        self.counters.polling_out_bytes += u64::try_from(body.len()).unwrap_or(u64::MAX);
        self.respond(id, http::payload_response(body, kind, headers));
    }

    pub(super) fn log(&mut self, level: Level, message: &'static str, session: SessionId) {
        let sid = self.sid(session).unwrap_or_default().to_owned();
        self.io.push_back(net::Output::Event(
            AppEvent::new(level, message).with("sid", sid),
        ));
    }

    fn new_sid(&mut self) -> String {
        loop {
            let mut bytes = [0u8; 15];
            self.rng.fill_bytes(&mut bytes);
            let mut sid = URL_SAFE_NO_PAD.encode(bytes);
            if let Some(tag) = self.config.session_tag {
                // The tag replaces 6 of the 120 random bits: 114 remain, still unguessable.
                let mark = SID_ALPHABET[usize::from(tag % super::SESSION_TAGS)];
                sid.replace_range(..1, std::str::from_utf8(&[mark]).unwrap_or("A"));
            }
            if !self.by_sid.contains_key(&sid) {
                return sid;
            }
        }
    }

    fn open_packet(&self, sid: &str, websocket: bool, protocol: Protocol) -> Packet {
        let upgrades =
            if !websocket && self.config.allow_upgrades && self.config.transports.websocket {
                "[\"websocket\"]"
            } else {
                "[]"
            };
        let mut json = format!(
            "{{\"sid\":\"{sid}\",\"upgrades\":{upgrades},\"pingInterval\":{},\"pingTimeout\":{}",
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis()
        );
        // engine.io 1.x (the original) never sent maxPayload to v3 clients.
        if protocol == Protocol::V4 {
            json.push_str(&format!(",\"maxPayload\":{}", self.config.max_payload));
        }
        json.push('}');
        Packet::Open(Bytes::from(json))
    }

    fn open_session(
        &mut self,
        id: RequestId,
        req: &HttpRequest,
        protocol: Protocol,
        websocket: bool,
        cors: Headers,
        now: Instant,
    ) {
        let sid = self.new_sid();
        let session = SessionId(self.next_session);
        self.next_session += 1;
        let handshake = Arc::new(Handshake::new(protocol, &req.query, req.headers.clone()));
        let format = PollingFormat {
            base64: crate::urlencoded::first(&req.query, "b64").is_some_and(|v| !v.is_empty()),
            jsonp: crate::urlencoded::first(&req.query, "j")
                .filter(|j| !j.is_empty() && j.bytes().all(|b| b.is_ascii_digit()))
                .map(|j| j.into_owned()),
        };
        let transport = if websocket {
            Transport::WebSocket(ConnId::from(id))
        } else {
            Transport::Polling
        };
        let open = self.open_packet(&sid, websocket, protocol);
        let s = Session::new(
            sid.clone(),
            handshake.clone(),
            transport,
            format,
            &self.config,
            now,
        );
        if websocket {
            let conn = ConnId::from(id);
            self.io.push_back(net::Output::WsAccept(id));
            self.io
                .push_back(net::Output::WsSend(conn, open.to_ws_frame(protocol)));
            self.conns.insert(conn, session);
        } else {
            let (body, kind) = s.encode_polling(&[open]);
            let mut headers = cors;
            if let Some(cookie) = &self.config.cookie {
                let path = &self.config.cookie_path;
                let http_only = if self.config.cookie_http_only {
                    "; HttpOnly"
                } else {
                    ""
                };
                headers.push(
                    "set-cookie",
                    format!("{cookie}={sid}; Path={path}{http_only}"),
                );
            }
            headers
                .0
                .extend(self.config.handshake_headers.0.iter().cloned());
            self.respond_payload(id, body, kind, headers);
        }
        self.counters.opened += 1;
        self.by_sid.insert(sid, session);
        self.sessions.insert(session, s);
        self.reschedule(session);
        self.events.push_back(Event::Opened {
            session,
            handshake,
            at: now,
        });
    }

    pub(super) fn on_packet(&mut self, session: SessionId, packet: Packet, now: Instant) {
        let config = &self.config;
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.note_client_activity(config, now);
        match (packet, s.protocol) {
            (Packet::Message(message), _) => {
                self.events.push_back(Event::Message { session, message });
            }
            (Packet::Ping(data), Protocol::V3) => {
                self.send_packet(session, Packet::Pong(data));
            }
            (Packet::Pong(_), Protocol::V4) => {
                if let Heartbeat::ServerPings {
                    next_ping,
                    pong_deadline,
                } = &mut s.heartbeat
                    && pong_deadline.is_some()
                {
                    *pong_deadline = None;
                    *next_ping = Some(now + config.ping_interval);
                }
            }
            (Packet::Close, _) => self.close(session, "transport close", Closer::Client),
            (Packet::Ping(_) | Packet::Pong(_), _) => {
                self.log(
                    Level::Info,
                    "Engine.IO invalid heartbeat direction",
                    session,
                );
                self.close(session, "transport error", Closer::Failure);
            }
            (Packet::Open(_) | Packet::Upgrade | Packet::Noop, _) => {
                self.log(Level::Info, "Engine.IO unexpected packet", session);
                self.close(session, "parse error", Closer::Failure);
            }
        }
        self.reschedule(session);
    }

    pub(super) fn send_packet(&mut self, session: SessionId, packet: Packet) -> bool {
        self.send_encoded(session, packet, None)
    }

    /// Sends `packet`; on a WebSocket as `frame` when the caller has it encoded already.
    fn send_encoded(&mut self, session: SessionId, packet: Packet, frame: Option<WsFrame>) -> bool {
        if !self.is_open(session) {
            return false;
        }
        let s = self.sessions.get_mut(&session).expect("open session");
        match s.transport {
            Transport::WebSocket(conn) => {
                let frame = frame.unwrap_or_else(|| packet.to_ws_frame(s.protocol));
                self.io.push_back(net::Output::WsSend(conn, frame));
            }
            Transport::Polling => {
                if s.outbox.len() >= self.config.max_buffered_packets {
                    self.counters.slow_consumers += 1;
                    self.log(Level::Warn, "Engine.IO polling buffer full", session);
                    self.close(session, "transport error", Closer::Failure);
                    return false;
                }
                s.outbox.push_back(packet);
                self.dirty.push(session);
            }
        }
        true
    }

    fn on_deadline(&mut self, session: SessionId, now: Instant) {
        let ping_timeout = self.config.ping_timeout;
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.closing_deadline.is_some_and(|at| at <= now) {
            self.forget(session);
            return;
        }
        if s.noop_deadline.is_some_and(|at| at <= now) {
            self.release_with_noop(session);
        }
        let s = self.sessions.get_mut(&session).expect("checked above");
        if let Some(upgrade) = s.upgrade.filter(|u| u.deadline <= now) {
            s.upgrade = None;
            self.conns.remove(&upgrade.conn);
            self.io.push_back(net::Output::WsClose(upgrade.conn, 1000));
        }
        let s = self.sessions.get_mut(&session).expect("checked above");
        let upgrading = s.upgrade.is_some();
        match &mut s.heartbeat {
            Heartbeat::ServerPings {
                next_ping,
                pong_deadline,
            } => {
                if pong_deadline.is_some_and(|at| at <= now) {
                    self.close(session, "ping timeout", Closer::Failure);
                    return;
                }
                if next_ping.is_some_and(|at| at <= now) && upgrading {
                    // A ping must not land on the polling transport being given up (the
                    // socketioxide #479 stall): retry shortly, the upgrade is nearly done.
                    *next_ping = Some(now + PING_RETRY_WHILE_UPGRADING);
                } else if next_ping.is_some_and(|at| at <= now) {
                    *next_ping = None;
                    *pong_deadline = Some(now + ping_timeout);
                    self.send_packet(session, Packet::Ping(Bytes::new()));
                }
            }
            Heartbeat::ClientPings { silence_deadline } => {
                if *silence_deadline <= now {
                    self.close(session, "ping timeout", Closer::Failure);
                    return;
                }
            }
        }
        self.reschedule(session);
    }

    /// Ends a session: tells the client what `closer` implies, closes its WebSockets, reports
    /// [`Event::Closed`]. An application close over polling with no GET parked keeps the
    /// session (closing) so the next GET can carry the `1`.
    pub(super) fn close(&mut self, session: SessionId, reason: &'static str, closer: Closer) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.closing_deadline.is_some() {
            return;
        }
        let sid = s.sid.clone();
        if let Some(upgrade) = s.upgrade.take() {
            self.conns.remove(&upgrade.conn);
            self.io.push_back(net::Output::WsClose(upgrade.conn, 1000));
        }
        let mut keep = false;
        match s.transport {
            Transport::WebSocket(conn) => {
                if matches!(closer, Closer::Application(_)) {
                    let frame = Packet::Close.to_ws_frame(s.protocol);
                    self.io.push_back(net::Output::WsSend(conn, frame));
                }
                let code = if reason == "parse error" { 1002 } else { 1000 };
                if self.conns.remove(&conn).is_some() {
                    self.io.push_back(net::Output::WsClose(conn, code));
                }
            }
            Transport::Polling => {
                let last = if closer == Closer::Client {
                    Packet::Noop
                } else {
                    Packet::Close
                };
                if let Some(get) = s.pending_get.take() {
                    self.parked_gets.remove(&get.request);
                    s.outbox.push_back(last);
                    let packets: Vec<Packet> = s.outbox.drain(..).collect();
                    let (body, kind) = s.encode_polling(&packets);
                    self.respond_payload(get.request, body, kind, get.cors);
                } else if let Closer::Application(now) = closer {
                    // The client has as long as a pong would take to fetch the `1`.
                    s.outbox.push_back(Packet::Close);
                    s.closing_deadline = Some(now + self.config.ping_timeout);
                    keep = true;
                }
            }
        }
        self.io.push_back(net::Output::Event(
            AppEvent::new(Level::Debug, "Engine.IO session closed")
                .with("sid", sid)
                .with("reason", reason),
        ));
        self.counters.count_close(reason);
        self.events.push_back(Event::Closed { session, reason });
        if !keep {
            self.forget(session);
        } else if let Some(s) = self.sessions.get_mut(&session) {
            // Still reachable by sid until the `1` is fetched, but no longer a WebSocket owner.
            s.upgrade = None;
        }
    }

    /// Drops every trace of a session.
    pub(super) fn forget(&mut self, session: SessionId) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        self.by_sid.remove(&s.sid);
        if let Some(get) = s.pending_get {
            self.parked_gets.remove(&get.request);
        }
        if let Transport::WebSocket(conn) = s.transport {
            self.conns.remove(&conn);
        }
        if let Some(upgrade) = s.upgrade {
            self.conns.remove(&upgrade.conn);
        }
        if let Some(at) = s.scheduled {
            self.timers.remove(&(at, session));
        }
    }

    /// Re-registers the session's earliest deadline in the timer set.
    pub(super) fn reschedule(&mut self, session: SessionId) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let wanted = if s.closing_deadline.is_some() {
            s.closing_deadline
        } else {
            s.deadline()
        };
        if wanted == s.scheduled {
            return;
        }
        if let Some(at) = s.scheduled {
            self.timers.remove(&(at, session));
        }
        if let Some(at) = wanted {
            self.timers.insert((at, session));
        }
        s.scheduled = wanted;
    }
}
