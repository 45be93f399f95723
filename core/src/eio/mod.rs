//! Engine.IO protocol revisions 3 and 4: packets, payloads, sessions, heartbeats and the
//! polling→WebSocket upgrade.
//!
//! The revision is chosen per connection by the `EIO` query parameter (`3` or `4`; anything else
//! is refused with code 5). [`Server`] owns every session of one endpoint path; it is driven like
//! every Sans-IO part of this crate (`handle_*(…, now)` inputs; [`Server::poll_output`] for the
//! adapter, [`Server::poll_event`] for the layer above, [`Server::poll_timeout`]) and reports
//! [`Event`]s (opened / message / closed) to that layer — [`crate::sio`], or any application
//! that wants raw Engine.IO (the conformance echo server).

mod http;
pub mod packet;
pub mod payload;
mod server;
mod session;
mod transport;

use std::time::Duration;

pub use packet::{Message, Packet, PacketError};
pub use payload::PayloadError;
pub use server::{Event, Server, SessionId};

use crate::net::Headers;
use crate::urlencoded;

/// True when `path` is the Engine.IO endpoint at `base` (with or without the trailing slash;
/// `base` may be given either way).
pub fn matches_path(base: &str, path: &str) -> bool {
    let base = base.trim_end_matches('/');
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest == "/")
}

/// Engine.IO's error 4 (`403 {"code":4,"message":"Forbidden"}`), the answer to a request the
/// application refuses before the engine sees it (socket.io's `origins` check).
pub fn forbidden_response() -> crate::net::HttpResponse {
    http::error_response(http::ErrorCode::Forbidden, Headers::default())
}

/// An Engine.IO protocol revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Revision 3 (`EIO=3`): socket.io 1.x/2.x clients. The client pings.
    V3,
    /// Revision 4 (`EIO=4`): socket.io 3.x/4.x clients. The server pings.
    V4,
}

impl Protocol {
    /// Parses the `EIO` query value: exactly `3` or `4`.
    pub fn from_query(value: &str) -> Option<Protocol> {
        match value {
            "3" => Some(Protocol::V3),
            "4" => Some(Protocol::V4),
            _ => None,
        }
    }
}

/// Which origins polling responses grant through CORS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Every origin (`*`, or the request's `Origin` echoed when credentials are allowed).
    Any,
    /// Only these exact origins (e.g. `https://app.example.com`); the request's `Origin` is
    /// echoed when it is one of them, and no CORS header is sent otherwise.
    List(Vec<String>),
}

/// The transports a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// HTTP long-polling.
    pub polling: bool,
    /// WebSocket.
    pub websocket: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Transports {
            polling: true,
            websocket: true,
        }
    }
}

/// Engine.IO settings of one endpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// v4: interval between server pings; v3: interval the client is told to ping at.
    pub ping_interval: Duration,
    /// v4: how long a pong may take; v3: added to `ping_interval` to bound client silence.
    pub ping_timeout: Duration,
    /// How long a probing WebSocket may take to send `5`.
    pub upgrade_timeout: Duration,
    /// Largest POST body / WebSocket frame accepted, in bytes (advertised as `maxPayload`).
    pub max_payload: usize,
    /// The endpoint path without trailing slash, e.g. `/socket.io`.
    pub path: String,
    /// Transports accepted.
    pub transports: Transports,
    /// Whether polling sessions may upgrade to WebSocket (advertised in `upgrades`).
    pub allow_upgrades: bool,
    /// Cookie name set to the sid on the polling handshake (`io` in the original), if any.
    pub cookie: Option<String>,
    /// The cookie's `Path` (`/` in the original).
    pub cookie_path: String,
    /// Whether the cookie is `HttpOnly` (it is in the original).
    pub cookie_http_only: bool,
    /// Origins granted by CORS on polling responses; `None` sends no CORS headers.
    pub cors_origins: Option<CorsOrigins>,
    /// Whether CORS responses allow credentials (the request's `Origin` is then echoed).
    pub cors_credentials: bool,
    /// Extra headers added to every polling handshake response.
    pub handshake_headers: Headers,
    /// Whether `EIO=3` clients are served.
    pub allow_eio3: bool,
    /// Most packets buffered for a polling client between two GETs; past it the session is
    /// closed as a slow consumer rather than growing memory.
    pub max_buffered_packets: usize,
    /// Most sessions open at once (`io.maxConnections`); a handshake over it gets `503` with
    /// an Engine.IO error body. `None`: unlimited.
    pub max_sessions: Option<usize>,
    /// Most handshakes per second (`io.maxHandshakesPerSecond`, a token bucket holding one
    /// second's worth); over it a handshake gets `503`. `None`: unlimited.
    pub max_handshakes_per_second: Option<u32>,
    /// Marks every session id this server makes: its first character is the
    /// [`SESSION_TAGS`]`[tag]` character, so an adapter running several servers in one process
    /// routes each later request of a session to the server that owns it from the `sid` alone
    /// ([`session_tag`]), with no shared table. `None` (the default): fully random ids.
    pub session_tag: Option<u8>,
}

/// How many distinct [`Config::session_tag`]s there are: one per character of the session
/// id's base64url alphabet.
pub const SESSION_TAGS: u8 = 64;

/// The tag a session id carries in its first character (see [`Config::session_tag`]); `None`
/// for an empty id or one that does not start with a base64url character. Any id has a tag:
/// whether it names a live session is for the server holding that tag to say.
pub fn session_tag(sid: &str) -> Option<u8> {
    let first = *sid.as_bytes().first()?;
    server::SID_ALPHABET
        .iter()
        .position(|&c| c == first)
        .and_then(|index| u8::try_from(index).ok())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(60_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            path: "/socket.io".to_owned(),
            transports: Transports::default(),
            allow_upgrades: true,
            cookie: None,
            cookie_path: "/".to_owned(),
            cookie_http_only: true,
            cors_origins: None,
            cors_credentials: false,
            handshake_headers: Headers::default(),
            allow_eio3: true,
            max_buffered_packets: 1_024,
            max_sessions: None,
            max_handshakes_per_second: None,
            session_tag: None,
        }
    }
}

/// What the handshake request of a session carried, shared with every layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    protocol: Protocol,
    raw_query: String,
    query: Vec<(String, String)>,
    headers: Headers,
    remote: Option<String>,
}

impl Handshake {
    /// Builds the record of a handshake request.
    pub fn new(protocol: Protocol, raw_query: &str, headers: Headers) -> Handshake {
        let query = urlencoded::pairs(raw_query)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let remote = headers
            .get("x-forwarded-for")
            .and_then(|v| v.split(',').next())
            .or_else(|| headers.get("x-real-ip"))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        Handshake {
            protocol,
            raw_query: raw_query.to_owned(),
            query,
            headers,
            remote,
        }
    }

    /// The Engine.IO revision of the session.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The raw query string of the handshake request (no leading `?`).
    pub fn raw_query(&self) -> &str {
        &self.raw_query
    }

    /// The decoded value of the first query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every decoded query pair, in order.
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The handshake request's headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The client address as told by a proxy (`X-Forwarded-For`'s first hop or `X-Real-IP`);
    /// the adapter's own peer address is not part of the request model.
    pub fn remote(&self) -> Option<&str> {
        self.remote.as_deref()
    }
}
