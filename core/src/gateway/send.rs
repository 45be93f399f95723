//! `POST /send`: from the raw request to a validated [`SendRequest`] or the exact answer.
//!
//! Order of checks, as the original made them (body parsing ran as middleware before the
//! route):
//! 1. body parsing, for `application/json` and `application/x-www-form-urlencoded` bodies:
//!    - over [`BODY_LIMIT`] bytes: 413 `request entity too large`;
//!    - a form with more than 1000 parameters: 413 `too many parameters`;
//!    - an unsupported charset: 415 `unsupported charset "X"`;
//!    - a form key nested deeper than 32 brackets: 400 `The input exceeded the depth`;
//!    - malformed JSON, or JSON whose top level is not an object or array (body-parser's
//!      `strict`): 400 `SyntaxError: <Node 22's JSON.parse message>` (the first line of the
//!      error page the original showed), e.g. `SyntaxError: Unexpected end of JSON input`;
//! 2. `site` or `apiKey` missing or empty in the query: 400 `text/html`
//!    `Missing query param 'site' or 'apiKey'.`;
//! 3. unknown site or wrong key (compared in constant time): 401 `text/html`
//!    `ApiKey invalid.`;
//! 4. Courier's checks of the body, where the original crashed with a 500 page or silently
//!    did nothing (README Differences #9, #10), all 400 `text/plain` (415 for a content type):
//!    - [`BODY_NOT_OBJECT`], [`MISSING_ROOMS`], [`BAD_ROOMS`], [`MISSING_EVENT`],
//!      [`BAD_EVENT`], [`EMPTY_EVENT`], `Event name '<event>' is reserved.`;
//!    - any other content type with a body: 415
//!      `Unsupported Content-Type '<type>': send application/json or application/x-www-form-urlencoded.`
//!
//! Success is the caller's to answer, with [`super::routes::send_ok`] (`200 OK`).

use std::collections::HashSet;

use bytes::Bytes;
use subtle::ConstantTimeEq;

use super::config::Config;
use super::js_json::{self, JsValue, JsonError};
use super::qs;
use super::routes::express;
use crate::net::HttpResponse;

/// body-parser's default limit for JSON and form bodies: 100 kB.
pub const BODY_LIMIT: usize = 100 * 1024;

/// Event names `/send` refuses: Courier's own control events, and the names socket.io
/// servers and clients (1.x to 4.x) reserve for themselves, which a client would take for a
/// connection-state change (README Differences #9).
pub const RESERVED_EVENTS: [&str; 20] = [
    "_settings",
    "_batch",
    "_resync",
    "connect",
    "connect_error",
    "connect_timeout",
    "connecting",
    "connection",
    "disconnect",
    "disconnecting",
    "error",
    "newListener",
    "removeListener",
    "ping",
    "pong",
    "reconnect",
    "reconnect_attempt",
    "reconnect_error",
    "reconnect_failed",
    "reconnecting",
];

/// 400 when `site` or `apiKey` is missing from the query (the original's text).
pub const MISSING_QUERY_PARAM: &str = "Missing query param 'site' or 'apiKey'.";
/// 401 for an unknown site or a wrong key (the original's text).
pub const API_KEY_INVALID: &str = "ApiKey invalid.";
/// 400 when a JSON body is an array (or anything but an object) at the top level.
pub const BODY_NOT_OBJECT: &str =
    "The body must be a JSON object with 'rooms', 'event' and optional 'args'.";
/// 400 when `rooms` is absent.
pub const MISSING_ROOMS: &str = "Missing body param 'rooms'.";
/// 400 when `rooms` is neither a string nor an array of strings.
pub const BAD_ROOMS: &str = "Body param 'rooms' must be a string or an array of strings.";
/// 400 when `event` is absent.
pub const MISSING_EVENT: &str = "Missing body param 'event'.";
/// 400 when `event` is not a string.
pub const BAD_EVENT: &str = "Body param 'event' must be a string.";
/// 400 when `event` is the empty string.
pub const EMPTY_EVENT: &str = "Body param 'event' must not be empty.";
/// 413 for a body over [`BODY_LIMIT`] (body-parser's text).
pub const TOO_LARGE: &str = "request entity too large";
/// 413 for a form with more than 1000 parameters (body-parser's text).
pub const TOO_MANY_PARAMETERS: &str = "too many parameters";

/// A validated `/send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// The site (its apiKey matched).
    pub site: String,
    /// Target rooms, exact strings, duplicates removed (first occurrence kept).
    pub rooms: Vec<String>,
    /// The event name (not reserved, not empty).
    pub event: String,
    /// The compact JSON array `["event", args...]` as `JSON.stringify` prints it: an array
    /// `args` spread, a scalar or object one argument, a missing `args` one `null`.
    pub payload: Bytes,
    /// The query asked for the resync head check on acks.
    pub resync: bool,
}

const PLAIN: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

fn plain(status: u16, body: impl Into<String>) -> HttpResponse {
    express(status, PLAIN, body.into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Other(Option<String>),
}

/// The media type (lowercase) and `charset` parameter (lowercase) of a `Content-Type`.
fn media_type(content_type: &str) -> (String, Option<String>) {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let charset = parts.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    });
    (essence, charset)
}

