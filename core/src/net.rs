//! What crosses the boundary between the core and an adapter.
//!
//! An adapter owns sockets, timers and stores; the core owns every decision. The adapter turns
//! what happens on the network into `handle_*` calls of an [`Engine`] and then drains
//! [`Engine::poll_output`] until it returns [`Output::Idle`], carrying out each output in order.
//! Every input carries `now`, a monotonic instant; wall-clock time is fed separately through
//! [`Engine::handle_wall_clock`] because it is written down (ISO timestamps, flake ids), not used
//! for deadlines.
//!
//! Inside, every part of the core is driven the same way: the Engine.IO server, the Socket.IO
//! server on it and the object on top each take `handle_*(…, now)` inputs, hand their outputs
//! out through a lazily pulled `poll_output()` (and their events to the layer above through
//! `poll_event()`), and compute `poll_timeout()` from their state; a parent pulls from its child
//! and folds its child's deadline into its own, which is the one [`Output::Idle`] carries
//! (ARCHITECTURE.md, "Layers inside the core").
//!
//! Contract, in both directions:
//! - every [`HttpRequest`] handed in gets exactly one [`Output::HttpResponse`] or one
//!   [`Output::WsAccept`] for its id, possibly much later (long polling);
//! - a request or WebSocket the adapter lost (peer gone, buffer overflow) is reported with
//!   [`Engine::handle_http_aborted`] / [`Engine::handle_ws_closed`]; outputs that still name it
//!   afterwards are dropped by the adapter without error;
//! - malformed peer input never panics and never surfaces as an error to the adapter: it becomes
//!   a response, a close, and an [`Output::Event`].

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::body::BodyRules;
use crate::gateway::store::{StoreCommand, StoreResult};

/// Names one HTTP request for the whole of its life. Allocated by the adapter, unique per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Names one WebSocket connection. It is the id of the request that was upgraded
/// (`ConnId(request.0)`), so an adapter never has to map one to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl From<RequestId> for ConnId {
    fn from(id: RequestId) -> Self {
        ConnId(id.0)
    }
}

/// Names one store command; the result comes back with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreCmdId(pub u64);

/// Names one outbound HTTP call; the result comes back with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// An HTTP method. The core answers methods it does not serve itself (405/404/400).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// Any other token, as sent.
    Other(String),
}

impl Method {
    /// Parses a request-line method token (case-sensitive, as HTTP says).
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The request-line token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(token) => token,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Request or response headers: names are lowercase ASCII, values as received (lossy UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of header `name` (which must be given in lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Appends a header; `name` must be lowercase.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }
}

/// An HTTP request as the adapter received it, body read in full (up to its route's limit,
/// see [`Engine::body_rules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Request method.
    pub method: Method,
    /// The path as sent (still percent-encoded), without the query.
    pub path: String,
    /// The raw query string without the leading `?` (empty when absent).
    pub query: String,
    /// Request headers.
    pub headers: Headers,
    /// The body. Empty for a WebSocket upgrade.
    pub body: Bytes,
    /// True when the body was over its route's limit (declared or counted while reading) and
    /// `body` holds at most a prefix of it, possibly none; the core answers 413 where a body
    /// matters.
    pub body_truncated: bool,
    /// True when the request asks for a WebSocket upgrade (`Upgrade: websocket`, a key, a
    /// supported version). The core answers such a request with [`Output::WsAccept`] or an error
    /// response.
    pub websocket: bool,
}

/// An HTTP response the adapter writes as given (it adds `content-length` / `date` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers (lowercase names).
    pub headers: Headers,
    /// The body; shared, never copied by the adapter.
    pub body: Bytes,
}

/// A WebSocket data frame. Control frames (ping/pong/close) are the adapter's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    /// A text frame; the bytes are UTF-8 (the adapter's WebSocket library checked).
    Text(Bytes),
    /// A binary frame.
    Binary(Bytes),
}

/// An outbound HTTP call the core wants made (`authUrl`, `updateUserUrl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundCall {
    /// Method (GET for auth, PUT for user updates).
    pub method: Method,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers to send as given.
    pub headers: Headers,
    /// Request body (empty for GET).
    pub body: Bytes,
    /// Give up after this long and report [`CallFailure::Timeout`]. The core keeps the same
    /// deadline itself, so a result arriving later is ignored.
    pub timeout: Duration,
}

/// What became of an [`OutboundCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallResult {
    /// Any HTTP response, whatever its status.
    Response {
        /// Status code.
        status: u16,
        /// The body, read in full (the adapter caps its size; past the cap the call fails).
        body: Bytes,
    },
    /// No response.
    Failed(CallFailure),
}

/// Why an outbound call produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The call's timeout passed.
    Timeout,
    /// Connect, TLS, I/O or protocol failure; the text is for logs.
    Network(String),
    /// The URL could not be used (bad scheme, no host); the text is for logs.
    InvalidUrl(String),
}

/// Severity of an [`AppEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Diagnostic detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something the operator may want to look at; the service goes on.
    Warn,
    /// A failure of a request or a dependency.
    Error,
}

/// A value of an [`AppEvent`] field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// Text.
    Str(Cow<'static, str>),
    /// An unsigned number.
    U64(u64),
    /// A signed number.
    I64(i64),
    /// A flag.
    Bool(bool),
    /// A duration, written as a number of milliseconds with three decimals (`12.345`).
    Millis(Duration),
}

impl From<&'static str> for FieldValue {
    fn from(s: &'static str) -> Self {
        FieldValue::Str(Cow::Borrowed(s))
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        FieldValue::Str(Cow::Owned(s))
    }
}

impl From<u64> for FieldValue {
    fn from(n: u64) -> Self {
        FieldValue::U64(n)
    }
}

