//! `io.maxConnections` and `io.maxHandshakesPerSecond`: a handshake over a limit gets `503` with
//! an Engine.IO error body; open sessions are untouched; the refusals are counted.

mod common;

use common::{Harness, SioApp, sid_of, test_config};
use serde_json::json;

fn refusal(h: &Harness<SioApp>, id: courier_core::net::RequestId) -> (u16, serde_json::Value) {
    let response = h.response(id).expect("answered");
    (
        response.status,
        serde_json::from_slice(&response.body).expect("JSON body"),
    )
}

#[test]
fn handshakes_over_max_connections_get_503_and_sessions_stay() {
    let mut config = test_config();
    config.eio.max_sessions = Some(2);
    let mut h = Harness::new(SioApp::new(config, 1));
    let first = sid_of(&h.get_text("EIO=4&transport=polling"));
    let _second = sid_of(&h.get_text("EIO=4&transport=polling"));
    let id = h.get("EIO=4&transport=polling");
    assert_eq!(
        refusal(&h, id),
        (
            503,
            json!({"code": 3, "message": "Server at its connection limit"})
        )
    );
    // The open session still works: a POST is accepted.
    assert_eq!(
        h.post_text(&format!("EIO=4&transport=polling&sid={first}"), b"6"),
        "ok"
    );
    let counters = h.engine.server.engine().counters();
    assert_eq!(counters.refused_max_connections, 1);
    assert_eq!(counters.opened, 2);
}

#[test]
fn the_handshake_rate_refills_over_time() {
    let mut config = test_config();
    config.eio.max_handshakes_per_second = Some(2);
    let mut h = Harness::new(SioApp::new(config, 1));
    assert_eq!(h.get_status("EIO=4&transport=polling"), 200);
    assert_eq!(h.get_status("EIO=4&transport=polling"), 200);
    let id = h.get("EIO=4&transport=polling");
    assert_eq!(
        refusal(&h, id),
        (
            503,
            json!({"code": 3, "message": "Server at its handshake rate limit"})
        )
    );
    // Half a second refills one handshake at 2 per second.
    h.advance(500);
    assert_eq!(h.get_status("EIO=4&transport=polling"), 200);
    assert_eq!(h.get_status("EIO=4&transport=polling"), 503);
    assert_eq!(
        h.engine.server.engine().counters().refused_handshake_rate,
        2
    );
}

#[test]
fn unlimited_by_default() {
    let mut h = Harness::new(SioApp::new(test_config(), 1));
    for _ in 0..200 {
        assert_eq!(h.get_status("EIO=4&transport=polling"), 200);
    }
}
