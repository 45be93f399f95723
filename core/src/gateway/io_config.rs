//! The `io:` options of the configuration, as the Engine.IO / Socket.IO layers' settings.

use std::time::Duration;

use super::config::IoOptions;
use crate::{eio, sio};

/// The Socket.IO server settings for these `io:` options.
pub fn sio_config(io: &IoOptions) -> sio::Config {
    let eio = eio::Config {
        ping_interval: Duration::from_millis(io.ping_interval_ms),
        ping_timeout: Duration::from_millis(io.ping_timeout_ms),
        upgrade_timeout: Duration::from_millis(io.upgrade_timeout_ms),
        max_payload: io.max_payload,
        path: io.path.clone(),
        ..eio::Config::default()
    };
    sio::Config {
        eio,
        connect_timeout: Duration::from_millis(io.connect_timeout_ms),
        ..sio::Config::default()
    }
}
