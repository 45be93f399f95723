//! The `io:` section of `config.yml` (the Engine.IO / Socket.IO server's options; not to be
//! confused with the `courier-io` crate): the options the original passed unchanged to
//! socket.io 1.7 / engine.io 1.8, read here into the subset Courier implements, and turned
//! into the protocol layers' settings ([`IoOptions::sio_config`]).
//!
//! Defaults are the original's (except `maxHttpBufferSize`, 1e6 rather than
//! 1e8). Keys the original accepted but Courier does not implement (`perMessageDeflate`,
//! `httpCompression`, …) give a warning, never an error, so an existing `config.yml` starts.

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::ConfigError;
use super::yaml::{Section, describe};
use crate::{eio, sio};

/// Which transports clients may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP long polling (XHR and JSONP).
    Polling,
    /// WebSocket.
    Websocket,
}

/// How many engines (whole gateways, each with its own driver) one process runs
/// (`io.engines`, environment `IO_ENGINES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engines {
    /// Exactly this many (1 to [`MAX_ENGINES`]).
    Count(u32),
    /// `auto`: one per available core with the Redis store, one with the in-memory store
    /// (the adapter knows the cores; the core does not).
    Auto,
}

impl Default for Engines {
    fn default() -> Self {
        Engines::Count(1)
    }
}

/// The most engines one process runs: each marks its session ids with one of the session id
/// alphabet's 64 characters.
pub const MAX_ENGINES: u32 = crate::eio::SESSION_TAGS as u32;
// `Engines::EXPECTED` spells the bound out.
const _: () = assert!(MAX_ENGINES == 64);

impl Engines {
    /// What a valid value is, for error messages.
    pub const EXPECTED: &'static str = "must be auto or a whole number from 1 to 64";

    /// Parses `auto` or a whole number from 1 to [`MAX_ENGINES`].
    pub fn parse(text: &str) -> Option<Engines> {
        if text == "auto" {
            return Some(Engines::Auto);
        }
        super::yaml::parse_whole_number(text)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_ENGINES).contains(n))
            .map(Engines::Count)
    }

    /// The number of engines on a machine with `cores` available cores and, when `redis`,
    /// the Redis store.
    pub fn resolve(self, cores: usize, redis: bool) -> u32 {
        match self {
            Engines::Count(n) => n,
            Engines::Auto if redis => u32::try_from(cores)
                .unwrap_or(MAX_ENGINES)
                .clamp(1, MAX_ENGINES),
            Engines::Auto => 1,
        }
    }
}

/// Which `Origin`s may connect (socket.io's `origins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Every origin (`*:*`, the default).
    Any,
    /// Only these `scheme://host[:port]` or `host:port` patterns, where `*` stands for any
    /// host or any port (socket.io 1.x syntax, e.g. `example.com:*`).
    List(Vec<String>),
}

impl Origins {
    /// Whether a request may connect, by socket.io 1.7's rule. `origin` is the request's
    /// `Origin` header, or its `Referer` when it has none. With a list configured, a request
    /// with neither (or `Origin: null`) is refused, as in the original. Otherwise the origin's
    /// `host:port` (port defaulting from the scheme) must be listed as `host:port`, `host:*` or
    /// `*:port`; listing the full origin (`https://example.com`) also works (a Courier
    /// extension).
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let list = match self {
            Origins::Any => return true,
            Origins::List(list) => list,
        };
        let Some(origin) = origin.filter(|o| !o.is_empty() && *o != "null") else {
            return false;
        };
        if list.iter().any(|allowed| allowed == origin) {
            return true;
        }
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let default_port = if scheme.eq_ignore_ascii_case("https") {
            "443"
        } else {
            "80"
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port),
            _ => (authority, default_port),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let candidates = [
            format!("{host}:{port}"),
            format!("{host}:*"),
            format!("*:{port}"),
        ];
        list.iter()
            .any(|allowed| candidates.iter().any(|c| c == allowed))
    }
}

