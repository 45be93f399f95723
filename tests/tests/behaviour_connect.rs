//! Connecting and authenticating (behaviours 4–11, 26 in tests/README.md; README Differences #2,
//! #7, #11): the namespace per site, what the auth call carries, every refusal text, and the
//! `_settings` event.

mod common;

use std::time::Duration;

use common::*;
use courier_tests::{
    AuthReply, Client, Gateway, Lib, PollingSession, Site, StubSite, Transports, json, matrix,
    scenario,
};

// Behaviours 5, 6, 10 with every library over every transport: the handshake query reaches the
// auth call, the connect succeeds, `_settings` comes first with the default TTL.
scenario!(every_client_connects_and_gets_settings, |bin| {
    let stub = StubSite::start();
    let combos = matrix::full();
    for i in 0..combos.len() {
        stub.user(&format!("tok{i}"), &[&format!("user_{i}"), "staff"]);
    }
    let gw = user_site(bin, &stub).start();
    matrix::for_each(&combos, |i, lib, transports| {
        let mut c = Client::builder(lib, transports)
            .namespace(NS)
            .token(&format!("tok{i}"))
            .device(&format!("dev{i}"))
            .meta(&format!("meta {i}"))
            .connect(gw.port());
        assert_eq!(c.expect_connected(), json!({"device_ttl": 3600}));
        // Upgrade mode must really end on a WebSocket (behaviour 1's probe upgrade); polling
        // only must stay on polling.
        c.wait_for_transport(Client::settled_transport(transports));
        c.expect_no_event(QUIET);
        assert_eq!(
            c.transport().as_deref(),
            Some(Client::settled_transport(transports))
        );
    });
    let auth = stub.auth_requests();
    assert_eq!(auth.len(), combos.len(), "one auth call per connect");
    for i in 0..combos.len() {
        let req = auth
            .iter()
            .find(|r| r.header("authorization") == Some(&format!("Bearer tok{i}")))
            .unwrap_or_else(|| panic!("no auth call for tok{i}: {auth:#?}"));
        assert_eq!(req.method, "GET");
        assert_eq!(req.header("x-meta"), Some(format!("meta {i}").as_str()));
        assert!(req.body.is_empty());
    }
});

