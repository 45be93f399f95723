//! The `io:` options of the configuration, as the Engine.IO / Socket.IO layers' settings.

use std::time::Duration;

use super::config::{IoOptions, Transport};
use crate::{eio, sio};

/// The Socket.IO server settings for these `io:` options.
///
/// CORS for polling is the original's: the request's `Origin` echoed with credentials (`*`
/// without one). Which origins may connect at all (`io.origins`) is checked by the gateway
/// before a request reaches the engine, with socket.io 1.x's pattern rules.
pub fn sio_config(io: &IoOptions) -> sio::Config {
    let eio = eio::Config {
        ping_interval: Duration::from_millis(io.ping_interval_ms),
        ping_timeout: Duration::from_millis(io.ping_timeout_ms),
        upgrade_timeout: Duration::from_millis(io.upgrade_timeout_ms),
        max_payload: usize::try_from(io.max_payload).unwrap_or(usize::MAX),
        path: io.path.clone(),
        transports: eio::Transports {
            polling: io.transports.contains(&Transport::Polling),
            websocket: io.transports.contains(&Transport::Websocket),
        },
        allow_upgrades: io.allow_upgrades,
        cookie: io.cookie.clone(),
        cookie_path: io.cookie_path.clone(),
        cookie_http_only: io.cookie_http_only,
        cors_origins: Some(eio::CorsOrigins::Any),
        cors_credentials: true,
        max_sessions: io
            .max_connections
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        max_handshakes_per_second: io.max_handshakes_per_second,
        ..eio::Config::default()
    };
    let eio = eio::Config {
        max_buffered_packets: io
            .max_buffered_messages
            .map_or(eio.max_buffered_packets, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        ..eio
    };
    sio::Config {
        eio,
        connect_timeout: Duration::from_millis(io.connect_timeout_ms),
        ..sio::Config::default()
    }
}