/// Engine.IO / Socket.IO server options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoOptions {
    /// `pingInterval` (ms), default 25000.
    pub ping_interval_ms: u64,
    /// `pingTimeout` (ms), default 60000.
    pub ping_timeout_ms: u64,
    /// `upgradeTimeout` (ms), default 10000.
    pub upgrade_timeout_ms: u64,
    /// `maxHttpBufferSize` (bytes), default 1 000 000: the largest message or polling body.
    pub max_payload: u64,
    /// `path`, normalised to a leading `/` and no trailing `/`; default `/socket.io`.
    pub path: String,
    /// `transports`, default both.
    pub transports: Vec<Transport>,
    /// `allowUpgrades`, default true.
    pub allow_upgrades: bool,
    /// `cookie`: the handshake cookie's name, `None` when `cookie: false`; default `io`.
    pub cookie: Option<String>,
    /// `cookiePath`, default `/`.
    pub cookie_path: String,
    /// `cookieHttpOnly`, default true.
    pub cookie_http_only: bool,
    /// `serveClient`: serve the socket.io-client 1.7.4 bundle, default true.
    pub serve_client: bool,
    /// `origins`, default every origin.
    pub origins: Origins,
    /// `connectTimeout` (ms), default 45000: how long an Engine.IO 4 session may stay without
    /// connecting a namespace (socket.io 4's rule; EIO3 sessions are connected to `/` at once).
    pub connect_timeout_ms: u64,
    /// `maxConnections`: most Engine.IO sessions this node holds at once; `None` (default)
    /// unlimited. Over it a handshake gets `503` with an Engine.IO error body.
    pub max_connections: Option<u64>,
    /// `maxHandshakesPerSecond`: most new sessions per second (bursts up to one second's
    /// worth); `None` (default) unlimited. Over it a handshake gets `503`.
    pub max_handshakes_per_second: Option<u32>,
    /// `maxBufferedMessages`: how many messages may wait for one client that does not read
    /// (a slow consumer) before it is disconnected; `None` keeps the defaults (256 frames
    /// for a WebSocket, 1024 packets for a polling session).
    pub max_buffered_messages: Option<u64>,
    /// `requestTimeout` (ms), default 30000 (the time Courier gives a request head): how long a
    /// request body may take to arrive in full once its head is read; later, the request is
    /// answered 408 and its connection closed (Node's `server.requestTimeout` plays this part).
    pub request_timeout_ms: u64,
    /// `requestBodyBudget` (bytes): how much all request bodies being read and handled may hold
    /// together; a request that would pass it gets 503. Default `DEFAULT_REQUEST_BODY_BUDGET`
    /// (64 MiB, or `maxHttpBufferSize` when that is larger); never below `maxHttpBufferSize`, so
    /// the largest allowed body always fits.
    pub request_body_budget: u64,
    /// `engines`: how many engines this process runs (see [`Engines`]); default 1. More than
    /// one needs the Redis store: the in-memory store's queues live inside one engine.
    pub engines: Engines,
}

/// The default of `io.requestBodyBudget`: 64 MiB, room for 64 maximal polling POSTs or 655
/// maximal `/send` bodies at once.
pub const DEFAULT_REQUEST_BODY_BUDGET: u64 = 64 << 20;

impl Default for IoOptions {
    fn default() -> Self {
        IoOptions {
            ping_interval_ms: 25_000,
            ping_timeout_ms: 60_000,
            upgrade_timeout_ms: 10_000,
            max_payload: 1_000_000,
            path: "/socket.io".to_owned(),
            transports: vec![Transport::Polling, Transport::Websocket],
            allow_upgrades: true,
            cookie: Some("io".to_owned()),
            cookie_path: "/".to_owned(),
            cookie_http_only: true,
            serve_client: true,
            origins: Origins::Any,
            connect_timeout_ms: 45_000,
            max_connections: None,
            max_handshakes_per_second: None,
            max_buffered_messages: None,
            request_timeout_ms: 30_000,
            request_body_budget: DEFAULT_REQUEST_BODY_BUDGET,
            engines: Engines::default(),
        }
    }
}

impl IoOptions {
    /// The path with its trailing slash, as Engine.IO matches it (`/socket.io/`).
    pub fn path_with_slash(&self) -> String {
        format!("{}/", self.path)
    }

