//! The HTTP surface besides `/send` (behaviours 1, 2, 17, 36–39, 42 in tests/README.md):
//! healthcheck, unknown routes, the served client bundle, Engine.IO handshake details and errors,
//! configuration precedence, JSON logs.

mod common;

use common::*;
use courier_tests::{Gateway, PollingSession, StubSite, http, json, scenario};

// Behaviour 17.
scenario!(healthcheck_answers_ok, |bin| {
    let gw = Gateway::builder(bin).start();
    let get = http(gw.port(), "GET", "/healthcheck", &[], b"");
    assert_eq!((get.status, get.body.as_str()), (200, "ok"));
    assert_eq!(get.media_type().as_deref(), Some("text/html"));
    let head = http(gw.port(), "HEAD", "/healthcheck", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
});

// Behaviour 39: unknown routes are 404.
scenario!(unknown_routes_are_404, |bin| {
    let gw = Gateway::builder(bin).start();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/nope"),
        ("POST", "/healthcheck2"),
        ("GET", "/send/extra"),
    ] {
        let r = http(gw.port(), method, path, &[], b"");
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
    }
});

// Behaviour 38: the socket.io-client 1.7.4 bundle and its map.
scenario!(client_bundle_is_served_with_etag, |bin| {
    let gw = Gateway::builder(bin).start();
    let js = http(gw.port(), "GET", "/socket.io/socket.io.js", &[], b"");
    assert_eq!(js.status, 200);
    assert_eq!(js.media_type().as_deref(), Some("application/javascript"));
    assert_eq!(js.header("etag"), Some("\"1.7.4\""));
    assert!(js.body.len() > 10_000, "the minified bundle");
    let cached = http(
        gw.port(),
        "GET",
        "/socket.io/socket.io.js",
        &[("If-None-Match", "\"1.7.4\"")],
        b"",
    );
    assert_eq!(cached.status, 304);
    let map = http(gw.port(), "GET", "/socket.io/socket.io.js.map", &[], b"");
    assert_eq!(map.status, 200);
    assert_eq!(map.media_type().as_deref(), Some("application/json"));
    assert_eq!(map.header("etag"), Some("\"1.7.4\""));
});

