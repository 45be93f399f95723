//! The factory both binaries hand to [`crate::cli_main`]: configuration files + environment →
//! courier-core's gateway plus the store it runs on.
//!
//! - No Redis configured → the embedded in-memory store (swept once a minute), said in the
//!   first log line; queues then live as long as the process.
//! - Redis configured → the Redis store and the cluster bus: several nodes share queues, the
//!   device registry and deliveries.
//! - `--demo` → the built-in demo site on the in-memory store, loopback only, with a ready-made
//!   `curl` printed to stderr; `ADMIN_API_KEY` opens the status page next to it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::time::Duration;

use courier_core::gateway::config::{
    self, ADMIN_API_KEY_ENV, AdminKey, Config, ConfigSources, DEMO_API_KEY, DEMO_SITE, SourceFile,
};
use courier_core::gateway::store::MemoryStore;
use courier_core::gateway::{EPOCH_CHECK_INTERVAL, EngineSlot, Gateway, GatewayOptions};

use crate::Startup;
use crate::redis_conn::RedisTarget;
use crate::redis_store::DEFAULT_PREFIX;
use crate::setup::{App, HeartbeatSetup, Limits, OpsSetup, Setup, StoreSetup};

/// How often the in-memory store reclaims expired devices (expiry itself is logical and
/// exact; the sweep only frees memory).
pub const MEMORY_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Builds the gateway application from the command line's files and flags.
pub fn gateway_app(startup: Startup) -> Result<App, String> {
    let config = if startup.demo {
        demo_config(&startup)?
    } else {
        load_config(&startup)?
    };
    for warning in &config.warnings {
        tracing::warn!(target: "courier", "{warning}");
    }

    let (store, clustered, first_log_line) = match &config.redis {
        Some(redis) if !redis.cluster.is_empty() => (
            StoreSetup::Redis {
                target: RedisTarget::Cluster(redis.cluster_urls()),
                prefix: DEFAULT_PREFIX.to_owned(),
                shards: redis.shards,
            },
            true,
            format!(
                "App start: Redis Cluster store, seeds {} (queues shared by every node)",
                redis
                    .cluster
                    .iter()
                    .map(|(host, port)| format!("{host}:{port}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(redis) => (
            StoreSetup::Redis {
                target: RedisTarget::Node(redis.url()),
                prefix: DEFAULT_PREFIX.to_owned(),
                shards: redis.shards,
            },
            true,
            format!(
                "App start: Redis store at {}:{} (queues shared by every node)",
                redis.host, redis.port
            ),
        ),
        None => (
            StoreSetup::memory(MemoryStore::new(), MEMORY_SWEEP_EVERY, |store, unix_ms| {
                store.sweep(unix_ms);
            }),
            false,
            "App start: in-memory store (no Redis configured; queues are lost on restart)"
                .to_owned(),
        ),
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let engines = config.io.engines.resolve(cores, config.redis.is_some());
    let port = config.port;
    let ops = OpsSetup {
        metrics_bind: config.metrics_bind,
        heartbeat: config.redis.is_some().then(|| HeartbeatSetup {
            interval: Duration::from_millis(config.cluster.heartbeat_interval_ms),
            timeout: Duration::from_millis(config.cluster.heartbeat_timeout_ms),
            device_ttl_ms: config.device_ttl_ms(),
        }),
    };
    let mut limits = Limits::default();
    if let Some(bound) = config.io.max_buffered_messages {
        limits.ws_outbound_frames = usize::try_from(bound).unwrap_or(usize::MAX);
    }
    let max_payload = usize::try_from(config.io.max_payload).unwrap_or(usize::MAX);
    let request_timeout_ms = config.io.request_timeout_ms;
    let request_body_budget = usize::try_from(config.io.request_body_budget).unwrap_or(usize::MAX);
    limits.request_timeout = Duration::from_millis(request_timeout_ms);
    limits.request_body_budget = request_body_budget;
    if startup.demo {
        print_demo_help(startup.bind, port);
    }
    let (engines, node_ids) = build_engines(&config, engines, clustered, startup.unix_ms);
    Ok(App {
        engines,
        port,
        setup: Setup {
            max_payload,
            store,
            node_ids,
            first_log_line,
            limits,
            ops,
        },
    })
}

/// `count` gateways for `config`, each its own node (own node id and session-id seed), and
/// their node ids. With more than one, engine `i` tags its session ids with `i` (see
/// `crate::engines`), and the process-wide limits `io.maxConnections` and
/// `io.maxHandshakesPerSecond` are shared out: each engine gets its even share, rounded up
/// (handshakes are spread round-robin, so the shares fill evenly).
fn build_engines(
    config: &Config,
    count: u32,
    clustered: bool,
    started_unix_ms: u64,
) -> (Vec<Box<dyn courier_core::net::Engine + Send>>, Vec<u64>) {
    let mut config = config.clone();
    if count > 1 {
        let io = &mut config.io;
        io.max_connections = io.max_connections.map(|n| n.div_ceil(u64::from(count)));
        io.max_handshakes_per_second = io.max_handshakes_per_second.map(|n| n.div_ceil(count));
    }
    let mut engines: Vec<Box<dyn courier_core::net::Engine + Send>> = Vec::new();
    let mut node_ids = Vec::new();
    for index in 0..count {
        let node_id = crate::redis_store::node_id(started_unix_ms, random_u64());
        let options = GatewayOptions {
            node_id,
            seed: random_u64(),
            clustered,
            // Only a shared store (Redis) can lose its data under a running gateway.
            epoch_check: clustered.then_some(EPOCH_CHECK_INTERVAL),
            engine: (count > 1).then(|| EngineSlot {
                // At most `MAX_ENGINES` (64): both fit.
                index: u8::try_from(index).unwrap_or(u8::MAX),
                count: u8::try_from(count).unwrap_or(u8::MAX),
            }),
        };
        let mut gateway = Gateway::new(config.clone(), options);
        // Events the log would drop are not even built (the per-delivery lines are `debug`).
        gateway.set_event_level(crate::logging::min_enabled_level());
        engines.push(Box::new(gateway));
        node_ids.push(node_id);
    }
    (engines, node_ids)
}

fn load_config(startup: &Startup) -> Result<Config, String> {
    let source = |file: &Option<(std::path::PathBuf, String)>| {
        file.as_ref().map(|(path, text)| SourceFile {
            path: path.display().to_string(),
            text: text.clone(),
        })
    };
    let sources = ConfigSources {
        config_yml: source(&startup.files.config_yml),
        sites_yml: source(&startup.files.sites_yml),
        env: startup.env.clone(),
    };
    config::load(&sources).map_err(|error| error.to_string())
}

/// The demo configuration: the built-in site only, loopback only, `PORT` still honoured.
fn demo_config(startup: &Startup) -> Result<Config, String> {
    if !startup.bind.is_loopback() {
        return Err(format!(
            "--demo accepts any token, so it only listens on a loopback address; \
             got --bind {} (use --bind 127.0.0.1)",
            startup.bind
        ));
    }
    let mut config = Config::demo();
    // The status page can be tried next to the demo: the key comes from the environment only,
    // as the demo reads no files.
    config.admin_key = startup
        .env
        .get(ADMIN_API_KEY_ENV)
        .and_then(|key| AdminKey::new(key));
    if let Some(port) = startup.env.get("PORT") {
        config.port = port
            .parse()
            .map_err(|_| format!("environment: PORT must be a port number, got {port:?}"))?;
    }
    Ok(config)
}

fn print_demo_help(bind: std::net::IpAddr, port: u16) {
    let host = match bind {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let text = format!(
        "\nCourier demo: site \"{DEMO_SITE}\" accepts any token t as rooms [\"user_<t>\", \"staff\"].\n\
         Connect a client:  io(\"http://{host}:{port}/{DEMO_SITE}?token=alice&deviceId=d1\")\n\
         Send to it:\n  curl -X POST 'http://{host}:{port}/send?site={DEMO_SITE}&apiKey={DEMO_API_KEY}' \\\n    \
         -H 'content-type: application/json' \\\n    \
         -d '{{\"rooms\":[\"user_alice\"],\"event\":\"hello\",\"args\":[\"world\"]}}'\n\n"
    );
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// A random 64-bit value from the OS-seeded hasher keys, fresh for each call (node ids and
/// session-id seeds need uniqueness, not cryptographic strength: session ids are also
/// unguessable because the seed is).
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}
