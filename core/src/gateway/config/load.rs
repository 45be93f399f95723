//! [`load`]: the precedence rules of the module docs, applied to the three sources.

use serde_yaml::{Mapping, Value};

use super::admin::{ADMIN_API_KEY_ENV, admin_key};
use super::io::{IoOptions, io_from_yaml};
use super::redis::{redis_cluster_from_env, redis_from_env, redis_from_yaml};
use super::site::{SITE_ENV_VARS, site_from_env, sites_from_yaml};
use super::yaml::{Section, describe, parse_document, parse_whole_number};
use super::{Config, ConfigError, ConfigSources};
use crate::gateway::batch::{BatchLimits, MAX_MAX_ITEMS};
use crate::gateway::flake::FlakeSettings;

/// Port when neither `PORT` nor `port` is given.
pub(super) const DEFAULT_PORT: u16 = 1337;
/// `device_ttl` when neither the file nor `DEVICE_TTL` gives one.
pub(super) const DEFAULT_DEVICE_TTL_S: u64 = 3600;

const ENV: &str = "environment";

const SECTION_KEYS: [&str; 10] = [
    "port",
    "device_ttl",
    "redis",
    "flakeid",
    "io",
    "batch",
    "sites",
    "admin",
    "metrics",
    "cluster",
];

/// Keys old samples and the README mention that the original itself ignores.
const RETIRED_KEYS: [(&str, &str); 7] = [
    (
        "servers",
        "is ignored (it was for the original's old Gruntfile deployment)",
    ),
    (
        "winston",
        "is ignored (logging is one JSON line per event on stdout)",
    ),
    ("airbrake", "is ignored (the original removed Airbrake)"),
    ("redisHost", "is ignored (use redis.host or redis.url)"),
    ("redisPort", "is ignored (use redis.port or redis.url)"),
    ("redisKey", "is ignored"),
    ("client_ttl", "is ignored (it was renamed device_ttl)"),
];

