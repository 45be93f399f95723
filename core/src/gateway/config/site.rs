//! One site: a namespace, its auth endpoint, its `/send` key, and its queueing mode.
//!
//! Sites come from `sites.yml` (top-level keys are site names) or, when `SITE_NAME` is set,
//! from the environment alone (`AUTH_URL`, `AUTH_SCHEME`, `API_KEY`, `USER_ROOM_PREFIX`,
//! `UPDATE_USER_URL`, `PUBLIC_CHANNEL`), which then replaces every site of `sites.yml`, as in
//! the original. Every setting is per site (README Differences #2).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml::Value;

use super::ConfigError;
use super::yaml::{Section, describe, parse_whole_number};

/// Auth and user-update calls give up after this long unless the site says otherwise
/// (README Differences #11; the original waited about 300 s).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Keys a site may have in `sites.yml`.
const SITE_KEYS: [&str; 7] = [
    "authUrl",
    "authScheme",
    "apiKey",
    "userRoomPrefix",
    "updateUserUrl",
    "publicChannel",
    "httpTimeout",
];

/// A configured site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The site name; its namespace is `"/" + name`.
    pub name: String,
    /// `authUrl`: the GET endpoint that answers the user's rooms (unused by the demo site).
    pub auth_url: String,
    /// `authScheme`: the first word of the `Authorization` header.
    pub auth_scheme: String,
    /// `apiKey`: what `/send` must present (a YAML number is read as its decimal text).
    pub api_key: String,
    /// `userRoomPrefix`; `None` (unset or empty) means broadcast mode.
    pub user_room_prefix: Option<String>,
    /// `updateUserUrl`, possibly with `:id`; `None` when unset or empty.
    pub update_user_url: Option<String>,
    /// `publicChannel`, an exact room name; `None` when unset or empty.
    pub public_channel: Option<String>,
    /// Timeout of auth and user-update calls (`httpTimeout`, milliseconds; default 10 s).
    pub http_timeout: Duration,
    /// The built-in demo site: auth is answered locally (see `Config::demo`).
    pub demo: bool,
}

impl Site {
    /// Whether queueing (user-room mode) is on: the site has a non-empty `userRoomPrefix`.
    pub fn user_rooms_enabled(&self) -> bool {
        self.user_room_prefix.is_some()
    }

    /// The original's `isUserRoom`: the public channel (exact), or a room starting with the
    /// user-room prefix (case-sensitive). Always false in broadcast mode.
    pub fn is_user_room(&self, room: &str) -> bool {
        self.public_channel.as_deref() == Some(room)
            || self
                .user_room_prefix
                .as_deref()
                .is_some_and(|prefix| room.starts_with(prefix))
    }

    /// Whether `room` is this site's public channel.
    pub fn is_public_channel(&self, room: &str) -> bool {
        self.public_channel.as_deref() == Some(room)
    }

    /// The namespace clients connect to, `"/" + name`.
    pub fn namespace(&self) -> String {
        format!("/{}", self.name)
    }
}

/// Checks that `name` can be a namespace: non-empty, and free of the characters that delimit a
/// namespace in Socket.IO packets and URLs.
fn check_name(source: &str, name: &str) -> Result<(), ConfigError> {
    let bad = name.is_empty()
        || name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | ',' | '%')
        });
    if bad {
        return Err(ConfigError {
            source_name: source.to_owned(),
            message: format!(
                "site {name:?}: a site name must be non-empty and contain no whitespace, '/', '?', '#', ',' or '%'"
            ),
        });
    }
    Ok(())
}

/// Checks an absolute `http://` or `https://` URL with a host (and a valid port if any).
pub(super) fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("must be an http:// or https:// URL, got {url:?}"))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must not contain spaces or control characters, got {url:?}"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if host_port.starts_with('[') {
        match host_port.split_once(']') {
            Some((host, tail)) => (&host[1..], tail.strip_prefix(':')),
            None => return Err(format!("has an unterminated IPv6 address: {url:?}")),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("has no host: {url:?}"));
    }
    if let Some(port) = port
        && !port.is_empty()
        && parse_whole_number(port).is_none_or(|p| p > 65_535)
    {
        return Err(format!("has a bad port {port:?}: {url:?}"));
    }
    Ok(())
}

/// Checks that an auth scheme is one HTTP token (`Bearer`, `Token`, …).
fn check_scheme(scheme: &str) -> Result<(), String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if scheme.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if !scheme.chars().all(token_char) {
        return Err(format!(
            "must be one word (an HTTP auth scheme such as Bearer), got {scheme:?}"
        ));
    }
    Ok(())
}

/// The raw values of one site, whichever source they came from.
struct RawSite<'a> {
    auth_url: Option<&'a str>,
    auth_scheme: Option<&'a str>,
    api_key: Option<String>,
    user_room_prefix: Option<&'a str>,
    update_user_url: Option<&'a str>,
    public_channel: Option<&'a str>,
    http_timeout_ms: Option<u64>,
}

