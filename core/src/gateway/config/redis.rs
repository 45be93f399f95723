//! Where the Redis store is: `config.yml`'s `redis:` section, else `REDIS_URL`, with
//! node_redis 3's rules (the original's client).
//!
//! URL form `redis://[user][:password]@host[:port][/db][?db=n&password=p]`; `rediss://` turns
//! TLS on; no host means 127.0.0.1 and no port 6379. As in node_redis 3 the user part is
//! ignored (it sent `AUTH <password>` only; Heroku-style `redis://h:pw@…` URLs rely on that).
//! In a `redis:` section, `url` wins over `host`, `port`, `password` / `auth_pass` and `db`,
//! and `tls` (true or a mapping of TLS options) turns TLS on.
//!
//! Unlike the original, which always used Redis, Courier uses its in-memory store when neither
//! the section nor `REDIS_URL` is given.
//!
//! A Redis Cluster is Courier's own addition: `cluster:` (a list of seed URLs) in the section,
//! or `REDIS_CLUSTER_URLS` (comma-separated; wins over `REDIS_URL`). Seeds are only where the
//! client first asks for the cluster's topology, so one of them may be down. They take the same
//! URL form (password and `rediss://` as above; every seed must agree on TLS), but a cluster has
//! only database 0, so another `db` is an error, as is `url`/`host`/`port` next to `cluster`.

use serde_yaml::{Mapping, Value};

use super::ConfigError;
use super::yaml::{Section, describe, parse_whole_number};

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Host name or address (default `127.0.0.1`).
    pub host: String,
    /// Port (default 6379).
    pub port: u16,
    /// TLS (`rediss://`, or `tls:` in YAML).
    pub tls: bool,
    /// `AUTH` password, if any.
    pub password: Option<String>,
    /// Database number (default 0).
    pub db: u32,
    /// `shards`: how many shards (hash tags) each site's users are spread over in the store
    /// (default [`DEFAULT_REDIS_SHARDS`]). Part of the stored layout: every node on one Redis
    /// must use the same count.
    pub shards: u32,
    /// `cluster`: the seed nodes `(host, port)` of a Redis Cluster; empty for a single node
    /// (then `host` and `port` say where it is).
    pub cluster: Vec<(String, u16)>,
}

/// Default of `redis.shards`.
pub const DEFAULT_REDIS_SHARDS: u32 = 4;
/// The most `redis.shards` accepts.
pub const MAX_REDIS_SHARDS: u32 = 1024;

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: "127.0.0.1".to_owned(),
            port: 6379,
            tls: false,
            password: None,
            db: 0,
            shards: DEFAULT_REDIS_SHARDS,
            cluster: Vec::new(),
        }
    }
}

impl RedisConfig {
    /// The connection URL for a Redis client library: `redis[s]://[:password@]host:port/db`,
    /// the password percent-encoded.
    pub fn url(&self) -> String {
        format!("{}/{}", self.node_url(&self.host, self.port), self.db)
    }

    /// The seed URLs of a cluster (`redis[s]://[:password@]host:port`, no database: a cluster
    /// has only 0); empty for a single node.
    pub fn cluster_urls(&self) -> Vec<String> {
        self.cluster
            .iter()
            .map(|(host, port)| self.node_url(host, *port))
            .collect()
    }

    fn node_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = self
            .password
            .as_deref()
            .map(|p| format!(":{}@", crate::urlencoded::encode_component(p)))
            .unwrap_or_default();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        format!("{scheme}://{auth}{host}:{port}")
    }

    /// Adds the seed nodes of `urls` (each in [`RedisConfig::apply_url`]'s form) as a cluster:
    /// their password and TLS apply to every node. `Err` says what is wrong.
    pub fn apply_cluster_urls<'u>(
        &mut self,
        urls: impl IntoIterator<Item = &'u str>,
        warnings: &mut Vec<String>,
        source: &str,
    ) -> Result<(), String> {
        let mut tls = None;
        for (n, url) in urls.into_iter().enumerate() {
            let mut seed = RedisConfig {
                db: 0,
                ..RedisConfig::default()
            };
            seed.apply_url(url, warnings, source)
                .map_err(|p| format!("seed {} {p}", n + 1))?;
            if seed.db != 0 {
                return Err(format!(
                    "seed {} selects database {}, but a Redis Cluster has only database 0",
                    n + 1,
                    seed.db
                ));
            }
            if *tls.get_or_insert(seed.tls) != seed.tls {
                return Err(
                    "mixes redis:// and rediss:// seeds: every node of a cluster is reached \
                     the same way"
                        .to_owned(),
                );
            }
            if seed.password.is_some() {
                self.password = seed.password;
            }
            self.cluster.push((seed.host, seed.port));
        }
        if self.cluster.is_empty() {
            return Err("lists no seed node (give at least one redis://host:port)".to_owned());
        }
        self.tls |= tls.unwrap_or(false);
        Ok(())
    }

    /// Applies a node_redis-style URL over these settings. `Err` says what is wrong.
    pub fn apply_url(
        &mut self,
        url: &str,
        warnings: &mut Vec<String>,
        source: &str,
    ) -> Result<(), String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("rediss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("redis://") {
            (false, rest)
        } else {
            return Err(format!(
                "must start with redis:// or rediss://, got {url:?}"
            ));
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters".to_owned());
        }
        self.tls |= tls;
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
        let (auth, host_port) = match authority.rsplit_once('@') {
            Some((auth, host_port)) => (Some(auth), host_port),
            None => (None, authority),
        };
        if let Some((_, password)) = auth.and_then(|a| a.split_once(':'))
            && !password.is_empty()
        {
            self.password = Some(percent_decode(password));
        }
        let (host, port) = split_host_port(host_port)?;
        if !host.is_empty() {
            self.host = host.to_owned();
        }
        if let Some(port) = port {
            self.port = parse_port(port).ok_or_else(|| format!("has a bad port {port:?}"))?;
        }
        if !path.is_empty() {
            self.db =
                parse_db(path).ok_or_else(|| format!("has a bad database number {path:?}"))?;
        }
        for (key, value) in crate::urlencoded::pairs(query) {
            match key.as_ref() {
                "db" => {
                    self.db = parse_db(&value)
                        .ok_or_else(|| format!("has a bad db parameter {value:?}"))?
                }
                "password" => self.password = Some(value.into_owned()).filter(|p| !p.is_empty()),
                other => warnings.push(format!(
                    "{source}: redis url parameter {other:?} is ignored"
                )),
            }
        }
        Ok(())
    }
}