// Behaviours 1, 2: the EIO3 open packet, the `io` cookie, polling CORS, engine error codes.
scenario!(engine_handshake_and_errors, |bin| {
    let gw = Gateway::builder(bin).start();
    let s = PollingSession::handshake(gw.port(), 3, "token=t");
    let keys: Vec<&str> = s
        .open
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for key in ["sid", "upgrades", "pingInterval", "pingTimeout"] {
        assert!(keys.contains(&key), "open packet has {key}: {}", s.open);
    }
    assert_eq!(s.open["pingInterval"], json!(25000));
    assert_eq!(s.open["pingTimeout"], json!(60000));
    assert_eq!(
        s.handshake.header("set-cookie"),
        Some(format!("io={}; Path=/; HttpOnly", s.sid).as_str())
    );

    let with_origin = http(
        gw.port(),
        "GET",
        "/socket.io/?EIO=3&transport=polling&b64=1",
        &[("Origin", "http://app.example")],
        b"",
    );
    assert_eq!(
        with_origin.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(
        with_origin.header("access-control-allow-credentials"),
        Some("true")
    );
    let without = http(
        gw.port(),
        "GET",
        "/socket.io/?EIO=3&transport=polling&b64=1",
        &[],
        b"",
    );
    assert_eq!(without.header("access-control-allow-origin"), Some("*"));

    let cases = [
        (
            "GET",
            "/socket.io/?EIO=3&transport=carrier-pigeon",
            r#"{"code":0,"message":"Transport unknown"}"#,
        ),
        (
            "GET",
            "/socket.io/?EIO=3&transport=polling&sid=doesnotexist",
            r#"{"code":1,"message":"Session ID unknown"}"#,
        ),
        (
            "POST",
            "/socket.io/?EIO=3&transport=polling",
            r#"{"code":2,"message":"Bad handshake method"}"#,
        ),
    ];
    for (method, target, body) in cases {
        let r = http(gw.port(), method, target, &[], b"");
        assert_eq!(r.status, 400, "{method} {target}: {r:?}");
        assert_eq!(r.body, body, "{method} {target}");
    }
});

// Behaviour 1: client pings are answered; a session silent for pingInterval + pingTimeout is
// closed.
scenario!(eio3_heartbeat_and_silence_timeout, |bin| {
    let gw = Gateway::builder(bin)
        .config("io: {pingInterval: 300, pingTimeout: 300}")
        .start();
    let mut alive = PollingSession::handshake(gw.port(), 3, "");
    alive.get_until(|p| p == "40");
    for _ in 0..6 {
        assert_eq!(alive.post(&["2"]).body, "ok");
        alive.get_until(|p| p == "3");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut silent = PollingSession::handshake(gw.port(), 3, "");
    silent.get_until(|p| p == "40");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let target = format!(
        "/socket.io/?EIO=3&transport=polling&b64=1&sid={}",
        silent.sid
    );
    let r = http(gw.port(), "GET", &target, &[], b"");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
});

// Behaviour 1: JSONP polling (`j=`) wraps the payload in the engine.io callback.
scenario!(eio3_jsonp_polling, |bin| {
    let gw = Gateway::builder(bin).start();
    let r = http(
        gw.port(),
        "GET",
        "/socket.io/?EIO=3&transport=polling&j=0",
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.starts_with("___eio[0](\""), "{}", r.body);
    assert!(r.body.ends_with("\");"), "{}", r.body);
    assert!(r.body.contains("sid"), "{}", r.body);
});

// Behaviours 36, 37: PORT wins over config.yml's port; `io` options reach the handshake.
scenario!(config_port_and_io_options, |bin| {
    let stub = StubSite::start();
    let gw = user_site(bin, &stub)
        .config("port: 1")
        .config("io: {pingInterval: 4000, pingTimeout: 9000}")
        .start();
    // The fixture sets PORT; the gateway answering there proves PORT beat `port: 1`.
    let s = PollingSession::handshake(gw.port(), 3, "");
    assert_eq!(s.open["pingInterval"], json!(4000));
    assert_eq!(s.open["pingTimeout"], json!(9000));
});

// Behaviour 36: SITE_NAME and friends replace sites.yml.
scenario!(site_from_environment_replaces_sites_yml, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["member_1"]);
    let gw = user_site(bin, &stub)
        .env("SITE_NAME", "envsite")
        .env("AUTH_URL", &stub.auth_url())
        .env("AUTH_SCHEME", "Token")
        .env("API_KEY", "env-key")
        .env("USER_ROOM_PREFIX", "member_")
        .start();
    let mut c = courier_tests::Client::builder(
        courier_tests::Lib::Sio2,
        courier_tests::Transports::Websocket,
    )
    .namespace("/envsite")
    .token("u1")
    .device("d")
    .connect(gw.port());
    c.expect_connected();
    assert_eq!(
        stub.wait_auth_requests(1)[0].header("authorization"),
        Some("Token u1")
    );
    let r = courier_tests::send_json(
        gw.port(),
        "envsite",
        "env-key",
        "",
        &json!({"rooms": "member_1", "event": "e"}),
    );
    assert_ok(&r);
    let ev = c.expect_event("e");
    c.ack_event(&ev, vec![]);
    // sites.yml's goodcity is gone.
    let r = courier_tests::send_json(
        gw.port(),
        SITE,
        courier_tests::Site::API_KEY,
        "",
        &json!({"rooms": "user_1", "event": "e"}),
    );
    assert_eq!((r.status, r.body.as_str()), (401, "ApiKey invalid."));
});

// Behaviour 42: log lines are JSON objects with level, message and timestamp.
scenario!(logs_are_json_lines, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(
        &gw,
        courier_tests::Lib::Sio4,
        courier_tests::Transports::Websocket,
        "u1",
        "d",
    );
    push(
        &gw,
        json!({"rooms": "user_1", "event": "logged", "args": []}),
    );
    let ev = c.expect_event("logged");
    c.ack_event(&ev, vec![]);
    let logs = gw.logs();
    let json_lines: Vec<courier_tests::Value> =
        logs.iter().filter_map(|l| serde_json_line(l)).collect();
    assert!(!json_lines.is_empty(), "no JSON log lines: {logs:#?}");
    for line in &json_lines {
        assert!(line.get("level").is_some(), "no level: {line}");
        assert!(line.get("timestamp").is_some(), "no timestamp: {line}");
        let message = line
            .get("message")
            .or_else(|| line.get("fields").and_then(|f| f.get("message")));
        assert!(message.is_some(), "no message: {line}");
    }
});

fn serde_json_line(line: &str) -> Option<courier_tests::Value> {
    let v: courier_tests::Value = courier_tests::serde_json::from_str(line).ok()?;
    v.is_object().then_some(v)
}
