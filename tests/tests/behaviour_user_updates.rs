//! `updateUserUrl` (behaviours 15, 16, 26 in tests/README.md; README configuration reference,
//! `updateUserUrl`): a PUT of `last_connected` on connect and of
//! `last_disconnected` on disconnect, per user room, with the socket's own token.

mod common;

use common::*;
use courier_tests::{Gateway, Lib, RecordedRequest, Site, StubSite, Transports, json, scenario};

/// `2026-11-22T03:49:31.645Z`: ISO-8601, milliseconds, `Z`.
fn is_js_iso_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn assert_update(req: &RecordedRequest, id: &str, token: &str, field: &str) {
    assert_eq!(req.method, "PUT");
    assert_eq!(req.path, format!("/users/{id}"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(
        req.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{req:?}"
    );
    assert_eq!(req.header("x-meta"), None, "no X-META on user updates");
    let body = req.json();
    assert_eq!(body["id"], json!(id), "the id is a string: {body}");
    let user = body["user"]
        .as_object()
        .unwrap_or_else(|| panic!("no user object: {body}"));
    assert_eq!(user.len(), 1, "{body}");
    let stamp = user[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}: {body}"));
    assert!(is_js_iso_timestamp(stamp), "timestamp {stamp:?}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
}

// Behaviours 15, 16 with an EIO3 and an EIO4 client.
scenario!(connect_and_disconnect_put_last_seen, |bin| {
    let stub = StubSite::start();
    stub.user("u3", &["user_3", "reviewer"]);
    stub.user("u4", &["user_4"]);
    let gw = user_site(bin, &stub).start();
    for (token, id, lib) in [("u3", "3", Lib::Sio1), ("u4", "4", Lib::Py5)] {
        stub.clear_requests();
        let mut c = connected(&gw, lib, Transports::Polling, token, "d");
        let updates = stub.wait_user_updates(1);
        assert_eq!(
            updates.len(),
            1,
            "one PUT per user room, none for groups: {updates:#?}"
        );
        assert_update(&updates[0].1, id, token, "last_connected");
        c.disconnect();
        c.close();
        let updates = stub.wait_user_updates(2);
        assert_eq!(updates.len(), 2);
        assert_update(&updates[1].1, id, token, "last_disconnected");
    }
});

// The id is `room.split("_")[1]` (the room's part after its first `_`, up to the next); only the
// first `:id` is replaced.
scenario!(user_id_comes_from_the_room_name, |bin| {
    let stub = StubSite::start();
    stub.user("admin", &["user_7_admin"]);
    let url = format!("http://127.0.0.1:{}/users/:id?again=:id", stub.port());
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).update_user_url(&url))
        .start();
    let _c = connected(&gw, Lib::Sio4, Transports::Websocket, "admin", "d");
    let updates = stub.wait_user_updates(1);
    assert_eq!(updates[0].0, "7");
    assert_eq!(updates[0].1.query, "again=:id");
    assert_eq!(updates[0].1.json()["id"], json!("7"));
});

// Behaviour 26: no PUT for the public channel; none at all without updateUserUrl.
scenario!(no_updates_for_public_channel_or_without_url, |bin| {
    let stub = StubSite::start();
    stub.user("anon", &["browse"]);
    stub.user("u1", &["user_1"]);
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).public_channel("browse"))
        .start();
    let mut c = connected(&gw, Lib::Sio2, Transports::Websocket, "anon", "d");
    c.disconnect();
    c.close();

    let quiet = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).no_user_updates())
        .start();
    let mut c = connected(&quiet, Lib::Sio2, Transports::Websocket, "u1", "d");
    c.disconnect();
    c.close();
    std::thread::sleep(QUIET);
    assert!(stub.user_updates().is_empty(), "{:#?}", stub.user_updates());
});

// Behaviour 16: a failing update endpoint changes nothing for the client (fire and forget).
scenario!(failing_user_updates_do_not_affect_the_connection, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    stub.set_user_update_status(500);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, Lib::Sio4, Transports::Upgrade, "u1", "d");
    stub.wait_user_updates(1);
    push(&gw, json!({"rooms": "user_1", "event": "fine", "args": []}));
    let ev = c.expect_event("fine");
    c.ack_event(&ev, vec![]);
});