/// Step 1: the body as the original's body parsers left it (`{}` when neither applied).
fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
    truncated: bool,
) -> Result<(BodyKind, JsValue), HttpResponse> {
    let (essence, charset) = content_type.map(media_type).unwrap_or_default();
    let kind = match essence.as_str() {
        "application/json" => BodyKind::Json,
        "application/x-www-form-urlencoded" => BodyKind::Form,
        _ => BodyKind::Other(content_type.map(|_| essence.clone())),
    };
    let empty = JsValue::Object(Vec::new());
    if matches!(kind, BodyKind::Other(_)) || (body.is_empty() && !truncated) {
        return Ok((kind, empty));
    }
    if truncated || body.len() > BODY_LIMIT {
        return Err(plain(413, TOO_LARGE));
    }
    let charset_ok = match (&kind, charset.as_deref()) {
        (_, None) => true,
        (BodyKind::Json, Some(charset)) => charset.starts_with("utf-"),
        (_, Some(charset)) => charset == "utf-8",
    };
    if !charset_ok {
        let charset = charset.unwrap_or_default().to_ascii_uppercase();
        return Err(plain(415, format!("unsupported charset \"{charset}\"")));
    }
    let text = String::from_utf8_lossy(body);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    match kind {
        BodyKind::Json => {
            if let Some(message) = js_json::strict_violation(text) {
                return Err(plain(400, format!("SyntaxError: {message}")));
            }
            match js_json::parse(text) {
                Ok(value) => Ok((kind, value)),
                Err(JsonError::Syntax(message)) => {
                    Err(plain(400, format!("SyntaxError: {message}")))
                }
                Err(JsonError::TooDeep) => Err(plain(
                    400,
                    format!(
                        "The JSON body is nested deeper than {} levels.",
                        js_json::MAX_DEPTH
                    ),
                )),
            }
        }
        _ => {
            let count = qs::parameter_count(text, qs::FORM_PARAMETER_LIMIT)
                .ok_or_else(|| plain(413, TOO_MANY_PARAMETERS))?;
            let form =
                qs::parse(text, &qs::form_options(count)).map_err(|e| plain(400, e.to_string()))?;
            Ok((kind, form))
        }
    }
}

fn get<'a>(object: &'a JsValue, key: &str) -> Option<&'a JsValue> {
    match object {
        JsValue::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// JavaScript truthiness of a query value (`!req.query.x` in the original).
fn truthy(value: Option<&JsValue>) -> bool {
    match value {
        None | Some(JsValue::Null) => false,
        Some(JsValue::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// The `resync` flag (README Differences #3): `true`/`1` on; `false`/`0`/empty/absent off; any
/// other value on, as the original's truthiness made it.
fn resync_flag(value: Option<&JsValue>) -> bool {
    match value {
        Some(JsValue::String(s)) => !matches!(s.as_str(), "" | "false" | "0"),
        other => truthy(other),
    }
}

/// Parses and authorises a `/send`. See the module docs for every answer.
pub fn parse_send(
    config: &Config,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
    body_truncated: bool,
) -> Result<SendRequest, HttpResponse> {
    let (kind, body) = parse_body(content_type, body, body_truncated)?;

    // Query parsing has no strict depth, so it cannot fail; an empty object is the fallback.
    let query = qs::parse(query, &qs::QUERY_OPTIONS).unwrap_or(JsValue::Object(Vec::new()));
    let (site_param, key_param) = (get(&query, "site"), get(&query, "apiKey"));
    if !truthy(site_param) || !truthy(key_param) {
        return Err(express(400, HTML, MISSING_QUERY_PARAM));
    }
    let site = match (site_param, key_param) {
        (Some(JsValue::String(name)), Some(JsValue::String(key))) => config
            .site(name)
            .filter(|site| bool::from(site.api_key.as_bytes().ct_eq(key.as_bytes()))),
        _ => None,
    };
    let Some(site) = site else {
        return Err(express(401, HTML, API_KEY_INVALID));
    };

    if let BodyKind::Other(media) = &kind {
        // The original read no body for other types; Courier says why nothing can be sent.
        return Err(plain(
            415,
            match media {
                Some(media) => format!(
                    "Unsupported Content-Type '{media}': send application/json or application/x-www-form-urlencoded."
                ),
                None => "Missing Content-Type: send application/json or application/x-www-form-urlencoded.".to_owned(),
            },
        ));
    }
    if !matches!(body, JsValue::Object(_)) {
        return Err(plain(400, BODY_NOT_OBJECT));
    }

    let rooms = match get(&body, "rooms") {
        None => return Err(plain(400, MISSING_ROOMS)),
        Some(JsValue::String(room)) => vec![room.clone()],
        Some(JsValue::Array(items)) => {
            let mut rooms: Vec<String> = Vec::with_capacity(items.len());
            let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
            for item in items {
                let JsValue::String(room) = item else {
                    return Err(plain(400, BAD_ROOMS));
                };
                if seen.insert(room) {
                    rooms.push(room.clone());
                }
            }
            rooms
        }
        Some(_) => return Err(plain(400, BAD_ROOMS)),
    };

    let event = match get(&body, "event") {
        None => return Err(plain(400, MISSING_EVENT)),
        Some(JsValue::String(event)) if event.is_empty() => return Err(plain(400, EMPTY_EVENT)),
        Some(JsValue::String(event)) => event.clone(),
        Some(_) => return Err(plain(400, BAD_EVENT)),
    };
    if RESERVED_EVENTS.contains(&event.as_str()) {
        return Err(plain(400, format!("Event name '{event}' is reserved.")));
    }

    let mut items = vec![JsValue::String(event.clone())];
    match get(&body, "args") {
        // `[event].concat(undefined)`: one argument, `null` on the wire.
        None => items.push(JsValue::Null),
        Some(JsValue::Array(args)) => items.extend(args.iter().cloned()),
        Some(arg) => items.push(arg.clone()),
    }
    let payload = Bytes::from(JsValue::Array(items).to_json());

    Ok(SendRequest {
        site: site.name.clone(),
        rooms,
        event,
        payload,
        resync: resync_flag(get(&query, "resync")),
    })
}
