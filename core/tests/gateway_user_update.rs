//! The `updateUserUrl` PUT: URL, `:id` rule, headers, body, timestamps.

use std::time::Duration;

use courier_core::gateway::config::Site;
use courier_core::gateway::user_update::{LastSeen, user_update_call};
use courier_core::iso8601::format as iso8601_utc;
use courier_core::net::Method;

fn site(url: Option<&str>) -> Site {
    Site {
        name: "goodcity".into(),
        auth_url: "http://127.0.0.1:3000/rooms".into(),
        auth_scheme: "Bearer".into(),
        api_key: "k".into(),
        user_room_prefix: Some("user_".into()),
        update_user_url: url.map(str::to_owned),
        public_channel: Some("browse".into()),
        http_timeout: Duration::from_secs(3),
        demo: false,
    }
}

const AT: u64 = 1_795_319_371_645; // 2026-11-22T03:49:31.645Z

#[test]
fn connected_put_matches_the_original() {
    let call = user_update_call(
        &site(Some("http://api/users/:id")),
        "user_3",
        "u3",
        LastSeen::Connected,
        AT,
    )
    .expect("due");
    assert_eq!(call.method, Method::Put);
    assert_eq!(call.url, "http://api/users/3");
    assert_eq!(call.headers.get("content-type"), Some("application/json"));
    assert_eq!(call.headers.get("authorization"), Some("Bearer u3"));
    assert_eq!(call.headers.get("x-meta"), None);
    assert_eq!(
        &call.body[..],
        br#"{"id":"3","user":{"last_connected":"2026-11-22T03:49:31.645Z"}}"#
    );
    assert_eq!(call.timeout, Duration::from_secs(3));
    let gone = user_update_call(
        &site(Some("http://api/users/:id")),
        "user_3",
        "u3",
        LastSeen::Disconnected,
        AT,
    )
    .expect("due");
    assert_eq!(
        &gone.body[..],
        br#"{"id":"3","user":{"last_disconnected":"2026-11-22T03:49:31.645Z"}}"#
    );
}

#[test]
fn the_id_rule_splits_on_underscore_whatever_the_prefix() {
    let url = |template: &str, room: &str| {
        user_update_call(&site(Some(template)), room, "t", LastSeen::Connected, 0)
            .map(|c| (c.url, String::from_utf8_lossy(&c.body).into_owned()))
    };
    assert_eq!(
        url("http://api/users/:id", "user_3_admin")
            .map(|c| c.0)
            .as_deref(),
        Some("http://api/users/3")
    );
    assert_eq!(
        url("http://api/u/:id/x/:id", "user_9")
            .map(|c| c.0)
            .as_deref(),
        Some("http://api/u/9/x/:id"),
        "first :id only"
    );
    assert_eq!(
        url("http://api/users", "user_9").map(|c| c.0).as_deref(),
        Some("http://api/users")
    );
    assert_eq!(
        url("http://api/users/:id", "user_$&")
            .map(|c| c.0)
            .as_deref(),
        Some("http://api/users/:id"),
        "replace() $ patterns"
    );
    assert_eq!(
        url("http://api/users/:id", "user_a$$b")
            .map(|c| c.0)
            .as_deref(),
        Some("http://api/users/a$b")
    );
    let mut dashed = site(Some("http://api/users/:id"));
    dashed.user_room_prefix = Some("member-".into());
    let call = user_update_call(&dashed, "member-3", "t", LastSeen::Connected, 0).expect("due");
    assert_eq!(call.url, "http://api/users/undefined");
    assert_eq!(
        &call.body[..],
        br#"{"user":{"last_connected":"1970-01-01T00:00:00.000Z"}}"#,
        "JSON.stringify drops an undefined id"
    );
}

#[test]
fn no_put_for_public_channel_group_rooms_or_without_url() {
    let s = site(Some("http://api/users/:id"));
    assert!(user_update_call(&s, "browse", "t", LastSeen::Connected, 0).is_none());
    assert!(user_update_call(&s, "staff", "t", LastSeen::Connected, 0).is_none());
    assert!(user_update_call(&site(None), "user_3", "t", LastSeen::Connected, 0).is_none());
    assert!(user_update_call(&s, "user_3", "bad\ntoken", LastSeen::Connected, 0).is_none());
}

#[test]
fn iso_timestamps_like_to_iso_string() {
    assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601_utc(AT), "2026-11-22T03:49:31.645Z");
    assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso8601_utc(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    assert_eq!(
        iso8601_utc(253_402_300_800_000),
        "+010000-01-01T00:00:00.000Z"
    );
}
