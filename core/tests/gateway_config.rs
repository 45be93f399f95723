//! Configuration: every environment variable, the original's precedence, and one validation
//! error per required key.

use std::collections::BTreeMap;
use std::time::Duration;

use courier_core::gateway::config::{
    Config, ConfigSources, IoOptions, Origins, RedisConfig, SourceFile, Transport, load,
};
use courier_core::gateway::flake::FlakeSettings;

const SITES_YML: &str = "
newsite:
  authUrl: http://newsite.com/socketrooms
  authScheme: Bearer
  apiKey: 54321
  userRoomPrefix: user_
  updateUserUrl: http://newsite.com/users/:id
  publicChannel: browse
";

fn sources(
    config_yml: Option<&str>,
    sites_yml: Option<&str>,
    env: &[(&str, &str)],
) -> ConfigSources {
    ConfigSources {
        config_yml: config_yml.map(|text| SourceFile {
            path: "config.yml".into(),
            text: text.into(),
        }),
        sites_yml: sites_yml.map(|text| SourceFile {
            path: "sites.yml".into(),
            text: text.into(),
        }),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn ok(config_yml: Option<&str>, sites_yml: Option<&str>, env: &[(&str, &str)]) -> Config {
    load(&sources(config_yml, sites_yml, env)).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn err(config_yml: Option<&str>, sites_yml: Option<&str>, env: &[(&str, &str)]) -> String {
    match load(&sources(config_yml, sites_yml, env)) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

const GOODCITY_ENV: [(&str, &str); 4] = [
    ("SITE_NAME", "goodcity"),
    (
        "AUTH_URL",
        "https://api.example/api/v1/auth/current_user_rooms",
    ),
    ("AUTH_SCHEME", "Bearer"),
    ("API_KEY", "secret"),
];

#[test]
fn defaults_with_nothing_configured() {
    let config = ok(None, None, &[]);
    assert_eq!(config.env, "production");
    assert_eq!(config.port, 1337);
    assert_eq!(config.device_ttl_s, 3600);
    assert_eq!(config.device_ttl_ms(), 3_600_000);
    assert_eq!(config.redis, None);
    assert_eq!(config.flake, FlakeSettings::default());
    assert_eq!(config.io, IoOptions::default());
    assert!(config.sites.is_empty());
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("no site is configured"))
    );
    let io = IoOptions::default();
    assert_eq!(
        (
            io.ping_interval_ms,
            io.ping_timeout_ms,
            io.upgrade_timeout_ms
        ),
        (25_000, 60_000, 10_000)
    );
    assert_eq!(
        (io.max_payload, io.path.as_str(), io.cookie.as_deref()),
        (1_000_000, "/socket.io", Some("io"))
    );
    assert_eq!(io.path_with_slash(), "/socket.io/");
}

#[test]
fn node_env_selects_the_section_and_defaults_to_production() {
    let yml = "production:\n  port: 80\ndevelopment:\n  port: 3000\n";
    assert_eq!(ok(Some(yml), None, &[]).port, 80);
    let dev = ok(Some(yml), None, &[("NODE_ENV", "development")]);
    assert_eq!((dev.env.as_str(), dev.port), ("development", 3000));
    assert_eq!(
        ok(Some(yml), None, &[("NODE_ENV", "")]).port,
        80,
        "empty NODE_ENV is unset"
    );
    assert_eq!(
        err(Some(yml), None, &[("NODE_ENV", "staging")]),
        "config.yml: has no section for environment \"staging\" (NODE_ENV)"
    );
    assert_eq!(
        err(Some("development:\n"), None, &[("NODE_ENV", "development")]),
        "config.yml: section \"development\" is empty"
    );
    assert!(err(Some("- a\n"), None, &[]).starts_with("config.yml: must be a mapping"));
    assert!(err(Some("production: [\n"), None, &[]).starts_with("config.yml: not valid YAML"));
}

#[test]
fn port_precedence_env_then_file_then_default() {
    let yml = Some("production:\n  port: 80\n");
    assert_eq!(ok(yml, None, &[("PORT", "8080")]).port, 8080);
    assert_eq!(ok(yml, None, &[]).port, 80);
    assert_eq!(ok(yml, None, &[("PORT", "")]).port, 80);
    assert_eq!(
        ok(Some("production:\n  port: \"81\"\n"), None, &[]).port,
        81
    );
    assert_eq!(
        err(yml, None, &[("PORT", "http")]),
        "environment: PORT must be a port number from 1 to 65535, got \"http\""
    );
    assert_eq!(
        err(yml, None, &[("PORT", "70000")]),
        "environment: PORT must be a port number from 1 to 65535, got \"70000\""
    );
    assert_eq!(
        err(Some("production:\n  port: eighty\n"), None, &[]),
        "config.yml: production: port must be a port number from 1 to 65535, got \"eighty\""
    );
}

#[test]
fn device_ttl_precedence_file_then_env_then_default_and_zero_is_allowed() {
    assert_eq!(
        ok(
            Some("production:\n  device_ttl: 60\n"),
            None,
            &[("DEVICE_TTL", "5")]
        )
        .device_ttl_s,
        60
    );
    assert_eq!(
        ok(
            Some("production:\n  port: 1\n"),
            None,
            &[("DEVICE_TTL", "5")]
        )
        .device_ttl_s,
        5
    );
    assert_eq!(ok(None, None, &[("DEVICE_TTL", "5")]).device_ttl_s, 5);
    // README Differences #7: 0 keeps queues until acknowledged, from either source.
    assert_eq!(
        ok(
            Some("production:\n  device_ttl: 0\n"),
            None,
            &[("DEVICE_TTL", "5")]
        )
        .device_ttl_s,
        0
    );
    assert_eq!(ok(None, None, &[("DEVICE_TTL", "0")]).device_ttl_ms(), 0);
    assert_eq!(
        err(None, None, &[("DEVICE_TTL", "-1")]),
        "environment: DEVICE_TTL must be a whole number of seconds, got \"-1\""
    );
    assert_eq!(
        err(Some("production:\n  device_ttl: 1.5\n"), None, &[]),
        "config.yml: production: device_ttl must be a whole number of seconds, got 1.5"
    );
}

#[test]
fn redis_precedence_file_then_redis_url_then_in_memory() {
    let from_env = ok(
        None,
        None,
        &[("REDIS_URL", "rediss://:s3cret@cache.example:6380/2")],
    );
    assert_eq!(
        from_env.redis,
        Some(RedisConfig {
            host: "cache.example".into(),
            port: 6380,
            tls: true,
            password: Some("s3cret".into()),
            db: 2,
            ..RedisConfig::default()
        })
    );
    let yml = Some(
        "production:\n  redis:\n    host: redis.internal\n    port: 7000\n    auth_pass: pw\n",
    );
    let from_file = ok(yml, None, &[("REDIS_URL", "redis://elsewhere")]);
    assert_eq!(
        from_file.redis,
        Some(RedisConfig {
            host: "redis.internal".into(),
            port: 7000,
            tls: false,
            password: Some("pw".into()),
            db: 0,
            ..RedisConfig::default()
        })
    );
    // `url` wins over the other keys; a URL without host or port keeps the defaults.
    let url_wins = ok(
        Some("production:\n  redis:\n    host: ignored\n    url: redis://\n"),
        None,
        &[],
    );
    assert_eq!(
        url_wins.redis,
        Some(RedisConfig {
            host: "ignored".into(),
            ..RedisConfig::default()
        })
    );
    let empty = ok(
        Some("production:\n  redis: {}\n"),
        None,
        &[("REDIS_URL", "redis://other:1")],
    );
    assert_eq!(
        empty.redis,
        Some(RedisConfig::default()),
        "an empty redis section still wins"
    );
    let user_ignored = ok(None, None, &[("REDIS_URL", "redis://h:pw%40x@host?db=4")])
        .redis
        .unwrap_or_default();
    assert_eq!(
        (
            user_ignored.password.as_deref(),
            user_ignored.db,
            user_ignored.port
        ),
        (Some("pw@x"), 4, 6379)
    );
    assert_eq!(user_ignored.url(), "redis://:pw%40x@host:6379/4");
    let tls = ok(Some("production:\n  redis:\n    tls: {}\n"), None, &[])
        .redis
        .unwrap_or_default();
    assert!(tls.tls);
    assert_eq!(ok(None, None, &[("REDIS_URL", "")]).redis, None);
    assert_eq!(
        err(None, None, &[("REDIS_URL", "http://x")]),
        "environment: REDIS_URL must start with redis:// or rediss://, got \"http://x\""
    );
    assert_eq!(
        err(None, None, &[("REDIS_URL", "redis://h:99999")]),
        "environment: REDIS_URL has a bad port \"99999\""
    );
    assert_eq!(
        err(Some("production:\n  redis:\n    port: x\n"), None, &[]),
        "config.yml: production.redis: port must be a port number from 1 to 65535, got \"x\""
    );
}

#[test]
fn redis_cluster_from_file_or_env_with_clear_errors() {
    let yml = "production:\n  redis:\n    cluster:\n      - redis://10.0.0.1:7000\n      \
               - redis://:pw@10.0.0.2:7001\n    shards: 8\n";
    let file = ok(
        Some(yml),
        None,
        &[("REDIS_CLUSTER_URLS", "redis://elsewhere:1")],
    )
    .redis
    .unwrap_or_default();
    assert_eq!(
        file.cluster,
        vec![("10.0.0.1".to_owned(), 7000), ("10.0.0.2".to_owned(), 7001)]
    );
    assert_eq!(file.shards, 8);
    assert_eq!(
        file.cluster_urls(),
        vec!["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7001"],
        "the password of one seed is the cluster's"
    );
    // REDIS_CLUSTER_URLS wins over REDIS_URL, the way `redis:` does; TLS from rediss://.
    let env = ok(
        None,
        None,
        &[
            ("REDIS_URL", "redis://single:6379"),
            ("REDIS_CLUSTER_URLS", " rediss://a:1 , rediss://b:2,"),
        ],
    )
    .redis
    .unwrap_or_default();
    assert_eq!(env.cluster, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
    assert!(env.tls);
    assert_eq!(env.cluster_urls(), vec!["rediss://a:1", "rediss://b:2"]);
    // A single node has no seeds.
    let single = ok(None, None, &[("REDIS_URL", "redis://single:6379")]).redis;
    assert_eq!(single.map(|r| r.cluster), Some(Vec::new()));

    assert_eq!(
        err(Some("production:\n  redis:\n    cluster: []\n"), None, &[]),
        "config.yml: production.redis: cluster lists no seed node (give at least one \
         redis://host:port)"
    );
    assert_eq!(
        err(None, None, &[("REDIS_CLUSTER_URLS", " , ")]),
        "environment: REDIS_CLUSTER_URLS lists no seed node (give at least one redis://host:port)"
    );
    assert_eq!(
        err(
            None,
            None,
            &[("REDIS_CLUSTER_URLS", "redis://a:1,http://b:2")]
        ),
        "environment: REDIS_CLUSTER_URLS seed 2 must start with redis:// or rediss://, got \
         \"http://b:2\""
    );
    assert_eq!(
        err(None, None, &[("REDIS_CLUSTER_URLS", "redis://a:1/3")]),
        "environment: REDIS_CLUSTER_URLS seed 1 selects database 3, but a Redis Cluster has only \
         database 0"
    );
    assert_eq!(
        err(
            None,
            None,
            &[("REDIS_CLUSTER_URLS", "redis://a:1,rediss://b:2")]
        ),
        "environment: REDIS_CLUSTER_URLS mixes redis:// and rediss:// seeds: every node of a \
         cluster is reached the same way"
    );
    assert_eq!(
        err(
            Some("production:\n  redis:\n    db: 2\n    cluster: [\"redis://a:1\"]\n"),
            None,
            &[]
        ),
        "config.yml: production.redis: db is 2, but a Redis Cluster has only database 0"
    );
    assert_eq!(
        err(
            Some("production:\n  redis:\n    url: redis://x\n    cluster: [\"redis://a:1\"]\n"),
            None,
            &[]
        ),
        "config.yml: production.redis: cluster and url are both given: a cluster is reached \
         through its seed URLs only (remove url)"
    );
    assert_eq!(
        err(
            Some("production:\n  redis:\n    cluster: redis://a:1\n"),
            None,
            &[]
        ),
        "config.yml: production.redis: cluster must be a list of redis:// URLs, got \
         \"redis://a:1\""
    );
}

#[test]
fn io_engines_default_auto_env_and_validation() {
    use courier_core::gateway::config::Engines;
    let redis = "production:\n  redis: {}\n";
    assert_eq!(ok(None, None, &[]).io.engines, Engines::Count(1));
    let set = ok(
        Some("production:\n  redis: {}\n  io:\n    engines: 4\n"),
        None,
        &[],
    );
    assert_eq!(set.io.engines, Engines::Count(4));
    let auto = ok(
        Some("production:\n  redis: {}\n  io:\n    engines: auto\n"),
        None,
        &[],
    );
    assert_eq!(auto.io.engines, Engines::Auto);
    assert_eq!(auto.io.engines.resolve(8, true), 8);
    assert_eq!(auto.io.engines.resolve(200, true), 64);
    assert_eq!(auto.io.engines.resolve(8, false), 1);
    // The environment wins over the file.
    let env = ok(
        Some("production:\n  redis: {}\n  io:\n    engines: 4\n"),
        None,
        &[("IO_ENGINES", "2")],
    );
    assert_eq!(env.io.engines, Engines::Count(2));
    assert_eq!(
        ok(Some(redis), None, &[("IO_ENGINES", "auto")]).io.engines,
        Engines::Auto
    );
    // Auto without Redis is one engine, not an error.
    assert_eq!(
        ok(None, None, &[("IO_ENGINES", "auto")]).io.engines,
        Engines::Auto
    );
    assert_eq!(
        err(
            Some("production:\n  redis: {}\n  io:\n    engines: 0\n"),
            None,
            &[]
        ),
        "config.yml: production.io: engines must be auto or a whole number from 1 to 64, got 0"
    );
    assert_eq!(
        err(
            Some("production:\n  redis: {}\n  io:\n    engines: many\n"),
            None,
            &[]
        ),
        "config.yml: production.io: engines must be auto or a whole number from 1 to 64, got \"many\""
    );
    assert_eq!(
        err(Some(redis), None, &[("IO_ENGINES", "65")]),
        "environment: IO_ENGINES must be auto or a whole number from 1 to 64, got \"65\""
    );
    // The in-memory store's queues live in one engine.
    assert_eq!(
        err(Some("production:\n  io:\n    engines: 2\n"), None, &[]),
        "config.yml: production.io: engines is 2, but more than one engine needs the Redis store \
         (the in-memory store's queues live inside one engine): configure redis or set 1"
    );
    assert!(
        err(None, None, &[("IO_ENGINES", "3")])
            .starts_with("environment: IO_ENGINES: engines is 3"),
    );
}

#[test]
fn redis_shards_default_and_validation() {
    let default = ok(Some("production:\n  redis: {}\n"), None, &[]);
    assert_eq!(default.redis.map(|r| r.shards), Some(4));
    let set = ok(Some("production:\n  redis:\n    shards: 16\n"), None, &[]);
    assert_eq!(set.redis.map(|r| r.shards), Some(16));
    assert_eq!(
        err(Some("production:\n  redis:\n    shards: 0\n"), None, &[]),
        "config.yml: production.redis: shards must be from 1 to 1024, got 0"
    );
    assert_eq!(
        err(Some("production:\n  redis:\n    shards: many\n"), None, &[]),
        "config.yml: production.redis: shards must be a shard count, got \"many\""
    );
}

#[test]
fn sites_yml_sample_is_read_with_every_key() {
    let config = ok(None, Some(SITES_YML), &[]);
    let site = config.site("newsite").expect("newsite");
    assert_eq!(site.auth_url, "http://newsite.com/socketrooms");
    assert_eq!(site.auth_scheme, "Bearer");
    assert_eq!(site.api_key, "54321", "a YAML number is read as its text");
    assert_eq!(site.user_room_prefix.as_deref(), Some("user_"));
    assert_eq!(
        site.update_user_url.as_deref(),
        Some("http://newsite.com/users/:id")
    );
    assert_eq!(site.public_channel.as_deref(), Some("browse"));
    assert_eq!(site.http_timeout, Duration::from_secs(10));
    assert!(!site.demo);
    assert_eq!(site.namespace(), "/newsite");
    assert!(site.user_rooms_enabled());
    assert!(site.is_user_room("user_3") && site.is_user_room("browse"));
    assert!(
        !site.is_user_room("User_3")
            && !site.is_user_room("browse2")
            && !site.is_user_room("staff")
    );
    assert!(config.site("NewSite").is_none());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn broadcast_mode_when_the_prefix_is_empty_or_absent() {
    let yml = "a:\n  authUrl: http://a/r\n  authScheme: Bearer\n  apiKey: k\n  userRoomPrefix: ''\n  publicChannel: ''\n";
    let site = ok(None, Some(yml), &[]).sites.remove(0);
    assert!(!site.user_rooms_enabled());
    assert_eq!(site.public_channel, None);
    assert!(!site.is_user_room("undefinedroom") && !site.is_user_room(""));
}

#[test]
fn one_validation_error_per_required_site_key() {
    let base = [
        ("authUrl", "http://a.example/rooms"),
        ("authScheme", "Bearer"),
        ("apiKey", "k"),
    ];
    for (missing, _) in base {
        let yml: String = std::iter::once("goodcity:\n".to_owned())
            .chain(
                base.iter()
                    .filter(|(k, _)| *k != missing)
                    .map(|(k, v)| format!("  {k}: {v}\n")),
            )
            .collect();
        assert_eq!(
            err(None, Some(&yml), &[]),
            format!("sites.yml: site \"goodcity\": {missing} is missing")
        );
    }
    let bad = |key: &str, value: &str| {
        let yml: String = std::iter::once("goodcity:\n".to_owned())
            .chain(base.iter().map(|(k, v)| {
                if *k == key {
                    format!("  {k}: {value}\n")
                } else {
                    format!("  {k}: {v}\n")
                }
            }))
            .collect();
        err(None, Some(&yml), &[])
    };
    assert_eq!(
        bad("authUrl", "ftp://x"),
        "sites.yml: site \"goodcity\": authUrl must be an http:// or https:// URL, got \"ftp://x\""
    );
    assert_eq!(
        bad("authUrl", "http:///rooms"),
        "sites.yml: site \"goodcity\": authUrl has no host: \"http:///rooms\""
    );
    assert_eq!(
        bad("authUrl", "http://h:x/"),
        "sites.yml: site \"goodcity\": authUrl has a bad port \"x\": \"http://h:x/\""
    );
    assert_eq!(
        bad("authScheme", "'Bearer token'"),
        "sites.yml: site \"goodcity\": authScheme must be one word (an HTTP auth scheme such as Bearer), got \"Bearer token\""
    );
    assert_eq!(
        bad("authScheme", "5"),
        "sites.yml: site \"goodcity\": authScheme must be text, got 5"
    );
    assert_eq!(
        bad("apiKey", "''"),
        "sites.yml: site \"goodcity\": apiKey must not be empty"
    );
    assert_eq!(
        bad("apiKey", "[1]"),
        "sites.yml: site \"goodcity\": apiKey must be text or a number, got a list"
    );
    let extra = |line: &str| {
        let yml = format!(
            "goodcity:\n  authUrl: http://a/r\n  authScheme: Bearer\n  apiKey: k\n  {line}\n"
        );
        load(&sources(None, Some(&yml), &[]))
    };
    assert_eq!(
        extra("updateUserUrl: users/:id")
            .map_err(|e| e.to_string())
            .err()
            .as_deref(),
        Some(
            "sites.yml: site \"goodcity\": updateUserUrl must be an http:// or https:// URL, got \"users/:id\""
        )
    );
    assert_eq!(
        extra("httpTimeout: 0")
            .map_err(|e| e.to_string())
            .err()
            .as_deref(),
        Some("sites.yml: site \"goodcity\": httpTimeout must be at least 1 millisecond")
    );
    let timeout = extra("httpTimeout: 2500").expect("valid");
    assert_eq!(timeout.sites[0].http_timeout, Duration::from_millis(2500));
    let warned = extra("colour: blue").expect("unknown keys only warn");
    assert_eq!(
        warned.warnings,
        ["sites.yml: site \"goodcity\": colour is not a known key and is ignored"]
    );
    assert_eq!(
        err(None, Some("goodcity: 5\n"), &[]),
        "sites.yml: site \"goodcity\": must be a mapping of settings, got 5"
    );
    assert!(
        err(None, Some("'a/b':\n  authUrl: http://a/r\n"), &[])
            .starts_with("sites.yml: site \"a/b\": a site name must")
    );
}

#[test]
fn site_name_replaces_sites_yml_and_reads_every_variable() {
    let mut env = GOODCITY_ENV.to_vec();
    env.extend([
        ("USER_ROOM_PREFIX", "user_"),
        ("UPDATE_USER_URL", "https://api.example/api/v1/users/:id"),
        ("PUBLIC_CHANNEL", "browse"),
        ("HTTP_TIMEOUT", "1500"),
    ]);
    let config = ok(None, Some(SITES_YML), &env);
    assert_eq!(config.sites.len(), 1);
    let site = &config.sites[0];
    assert_eq!(site.name, "goodcity");
    assert_eq!(
        site.auth_url,
        "https://api.example/api/v1/auth/current_user_rooms"
    );
    assert_eq!(site.auth_scheme, "Bearer");
    assert_eq!(site.api_key, "secret");
    assert_eq!(site.user_room_prefix.as_deref(), Some("user_"));
    assert_eq!(
        site.update_user_url.as_deref(),
        Some("https://api.example/api/v1/users/:id")
    );
    assert_eq!(site.public_channel.as_deref(), Some("browse"));
    assert_eq!(site.http_timeout, Duration::from_millis(1500));
    assert_eq!(
        config.warnings,
        ["sites.yml: ignored because SITE_NAME is set"]
    );
}

#[test]
fn env_site_errors_name_the_variable() {
    for (key, var) in [
        ("authUrl", "AUTH_URL"),
        ("authScheme", "AUTH_SCHEME"),
        ("apiKey", "API_KEY"),
    ] {
        let env: Vec<_> = GOODCITY_ENV
            .iter()
            .copied()
            .filter(|(k, _)| *k != var)
            .collect();
        assert_eq!(
            err(None, None, &env),
            format!("environment: site \"goodcity\": {key} ({var}) is missing")
        );
    }
    let mut env = GOODCITY_ENV.to_vec();
    env.push(("HTTP_TIMEOUT", "soon"));
    assert_eq!(
        err(None, None, &env),
        "environment: site \"goodcity\": httpTimeout (HTTP_TIMEOUT) must be a whole number of milliseconds, got \"soon\""
    );
    let orphan = ok(None, Some(SITES_YML), &[("AUTH_URL", "http://x/")]);
    assert_eq!(
        orphan.warnings,
        ["environment: AUTH_URL is ignored because SITE_NAME is not set"]
    );
    assert_eq!(orphan.sites.len(), 1);
}

#[test]
fn sites_may_also_sit_in_config_yml_when_there_is_no_sites_yml() {
    let yml = "production:\n  sites:\n    inline:\n      authUrl: http://i/r\n      authScheme: Token\n      apiKey: k\n";
    assert_eq!(ok(Some(yml), None, &[]).sites[0].name, "inline");
    assert_eq!(ok(Some(yml), Some(SITES_YML), &[]).sites[0].name, "newsite");
}

#[test]
fn unknown_and_retired_keys_warn() {
    let yml = "production:\n  servers: [a]\n  client_ttl: 5\n  colour: red\n  io:\n    perMessageDeflate: false\n";
    let config = ok(Some(yml), Some(SITES_YML), &[]);
    assert_eq!(
        config.warnings,
        [
            "config.yml: production: servers is ignored (it was for the original's old Gruntfile deployment)",
            "config.yml: production: client_ttl is ignored (it was renamed device_ttl)",
            "config.yml: production: colour is not a known key and is ignored",
            "config.yml: production.io: perMessageDeflate is not supported by Courier and is ignored (messages are sent uncompressed)",
        ]
    );
    assert_eq!(config.device_ttl_s, 3600);
}

#[test]
fn io_options_map_the_originals_keys() {
    let yml = "production:\n  io:\n    pingTimeout: 5000\n    pingInterval: 2000\n    upgradeTimeout: 3000\n    maxHttpBufferSize: 2048\n    path: /push/\n    transports: [websocket]\n    allowUpgrades: false\n    cookie: false\n    serveClient: false\n    origins: 'example.com:* *:8080'\n    connectTimeout: 1000\n";
    let io = ok(Some(yml), None, &[]).io;
    assert_eq!(
        (
            io.ping_timeout_ms,
            io.ping_interval_ms,
            io.upgrade_timeout_ms
        ),
        (5000, 2000, 3000)
    );
    assert_eq!(
        (io.max_payload, io.path.as_str(), io.connect_timeout_ms),
        (2048, "/push", 1000)
    );
    assert_eq!(io.transports, [Transport::Websocket]);
    assert!(!io.allow_upgrades && !io.serve_client);
    assert_eq!(io.cookie, None);
    assert_eq!(
        io.origins,
        Origins::List(vec!["example.com:*".into(), "*:8080".into()])
    );
    assert!(io.origins.allows(Some("https://example.com")));
    assert!(io.origins.allows(Some("http://other.test:8080")));
    assert!(!io.origins.allows(Some("http://other.test")));
    assert!(
        !io.origins.allows(None),
        "socket.io 1.7 refuses a missing origin when a list is set"
    );
    assert!(Origins::Any.allows(None));
    let named = ok(
        Some("production:\n  io:\n    cookie: sid\n    path: engine\n    origins: ['*:*']\n"),
        None,
        &[],
    )
    .io;
    assert_eq!(
        (named.cookie.as_deref(), named.path.as_str(), named.origins),
        (Some("sid"), "/engine", Origins::Any)
    );
    let bad = |line: &str| {
        err(
            Some(&format!("production:\n  io:\n    {line}\n")),
            None,
            &[],
        )
    };
    assert_eq!(
        bad("pingTimeout: soon"),
        "config.yml: production.io: pingTimeout must be a whole number of milliseconds, got \"soon\""
    );
    assert_eq!(
        bad("pingInterval: 0"),
        "config.yml: production.io: pingInterval must be greater than 0"
    );
    assert_eq!(
        bad("transports: [carrier-pigeon]"),
        "config.yml: production.io: transports may only list polling and websocket, got \"carrier-pigeon\""
    );
    assert_eq!(
        bad("transports: []"),
        "config.yml: production.io: transports must list at least one transport"
    );
    assert_eq!(
        bad("allowUpgrades: yes please"),
        "config.yml: production.io: allowUpgrades must be true or false, got \"yes please\""
    );
    assert_eq!(
        bad("cookie: 'a b'"),
        "config.yml: production.io: cookie must be a cookie name or false, got \"a b\""
    );
    assert_eq!(
        bad("path: '/a b'"),
        "config.yml: production.io: path must be a URL path, got \"/a b\""
    );
    assert_eq!(
        err(Some("production:\n  io: 5\n"), None, &[]),
        "config.yml: production: io must be a mapping, got 5"
    );
}

#[test]
fn flake_settings_from_file_and_per_node_variables() {
    let yml = Some(
        "production:\n  flakeid:\n    datacenter: 3\n    worker: 7\n    epoch: 1420070400000\n",
    );
    let flake = ok(yml, None, &[]).flake;
    assert_eq!(
        flake,
        FlakeSettings {
            machine_id: None,
            datacenter: 3,
            worker: 7,
            epoch_ms: 1_420_070_400_000
        }
    );
    assert_eq!(ok(yml, None, &[("FLAKE_WORKER", "9")]).flake.worker, 9);
    assert_eq!(
        ok(yml, None, &[("FLAKE_DATACENTER", "1")]).flake.datacenter,
        1
    );
    let by_id = ok(Some("production:\n  flakeid:\n    id: 700\n"), None, &[]).flake;
    assert_eq!(by_id.machine_id, Some(700));
    assert_eq!(
        ok(None, None, &[("FLAKE_ID", "12")]).flake.machine_id,
        Some(12)
    );
    assert_eq!(
        ok(
            Some("production:\n  flakeid:\n    id: 700\n"),
            None,
            &[("FLAKE_WORKER", "2")]
        )
        .flake
        .machine_id,
        None,
        "per-node datacenter/worker replace a shared id"
    );
    assert_eq!(
        err(yml, None, &[("FLAKE_WORKER", "32")]),
        "environment: FLAKE_WORKER must be a whole number from 0 to 31, got \"32\""
    );
    assert_eq!(
        err(None, None, &[("FLAKE_ID", "1024")]),
        "environment: FLAKE_ID must be a whole number from 0 to 1023, got \"1024\""
    );
    assert_eq!(
        err(
            Some("production:\n  flakeid:\n    datacenter: 40\n"),
            None,
            &[]
        ),
        "config.yml: production.flakeid: datacenter must be from 0 to 31, got 40"
    );
}

#[test]
fn the_demo_configuration() {
    let config = Config::demo();
    let site = config.site("demo").expect("demo site");
    assert!(site.demo);
    assert_eq!(site.api_key, "demo");
    assert_eq!(site.user_room_prefix.as_deref(), Some("user_"));
    assert_eq!(
        (config.port, config.device_ttl_s, config.redis.clone()),
        (1337, 3600, None)
    );
}

#[test]
fn the_example_config_directory_loads_without_warnings() {
    let read = |name: &str| {
        let path = format!("{}/../config/{name}", env!("CARGO_MANIFEST_DIR"));
        SourceFile {
            text: std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
            path: name.to_owned(),
        }
    };
    let config = load(&ConfigSources {
        config_yml: Some(read("config.yml")),
        sites_yml: Some(read("sites.yml")),
        env: BTreeMap::new(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.sites.len(), 1);
    assert_eq!(
        config.io,
        IoOptions::default(),
        "the example spells out the defaults"
    );
    assert_eq!(config.redis, Some(RedisConfig::default()));
    let dev = load(&ConfigSources {
        config_yml: Some(read("config.yml")),
        sites_yml: None,
        env: [("NODE_ENV".to_owned(), "development".to_owned())].into(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dev.device_ttl_s, 60);
}

#[test]
fn operational_keys_are_read_and_validated() {
    let config = ok(
        Some(
            "production:
  io: {maxConnections: 100, maxHandshakesPerSecond: 20, maxBufferedMessages: 64}
  metrics: {bind: '127.0.0.1:9100'}
  cluster: {heartbeatInterval: 500, heartbeatTimeout: 1500}
",
        ),
        Some(SITES_YML),
        &[],
    );
    assert_eq!(config.io.max_connections, Some(100));
    assert_eq!(config.io.max_handshakes_per_second, Some(20));
    assert_eq!(config.io.max_buffered_messages, Some(64));
    assert_eq!(config.metrics_bind, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(config.cluster.heartbeat_interval_ms, 500);
    assert_eq!(config.cluster.heartbeat_timeout_ms, 1500);
    let sio = config.io.sio_config();
    assert_eq!(sio.eio.max_sessions, Some(100));
    assert_eq!(sio.eio.max_handshakes_per_second, Some(20));
    assert_eq!(sio.eio.max_buffered_packets, 64);

    let defaults = ok(None, Some(SITES_YML), &[]);
    assert_eq!(defaults.io.max_connections, None);
    assert_eq!(defaults.io.max_handshakes_per_second, None);
    assert_eq!(defaults.metrics_bind, None);
    assert_eq!(defaults.cluster.heartbeat_interval_ms, 2000);

    let env = ok(None, Some(SITES_YML), &[("METRICS_BIND", "[::1]:9200")]);
    assert_eq!(env.metrics_bind, Some("[::1]:9200".parse().unwrap()));
}

#[test]
fn operational_key_errors_name_the_key_and_file() {
    let cases = [
        ("io: {maxConnections: 0}", "maxConnections"),
        ("io: {maxHandshakesPerSecond: -1}", "maxHandshakesPerSecond"),
        ("io: {maxBufferedMessages: many}", "maxBufferedMessages"),
        ("metrics: {bind: 'localhost'}", "bind"),
        (
            "cluster: {heartbeatInterval: 1000, heartbeatTimeout: 1500}",
            "heartbeatTimeout",
        ),
        ("cluster: {heartbeatInterval: 0}", "heartbeatInterval"),
    ];
    for (line, key) in cases {
        let message = err(
            Some(&format!("production:\n  {line}\n")),
            Some(SITES_YML),
            &[],
        );
        assert!(
            message.starts_with("config.yml:") && message.contains(key),
            "{line}: {message}"
        );
    }
    let message = err(None, Some(SITES_YML), &[("METRICS_BIND", "nine")]);
    assert!(
        message.starts_with("environment:") && message.contains("METRICS_BIND"),
        "{message}"
    );
}

#[test]
fn batch_piece_limits_default_from_max_http_buffer_size_and_are_validated() {
    use courier_core::gateway::batch::BatchLimits;
    let defaults = ok(None, Some(SITES_YML), &[]);
    assert_eq!(
        defaults.batch,
        BatchLimits {
            max_items: 1000,
            max_bytes: 500_000
        }
    );
    let derived = ok(
        Some("production:\n  io:\n    maxHttpBufferSize: 2048\n"),
        Some(SITES_YML),
        &[],
    );
    assert_eq!(derived.batch.max_bytes, 1024);
    let set = ok(
        Some("production:\n  batch:\n    maxItems: 50\n    maxBytes: 1000000\n"),
        Some(SITES_YML),
        &[],
    );
    assert_eq!(
        set.batch,
        BatchLimits {
            max_items: 50,
            max_bytes: 1_000_000
        }
    );
    assert_eq!(
        err(
            Some("production:\n  batch:\n    maxBytes: 1000001\n"),
            Some(SITES_YML),
            &[]
        ),
        "config.yml: production.batch: maxBytes must be from 1 to io.maxHttpBufferSize (1000000), got 1000001"
    );
    assert_eq!(
        err(
            Some("production:\n  batch:\n    maxItems: 0\n"),
            Some(SITES_YML),
            &[]
        ),
        "config.yml: production.batch: maxItems must be from 1 to 100000, got 0"
    );
    assert!(
        err(
            Some("production:\n  batch:\n    maxItems: many\n"),
            Some(SITES_YML),
            &[]
        )
        .contains("maxItems")
    );
    assert!(
        err(Some("production:\n  batch: 3\n"), Some(SITES_YML), &[]).contains("batch"),
        "a batch that is not a mapping is refused"
    );
}
