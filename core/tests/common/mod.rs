//! A fake adapter with a fake clock for driving engines in tests.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use courier_core::gateway::store::StoreResult;
use courier_core::net::{
    AppEvent, CallId, CallResult, ConnId, Engine, Headers, HttpRequest, HttpResponse, Method,
    Output, RequestId, StoreCmdId, WsFrame,
};
use courier_core::sio::{self, Payload};
use serde_json::Value;

/// A `sio::Server` wrapped as an [`Engine`] that records application events and lets the test
/// answer them.
#[derive(Debug)]
pub struct SioApp {
    pub server: sio::Server,
    pub events: Vec<sio::Event>,
}

impl SioApp {
    pub fn new(config: sio::Config, seed: u64) -> SioApp {
        SioApp {
            server: sio::Server::new(config, seed),
            events: Vec::new(),
        }
    }
}

impl Engine for SioApp {
    fn handle_wall_clock(&mut self, _unix_ms: u64, _now: Instant) {}
    fn handle_http(&mut self, id: RequestId, request: HttpRequest, now: Instant) {
        self.server.handle_http(id, request, now);
    }
    fn handle_http_aborted(&mut self, id: RequestId, now: Instant) {
        self.server.handle_http_aborted(id, now);
    }
    fn handle_ws_frame(&mut self, conn: ConnId, frame: WsFrame, now: Instant) {
        self.server.handle_ws_frame(conn, frame, now);
    }
    fn handle_ws_closed(&mut self, conn: ConnId, now: Instant) {
        self.server.handle_ws_closed(conn, now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
    }
    fn handle_store_result(&mut self, _id: StoreCmdId, _result: StoreResult, _now: Instant) {}
    fn handle_call_result(&mut self, _id: CallId, _result: CallResult, _now: Instant) {}
    fn handle_remote(&mut self, _message: Bytes, _now: Instant) {}
    fn poll_output(&mut self) -> Output {
        while let Some(event) = self.server.poll_event() {
            self.events.push(event);
        }
        self.server
            .poll_output()
            .unwrap_or_else(|| Output::Idle(self.server.poll_timeout()))
    }
}

/// Everything an engine asked the fake adapter to do, plus the fake clock.
#[derive(Debug)]
pub struct Harness<E: Engine> {
    pub engine: E,
    pub start: Instant,
    pub now: Instant,
    pub deadline: Option<Instant>,
    next_id: u64,
    pub responses: HashMap<RequestId, HttpResponse>,
    /// Every output, in order.
    pub log: Vec<Output>,
    pub accepted: HashSet<RequestId>,
    pub frames: HashMap<ConnId, Vec<WsFrame>>,
    pub closed: HashMap<ConnId, u16>,
    pub app_events: Vec<AppEvent>,
}

impl<E: Engine> Harness<E> {
    pub fn new(engine: E) -> Harness<E> {
        let start = Instant::now();
        Harness {
            engine,
            start,
            now: start,
            deadline: None,
            next_id: 1,
            responses: HashMap::new(),
            log: Vec::new(),
            accepted: HashSet::new(),
            frames: HashMap::new(),
            closed: HashMap::new(),
            app_events: Vec::new(),
        }
    }

    /// Drains outputs until idle.
    pub fn drain(&mut self) {
        loop {
            let output = self.engine.poll_output();
            match &output {
                Output::Idle(deadline) => {
                    self.deadline = *deadline;
                    return;
                }
                Output::HttpResponse(id, response) => {
                    assert!(
                        self.responses.insert(*id, response.clone()).is_none(),
                        "request {id:?} answered twice"
                    );
                }
                Output::WsAccept(id) => {
                    self.accepted.insert(*id);
                }
                Output::WsSend(conn, frame) => {
                    self.frames.entry(*conn).or_default().push(frame.clone());
                }
                Output::WsClose(conn, code) => {
                    self.closed.insert(*conn, *code);
                }
                Output::Event(event) => self.app_events.push(event.clone()),
                _ => {}
            }
            self.log.push(output);
        }
    }

    /// Moves the clock forward, firing due deadlines as a driver would.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + Duration::from_millis(ms);
        while let Some(deadline) = self.deadline.filter(|d| *d <= target) {
            self.now = self.now.max(deadline);
            self.engine.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    pub fn request(
        &mut self,
        method: Method,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        websocket: bool,
    ) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let mut h = Headers::default();
        for (n, v) in headers {
            h.push(*n, *v);
        }
        let req = HttpRequest {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers: h,
            body: Bytes::copy_from_slice(body),
            body_truncated: false,
            websocket,
        };
        self.engine.handle_http(id, req, self.now);
        self.drain();
        id
    }