/// Validates and builds a site. `key_name` renders a key for messages (the YAML key, or the
/// YAML key plus its environment variable).
fn build(
    source: &str,
    name: &str,
    raw: RawSite<'_>,
    key_name: &dyn Fn(&str) -> String,
) -> Result<Site, ConfigError> {
    let fail = |key: &str, problem: String| ConfigError {
        source_name: source.to_owned(),
        message: format!("site {name:?}: {} {problem}", key_name(key)),
    };
    let missing = |key: &str| fail(key, "is missing".to_owned());
    let non_empty = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);

    let auth_url = raw
        .auth_url
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("authUrl"))?;
    check_http_url(auth_url).map_err(|p| fail("authUrl", p))?;
    let auth_scheme = raw.auth_scheme.ok_or_else(|| missing("authScheme"))?;
    check_scheme(auth_scheme).map_err(|p| fail("authScheme", p))?;
    let api_key = raw.api_key.ok_or_else(|| missing("apiKey"))?;
    if api_key.is_empty() {
        return Err(fail("apiKey", "must not be empty".to_owned()));
    }
    let update_user_url = non_empty(raw.update_user_url);
    if let Some(url) = &update_user_url {
        check_http_url(url).map_err(|p| fail("updateUserUrl", p))?;
    }
    let http_timeout = match raw.http_timeout_ms {
        None => DEFAULT_HTTP_TIMEOUT,
        Some(0) => {
            return Err(fail(
                "httpTimeout",
                "must be at least 1 millisecond".to_owned(),
            ));
        }
        Some(ms) => Duration::from_millis(ms),
    };
    Ok(Site {
        name: name.to_owned(),
        auth_url: auth_url.to_owned(),
        auth_scheme: auth_scheme.to_owned(),
        api_key,
        user_room_prefix: non_empty(raw.user_room_prefix),
        update_user_url,
        public_channel: non_empty(raw.public_channel),
        http_timeout,
        demo: false,
    })
}

/// Reads every site of `sites.yml`, in file order.
pub(super) fn sites_from_yaml(
    source: &str,
    document: &Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<Site>, ConfigError> {
    let sites = match document {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(sites) => sites,
        other => {
            return Err(ConfigError {
                source_name: source.to_owned(),
                message: format!(
                    "must be a mapping of site names to settings, got {}",
                    describe(other)
                ),
            });
        }
    };
    let mut out = Vec::with_capacity(sites.len());
    for (name, settings) in sites {
        let name = match name {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(ConfigError {
                    source_name: source.to_owned(),
                    message: format!("a site name must be text, got {}", describe(other)),
                });
            }
        };
        check_name(source, &name)?;
        let context = format!("site {name:?}");
        let Value::Mapping(map) = settings else {
            return Err(ConfigError {
                source_name: source.to_owned(),
                message: format!(
                    "{context}: must be a mapping of settings, got {}",
                    describe(settings)
                ),
            });
        };
        let section = Section {
            source,
            context: &context,
            map,
        };
        section.warn_unknown(&SITE_KEYS, &[], warnings);
        let api_key = match section.get("apiKey") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            // `String(site.apiKey)`: a YAML number such as 54321 works.
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(section.error(
                    "apiKey",
                    format!("must be text or a number, got {}", describe(other)),
                ));
            }
        };
        let raw = RawSite {
            auth_url: section.string("authUrl")?,
            auth_scheme: section.string("authScheme")?,
            api_key,
            user_room_prefix: section.string("userRoomPrefix")?,
            update_user_url: section.string("updateUserUrl")?,
            public_channel: section.string("publicChannel")?,
            http_timeout_ms: section
                .whole_number("httpTimeout", "a whole number of milliseconds")?,
        };
        out.push(build(source, &name, raw, &|key| key.to_owned())?);
    }
    Ok(out)
}

/// The environment variable of each site key in `SITE_NAME` mode.
pub const SITE_ENV_VARS: [(&str, &str); 7] = [
    ("authUrl", "AUTH_URL"),
    ("authScheme", "AUTH_SCHEME"),
    ("apiKey", "API_KEY"),
    ("userRoomPrefix", "USER_ROOM_PREFIX"),
    ("updateUserUrl", "UPDATE_USER_URL"),
    ("publicChannel", "PUBLIC_CHANNEL"),
    ("httpTimeout", "HTTP_TIMEOUT"),
];

/// The one site `SITE_NAME` and its companion variables describe.
pub(super) fn site_from_env(
    name: &str,
    env: &BTreeMap<String, String>,
) -> Result<Site, ConfigError> {
    const SOURCE: &str = "environment";
    check_name(SOURCE, name)?;
    let var = |key: &str| {
        SITE_ENV_VARS
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, var)| env.get(*var))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let key_name = |key: &str| {
        let var = SITE_ENV_VARS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, var)| var);
        format!("{key} ({var})")
    };
    let http_timeout_ms = match var("httpTimeout") {
        None => None,
        Some(text) => Some(parse_whole_number(text).ok_or_else(|| ConfigError {
            source_name: SOURCE.to_owned(),
            message: format!(
                "site {name:?}: {} must be a whole number of milliseconds, got {text:?}",
                key_name("httpTimeout")
            ),
        })?),
    };
    let raw = RawSite {
        auth_url: var("authUrl"),
        auth_scheme: var("authScheme"),
        api_key: var("apiKey").map(str::to_owned),
        user_room_prefix: var("userRoomPrefix"),
        update_user_url: var("updateUserUrl"),
        public_channel: var("publicChannel"),
        http_timeout_ms,
    };
    build(SOURCE, name, raw, &key_name)
}
