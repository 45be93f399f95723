//! `updateUserUrl`: the original's "last seen" PUT, byte for byte.
//!
//! On connect (and, when `device_ttl > 0`, on disconnect) of a socket in a user room that is
//! not the public channel, the original sent
//! `PUT <updateUserUrl with the first ":id" replaced by room.split("_")[1]>` with
//! `content-type: application/json`, `Authorization: <scheme> <token>` and the body
//! `{"id":"3","user":{"last_connected":"2026-11-22T03:49:31.645Z"}}` (or `last_disconnected`).
//! The id is split on `_` whatever the prefix is (`user_3_admin` gives `3`); a room without
//! `_` gives the id `undefined` in the URL and no `id` in the body, as JavaScript did. The
//! replacement follows `String.prototype.replace` (`$&`, `` $` ``, `$'`, `$$` are special).
//! Fire-and-forget: the caller only logs the outcome. When to call (connect always,
//! disconnect only with `device_ttl > 0`) is the caller's decision.

use bytes::Bytes;

use super::auth::{authorization, header_value};
use super::config::Site;
use super::js_json::JsValue;
use crate::net::{Headers, Method, OutboundCall};

/// Which timestamp the PUT carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastSeen {
    /// `last_connected`, sent when the socket connects.
    Connected,
    /// `last_disconnected`, sent when it disconnects.
    Disconnected,
}

/// The PUT for `room` at wall clock `unix_ms`, or `None` when none is due: the site has no
/// `updateUserUrl`, the room is the public channel or not a user room, or a header value is one
/// `fetch` would have refused (the original only logged that).
pub fn user_update_call(
    site: &Site,
    room: &str,
    token: &str,
    seen: LastSeen,
    unix_ms: u64,
) -> Option<OutboundCall> {
    let template = site.update_user_url.as_deref()?;
    let prefix = site.user_room_prefix.as_deref()?;
    if site.is_public_channel(room) || !room.starts_with(prefix) {
        return None;
    }
    let id = room.split('_').nth(1);
    let url = replace_first(template, ":id", id.unwrap_or("undefined"));
    let key = match seen {
        LastSeen::Connected => "last_connected",
        LastSeen::Disconnected => "last_disconnected",
    };
    let mut body = Vec::with_capacity(2);
    if let Some(id) = id {
        body.push(("id".to_owned(), JsValue::String(id.to_owned())));
    }
    body.push((
        "user".to_owned(),
        JsValue::Object(vec![(
            key.to_owned(),
            JsValue::String(crate::iso8601::format(unix_ms)),
        )]),
    ));
    let mut headers = Headers::default();
    headers.push("content-type", "application/json");
    headers.push("authorization", authorization(site, token).ok()?);
    headers.push("accept", header_value("*/*").ok()?);
    Some(OutboundCall {
        method: Method::Put,
        url,
        headers,
        body: Bytes::from(JsValue::Object(body).to_json()),
        timeout: site.http_timeout,
    })
}

/// `haystack.replace(needle, replacement)` for a string pattern: the first occurrence only,
/// with JavaScript's `$` patterns in the replacement.
fn replace_first(haystack: &str, needle: &str, replacement: &str) -> String {
    let Some(at) = haystack.find(needle) else {
        return haystack.to_owned();
    };
    let (before, after) = (&haystack[..at], &haystack[at + needle.len()..]);
    let mut expanded = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            expanded.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => expanded.push('$'),
            Some('&') => expanded.push_str(needle),
            Some('`') => expanded.push_str(before),
            Some('\'') => expanded.push_str(after),
            _ => {
                expanded.push('$');
                continue;
            }
        }
        chars.next();
    }
    format!("{before}{expanded}{after}")
}
