//! Configuration: `config.yml[<NODE_ENV or production>]`, `sites.yml` and the original's
//! environment variables, read with the original's precedence into one validated [`Config`].
//!
//! Loading is pure: the adapter reads the files and the environment and hands their text to
//! [`load`]; nothing here touches the file system. A problem that would make the service
//! misbehave (a missing `apiKey`, a port that is not a number, a URL that is not http) is a
//! [`ConfigError`] naming the file (or `environment`), the place and the key; a key Courier
//! does not know is only a warning in [`Config::warnings`], so configurations written for the
//! original keep starting.
//!
//! Precedence (the original's, behaviour 36 in tests/README.md, with README Differences #7):
//! - environment name: `NODE_ENV`, else `production`;
//! - port: `PORT` > `config.yml` `port` > 1337;
//! - device ttl: `config.yml` `device_ttl` (0 allowed: keep until acknowledged) >
//!   `DEVICE_TTL` > 3600 seconds;
//! - Redis: `config.yml` `redis` > `REDIS_CLUSTER_URLS` (a Redis Cluster) > `REDIS_URL` > none
//!   (Courier's in-memory store);
//! - sites: `SITE_NAME` (+ `AUTH_URL`, `AUTH_SCHEME`, `API_KEY`, `USER_ROOM_PREFIX`,
//!   `UPDATE_USER_URL`, `PUBLIC_CHANNEL`, and Courier's `HTTP_TIMEOUT`) > `sites.yml` >
//!   `config.yml` `sites`;
//! - flake ids: Courier's `FLAKE_ID` / `FLAKE_DATACENTER` / `FLAKE_WORKER` > `config.yml`
//!   `flakeid` > datacenter 0, worker 0, Unix epoch (per-node variables, so that nodes
//!   sharing one `config.yml` and one Redis never make the same id).
//!
//! An empty environment variable counts as unset, as JavaScript's `||` made it.

mod admin;
mod io;
mod load;
mod ops;
mod redis;
mod site;
mod yaml;

use std::collections::BTreeMap;
use std::time::Duration;

pub use admin::{ADMIN_API_KEY_ENV, AdminKey};
pub use io::{Engines, IoOptions, MAX_ENGINES, Origins, Transport};
pub use load::load;
pub use ops::{ClusterOptions, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS};
pub use redis::{DEFAULT_REDIS_SHARDS, MAX_REDIS_SHARDS, RedisConfig};
pub use site::{DEFAULT_HTTP_TIMEOUT, SITE_ENV_VARS, Site};

use super::batch::BatchLimits;
use super::flake::FlakeSettings;

/// One configuration file's path (for messages) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as the operator would recognise it, e.g. `config.yml`.
    pub path: String,
    /// The whole file.
    pub text: String,
}

/// Everything configuration is read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// `config.yml`, if the file exists.
    pub config_yml: Option<SourceFile>,
    /// `sites.yml`, if the file exists.
    pub sites_yml: Option<SourceFile>,
    /// The process environment.
    pub env: BTreeMap<String, String>,
}

/// A configuration that cannot be used. Displays as `<source>: <message>`, e.g.
/// `sites.yml: site "goodcity": apiKey is missing`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// The file path, or `environment`.
    pub source_name: String,
    /// What is wrong, naming the section and key.
    pub message: String,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The environment name (`NODE_ENV`, default `production`): the `config.yml` section used.
    pub env: String,
    /// HTTP listen port.
    pub port: u16,
    /// `device_ttl` in seconds: how long a disconnected device keeps its queue; 0 = until
    /// acknowledged. Sent to clients in `_settings` as a JSON number.
    pub device_ttl_s: u64,
    /// Redis, when configured; `None` selects the in-memory store.
    pub redis: Option<RedisConfig>,
    /// Flake id generator settings.
    pub flake: FlakeSettings,
    /// Engine.IO / Socket.IO options (`io:`).
    pub io: IoOptions,
    /// The largest `_batch` piece (`batch:`), derived from `io.maxHttpBufferSize` by default.
    pub batch: BatchLimits,
    /// The sites, in configuration order.
    pub sites: Vec<Site>,
    /// `metrics.bind` (or `METRICS_BIND`): a second address serving `/metrics` and `/readyz`.
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// `cluster:`: the node heartbeat.
    pub cluster: ClusterOptions,
    /// The operator key of the status page (`admin.apiKey`, `ADMIN_API_KEY`); `None` turns
    /// the page off.
    pub admin_key: Option<AdminKey>,
    /// Things worth logging at startup (ignored keys, ignored files).
    pub warnings: Vec<String>,
}

/// The demo site's name.
pub const DEMO_SITE: &str = "demo";
/// The demo site's `apiKey`.
pub const DEMO_API_KEY: &str = "demo";

impl Config {
    /// A self-contained configuration for trying Courier out: defaults everywhere, no Redis,
    /// and one site `demo` (namespace `/demo`, `apiKey` `demo`, `userRoomPrefix` `user_`)
    /// whose auth is not an HTTP call: token `t` is admitted with rooms `user_<t>` and `staff`
    /// ([`crate::gateway::auth::demo_rooms`]).
    pub fn demo() -> Config {
        Config {
            env: "production".to_owned(),
            port: load::DEFAULT_PORT,
            device_ttl_s: load::DEFAULT_DEVICE_TTL_S,
            redis: None,
            flake: FlakeSettings::default(),
            io: IoOptions::default(),
            batch: BatchLimits::for_max_payload(IoOptions::default().max_payload),
            sites: vec![Site {
                name: DEMO_SITE.to_owned(),
                auth_url: String::new(),
                auth_scheme: "Bearer".to_owned(),
                api_key: DEMO_API_KEY.to_owned(),
                user_room_prefix: Some("user_".to_owned()),
                update_user_url: None,
                public_channel: None,
                http_timeout: DEFAULT_HTTP_TIMEOUT,
                demo: true,
            }],
            metrics_bind: None,
            cluster: ClusterOptions::default(),
            admin_key: None,
            warnings: Vec::new(),
        }
    }

    /// The site named `name` (exact, case-sensitive).
    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|site| site.name == name)
    }

    /// `device_ttl` in milliseconds (0 = keep until acknowledged).
    pub fn device_ttl_ms(&self) -> u64 {
        self.device_ttl_s.saturating_mul(1000)
    }

    /// `device_ttl` as a duration.
    pub fn device_ttl(&self) -> Duration {
        Duration::from_secs(self.device_ttl_s)
    }
}
