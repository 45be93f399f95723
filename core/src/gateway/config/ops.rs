//! Courier's operational keys of a `config.yml` section: `metrics:` (where `/metrics` is also
//! served) and `cluster:` (the node heartbeat that tells other nodes this one is alive).

use std::net::SocketAddr;

use serde_yaml::Mapping;

use super::ConfigError;
use super::yaml::Section;

/// Default `cluster.heartbeatInterval` (ms).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 2_000;
/// Default `cluster.heartbeatTimeout` (ms).
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 10_000;

/// The node heartbeat (only used with Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `heartbeatInterval` (ms): how often the node refreshes its heartbeat and reads the
    /// other nodes'.
    pub heartbeat_interval_ms: u64,
    /// `heartbeatTimeout` (ms): a node whose heartbeat is older than this is dead, and its
    /// devices count as disconnected since that heartbeat. At least twice the interval.
    pub heartbeat_timeout_ms: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            heartbeat_timeout_ms: DEFAULT_HEARTBEAT_TIMEOUT_MS,
        }
    }
}

/// Reads `cluster:`.
pub(super) fn cluster_from_yaml(
    source: &str,
    context: &str,
    map: &Mapping,
    warnings: &mut Vec<String>,
) -> Result<ClusterOptions, ConfigError> {
    let section = Section {
        source,
        context,
        map,
    };
    section.warn_unknown(&["heartbeatInterval", "heartbeatTimeout"], &[], warnings);
    let ms = "a whole number of milliseconds";
    let mut cluster = ClusterOptions::default();
    if let Some(interval) = section.whole_number("heartbeatInterval", ms)? {
        if interval == 0 {
            return Err(section.error("heartbeatInterval", "must be greater than 0"));
        }
        cluster.heartbeat_interval_ms = interval;
    }
    if let Some(timeout) = section.whole_number("heartbeatTimeout", ms)? {
        cluster.heartbeat_timeout_ms = timeout;
    }
    if cluster.heartbeat_timeout_ms < cluster.heartbeat_interval_ms.saturating_mul(2) {
        return Err(section.error(
            "heartbeatTimeout",
            format!(
                "must be at least twice heartbeatInterval ({} ms), got {} ms",
                cluster.heartbeat_interval_ms, cluster.heartbeat_timeout_ms
            ),
        ));
    }
    Ok(cluster)
}

/// Reads `metrics:`: `bind`, an `address:port` to serve `/metrics` (and `/readyz`) on as well.
pub(super) fn metrics_bind_from_yaml(
    source: &str,
    context: &str,
    map: &Mapping,
    warnings: &mut Vec<String>,
) -> Result<Option<SocketAddr>, ConfigError> {
    let section = Section {
        source,
        context,
        map,
    };
    section.warn_unknown(&["bind"], &[], warnings);
    match section.string("bind")? {
        None => Ok(None),
        Some(text) => parse_bind(text)
            .map(Some)
            .ok_or_else(|| section.error("bind", bind_problem(text))),
    }
}

/// An `address:port` (`127.0.0.1:9100`, `[::1]:9100`).
pub(super) fn parse_bind(text: &str) -> Option<SocketAddr> {
    text.trim().parse().ok()
}

/// What is wrong with a bind address.
pub(super) fn bind_problem(text: &str) -> String {
    format!("must be an address:port such as 127.0.0.1:9100, got {text:?}")
}
