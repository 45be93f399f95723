//! # courier-tests
//!
//! Fixtures for Courier's cross-runtime integration tests (ARCHITECTURE.md): every scenario runs the
//! real `courier-tokio` and `courier-smol` binaries, a real `redis-server` when it needs one, real
//! socket.io clients from npm and PyPI (through the line-oriented JSON drivers in
//! `tests/clients/`), and a stub site backend started by the test itself.
//!
//! - [`Gateway`]: a Courier process in its own working directory (config.yml / sites.yml), on a
//!   free port, with its log lines captured; kill, kill -9, SIGTERM, restart.
//! - [`Redis`]: a private `redis-server` on a free port, with a raw RESP client.
//! - [`RedisCluster`]: a private Redis Cluster (masters + replicas on free ports), with the
//!   master of a key's slot and `kill -9` + failover.
//! - [`StubSite`]: the site's auth endpoint (answers per token) and `updateUserUrl` endpoint,
//!   recording every request.
//! - [`Browser`]: a real headless Chromium (the distribution's) driven by playwright-core.
//! - [`Client`]: one real socket.io client process ([`Lib`] × [`Transports`]).
//! - [`send`] / [`send_json`] / [`http`]: raw HTTP/1.1 requests (`POST /send`, `GET /healthcheck`, ...).
//! - [`PollingSession`] / [`RawWebSocket`]: raw Engine.IO polling and WebSocket for wire-level
//!   checks.
//! - [`scenario!`]: one `#[test]` per binary from one body; [`matrix`]: client combinations.
//!
//! Every fixture stops what it started when dropped, and every wait has a deadline that fails
//! loudly with the process output that explains it.

mod browser;
mod client;
mod gateway;
mod http;
pub mod matrix;
mod metrics;
mod paths;
mod polling;
mod redis;
mod redis_cluster;
mod reference_server;
mod stub_site;
mod tempdir;
mod wait;
mod websocket;

pub use browser::{Browser, chromium_path};
pub use client::{Client, ClientBuilder, Event, Lib, Transports};
pub use gateway::{Bin, Gateway, GatewayBuilder, Site};
pub use http::{HttpResponse, http, parse_response, raw_request, send, send_json};
pub use metrics::Metrics;
pub use paths::workspace_root;
pub use polling::{PollingSession, decode_payload, encode_payload};
pub use redis::{Redis, Resp};
pub use redis_cluster::RedisCluster;
pub use reference_server::ReferenceServer;
pub use stub_site::{AuthReply, RecordedRequest, StubSite};
pub use tempdir::TempDir;
pub use wait::{DEFAULT_TIMEOUT, free_port, wait_until};
pub use websocket::RawWebSocket;

/// Re-exported so scenarios can build JSON without their own dependency line.
pub use serde_json::{self, Value, json};

/// Generates one `#[test]` per Courier binary from one body.
///
/// ```ignore
/// scenario!(healthcheck_answers_ok, |bin| {
///     let gw = Gateway::builder(bin).start();
///     assert_eq!(http(gw.port(), "GET", "/healthcheck", &[], b"").body, "ok");
/// });
/// ```
///
/// expands to a module `healthcheck_answers_ok` holding the tests `tokio` and `smol`, so the
/// test names are `healthcheck_answers_ok::tokio` and `healthcheck_answers_ok::smol`
/// (`cargo test tokio` runs one runtime's half). The body is an ordinary closure taking [`Bin`].
#[macro_export]
macro_rules! scenario {
    ($(#[$meta:meta])* $name:ident, |$bin:ident| $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn scenario($bin: $crate::Bin) $body

            #[test]
            fn tokio() {
                scenario($crate::Bin::Tokio)
            }

            #[test]
            fn smol() {
                scenario($crate::Bin::Smol)
            }
        }
    };
}