    /// The Socket.IO server settings for these options.
    ///
    /// CORS for polling is the original's: the request's `Origin` echoed with credentials (`*`
    /// without one). Which origins may connect at all (`io.origins`) is checked by the gateway
    /// before a request reaches the engine, with socket.io 1.x's pattern rules.
    pub fn sio_config(&self) -> sio::Config {
        let defaults = eio::Config::default();
        let eio = eio::Config {
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            ping_timeout: Duration::from_millis(self.ping_timeout_ms),
            upgrade_timeout: Duration::from_millis(self.upgrade_timeout_ms),
            max_payload: usize::try_from(self.max_payload).unwrap_or(usize::MAX),
            path: self.path.clone(),
            transports: eio::Transports {
                polling: self.transports.contains(&Transport::Polling),
                websocket: self.transports.contains(&Transport::Websocket),
            },
            allow_upgrades: self.allow_upgrades,
            cookie: self.cookie.clone(),
            cookie_path: self.cookie_path.clone(),
            cookie_http_only: self.cookie_http_only,
            cors_origins: Some(eio::CorsOrigins::Any),
            cors_credentials: true,
            max_sessions: self
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_handshakes_per_second: self.max_handshakes_per_second,
            max_buffered_packets: self
                .max_buffered_messages
                .map_or(defaults.max_buffered_packets, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            ..defaults
        };
        sio::Config {
            eio,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            ..sio::Config::default()
        }
    }
}

const KNOWN: [&str; 19] = [
    "pingInterval",
    "pingTimeout",
    "upgradeTimeout",
    "maxHttpBufferSize",
    "path",
    "transports",
    "allowUpgrades",
    "cookie",
    "cookiePath",
    "cookieHttpOnly",
    "serveClient",
    "origins",
    "connectTimeout",
    "maxConnections",
    "maxHandshakesPerSecond",
    "maxBufferedMessages",
    "requestTimeout",
    "requestBodyBudget",
    "engines",
];

const NOT_IMPLEMENTED: [(&str, &str); 6] = [
    (
        "perMessageDeflate",
        "is not supported by Courier and is ignored (messages are sent uncompressed)",
    ),
    (
        "httpCompression",
        "is not supported by Courier and is ignored (responses are sent uncompressed)",
    ),
    ("allowRequest", "cannot be set from YAML and is ignored"),
    ("wsEngine", "is not used by Courier and is ignored"),
    (
        "adapter",
        "is not used by Courier and is ignored (Redis fan-out is built in)",
    ),
    ("initialPacket", "is not used by Courier and is ignored"),
];

/// Normalises `path`: leading `/`, no trailing `/` (`socket.io/` → `/socket.io`).
pub(super) fn normalise_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    let trimmed = trimmed.trim_start_matches('/');
    format!("/{trimmed}")
}

