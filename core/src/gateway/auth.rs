//! Connect-time authentication: the call to the site's `authUrl` and what its answer means,
//! with the original's exact error strings (they reach the client as `44/<nsp>,"<message>"`).
//!
//! The call: `GET <authUrl>` with `Authorization: <authScheme> <token>` and `X-META: <meta>`;
//! a missing token or meta is sent as the literal text `undefined`, as the original (on
//! `fetch`) did. The answer is parsed as JSON *before* its status is looked at:
//! - not JSON: `Auth error: SyntaxError: <JSON.parse message>`;
//! - 401: `Authentication failed`; any other status but 200: `Auth <status> error`;
//! - 200 in user-room mode: an array of room names of which at least one is a user room or the
//!   public channel, else `User is missing a private room` (or the `Auth error: TypeError: …`
//!   the original's code threw on a non-array or a non-string element it had to look at);
//! - 200 in broadcast mode: an array of room names; a JSON object or number means no rooms.
//!
//! Failures without an answer: `Auth error: timeout` (README Differences #11) and
//! `Auth error: TypeError: fetch failed` (what `fetch` said for any network failure).

use bytes::Bytes;

use super::config::Site;
use super::js_json::{self, JsValue, JsonError};
use crate::net::{CallFailure, CallResult, Headers, Method, OutboundCall};

/// What the original sent for a handshake value the client did not give.
pub const MISSING_VALUE: &str = "undefined";
/// 401 from the auth endpoint.
pub const AUTHENTICATION_FAILED: &str = "Authentication failed";
/// 200 in user-room mode without a user room or the public channel.
pub const MISSING_PRIVATE_ROOM: &str = "User is missing a private room";
/// The auth call timed out.
pub const AUTH_TIMEOUT: &str = "Auth error: timeout";
/// The auth call failed without an answer.
pub const FETCH_FAILED: &str = "Auth error: TypeError: fetch failed";

/// Checks and normalises a header value as `fetch` (undici) did: surrounding whitespace is
/// dropped; NUL, CR or LF inside, or a character above U+00FF, makes `fetch` throw a
/// `TypeError`, whose text is returned.
pub(crate) fn header_value(value: &str) -> Result<String, String> {
    let trimmed = value.trim_matches([' ', '\t', '\r', '\n']);
    let mut index = 0;
    for c in trimmed.chars() {
        if u32::from(c) > 0xFF {
            return Err(format!(
                "TypeError: Cannot convert argument to a ByteString because the character at index {index} has a value of {} which is greater than 255.",
                u32::from(c)
            ));
        }
        index += c.len_utf16();
    }
    if trimmed.contains(['\0', '\r', '\n']) {
        return Err("TypeError: Headers.append: invalid header value.".to_owned());
    }
    Ok(trimmed.to_owned())
}

/// The `Authorization` header value for `token` on `site`.
pub(crate) fn authorization(site: &Site, token: &str) -> Result<String, String> {
    header_value(&format!("{} {token}", site.auth_scheme))
}

/// The auth call for a connecting client (not for a demo site, whose rooms come from
/// [`demo_rooms`] without any call). `token` is the handshake's `token` (pass
/// [`MISSING_VALUE`] when absent); `meta` its `meta`. `Err` is the connect error to send when
/// the call cannot even be made (a header value `fetch` would refuse).
pub fn auth_call(site: &Site, token: &str, meta: Option<&str>) -> Result<OutboundCall, String> {
    let authorization = authorization(site, token).map_err(|e| format!("Auth error: {e}"))?;
    let meta =
        header_value(meta.unwrap_or(MISSING_VALUE)).map_err(|e| format!("Auth error: {e}"))?;
    let mut headers = Headers::default();
    headers.push("authorization", authorization);
    headers.push("x-meta", meta);
    headers.push("accept", "*/*");
    Ok(OutboundCall {
        method: Method::Get,
        url: site.auth_url.clone(),
        headers,
        body: Bytes::new(),
        timeout: site.http_timeout,
    })
}

/// The rooms to join, or the connect error, for the result of [`auth_call`]. Rooms are the
/// listed strings in order, duplicates removed.
pub fn auth_outcome(site: &Site, result: &CallResult) -> Result<Vec<String>, String> {
    let (status, body) = match result {
        CallResult::Failed(CallFailure::Timeout) => return Err(AUTH_TIMEOUT.to_owned()),
        CallResult::Failed(_) => return Err(FETCH_FAILED.to_owned()),
        CallResult::Response { status, body } => (*status, body),
    };
    let data = match js_json::parse_bytes(body) {
        Ok(data) => data,
        Err(JsonError::Syntax(message)) => {
            return Err(format!("Auth error: SyntaxError: {message}"));
        }
        Err(JsonError::TooDeep) => {
            return Err("Auth error: RangeError: Maximum call stack size exceeded".to_owned());
        }
    };
    if status == 401 {
        return Err(AUTHENTICATION_FAILED.to_owned());
    }
    if status != 200 {
        return Err(format!("Auth {status} error"));
    }
    match site.user_room_prefix.as_deref() {
        Some(prefix) => user_room_mode(site, prefix, data),
        None => broadcast_mode(data),
    }
}

/// `data.some(isUserRoom)` with `isUserRoom(room) = room === publicChannel ||
/// room.indexOf(prefix) === 0`, throwing where JavaScript threw.
fn user_room_mode(site: &Site, prefix: &str, data: JsValue) -> Result<Vec<String>, String> {
    let items = match data {
        JsValue::Array(items) => items,
        JsValue::Null => {
            return Err(
                "Auth error: TypeError: Cannot read properties of null (reading 'some')".to_owned(),
            );
        }
        _ => return Err("Auth error: TypeError: data.some is not a function".to_owned()),
    };
    let mut found = false;
    for item in &items {
        let is_user_room = match item {
            JsValue::String(room) => site.is_public_channel(room) || room.starts_with(prefix),
            // `array.indexOf(prefix) === 0`: its first element is the prefix itself.
            JsValue::Array(inner) => {
                matches!(inner.first(), Some(JsValue::String(first)) if first == prefix)
            }
            JsValue::Null => {
                return Err(
                    "Auth error: TypeError: Cannot read properties of null (reading 'indexOf')"
                        .to_owned(),
                );
            }
            _ => return Err("Auth error: TypeError: room.indexOf is not a function".to_owned()),
        };
        if is_user_room {
            found = true;
            break;
        }
    }
    if !found {
        return Err(MISSING_PRIVATE_ROOM.to_owned());
    }
    Ok(string_rooms(items))
}

fn broadcast_mode(data: JsValue) -> Result<Vec<String>, String> {
    match data {
        JsValue::Array(items) => Ok(string_rooms(items)),
        JsValue::String(_) => {
            Err("Auth error: TypeError: data.forEach is not a function".to_owned())
        }
        JsValue::Null => Err(
            "Auth error: TypeError: Cannot read properties of null (reading 'length')".to_owned(),
        ),
        // Anything without a `length`: admitted, in no room.
        _ => Ok(Vec::new()),
    }
}

/// The string elements, in order, without duplicates (a socket is in a room once). Other
/// elements are not rooms Courier can join and are skipped.
fn string_rooms(items: Vec<JsValue>) -> Vec<String> {
    let mut rooms: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if let JsValue::String(room) = item
            && !rooms.contains(&room)
        {
            rooms.push(room);
        }
    }
    rooms
}

/// The demo site's auth (no HTTP call): token `t` joins `user_<t>` and `staff`.
pub fn demo_rooms(token: &str) -> Vec<String> {
    vec![format!("user_{token}"), "staff".to_owned()]
}
