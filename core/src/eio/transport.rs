//! The transports of a session: long-polling GET/POST handling and the probe that upgrades a
//! polling session to a WebSocket.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::http::{self, ErrorCode};
use super::packet::Packet;
use super::server::{Closer, Server, SessionId};
use super::session::{PendingGet, Transport, Upgrade};
use super::{Protocol, payload};
use crate::net::{self, ConnId, Headers, HttpRequest, Level, RequestId};

/// How long a GET arriving during an upgrade is held before its noop.
const NOOP_DELAY_WHILE_UPGRADING: Duration = Duration::from_millis(100);

impl Server {
    /// Answers parked GETs of sessions that have buffered packets (see [`Server::poll_output`]).
    pub(super) fn flush(&mut self) {
        for session in std::mem::take(&mut self.dirty) {
            let Some(s) = self.sessions.get_mut(&session) else {
                continue;
            };
            if s.outbox.is_empty() {
                continue;
            }
            if let Some(get) = s.pending_get.take() {
                self.parked_gets.remove(&get.request);
                self.answer_get(session, get);
            }
        }
    }

    pub(super) fn poll(&mut self, id: RequestId, session: SessionId, cors: Headers, now: Instant) {
        let s = self
            .sessions
            .get_mut(&session)
            .expect("session looked up by caller");
        if let Some(previous) = s.pending_get.take() {
            // Two GETs at once: refuse the newcomer, release the parked one with a close.
            self.parked_gets.remove(&previous.request);
            let (body, kind) = s.encode_polling(&[Packet::Close]);
            self.refuse(id, ErrorCode::BadRequest, cors);
            self.respond_payload(previous.request, body, kind, previous.cors);
            self.close(session, "transport error", Closer::Failure);
            return;
        }
        let get = PendingGet { request: id, cors };
        if !s.outbox.is_empty() {
            self.answer_get(session, get);
        } else {
            if s.upgrade.is_some_and(|u| u.probed) {
                // Upgrading: release the poll soon (engine.io's 100 ms noop check) so the
                // client can pause polling, without inviting a tight request loop.
                s.noop_deadline = Some(now + NOOP_DELAY_WHILE_UPGRADING);
            }
            s.pending_get = Some(get);
            self.parked_gets.insert(id, session);
            self.reschedule(session);
        }
    }

    /// Releases the parked GET of an upgrading session with a noop.
    pub(super) fn release_with_noop(&mut self, session: SessionId) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.noop_deadline = None;
        if let Some(get) = s.pending_get.take() {
            self.parked_gets.remove(&get.request);
            let (body, kind) = s.encode_polling(&[Packet::Noop]);
            self.respond_payload(get.request, body, kind, get.cors);
        }
    }

    pub(super) fn answer_get(&mut self, session: SessionId, get: PendingGet) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let packets: Vec<Packet> = s.outbox.drain(..).collect();
        let (body, kind) = s.encode_polling(&packets);
        let finished = s.closing_deadline.is_some();
        self.respond_payload(get.request, body, kind, get.cors);
        if finished {
            self.forget(session);
        }
    }

    pub(super) fn receive_post(
        &mut self,
        id: RequestId,
        session: SessionId,
        req: &HttpRequest,
        cors: Headers,
        now: Instant,
    ) {
        if !self.is_open(session) {
            return self.refuse(id, ErrorCode::UnknownSid, cors);
        }
        if req.body_truncated || req.body.len() > self.config.max_payload {
            self.log(Level::Info, "Engine.IO POST over maxPayload", session);
            return self.respond(id, http::payload_too_large(cors));
        }
        let s = &self.sessions[&session];
        let octet_stream = req
            .headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("application/octet-stream"));
        let decoded = match s.protocol {
            Protocol::V4 if octet_stream => None,
            Protocol::V4 => payload::decode_v4(&req.body).ok(),
            Protocol::V3 if s.format.jsonp.is_some() => payload::decode_jsonp_body(&req.body)
                .and_then(|text| payload::decode_v3_text(&text))
                .ok(),
            Protocol::V3 if octet_stream || req.body.first().is_some_and(|&b| b <= 1) => {
                payload::decode_v3_binary(&req.body).ok()
            }
            Protocol::V3 => payload::decode_v3_text(&req.body).ok(),
        };
        let Some(packets) = decoded else {
            self.log(Level::Info, "Engine.IO invalid payload", session);
            self.refuse(id, ErrorCode::BadRequest, cors);
            self.close(session, "parse error", Closer::Failure);
            return;
        };
        self.counters.polling_in_requests += 1;
        self.counters.polling_in_bytes += u64::try_from(req.body.len()).unwrap_or(u64::MAX);
        self.respond(id, http::post_ok(cors));
        for packet in packets {
            if !self.is_open(session) {
                break;
            }
            self.on_packet(session, packet, now);
        }
    }

    pub(super) fn start_upgrade(&mut self, id: RequestId, session: SessionId, now: Instant) {
        if !self.config.allow_upgrades || !self.is_open(session) {
            return self.refuse(id, ErrorCode::BadRequest, Headers::default());
        }
        let conn = ConnId::from(id);
        let s = &self.sessions[&session];
        if !s.is_polling() || s.upgrade.is_some() {
            // Already on a WebSocket, or probing one: as engine.io does, the newcomer is accepted
            // and closed at once (a close frame without a code, nothing sent before it), and the
            // session keeps its transport.
            self.log(Level::Debug, "Engine.IO second upgrade closed", session);
            self.io.push_back(net::Output::WsAccept(id));
            self.io.push_back(net::Output::WsClose(conn, 1005));
            return;
        }
        let deadline = now + self.config.upgrade_timeout;
        if let Some(s) = self.sessions.get_mut(&session) {
            s.upgrade = Some(Upgrade {
                conn,
                deadline,
                probed: false,
            });
        }
        self.conns.insert(conn, session);
        self.io.push_back(net::Output::WsAccept(id));
        self.reschedule(session);
    }

    pub(super) fn on_probe_packet(
        &mut self,
        session: SessionId,
        conn: ConnId,
        packet: Option<Packet>,
        now: Instant,
    ) {
        let protocol = self.sessions[&session].protocol;
        match packet {
            Some(Packet::Ping(data)) if &data[..] == b"probe" => {
                let pong = Packet::Pong(Bytes::from_static(b"probe"));
                self.io
                    .push_back(net::Output::WsSend(conn, pong.to_ws_frame(protocol)));
                let s = self.sessions.get_mut(&session).expect("open session");
                if let Some(upgrade) = &mut s.upgrade {
                    upgrade.probed = true;
                }
                self.release_with_noop(session);
            }
            Some(Packet::Upgrade) => {
                let s = self.sessions.get_mut(&session).expect("open session");
                s.upgrade = None;
                s.transport = Transport::WebSocket(conn);
                s.note_client_activity(&self.config, now);
                self.release_with_noop(session);
                let s = self.sessions.get_mut(&session).expect("open session");
                for packet in s.outbox.drain(..) {
                    self.io
                        .push_back(net::Output::WsSend(conn, packet.to_ws_frame(protocol)));
                }
                self.reschedule(session);
            }
            _ => {
                self.log(Level::Info, "Engine.IO invalid upgrade packet", session);
                self.io.push_back(net::Output::WsClose(conn, 1002));
                self.conns.remove(&conn);
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.upgrade = None;
                }
                self.reschedule(session);
            }
        }
    }
}