/// Reads the `io:` mapping of a `config.yml` section.
pub(super) fn io_from_yaml(
    source: &str,
    context: &str,
    map: &Mapping,
    warnings: &mut Vec<String>,
) -> Result<IoOptions, ConfigError> {
    let section = Section {
        source,
        context,
        map,
    };
    section.warn_unknown(&KNOWN, &NOT_IMPLEMENTED, warnings);
    let mut io = IoOptions::default();
    let ms = "a whole number of milliseconds";
    // A key that may be absent but not 0.
    let positive = |key: &str, what: &str| match section.whole_number(key, what)? {
        Some(0) => Err(section.error(key, "must be greater than 0")),
        value => Ok(value),
    };
    io.ping_interval_ms = positive("pingInterval", ms)?.unwrap_or(io.ping_interval_ms);
    io.ping_timeout_ms = positive("pingTimeout", ms)?.unwrap_or(io.ping_timeout_ms);
    io.upgrade_timeout_ms = positive("upgradeTimeout", ms)?.unwrap_or(io.upgrade_timeout_ms);
    io.connect_timeout_ms = positive("connectTimeout", ms)?.unwrap_or(io.connect_timeout_ms);
    io.max_payload =
        positive("maxHttpBufferSize", "a whole number of bytes")?.unwrap_or(io.max_payload);
    io.max_connections = positive("maxConnections", "a whole number of connections")?;
    io.max_handshakes_per_second =
        positive("maxHandshakesPerSecond", "a whole number of handshakes")?
            .map(|rate| {
                u32::try_from(rate).map_err(|_| {
                    section.error(
                        "maxHandshakesPerSecond",
                        format!("must be at most {}", u32::MAX),
                    )
                })
            })
            .transpose()?;
    io.max_buffered_messages = positive("maxBufferedMessages", "a whole number of messages")?;
    io.request_timeout_ms = positive("requestTimeout", ms)?.unwrap_or(io.request_timeout_ms);
    io.request_body_budget = match section
        .whole_number("requestBodyBudget", "a whole number of bytes")?
    {
        Some(budget) if budget < io.max_payload => {
            return Err(section.error(
                "requestBodyBudget",
                format!(
                    "must be at least maxHttpBufferSize ({}), so the largest allowed body fits, got {budget}",
                    io.max_payload
                ),
            ));
        }
        Some(budget) => budget,
        None => io.request_body_budget.max(io.max_payload),
    };
    if let Some(value) = section.get("engines") {
        let text = match value {
            Value::Number(n) => Some(n.to_string()),
            Value::String(text) => Some(text.clone()),
            _ => None,
        };
        io.engines = text.as_deref().and_then(Engines::parse).ok_or_else(|| {
            section.error(
                "engines",
                format!("{}, got {}", Engines::EXPECTED, describe(value)),
            )
        })?;
    }
    if let Some(path) = section.string("path")? {
        if path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(section.error("path", format!("must be a URL path, got {path:?}")));
        }
        io.path = normalise_path(path);
    }
    if let Some(value) = section.get("transports") {
        io.transports = transports(&section, value)?;
    }
    if let Some(allow) = section.boolean("allowUpgrades")? {
        io.allow_upgrades = allow;
    }
    match section.get("cookie") {
        None => {}
        Some(Value::Bool(false)) => io.cookie = None,
        Some(Value::String(name)) if is_cookie_name(name) => io.cookie = Some(name.clone()),
        Some(other) => {
            return Err(section.error(
                "cookie",
                format!("must be a cookie name or false, got {}", describe(other)),
            ));
        }
    }
    if let Some(path) = section.string("cookiePath")? {
        io.cookie_path = path.to_owned();
    }
    if let Some(http_only) = section.boolean("cookieHttpOnly")? {
        io.cookie_http_only = http_only;
    }
    if let Some(serve) = section.boolean("serveClient")? {
        io.serve_client = serve;
    }
    if let Some(value) = section.get("origins") {
        io.origins = origins(&section, value)?;
    }
    Ok(io)
}

fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

fn transports(section: &Section<'_>, value: &Value) -> Result<Vec<Transport>, ConfigError> {
    let Value::Sequence(items) = value else {
        return Err(section.error(
            "transports",
            format!("must be a list, got {}", describe(value)),
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let transport = match item.as_str() {
            Some("polling") => Transport::Polling,
            Some("websocket") => Transport::Websocket,
            _ => {
                return Err(section.error(
                    "transports",
                    format!(
                        "may only list polling and websocket, got {}",
                        describe(item)
                    ),
                ));
            }
        };
        if !out.contains(&transport) {
            out.push(transport);
        }
    }
    if out.is_empty() {
        return Err(section.error("transports", "must list at least one transport"));
    }
    Ok(out)
}

fn origins(section: &Section<'_>, value: &Value) -> Result<Origins, ConfigError> {
    let entries: Vec<String> = match value {
        // socket.io 1.x: a space-separated string.
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    section.error(
                        "origins",
                        format!("must list text entries, got {}", describe(item)),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(section.error(
                "origins",
                format!("must be text or a list, got {}", describe(other)),
            ));
        }
    };
    if entries.is_empty() {
        return Err(section.error(
            "origins",
            "must not be empty (use \"*:*\" for every origin)",
        ));
    }
    if entries.iter().any(|e| e == "*:*" || e == "*") {
        return Ok(Origins::Any);
    }
    Ok(Origins::List(entries))
}