/// Reads and validates the configuration. See the module docs for precedence.
pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
    let var = |name: &str| env_var(sources, name);
    let mut warnings = Vec::new();
    let env = var("NODE_ENV").unwrap_or("production").to_owned();

    let empty = Mapping::new();
    let document = match &sources.config_yml {
        Some(file) => Some(parse_document(&file.path, &file.text)?),
        None => None,
    };
    let (config_path, section_map) = match (&sources.config_yml, &document) {
        (Some(file), Some(document)) => (
            file.path.as_str(),
            environment_section(&file.path, document, &env)?,
        ),
        _ => ("config.yml", &empty),
    };
    let section = Section {
        source: config_path,
        context: &env,
        map: section_map,
    };
    section.warn_unknown(&SECTION_KEYS, &RETIRED_KEYS, &mut warnings);

    let port = match var("PORT") {
        Some(text) => parse_port(text).ok_or_else(|| {
            env_error(format!(
                "PORT must be a port number from 1 to 65535, got {text:?}"
            ))
        })?,
        None => match section.get("port") {
            None => DEFAULT_PORT,
            Some(value) => port_value(value).ok_or_else(|| {
                section.error(
                    "port",
                    format!(
                        "must be a port number from 1 to 65535, got {}",
                        describe(value)
                    ),
                )
            })?,
        },
    };

    let device_ttl_s = match section.whole_number("device_ttl", "a whole number of seconds")? {
        Some(ttl) => ttl,
        None => match var("DEVICE_TTL") {
            Some(text) => parse_whole_number(text).ok_or_else(|| {
                env_error(format!(
                    "DEVICE_TTL must be a whole number of seconds, got {text:?}"
                ))
            })?,
            None => DEFAULT_DEVICE_TTL_S,
        },
    };
    check_ttl(device_ttl_s).map_err(|p| match section.get("device_ttl") {
        Some(_) => section.error("device_ttl", p),
        None => env_error(format!("DEVICE_TTL {p}")),
    })?;

    let redis_context = format!("{env}.redis");
    let redis = match section.get("redis") {
        Some(Value::Mapping(map)) => Some(redis_from_yaml(
            config_path,
            &redis_context,
            map,
            &mut warnings,
        )?),
        Some(Value::String(url)) => {
            let mut redis = super::RedisConfig::default();
            redis
                .apply_url(url, &mut warnings, config_path)
                .map_err(|p| section.error("redis", p))?;
            Some(redis)
        }
        Some(other) => {
            return Err(section.error(
                "redis",
                format!(
                    "must be a mapping or a redis:// URL, got {}",
                    describe(other)
                ),
            ));
        }
        None => match (var("REDIS_CLUSTER_URLS"), var("REDIS_URL")) {
            (Some(urls), _) => Some(redis_cluster_from_env(urls, &mut warnings)?),
            (None, Some(url)) => Some(redis_from_env(url, &mut warnings)?),
            (None, None) => None,
        },
    };

    let flake_context = format!("{env}.flakeid");
    let mut flake = match section.mapping("flakeid")? {
        Some(map) => flake_from_yaml(
            &Section {
                source: config_path,
                context: &flake_context,
                map,
            },
            &mut warnings,
        )?,
        None => FlakeSettings::default(),
    };
    flake_from_env(&mut flake, sources)?;

    let io_context = format!("{env}.io");
    let mut io = match section.mapping("io")? {
        Some(map) => io_from_yaml(config_path, &io_context, map, &mut warnings)?,
        None => IoOptions::default(),
    };
    if let Some(text) = var("IO_ENGINES") {
        io.engines = super::Engines::parse(text).ok_or_else(|| {
            env_error(format!(
                "IO_ENGINES {}, got {text:?}",
                super::Engines::EXPECTED
            ))
        })?;
    }
    if let super::Engines::Count(n @ 2..) = io.engines
        && redis.is_none()
    {
        let problem = format!(
            "engines is {n}, but more than one engine needs the Redis store \
             (the in-memory store's queues live inside one engine): configure redis or set 1"
        );
        return Err(match var("IO_ENGINES") {
            Some(_) => env_error(format!("IO_ENGINES: {problem}")),
            None => ConfigError {
                source_name: config_path.to_owned(),
                message: format!("{io_context}: {problem}"),
            },
        });
    }
    let batch_context = format!("{env}.batch");
    let batch = batch_from_yaml(
        &Section {
            source: config_path,
            context: &batch_context,
            map: section.mapping("batch")?.unwrap_or(&empty),
        },
        io.max_payload,
        &mut warnings,
    )?;

    let admin_context = format!("{env}.admin");
    let admin_key = admin_key(
        section.mapping("admin")?.map(|map| Section {
            source: config_path,
            context: &admin_context,
            map,
        }),
        var(ADMIN_API_KEY_ENV),
        &mut warnings,
    )?;
    let metrics_context = format!("{env}.metrics");
    let metrics_bind = match var("METRICS_BIND") {
        Some(text) => Some(super::ops::parse_bind(text).ok_or_else(|| {
            env_error(format!("METRICS_BIND {}", super::ops::bind_problem(text)))
        })?),
        None => match section.mapping("metrics")? {
            Some(map) => super::ops::metrics_bind_from_yaml(
                config_path,
                &metrics_context,
                map,
                &mut warnings,
            )?,
            None => None,
        },
    };
    let cluster_context = format!("{env}.cluster");
    let cluster = match section.mapping("cluster")? {
        Some(map) => {
            super::ops::cluster_from_yaml(config_path, &cluster_context, map, &mut warnings)?
        }
        None => super::ClusterOptions::default(),
    };

    let sites = if let Some(name) = var("SITE_NAME") {
        if let Some(file) = &sources.sites_yml {
            warnings.push(format!("{}: ignored because SITE_NAME is set", file.path));
        }
        vec![site_from_env(name, &sources.env)?]
    } else {
        for (_, variable) in SITE_ENV_VARS {
            if var(variable).is_some() {
                warnings.push(format!(
                    "{ENV}: {variable} is ignored because SITE_NAME is not set"
                ));
            }
        }
        match &sources.sites_yml {
            Some(file) => sites_from_yaml(
                &file.path,
                &parse_document(&file.path, &file.text)?,
                &mut warnings,
            )?,
            None => match section.get("sites") {
                Some(value) => sites_from_yaml(config_path, value, &mut warnings)?,
                None => Vec::new(),
            },
        }
    };
    if sites.is_empty() {
        warnings.push(
            "no site is configured: every namespace is refused and /send answers 401".to_owned(),
        );
    }

    Ok(Config {
        env,
        port,
        device_ttl_s,
        redis,
        flake,
        io,
        batch,
        sites,
        admin_key,
        metrics_bind,
        cluster,
        warnings,
    })
}

