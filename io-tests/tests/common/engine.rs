//! A test engine: answers a few HTTP routes and echoes WebSocket frames. It records what the
//! adapter told it in shared `Stats`, so tests can check the adapter kept the contract.
//!
//! Routes: `GET /hello` → `hello <query>`; `POST /echo` → the body (413 when truncated);
//! `GET /poll` → held until `POST /wake` or `timeout_ms=` in the query passes (then 204);
//! `GET /call?<url>` → makes an outbound call to `<url>` and answers with its outcome;
//! `GET /ws` (upgrade) → accepted, sends `welcome`; text `flood N` sends N frames, `close` closes
//! with 1000, anything else is echoed. `POST /publish` publishes its body on the cluster bus to
//! all nodes (`?node=N`: to node N alone; `POST /publish-many` with body `N:<text>`: N messages
//! `<text> 0` … `<text> N-1` to all nodes at once);
//! `POST /store/connect` runs a store `Connect` for the device named by the body.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use courier_core::gateway::store::{DeviceKey, SocketRef, StoreCommand, StoreResult};
use courier_core::net::{
    BusTarget, CallFailure, CallId, CallResult, ConnId, Engine, Headers, HttpRequest, HttpResponse,
    Method, OutboundCall, Output, RequestId, StoreCmdId, WsFrame,
};

/// What the adapter reported.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub requests: usize,
    pub aborted: Vec<RequestId>,
    pub ws_closed: Vec<ConnId>,
    pub frames: Vec<(ConnId, WsFrame)>,
    pub shutdown: bool,
    pub wall_clock_ms: u64,
    pub remote: Vec<Bytes>,
    pub store_results: Vec<(StoreCmdId, StoreResult)>,
}

/// The shared view of [`Stats`].
pub type SharedStats = Arc<Mutex<Stats>>;

pub struct TestEngine {
    stats: SharedStats,
    outputs: VecDeque<Output>,
    polls: BTreeMap<RequestId, Instant>,
    conns: Vec<ConnId>,
    calls: BTreeMap<CallId, RequestId>,
    next_call: u64,
}

impl TestEngine {
    pub fn new() -> (Box<TestEngine>, SharedStats) {
        let stats = SharedStats::default();
        let engine = TestEngine {
            stats: Arc::clone(&stats),
            outputs: VecDeque::new(),
            polls: BTreeMap::new(),
            conns: Vec::new(),
            calls: BTreeMap::new(),
            next_call: 1,
        };
        (Box::new(engine), stats)
    }

    /// Queues an output for the adapter (tests use it for `Publish` and `Store`).
    pub fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// Emits a store `Connect` of `device` in room `user_1` of site `site`.
    fn store_connect(&mut self, id: u64, device: String) {
        let command = StoreCommand::Connect {
            limits: courier_core::gateway::store::BatchLimits::for_max_payload(u64::MAX / 2),
            device: DeviceKey {
                site: "site".into(),
                room: "user_1".into(),
                device,
            },
            socket: SocketRef {
                node: 1,
                socket: id,
            },
            groups: None,
            now_ms: self.stats.lock().expect("stats").wall_clock_ms,
        };
        self.outputs
            .push_back(Output::Store(StoreCmdId(id), command));
    }