fn split_host_port(host_port: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = host_port.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| "has an unterminated IPv6 address".to_owned())?;
        return Ok((host, tail.strip_prefix(':').filter(|p| !p.is_empty())));
    }
    Ok(match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port).filter(|p| !p.is_empty())),
        None => (host_port, None),
    })
}

fn parse_port(text: &str) -> Option<u16> {
    parse_whole_number(text)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
}

fn parse_db(text: &str) -> Option<u32> {
    parse_whole_number(text).and_then(|d| u32::try_from(d).ok())
}

/// `%XX` decoding for URL user-info (no `+` rule there); bad escapes stay as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const KNOWN: [&str; 9] = [
    "cluster",
    "url",
    "host",
    "port",
    "password",
    "auth_pass",
    "db",
    "tls",
    "shards",
];

/// Reads a `redis:` mapping.
pub(super) fn redis_from_yaml(
    source: &str,
    context: &str,
    map: &Mapping,
    warnings: &mut Vec<String>,
) -> Result<RedisConfig, ConfigError> {
    let section = Section {
        source,
        context,
        map,
    };
    section.warn_unknown(&KNOWN, &[], warnings);
    let mut redis = RedisConfig::default();
    if let Some(host) = section.string("host")? {
        redis.host = host.to_owned();
    }
    if let Some(value) = section.get("port") {
        let port = match value {
            Value::Number(n) => n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0),
            Value::String(s) => parse_port(s),
            _ => None,
        };
        redis.port = port.ok_or_else(|| {
            section.error(
                "port",
                format!(
                    "must be a port number from 1 to 65535, got {}",
                    describe(value)
                ),
            )
        })?;
    }
    if let Some(password) = section.string("auth_pass")? {
        redis.password = Some(password.to_owned());
    }
    if let Some(password) = section.string("password")? {
        redis.password = Some(password.to_owned());
    }
    if let Some(db) = section.whole_number("db", "a database number")? {
        redis.db = u32::try_from(db).map_err(|_| section.error("db", "is too large"))?;
    }
    if let Some(shards) = section.whole_number("shards", "a shard count")? {
        redis.shards = u32::try_from(shards)
            .ok()
            .filter(|n| (1..=MAX_REDIS_SHARDS).contains(n))
            .ok_or_else(|| {
                section.error(
                    "shards",
                    format!("must be from 1 to {MAX_REDIS_SHARDS}, got {shards}"),
                )
            })?;
    }
    match section.get("tls") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true) | Value::Mapping(_)) => redis.tls = true,
        Some(other) => {
            return Err(section.error(
                "tls",
                format!("must be true, false or a mapping, got {}", describe(other)),
            ));
        }
    }
    if let Some(url) = section.string("url")? {
        redis
            .apply_url(url, warnings, source)
            .map_err(|p| section.error("url", p))?;
    }
    if let Some(value) = section.get("cluster") {
        for key in ["url", "host", "port"] {
            if section.get(key).is_some() {
                return Err(section.error(
                    "cluster",
                    format!(
                        "and {key} are both given: a cluster is reached through its seed \
                         URLs only (remove {key})"
                    ),
                ));
            }
        }
        if redis.db != 0 {
            return Err(section.error(
                "db",
                format!("is {}, but a Redis Cluster has only database 0", redis.db),
            ));
        }
        let Value::Sequence(items) = value else {
            return Err(section.error(
                "cluster",
                format!("must be a list of redis:// URLs, got {}", describe(value)),
            ));
        };
        let mut urls = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(url) => urls.push(url.as_str()),
                other => {
                    return Err(section.error(
                        "cluster",
                        format!(
                            "must be a list of redis:// URLs, got an entry {}",
                            describe(other)
                        ),
                    ));
                }
            }
        }
        redis
            .apply_cluster_urls(urls, warnings, source)
            .map_err(|p| section.error("cluster", p))?;
    }
    Ok(redis)
}

/// Reads `REDIS_CLUSTER_URLS` (comma-separated seed URLs).
pub(super) fn redis_cluster_from_env(
    urls: &str,
    warnings: &mut Vec<String>,
) -> Result<RedisConfig, ConfigError> {
    let mut redis = RedisConfig::default();
    redis
        .apply_cluster_urls(
            urls.split(',').map(str::trim).filter(|url| !url.is_empty()),
            warnings,
            "environment",
        )
        .map_err(|p| ConfigError {
            source_name: "environment".to_owned(),
            message: format!("REDIS_CLUSTER_URLS {p}"),
        })?;
    Ok(redis)
}

/// Reads `REDIS_URL`.
pub(super) fn redis_from_env(
    url: &str,
    warnings: &mut Vec<String>,
) -> Result<RedisConfig, ConfigError> {
    let mut redis = RedisConfig::default();
    redis
        .apply_url(url, warnings, "environment")
        .map_err(|p| ConfigError {
            source_name: "environment".to_owned(),
            message: format!("REDIS_URL {p}"),
        })?;
    Ok(redis)
}