    pub fn get(&mut self, query: &str) -> RequestId {
        self.request(Method::Get, "/socket.io/", query, &[], b"", false)
    }

    /// GET that must be answered at once; its body.
    pub fn get_text(&mut self, query: &str) -> String {
        let id = self.get(query);
        self.body(id)
    }

    /// Status of a GET that must be answered at once.
    pub fn get_status(&mut self, query: &str) -> u16 {
        let id = self.get(query);
        self.status(id)
    }

    /// POST that must be answered at once; its body.
    pub fn post_text(&mut self, query: &str, body: &[u8]) -> String {
        let id = self.post(query, body);
        self.body(id)
    }

    pub fn post(&mut self, query: &str, body: &[u8]) -> RequestId {
        self.request(
            Method::Post,
            "/socket.io/",
            query,
            &[("content-type", "text/plain;charset=UTF-8")],
            body,
            false,
        )
    }

    pub fn ws(&mut self, query: &str) -> ConnId {
        let id = self.request(Method::Get, "/socket.io/", query, &[], b"", true);
        assert!(
            self.accepted.contains(&id),
            "websocket not accepted: {:?}",
            self.responses.get(&id)
        );
        ConnId::from(id)
    }

    pub fn send_text(&mut self, conn: ConnId, text: &str) {
        self.engine.handle_ws_frame(
            conn,
            WsFrame::Text(Bytes::copy_from_slice(text.as_bytes())),
            self.now,
        );
        self.drain();
    }

    pub fn send_binary(&mut self, conn: ConnId, bytes: &[u8]) {
        self.engine.handle_ws_frame(
            conn,
            WsFrame::Binary(Bytes::copy_from_slice(bytes)),
            self.now,
        );
        self.drain();
    }

    pub fn close_ws(&mut self, conn: ConnId) {
        self.engine.handle_ws_closed(conn, self.now);
        self.drain();
    }

    pub fn abort(&mut self, id: RequestId) {
        self.engine.handle_http_aborted(id, self.now);
        self.drain();
    }

    pub fn response(&self, id: RequestId) -> Option<&HttpResponse> {
        self.responses.get(&id)
    }

    /// The response body as (lossy) text; panics if not answered.
    pub fn body(&self, id: RequestId) -> String {
        let r = self
            .responses
            .get(&id)
            .unwrap_or_else(|| panic!("request {id:?} not answered"));
        String::from_utf8_lossy(&r.body).into_owned()
    }

    pub fn status(&self, id: RequestId) -> u16 {
        self.responses
            .get(&id)
            .unwrap_or_else(|| panic!("request {id:?} not answered"))
            .status
    }

    /// Text frames sent on `conn`, in order (binary frames as `<bin:hex>`).
    pub fn texts(&self, conn: ConnId) -> Vec<String> {
        self.frames
            .get(&conn)
            .map(|frames| {
                frames
                    .iter()
                    .map(|f| match f {
                        WsFrame::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        WsFrame::Binary(b) => format!("<bin:{}>", hex(b)),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn ms_since_start(&self) -> u128 {
        (self.now - self.start).as_millis()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sid in an open packet text (`0{"sid":"…",…}`, possibly length-prefixed or inside a
/// JSONP string).
pub fn sid_of(open: &str) -> String {
    let unescaped = open.replace("\\\"", "\"");
    let start = unescaped.find("\"sid\":\"").expect("sid key") + 7;
    let end = unescaped[start..].find('"').expect("sid end") + start;
    unescaped[start..end].to_owned()
}

/// Builds a payload from JSON values.
pub fn payload(values: &[Value]) -> Payload {
    Payload::from_values(values)
}

/// Config of a Socket.IO server with small, round timings for tests.
pub fn test_config() -> sio::Config {
    let mut config = sio::Config::default();
    config.eio.ping_interval = Duration::from_millis(1000);
    config.eio.ping_timeout = Duration::from_millis(500);
    config.eio.upgrade_timeout = Duration::from_millis(2000);
    config.connect_timeout = Duration::from_millis(3000);
    config
}