    fn respond(&mut self, id: RequestId, status: u16, body: impl Into<Bytes>) {
        let mut headers = Headers::default();
        headers.push("content-type", "text/plain");
        headers.push("x-test", "yes");
        self.outputs.push_back(Output::HttpResponse(
            id,
            HttpResponse {
                status,
                headers,
                body: body.into(),
            },
        ));
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl Engine for TestEngine {
    fn handle_wall_clock(&mut self, unix_ms: u64, _now: Instant) {
        self.stats.lock().expect("stats").wall_clock_ms = unix_ms;
    }

    fn handle_http(&mut self, id: RequestId, request: HttpRequest, now: Instant) {
        self.stats.lock().expect("stats").requests += 1;
        match (&request.method, request.path.as_str()) {
            (Method::Get, "/hello") => {
                let header = request.headers.get("x-probe").unwrap_or("-").to_owned();
                self.respond(id, 200, format!("hello {} {header}", request.query));
            }
            (Method::Post, "/echo") => {
                if request.body_truncated {
                    self.respond(id, 413, "too large");
                } else {
                    self.respond(id, 200, request.body);
                }
            }
            (Method::Get, "/poll") => {
                let wait = query_param(&request.query, "timeout_ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(60_000);
                self.polls.insert(id, now + Duration::from_millis(wait));
            }
            (Method::Post, "/wake") => {
                let woken: Vec<RequestId> = self.polls.keys().copied().collect();
                self.polls.clear();
                for poll in woken {
                    self.respond(poll, 200, "woken");
                }
                self.respond(id, 200, "ok");
            }
            (Method::Get, "/call") => {
                let call = CallId(self.next_call);
                self.next_call += 1;
                self.calls.insert(call, id);
                let timeout = query_param(&request.query, "timeout_ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5_000);
                let url = query_param(&request.query, "url")
                    .unwrap_or("")
                    .replace("%2F", "/");
                let mut headers = Headers::default();
                headers.push("x-from", "courier-test");
                self.outputs.push_back(Output::Call(
                    call,
                    OutboundCall {
                        method: Method::Get,
                        url,
                        headers,
                        body: Bytes::new(),
                        timeout: Duration::from_millis(timeout),
                    },
                ));
            }
            (Method::Post, "/publish") => {
                let to = match query_param(&request.query, "node").and_then(|n| n.parse().ok()) {
                    Some(node) => BusTarget::Node(node),
                    None => BusTarget::AllNodes,
                };
                self.outputs.push_back(Output::Publish(to, request.body));
                self.respond(id, 200, "published");
            }
            (Method::Post, "/publish-many") => {
                let body = String::from_utf8_lossy(&request.body).into_owned();
                let (count, text) = body.split_once(':').unwrap_or(("0", ""));
                for index in 0..count.parse::<u32>().unwrap_or(0) {
                    let message = format!("{text} {index}");
                    self.outputs
                        .push_back(Output::Publish(BusTarget::AllNodes, Bytes::from(message)));
                }
                self.respond(id, 200, "published");
            }
            (Method::Post, "/store/connect") => {
                // Body: the device id; the store result lands in `Stats::store_results`.
                let device = String::from_utf8_lossy(&request.body).into_owned();
                self.store_connect(id.0, device);
                self.respond(id, 202, "queued");
            }
            (Method::Get, "/ws") if request.websocket => {
                let conn = ConnId::from(id);
                self.conns.push(conn);
                self.outputs.push_back(Output::WsAccept(id));
                self.outputs.push_back(Output::WsSend(
                    conn,
                    WsFrame::Text(Bytes::from_static(b"welcome")),
                ));
            }
            _ => self.respond(id, 404, "not found"),
        }
    }

    fn handle_http_aborted(&mut self, id: RequestId, _now: Instant) {
        self.polls.remove(&id);
        self.stats.lock().expect("stats").aborted.push(id);
    }

    fn handle_ws_frame(&mut self, conn: ConnId, frame: WsFrame, _now: Instant) {
        self.stats
            .lock()
            .expect("stats")
            .frames
            .push((conn, frame.clone()));
        if let WsFrame::Text(text) = &frame {
            if &text[..] == b"close" {
                self.conns.retain(|c| *c != conn);
                self.outputs.push_back(Output::WsClose(conn, 1000));
                return;
            }
            if let Some(n) = std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.strip_prefix("flood "))
                .and_then(|n| n.parse::<usize>().ok())
            {
                let payload = Bytes::from(vec![b'x'; 1024]);
                for _ in 0..n {
                    self.outputs
                        .push_back(Output::WsSend(conn, WsFrame::Binary(payload.clone())));
                }
                return;
            }
        }
        self.outputs.push_back(Output::WsSend(conn, frame));
    }

    fn handle_ws_closed(&mut self, conn: ConnId, _now: Instant) {
        self.conns.retain(|c| *c != conn);
        self.stats.lock().expect("stats").ws_closed.push(conn);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<RequestId> = self
            .polls
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.polls.remove(&id);
            self.respond(id, 204, Bytes::new());
        }
    }

    fn handle_store_result(&mut self, id: StoreCmdId, result: StoreResult, _now: Instant) {
        self.stats
            .lock()
            .expect("stats")
            .store_results
            .push((id, result));
    }

    fn handle_call_result(&mut self, id: CallId, result: CallResult, _now: Instant) {
        let Some(request) = self.calls.remove(&id) else {
            return;
        };
        let text = match result {
            CallResult::Response { status, body } => {
                format!("response {status} {}", String::from_utf8_lossy(&body))
            }
            CallResult::Failed(CallFailure::Timeout) => "failed timeout".to_owned(),
            CallResult::Failed(CallFailure::InvalidUrl(text)) => format!("failed invalid {text}"),
            CallResult::Failed(CallFailure::Network(text)) => format!("failed network {text}"),
        };
        self.respond(request, 200, text);
    }

    fn handle_remote(&mut self, message: Bytes, _now: Instant) {
        self.stats.lock().expect("stats").remote.push(message);
    }

    fn handle_shutdown(&mut self, _now: Instant) {
        self.stats.lock().expect("stats").shutdown = true;
        let polls: Vec<RequestId> = self.polls.keys().copied().collect();
        self.polls.clear();
        for id in polls {
            self.respond(id, 503, "shutting down");
        }
        for conn in std::mem::take(&mut self.conns) {
            self.outputs.push_back(Output::WsClose(conn, 1001));
        }
        // Something that must reach the store before the process exits.
        self.store_connect(u64::MAX, "at-shutdown".into());
    }

    fn poll_output(&mut self) -> Output {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        Output::Idle(self.polls.values().min().copied())
    }
}
