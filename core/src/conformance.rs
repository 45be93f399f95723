//! The server the Socket.IO project's protocol test-suites expect, built on [`crate::eio`] and
//! [`crate::sio`] alone (it proves both layers know nothing of the gateway).
//!
//! - `/engine.io/`: raw Engine.IO; every message is echoed back as received.
//! - `/socket.io/`: namespaces `/` and `/custom`. On connect the socket is sent
//!   `auth` with the CONNECT auth object (`{}` when none); `message` is answered with
//!   `message-back` and the same args; `message-with-ack` is acked with the same args;
//!   `emit-with-ack` is emitted back to the client with an ack request, and the client's ack
//!   arguments come back as `emit-with-ack-back`. Other namespaces are refused with
//!   `Invalid namespace`.
//!
//! Settings as the suites want them: pingInterval 300 ms, pingTimeout 200 ms, maxPayload
//! 1 000 000, connectTimeout 1000 ms, CORS `*`, Engine.IO 3 and 4.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::eio;
use crate::gateway::store::StoreResult;
use crate::net::{
    self, CallId, CallResult, ConnId, Engine, Headers, HttpRequest, HttpResponse, RequestId,
    StoreCmdId, WsFrame, earliest,
};
use crate::sio::{self, Payload, SocketId};

/// The conformance test server. See the [module docs](self).
#[derive(Debug)]
pub struct Conformance {
    raw: eio::Server,
    sio: sio::Server,
    /// Auth objects of sockets waiting for their `Connected`.
    auth: HashMap<SocketId, Value>,
    /// Answers to requests for neither endpoint (404).
    not_found: VecDeque<net::Output>,
}

impl Conformance {
    /// The Engine.IO settings shared by both endpoints, at `path`.
    pub fn eio_config(path: &str) -> eio::Config {
        eio::Config {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_payload: 1_000_000,
            path: path.to_owned(),
            cors_origins: Some(eio::CorsOrigins::Any),
            allow_eio3: true,
            ..eio::Config::default()
        }
    }

    /// A conformance server whose ids come from `seed`.
    pub fn new(seed: u64) -> Conformance {
        let sio_config = sio::Config {
            eio: Conformance::eio_config("/socket.io"),
            connect_timeout: Duration::from_millis(1000),
            max_attachments: 10,
        };
        Conformance {
            raw: eio::Server::new(Conformance::eio_config("/engine.io"), seed),
            sio: sio::Server::new(sio_config, seed.wrapping_add(1)),
            auth: HashMap::new(),
            not_found: VecDeque::new(),
        }
    }

    /// Answers every event the last input produced, on both endpoints.
    fn answer_events(&mut self) {
        while let Some(event) = self.raw.poll_event() {
            if let eio::Event::Message { session, message } = event {
                self.raw.send(session, message);
            }
        }
        while let Some(event) = self.sio.poll_event() {
            self.on_sio_event(event);
        }
    }

    fn on_sio_event(&mut self, event: sio::Event) {
        match event {
            sio::Event::ConnectRequest {
                socket,
                namespace,
                auth,
                ..
            } => {
                if namespace == "/" || namespace == "/custom" {
                    self.auth
                        .insert(socket, Value::Object(auth.unwrap_or_else(Map::new)));
                    self.sio.accept(socket);
                } else {
                    self.sio.reject(socket, "Invalid namespace");
                }
            }
            sio::Event::Connected { socket } => {
                let auth = self.auth.remove(&socket).unwrap_or(Value::Null);
                let payload = Payload::from_values(&[Value::from("auth"), auth]);
                self.sio.emit(socket, &payload);
            }
            sio::Event::ClientEvent { socket, args, ack } => {
                let name = args.first().and_then(Value::as_str).unwrap_or_default();
                let rest = args.get(1..).unwrap_or_default();
                match (name, ack) {
                    ("message", _) => self.emit_named(socket, "message-back", rest),
                    ("message-with-ack", Some(id)) => self.sio.ack(socket, id, rest),
                    ("emit-with-ack", _) => {
                        let mut values = vec![Value::from("emit-with-ack")];
                        values.extend_from_slice(rest);
                        self.sio
                            .emit_with_ack(socket, &Payload::from_values(&values));
                    }
                    _ => {}
                }
            }
            sio::Event::Ack { socket, args, .. } => {
                self.emit_named(socket, "emit-with-ack-back", &args);
            }
            sio::Event::Disconnected { socket, .. } => {
                self.auth.remove(&socket);
            }
        }
    }

    fn emit_named(&mut self, socket: SocketId, name: &str, args: &[Value]) {
        let mut values = Vec::with_capacity(args.len() + 1);
        values.push(Value::from(name));
        values.extend_from_slice(args);
        self.sio.emit(socket, &Payload::from_values(&values));
    }
}

impl Engine for Conformance {
    fn handle_wall_clock(&mut self, _unix_ms: u64, _now: Instant) {}

    fn handle_http(&mut self, id: RequestId, request: HttpRequest, now: Instant) {
        if self.raw.matches_path(&request.path) {
            self.raw.handle_http(id, request, now);
        } else if self.sio.matches_path(&request.path) {
            self.sio.handle_http(id, request, now);
        } else {
            let mut headers = Headers::default();
            headers.push("content-type", "text/plain; charset=UTF-8");
            self.not_found.push_back(net::Output::HttpResponse(
                id,
                HttpResponse {
                    status: 404,
                    headers,
                    body: Bytes::from_static(b"Not Found"),
                },
            ));
        }
        self.answer_events();
    }

    fn handle_http_aborted(&mut self, id: RequestId, now: Instant) {
        self.raw.handle_http_aborted(id, now);
        self.sio.handle_http_aborted(id, now);
        self.answer_events();
    }

    fn handle_ws_frame(&mut self, conn: ConnId, frame: WsFrame, now: Instant) {
        if self.raw.owns_conn(conn) {
            self.raw.handle_ws_frame(conn, frame, now);
        } else {
            self.sio.handle_ws_frame(conn, frame, now);
        }
        self.answer_events();
    }

    fn handle_ws_closed(&mut self, conn: ConnId, now: Instant) {
        if self.raw.owns_conn(conn) {
            self.raw.handle_ws_closed(conn, now);
        } else {
            self.sio.handle_ws_closed(conn, now);
        }
        self.answer_events();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.raw.handle_timeout(now);
        self.sio.handle_timeout(now);
        self.answer_events();
    }

    fn handle_store_result(&mut self, _id: StoreCmdId, _result: StoreResult, _now: Instant) {}

    fn handle_call_result(&mut self, _id: CallId, _result: CallResult, _now: Instant) {}

    fn handle_remote(&mut self, _message: Bytes, _now: Instant) {}

    fn poll_output(&mut self) -> net::Output {
        self.not_found
            .pop_front()
            .or_else(|| self.raw.poll_output())
            .or_else(|| self.sio.poll_output())
            .unwrap_or_else(|| {
                net::Output::Idle(earliest(self.raw.poll_timeout(), self.sio.poll_timeout()))
            })
    }
}
