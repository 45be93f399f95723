//! Engine.IO handshake: open packet per revision, WebSocket handshake, cookie, extra headers,
//! CORS, path matching, deterministic sids.

mod common;

use common::{Harness, SioApp, sid_of, test_config};
use courier_core::eio::CorsOrigins;
use courier_core::net::{Headers, Method};
use courier_core::sio;
use serde_json::Value;

fn open_json(body: &str) -> serde_json::Map<String, Value> {
    let start = body.find('{').expect("json");
    serde_json::from_str::<Value>(&body[start..])
        .expect("valid JSON")
        .as_object()
        .cloned()
        .expect("object")
}

#[test]
fn v4_polling_open_packet_has_exactly_the_five_keys() {
    let mut h = Harness::new(SioApp::new(test_config(), 1));
    let id = h.get("EIO=4&transport=polling&t=x");
    let response = h.response(id).expect("answered").clone();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers.get("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(response.headers.get("cache-control"), Some("no-store"));
    let body = h.body(id);
    assert!(body.starts_with("0{"), "{body}");
    let json = open_json(&body);
    let keys: Vec<&str> = json.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "sid",
            "upgrades",
            "pingInterval",
            "pingTimeout",
            "maxPayload"
        ]
    );
    assert_eq!(json["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(json["pingInterval"], 1000);
    assert_eq!(json["pingTimeout"], 500);
    assert_eq!(json["maxPayload"], 1_000_000);
    let sid = json["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 20);
    assert!(
        sid.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

#[test]
fn v3_polling_open_packet_has_the_original_four_keys() {
    let mut h = Harness::new(SioApp::new(test_config(), 1));
    let body = h.get_text("EIO=3&transport=polling&b64=1");
    let (length, packet) = body.split_once(':').expect("length prefix");
    assert_eq!(length.parse::<usize>().expect("number"), packet.len());
    let json = open_json(packet);
    let keys: Vec<&str> = json.keys().map(String::as_str).collect();
    assert_eq!(keys, ["sid", "upgrades", "pingInterval", "pingTimeout"]);
}

#[test]
fn websocket_handshake_sends_open_with_no_upgrades_then_nothing_else() {
    for (eio, extra_root_connect) in [("4", false), ("3", true)] {
        let mut h = Harness::new(SioApp::new(test_config(), 2));
        let ws = h.ws(&format!("EIO={eio}&transport=websocket"));
        let texts = h.texts(ws);
        let json = open_json(&texts[0]);
        assert_eq!(json["upgrades"], serde_json::json!([]));
        // v3 (socket.io 2.x servers) connect `/` right after the open; v4 sends nothing more.
        let expected: Vec<&str> = if extra_root_connect {
            vec!["40"]
        } else {
            vec![]
        };
        assert_eq!(&texts[1..], expected.as_slice(), "EIO={eio}");
    }
}

#[test]
fn polling_handshake_sets_the_cookie_and_extra_headers_when_configured() {
    let mut config = test_config();
    config.eio.cookie = Some("io".to_owned());
    config.eio.handshake_headers = Headers(vec![("x-served-by".to_owned(), "courier".to_owned())]);
    let mut h = Harness::new(SioApp::new(config, 3));
    let id = h.get("EIO=4&transport=polling");
    let sid = sid_of(&h.body(id));
    let headers = &h.response(id).expect("answered").headers;
    assert_eq!(
        headers.get("set-cookie"),
        Some(format!("io={sid}; Path=/; HttpOnly").as_str())
    );
    assert_eq!(headers.get("x-served-by"), Some("courier"));
    // Later responses carry neither.
    let later = h.post(&format!("EIO=4&transport=polling&sid={sid}"), b"40");
    assert_eq!(
        h.response(later).expect("ok").headers.get("set-cookie"),
        None
    );

    let mut plain = Harness::new(SioApp::new(test_config(), 3));
    let id = plain.get("EIO=4&transport=polling");
    assert_eq!(
        plain.response(id).expect("ok").headers.get("set-cookie"),
        None
    );
}

// Several engines in one process: each tags its sids, and the tag is read back from any of them
// (the adapter routes a session's later requests by it).
#[test]
fn a_session_tag_marks_every_sid_and_reads_back() {
    for tag in [0u8, 1, 37, 63] {
        let mut config = test_config();
        config.eio.session_tag = Some(tag);
        let mut h = Harness::new(SioApp::new(config, 7));
        for _ in 0..5 {
            let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
            assert_eq!(sid.len(), 20, "{sid}");
            assert_eq!(courier_core::eio::session_tag(&sid), Some(tag), "{sid}");
        }
    }
    // Untagged sids still have a tag (their first character): routing never fails, the owner
    // just answers "unknown sid" for ids it never made.
    let mut h = Harness::new(SioApp::new(test_config(), 7));
    let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
    assert!(courier_core::eio::session_tag(&sid).is_some());
    assert_eq!(courier_core::eio::session_tag(""), None);
    assert_eq!(courier_core::eio::session_tag("%zz"), None);
}

#[test]
fn sids_are_deterministic_per_seed_and_distinct_per_session() {
    let sids = |seed| {
        let mut h = Harness::new(SioApp::new(test_config(), seed));
        (0..3)
            .map(|_| sid_of(&h.get_text("EIO=4&transport=polling")))
            .collect::<Vec<_>>()
    };
    let a = sids(42);
    assert_eq!(a, sids(42));
    assert_ne!(a, sids(43));
    assert_ne!(a[0], a[1]);
    assert_ne!(a[1], a[2]);
}

#[test]
fn the_handshake_query_and_headers_are_exposed() {
    let mut h = Harness::new(SioApp::new(test_config(), 4));
    let id = h.request(
        Method::Get,
        "/socket.io/",
        "EIO=4&transport=polling&token=a%20b&deviceId=d1&deviceId=d2",
        &[
            ("authorization", "Bearer x"),
            ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
        ],
        b"",
        false,
    );
    let sid = sid_of(&h.body(id));
    h.post(&format!("EIO=4&transport=polling&sid={sid}"), b"40");
    let Some(sio::Event::ConnectRequest { handshake, .. }) = h.engine.events.first().cloned()
    else {
        panic!("no connect request: {:?}", h.engine.events);
    };
    assert_eq!(handshake.query("token"), Some("a b"));
    assert_eq!(handshake.query("deviceId"), Some("d1"));
    assert_eq!(handshake.query("missing"), None);
    assert_eq!(
        handshake.raw_query(),
        "EIO=4&transport=polling&token=a%20b&deviceId=d1&deviceId=d2"
    );
    assert_eq!(handshake.query_pairs().count(), 5);
    assert_eq!(handshake.headers().get("authorization"), Some("Bearer x"));
    assert_eq!(handshake.remote(), Some("10.0.0.1"));
    assert_eq!(handshake.protocol(), courier_core::eio::Protocol::V4);
}

#[test]
fn path_matching_accepts_the_path_with_or_without_trailing_slash_only() {
    let server = sio::Server::new(test_config(), 5);
    assert!(server.matches_path("/socket.io/"));
    assert!(server.matches_path("/socket.io"));
    assert!(!server.matches_path("/socket.io/socket.io.js"));
    assert!(!server.matches_path("/socket.iox"));
    assert!(!server.matches_path("/"));
}

#[test]
fn cors_any_origin_echoes_with_credentials_and_answers_preflight() {
    let mut config = test_config();
    config.eio.cors_origins = Some(CorsOrigins::Any);
    config.eio.cors_credentials = true;
    let mut h = Harness::new(SioApp::new(config, 6));
    let id = h.request(
        Method::Get,
        "/socket.io/",
        "EIO=4&transport=polling",
        &[("origin", "https://app.example")],
        b"",
        false,
    );
    let headers = &h.response(id).expect("answered").headers;
    assert_eq!(
        headers.get("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        headers.get("access-control-allow-credentials"),
        Some("true")
    );
    // Errors carry the CORS headers too.
    let err = h.request(
        Method::Get,
        "/socket.io/",
        "EIO=4&transport=polling&sid=nope",
        &[("origin", "https://app.example")],
        b"",
        false,
    );
    assert_eq!(h.status(err), 400);
    assert_eq!(
        h.response(err)
            .expect("answered")
            .headers
            .get("access-control-allow-origin"),
        Some("https://app.example")
    );
    let preflight = h.request(
        Method::Options,
        "/socket.io/",
        "EIO=4&transport=polling",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-headers", "content-type,x-token"),
        ],
        b"",
        false,
    );
    let response = h.response(preflight).expect("answered");
    assert_eq!(response.status, 204);
    assert_eq!(
        response.headers.get("access-control-allow-headers"),
        Some("content-type,x-token")
    );
    assert_eq!(
        response.headers.get("access-control-allow-methods"),
        Some("GET,POST")
    );
}

#[test]
fn cors_star_without_credentials_and_origin_lists() {
    let mut config = test_config();
    config.eio.cors_origins = Some(CorsOrigins::Any);
    let mut h = Harness::new(SioApp::new(config, 6));
    let id = h.request(
        Method::Get,
        "/socket.io/",
        "EIO=4&transport=polling",
        &[("origin", "https://a.example")],
        b"",
        false,
    );
    assert_eq!(
        h.response(id)
            .expect("answered")
            .headers
            .get("access-control-allow-origin"),
        Some("*")
    );

    let mut config = test_config();
    config.eio.cors_origins = Some(CorsOrigins::List(vec!["https://ok.example".to_owned()]));
    let mut h = Harness::new(SioApp::new(config, 6));
    for (origin, granted) in [
        ("https://ok.example", Some("https://ok.example")),
        ("https://evil.example", None),
    ] {
        let id = h.request(
            Method::Get,
            "/socket.io/",
            "EIO=4&transport=polling",
            &[("origin", origin)],
            b"",
            false,
        );
        assert_eq!(
            h.response(id)
                .expect("answered")
                .headers
                .get("access-control-allow-origin"),
            granted
        );
    }
}
