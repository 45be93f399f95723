//! Engine.IO error responses: `{"code":N,"message":…}` with the right status, per cause.

mod common;

use common::{Harness, SioApp, sid_of, test_config};
use courier_core::net::Method;
use serde_json::json;

fn error_of(h: &Harness<SioApp>, id: courier_core::net::RequestId) -> (u16, serde_json::Value) {
    let response = h.response(id).expect("answered");
    assert_eq!(
        response.headers.get("content-type"),
        Some("application/json")
    );
    (
        response.status,
        serde_json::from_slice(&response.body).expect("JSON body"),
    )
}

#[test]
fn protocol_version_must_be_3_or_4() {
    let mut h = Harness::new(SioApp::new(test_config(), 1));
    for query in [
        "transport=polling",
        "EIO=abc&transport=polling",
        "EIO=5&transport=polling",
        "EIO=&transport=polling",
        "EIO=44&transport=polling",
    ] {
        let id = h.get(query);
        assert_eq!(
            error_of(&h, id),
            (
                400,
                json!({"code": 5, "message": "Unsupported protocol version"})
            ),
            "{query}"
        );
    }
}

#[test]
fn eio3_is_refused_with_code_5_when_disabled() {
    let mut config = test_config();
    config.eio.allow_eio3 = false;
    let mut h = Harness::new(SioApp::new(config, 1));
    let id = h.get("EIO=3&transport=polling");
    assert_eq!(error_of(&h, id).1["code"], 5);
}

#[test]
fn transport_must_be_known_and_enabled() {
    let mut h = Harness::new(SioApp::new(test_config(), 1));
    for query in [
        "EIO=4",
        "EIO=4&transport=abc",
        "EIO=4&transport=constructor",
    ] {
        let id = h.get(query);
        assert_eq!(
            error_of(&h, id),
            (400, json!({"code": 0, "message": "Transport unknown"})),
            "{query}"
        );
    }
    let mut config = test_config();
    config.eio.transports.polling = false;
    let mut h = Harness::new(SioApp::new(config, 1));
    let id = h.get("EIO=4&transport=polling");
    assert_eq!(error_of(&h, id).1["code"], 0);
}

#[test]
fn a_handshake_must_be_a_get() {
    let mut h = Harness::new(SioApp::new(test_config(), 1));
    for method in [Method::Post, Method::Put] {
        let id = h.request(
            method,
            "/socket.io/",
            "EIO=4&transport=polling",
            &[],
            b"x",
            false,
        );
        assert_eq!(
            error_of(&h, id),
            (400, json!({"code": 2, "message": "Bad handshake method"}))
        );
    }
}

#[test]
fn websocket_transport_without_upgrade_is_a_bad_request() {
    let mut h = Harness::new(SioApp::new(test_config(), 1));
    let id = h.get("EIO=4&transport=websocket");
    assert_eq!(
        error_of(&h, id),
        (400, json!({"code": 3, "message": "Bad request"}))
    );
}

#[test]
fn unknown_sids_and_revision_mismatches() {
    let mut h = Harness::new(SioApp::new(test_config(), 1));
    let id = h.get("EIO=4&transport=polling&sid=unknown");
    assert_eq!(
        error_of(&h, id),
        (400, json!({"code": 1, "message": "Session ID unknown"}))
    );
    let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
    let id = h.get(&format!("EIO=3&transport=polling&sid={sid}"));
    assert_eq!(error_of(&h, id).1["code"], 3);
    // A method other than GET/POST on a session is a bad request, not a 500.
    let id = h.request(
        Method::Delete,
        "/socket.io/",
        &format!("EIO=4&transport=polling&sid={sid}"),
        &[],
        b"",
        false,
    );
    assert_eq!(error_of(&h, id).1["code"], 3);
}