/// The mapping for `env` in `config.yml` (the original crashed when it was missing or empty).
fn environment_section<'a>(
    path: &str,
    document: &'a Value,
    env: &str,
) -> Result<&'a Mapping, ConfigError> {
    let error = |message: String| ConfigError {
        source_name: path.to_owned(),
        message,
    };
    match document {
        Value::Mapping(sections) => match sections.get(env) {
            Some(Value::Mapping(section)) => Ok(section),
            None => Err(error(format!(
                "has no section for environment {env:?} (NODE_ENV)"
            ))),
            Some(Value::Null) => Err(error(format!("section {env:?} is empty"))),
            Some(other) => Err(error(format!(
                "section {env:?} must be a mapping, got {}",
                describe(other)
            ))),
        },
        other => Err(error(format!(
            "must be a mapping of environment names (production, development, …) to settings, got {}",
            describe(other)
        ))),
    }
}

/// A variable's value; empty counts as unset.
fn env_var<'a>(sources: &'a ConfigSources, name: &str) -> Option<&'a str> {
    sources
        .env
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn env_error(message: String) -> ConfigError {
    ConfigError {
        source_name: ENV.to_owned(),
        message,
    }
}

fn parse_port(text: &str) -> Option<u16> {
    parse_whole_number(text)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
}

fn port_value(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0),
        Value::String(s) => parse_port(s),
        _ => None,
    }
}

/// Keeps ttl arithmetic in milliseconds far from overflow (about 292 million years).
fn check_ttl(ttl_s: u64) -> Result<(), String> {
    if ttl_s > u64::MAX / 1_000_000 {
        return Err(format!("is too large ({ttl_s} seconds)"));
    }
    Ok(())
}

/// `batch:` — the size of a `_batch` piece. Defaults derive from `io.maxHttpBufferSize`, and
/// `maxBytes` may not exceed it: a piece must fit the transport's buffers with room to spare.
fn batch_from_yaml(
    section: &Section<'_>,
    max_payload: u64,
    warnings: &mut Vec<String>,
) -> Result<BatchLimits, ConfigError> {
    section.warn_unknown(&["maxItems", "maxBytes"], &[], warnings);
    let mut limits = BatchLimits::for_max_payload(max_payload);
    if let Some(items) = section.whole_number("maxItems", "a whole number of messages")? {
        if items == 0 || items > MAX_MAX_ITEMS as u64 {
            return Err(section.error(
                "maxItems",
                format!("must be from 1 to {MAX_MAX_ITEMS}, got {items}"),
            ));
        }
        limits.max_items = items as usize;
    }
    if let Some(bytes) = section.whole_number("maxBytes", "a whole number of bytes")? {
        if bytes == 0 || bytes > max_payload {
            return Err(section.error(
                "maxBytes",
                format!("must be from 1 to io.maxHttpBufferSize ({max_payload}), got {bytes}"),
            ));
        }
        limits.max_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    Ok(limits)
}

fn flake_from_yaml(
    section: &Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<FlakeSettings, ConfigError> {
    section.warn_unknown(&["datacenter", "worker", "id", "epoch"], &[], warnings);
    let five_bits = |key: &str| -> Result<u8, ConfigError> {
        match section.whole_number(key, "a whole number from 0 to 31")? {
            None => Ok(0),
            Some(n) if n <= 31 => Ok(n as u8),
            Some(n) => Err(section.error(key, format!("must be from 0 to 31, got {n}"))),
        }
    };
    let machine_id = match section.whole_number("id", "a whole number from 0 to 1023")? {
        None => None,
        Some(n) if n <= 1023 => Some(n as u16),
        Some(n) => return Err(section.error("id", format!("must be from 0 to 1023, got {n}"))),
    };
    Ok(FlakeSettings {
        machine_id,
        datacenter: five_bits("datacenter")?,
        worker: five_bits("worker")?,
        epoch_ms: section
            .whole_number("epoch", "Unix milliseconds")?
            .unwrap_or(0),
    })
}

fn flake_from_env(flake: &mut FlakeSettings, sources: &ConfigSources) -> Result<(), ConfigError> {
    let number = |name: &str, max: u64| -> Result<Option<u64>, ConfigError> {
        match env_var(sources, name) {
            None => Ok(None),
            Some(text) => match parse_whole_number(text) {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(env_error(format!(
                    "{name} must be a whole number from 0 to {max}, got {text:?}"
                ))),
            },
        }
    };
    // Datacenter and worker from the environment replace a machine id from the file; a machine
    // id from the environment replaces both.
    if let Some(datacenter) = number("FLAKE_DATACENTER", 31)? {
        flake.datacenter = datacenter as u8;
        flake.machine_id = None;
    }
    if let Some(worker) = number("FLAKE_WORKER", 31)? {
        flake.worker = worker as u8;
        flake.machine_id = None;
    }
    if let Some(id) = number("FLAKE_ID", 1023)? {
        flake.machine_id = Some(id as u16);
    }
    Ok(())
}