// Behaviours 7, 9 with every library: the plain refusal text reaches each client verbatim.
scenario!(every_client_sees_authentication_failed, |bin| {
    let stub = StubSite::start();
    stub.set_auth("bad", AuthReply::json(401, r#"{"error":"nope"}"#));
    let gw = user_site(bin, &stub).start();
    matrix::for_each(&matrix::full(), |i, lib, transports| {
        let mut c = client(&gw, lib, transports, "bad", &format!("d{i}"));
        c.expect_connect_error("Authentication failed");
        c.expect_no_event(QUIET);
    });
});

/// Asserts the refusal text one auth answer produces, for an EIO3 and an EIO4 client.
fn refusal(bin: courier_tests::Bin, reply: AuthReply, expected: &str) {
    let stub = StubSite::start();
    stub.set_auth("t", reply);
    let gw = user_site(bin, &stub).start();
    matrix::for_each(&matrix::pair(), |_, lib, transports| {
        client(&gw, lib, transports, "t", "d").expect_connect_error(expected);
    });
}

// Behaviour 7: the exact texts of every auth failure, as the original's clients received them.
scenario!(auth_401_html_body_is_a_syntax_error, |bin| {
    refusal(
        bin,
        AuthReply::html(401, "<html>no</html>"),
        "Auth error: SyntaxError: Unexpected token '<', \"<html>no</html>\" is not valid JSON",
    );
});

scenario!(auth_401_empty_body_is_a_syntax_error, |bin| {
    refusal(
        bin,
        AuthReply::json(401, ""),
        "Auth error: SyntaxError: Unexpected end of JSON input",
    );
});

scenario!(auth_500_and_403_name_the_status, |bin| {
    refusal(
        bin,
        AuthReply::json(500, r#"{"error":"boom"}"#),
        "Auth 500 error",
    );
    refusal(
        bin,
        AuthReply::json(403, r#"{"error":"no"}"#),
        "Auth 403 error",
    );
});

// Behaviour 8: in user-room mode the list must hold a user room or the public channel.
scenario!(auth_without_private_room_is_refused, |bin| {
    refusal(
        bin,
        AuthReply::rooms(&["reviewer"]),
        "User is missing a private room",
    );
    refusal(bin, AuthReply::rooms(&[]), "User is missing a private room");
});

scenario!(auth_object_body_in_user_room_mode_is_a_type_error, |bin| {
    refusal(
        bin,
        AuthReply::json(200, r#"{"a":1}"#),
        "Auth error: TypeError: data.some is not a function",
    );
});

// Behaviour 7: a transport failure of the auth call.
scenario!(unreachable_auth_url_is_fetch_failed, |bin| {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!(
        "http://127.0.0.1:{}/rooms",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    let gw = Gateway::builder(bin)
        .site(
            Site::new(SITE)
                .auth_url(&dead_url)
                .auth_scheme("Bearer")
                .api_key(Site::API_KEY)
                .user_room_prefix("user_"),
        )
        .start();
    matrix::for_each(&matrix::pair(), |_, lib, transports| {
        client(&gw, lib, transports, "t", "d")
            .expect_connect_error("Auth error: TypeError: fetch failed");
    });
});

// README Differences #11: the auth call has a timeout (default 10 s) and says so.
scenario!(slow_auth_times_out_after_the_default_10_s, |bin| {
    let stub = StubSite::start();
    stub.set_auth(
        "slow",
        AuthReply::rooms(&["user_1"]).delayed(Duration::from_secs(14)),
    );
    let gw = user_site(bin, &stub).start();
    let started = std::time::Instant::now();
    let mut c = client(&gw, Lib::Sio2, Transports::Websocket, "slow", "d");
    c.expect_connect_error("Auth error: timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(9500),
        "timed out early, after {waited:?}"
    );
});

// README Differences #11: the timeout is configurable per site (`httpTimeout`, ms); an answer
// within it is fine.
scenario!(auth_timeout_is_configurable, |bin| {
    let stub = StubSite::start();
    stub.set_auth(
        "slow",
        AuthReply::rooms(&["user_1"]).delayed(Duration::from_millis(1500)),
    );
    stub.set_auth(
        "quick",
        AuthReply::rooms(&["user_2"]).delayed(Duration::from_millis(100)),
    );
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).http_timeout_ms(700))
        .start();
    matrix::for_each(&matrix::pair(), |i, lib, transports| {
        client(&gw, lib, transports, "slow", &format!("s{i}"))
            .expect_connect_error("Auth error: timeout");
        connected(&gw, lib, transports, "quick", &format!("q{i}"));
    });
});

// Behaviour 6: absent token and meta are sent as the literal `undefined`.
scenario!(missing_token_and_meta_are_sent_as_undefined, |bin| {
    let stub = StubSite::start();
    stub.user("undefined", &["user_0"]);
    let gw = user_site(bin, &stub).start();
    let mut c = Client::builder(Lib::Sio1, Transports::Polling)
        .namespace(NS)
        .connect(gw.port());
    c.expect_connected();
    let auth = stub.wait_auth_requests(1);
    assert_eq!(auth[0].header("authorization"), Some("Bearer undefined"));
    assert_eq!(auth[0].header("x-meta"), Some("undefined"));
});

// Kept from the original's contract: v5 clients may carry token/deviceId/meta in the CONNECT auth
// object.
scenario!(v5_auth_object_carries_the_token, |bin| {
    let stub = StubSite::start();
    stub.user("from-auth", &["user_5"]);
    let gw = user_site(bin, &stub).start();
    for lib in [Lib::Sio4, Lib::Py5] {
        let mut c = Client::builder(lib, Transports::Websocket)
            .namespace(NS)
            .auth(json!({"token": "from-auth", "deviceId": "dv", "meta": "m5"}))
            .connect(gw.port());
        c.expect_connected();
    }
    for req in stub.wait_auth_requests(2) {
        assert_eq!(req.header("authorization"), Some("Bearer from-auth"));
        assert_eq!(req.header("x-meta"), Some("m5"));
    }
});

// Behaviours 4, 9: an unknown namespace is refused and the engine connection stays usable; so
// is it after an auth refusal. The wire text is the original's (socket.io 1.7.4 over EIO3).
scenario!(refusals_on_the_wire_keep_the_engine_open, |bin| {
    let stub = StubSite::start();
    stub.set_auth("bad", AuthReply::json(401, r#"{"error":"no"}"#));
    let gw = user_site(bin, &stub).start();

    let mut s = PollingSession::handshake(gw.port(), 3, "token=bad&deviceId=d1");
    s.get_until(|p| p == "40");
    assert_eq!(s.post(&["40/nope"]).body, "ok");
    let packets = s.get_until(|p| p.starts_with("44/nope"));
    assert_eq!(
        packets.last().map(String::as_str),
        Some(r#"44/nope,"Invalid namespace""#)
    );
    assert_eq!(s.post(&["40/goodcity"]).body, "ok");
    let packets = s.get_until(|p| p.starts_with("44/goodcity"));
    assert_eq!(
        packets.last().map(String::as_str),
        Some(r#"44/goodcity,"Authentication failed""#)
    );
    assert_eq!(s.post(&["2"]).body, "ok");
    s.get_until(|p| p == "3");

    matrix::for_each(&matrix::one_per_lib(), |_, lib, transports| {
        let mut c = Client::builder(lib, transports)
            .namespace("/nope")
            .token("t")
            .connect(gw.port());
        c.expect_connect_error("Invalid namespace");
    });
});

// Behaviours 3, 5, 10 on the wire, as the original wrote them: `2:40` first, the CONNECT query is
// ignored for auth (the handshake query counts) and tolerated, `40/goodcity` then `_settings`.
scenario!(eio3_wire_transcript, |bin| {
    let stub = StubSite::start();
    stub.user("u3", &["user_3"]);
    let gw = user_site(bin, &stub).start();
    let mut s = PollingSession::handshake(gw.port(), 3, "token=u3&deviceId=d1&meta=abc");
    assert_eq!(s.open["upgrades"], json!(["websocket"]));
    assert_eq!(s.open["pingInterval"], json!(25000));
    assert_eq!(s.open["pingTimeout"], json!(60000));
    let first = s.get_until(|p| p == "40");
    assert_eq!(first, vec!["40"]);
    assert_eq!(s.post(&["40/goodcity?token=ignored"]).body, "ok");
    let packets = s.get_until(|p| p.contains("_settings"));
    assert_eq!(
        packets,
        vec![
            "40/goodcity".to_string(),
            r#"42/goodcity,["_settings",{"device_ttl":3600}]"#.to_string()
        ]
    );
    let auth = stub.wait_auth_requests(1);
    assert_eq!(auth[0].header("authorization"), Some("Bearer u3"));
    assert_eq!(auth[0].header("x-meta"), Some("abc"));
});

// Behaviour 10 and README Differences #7: `_settings.device_ttl` is a JSON number from YAML and
// from the environment alike; YAML wins over DEVICE_TTL; 0 is allowed.
scenario!(settings_device_ttl_sources, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    // (environment, config.yml line, expected device_ttl)
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, u64);
    let cases: [Case<'_>; 4] = [
        (&[("DEVICE_TTL", "3")], None, 3),
        (&[], Some("device_ttl: 120"), 120),
        (&[("DEVICE_TTL", "5")], Some("device_ttl: 77"), 77),
        (&[("DEVICE_TTL", "0")], None, 0),
    ];
    for (env, config, expected) in cases {
        let mut builder = user_site(bin, &stub);
        for (k, v) in env {
            builder = builder.env(k, v);
        }
        if let Some(line) = config {
            builder = builder.config(line);
        }
        let gw = builder.start();
        let mut c = client(&gw, Lib::Sio4, Transports::Websocket, "u1", "d");
        assert_eq!(
            c.expect_connected(),
            json!({"device_ttl": expected}),
            "env {env:?} config {config:?}"
        );
    }
});

// Behaviours 8, 22: in broadcast mode (no prefix) any 200 list, even empty, and an object are
// accepted; `_settings` is still sent.
scenario!(broadcast_mode_accepts_any_list, |bin| {
    let stub = StubSite::start();
    stub.user("a", &["room1"]);
    stub.user("empty", &[]);
    stub.set_auth("obj", AuthReply::json(200, r#"{"a":1}"#));
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).broadcast_mode())
        .start();
    for token in ["a", "empty", "obj"] {
        let mut c = client(&gw, Lib::Sio2, Transports::Polling, token, "d");
        assert_eq!(
            c.expect_connected(),
            json!({"device_ttl": 3600}),
            "token {token}"
        );
    }
});

// Behaviour 26: the public channel alone passes auth in user-room mode.
scenario!(public_channel_alone_passes_auth, |bin| {
    let stub = StubSite::start();
    stub.user("anon", &["browse"]);
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).public_channel("browse"))
        .start();
    matrix::for_each(&matrix::pair(), |i, lib, transports| {
        connected(&gw, lib, transports, "anon", &format!("pub{i}"));
    });
});

// Behaviour 41 / README Differences #2: every setting is per site.
scenario!(each_site_uses_its_own_auth_settings, |bin| {
    let stub_a = StubSite::start();
    let stub_b = StubSite::start();
    stub_a.user("ta", &["user_1"]);
    stub_b.user("tb", &["member-2"]);
    let gw = Gateway::builder(bin)
        .site(Site::for_stub("sitea", &stub_a).auth_scheme("Bearer"))
        .site(
            Site::for_stub("siteb", &stub_b)
                .auth_scheme("Token")
                .user_room_prefix("member-"),
        )
        .start();
    let mut a = Client::builder(Lib::Sio2, Transports::Websocket)
        .namespace("/sitea")
        .token("ta")
        .connect(gw.port());
    a.expect_connected();
    let mut b = Client::builder(Lib::Sio4, Transports::Websocket)
        .namespace("/siteb")
        .token("tb")
        .connect(gw.port());
    b.expect_connected();
    let auth_a = stub_a.wait_auth_requests(1);
    let auth_b = stub_b.wait_auth_requests(1);
    assert_eq!(
        auth_a.len(),
        1,
        "site A's stub saw only site A: {auth_a:#?}"
    );
    assert_eq!(
        auth_b.len(),
        1,
        "site B's stub saw only site B: {auth_b:#?}"
    );
    assert_eq!(auth_a[0].header("authorization"), Some("Bearer ta"));
    assert_eq!(auth_b[0].header("authorization"), Some("Token tb"));
});