impl From<i64> for FieldValue {
    fn from(n: i64) -> Self {
        FieldValue::I64(n)
    }
}

impl From<Duration> for FieldValue {
    fn from(d: Duration) -> Self {
        FieldValue::Millis(d)
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        FieldValue::Bool(b)
    }
}

/// Something that happened, for one log line and for metrics: a fixed message text plus fields
/// (`site`, `socketId`, `deviceId`, `room`, `event`, `dataId`, `reason`…). Never carries tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEvent {
    /// Severity.
    pub level: Level,
    /// The fixed message text, e.g. `"Socket connected"`; metrics count by it.
    pub message: &'static str,
    /// Structured fields, in a stable order.
    pub fields: Vec<(&'static str, FieldValue)>,
}

impl AppEvent {
    /// An event with no fields yet.
    pub fn new(level: Level, message: &'static str) -> Self {
        AppEvent {
            level,
            message,
            fields: Vec::new(),
        }
    }

    /// Adds a field (builder style).
    pub fn with(mut self, name: &'static str, value: impl Into<FieldValue>) -> Self {
        self.fields.push((name, value.into()));
        self
    }
}

/// One thing the adapter must do, drained with [`Engine::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write this response to request `id` (and close that request's exchange).
    HttpResponse(RequestId, HttpResponse),
    /// Complete the WebSocket upgrade of request `id`; the connection is `ConnId::from(id)`.
    /// Frames for it may follow at once: the adapter queues them until the upgrade is done.
    WsAccept(RequestId),
    /// Send a frame on a WebSocket.
    WsSend(ConnId, WsFrame),
    /// Close a WebSocket with this close code (1000 normal, 1002 protocol error, 1009 too big,
    /// 1001 going away; 1005, which RFC 6455 forbids on the wire, asks for a close frame with no
    /// code at all). The core already forgot the connection; no `handle_ws_closed` is needed.
    WsClose(ConnId, u16),
    /// Run a store command and hand the result back with [`Engine::handle_store_result`].
    /// Commands must be executed in the order they are emitted.
    Store(StoreCmdId, StoreCommand),
    /// Make an outbound HTTP call and hand the result back with [`Engine::handle_call_result`].
    Call(CallId, OutboundCall),
    /// Publish this message to every other node of the cluster (Redis pub/sub); each of them
    /// hands it to its engine with [`Engine::handle_remote`]. Never emitted without a cluster.
    Publish(Bytes),
    /// Log it (one JSON line) and count it.
    Event(AppEvent),
    /// Answer request `id` (`GET /status.json`, operator key already checked) with the status
    /// document: the adapter builds it from the same counters as `/metrics`
    /// ([`Engine::metrics`] plus what only it sees) and writes it with
    /// [`crate::gateway::status_response`].
    Status(RequestId),
    /// Nothing more to do now. Call [`Engine::handle_timeout`] at this instant (if any) unless
    /// another input comes first.
    Idle(Option<Instant>),
}

/// The Sans-IO object an adapter drives: the gateway, or any other application built on the
/// Socket.IO layer (the conformance server). See the module docs for the contract.
pub trait Engine {
    /// Sets the wall clock: `unix_ms` milliseconds since the Unix epoch at `now`. Call once
    /// before the first input and again whenever convenient (the driver does it before every
    /// batch of inputs); the core extrapolates in between.
    fn handle_wall_clock(&mut self, unix_ms: u64, now: Instant);

    /// A complete HTTP request arrived.
    fn handle_http(&mut self, id: RequestId, request: HttpRequest, now: Instant);

    /// The peer of request `id` went away before it was answered (a long-poll GET dropped).
    fn handle_http_aborted(&mut self, id: RequestId, now: Instant);

    /// A data frame arrived on an accepted WebSocket.
    fn handle_ws_frame(&mut self, conn: ConnId, frame: WsFrame, now: Instant);

    /// An accepted WebSocket closed or failed (peer close, I/O error, outbound buffer full,
    /// frame over the size limit).
    fn handle_ws_closed(&mut self, conn: ConnId, now: Instant);

    /// The deadline given by the last [`Output::Idle`] passed (early or late calls are harmless).
    fn handle_timeout(&mut self, now: Instant);

    /// A store command finished.
    fn handle_store_result(&mut self, id: StoreCmdId, result: StoreResult, now: Instant);

    /// An outbound call finished.
    fn handle_call_result(&mut self, id: CallId, result: CallResult, now: Instant);

    /// A message another node published (see [`Output::Publish`]).
    fn handle_remote(&mut self, message: Bytes, now: Instant);

    /// The process is shutting down: the adapter has stopped accepting connections. Close
    /// what should be closed (WebSocket close 1001, answer pending polls) and flush what must
    /// not be lost; the adapter drains the outputs for a bounded grace period, then exits.
    /// The default does nothing.
    fn handle_shutdown(&mut self, now: Instant) {
        let _ = now;
    }

    /// What the engine counts, for `/metrics` (see [`crate::metrics`]); `None` (the default)
    /// for engines that count nothing.
    fn metrics(&self) -> Option<crate::metrics::Snapshot> {
        None
    }

    /// The next thing to do; [`Output::Idle`] when there is nothing more.
    fn poll_output(&mut self) -> Output;

    /// Which body limit applies to which request, asked once before serving: the adapter
    /// reads requests concurrently with the engine and enforces it while reading.
    /// `max_payload` is the adapter's configured cap; the default applies it to every body.
    fn body_rules(&self, max_payload: usize) -> BodyRules {
        BodyRules::uniform(max_payload)
    }
}

/// The earlier of two optional deadlines (`None` means "no deadline").
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
