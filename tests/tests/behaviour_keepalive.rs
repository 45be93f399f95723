//! Outbound calls reuse kept-alive connections: many sequential joins reach the site's backend
//! over one TCP connection, and a backend that closes its kept-alive connections (after each
//! answer, without saying so) fails no join and no user update.

mod common;

use common::*;
use courier_tests::{Gateway, RawWebSocket, Site, StubSite, scenario};

const JOINS: usize = 8;

/// Joins `/goodcity` as `token` over a raw Engine.IO 4 WebSocket, waits for `_settings`, and
/// leaves.
fn join(gw: &Gateway, token: &str) {
    let mut ws = RawWebSocket::connect(
        gw.port(),
        &format!("/socket.io/?EIO=4&transport=websocket&token={token}&deviceId=d"),
    );
    let open = ws.recv_text(std::time::Duration::from_secs(10));
    assert!(open.is_some_and(|m| m.starts_with("0{")), "no open packet");
    ws.send_text("40/goodcity,");
    ws.recv_until(|m| m.contains("\"_settings\""));
    ws.close();
}

// One TCP connection carries every auth call of joins made one after another.
scenario!(sequential_joins_share_one_connection, |bin| {
    let stub = StubSite::start();
    for i in 0..JOINS {
        stub.user(&format!("u{i}"), &[&format!("user_{i}")]);
    }
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).no_user_updates())
        .start();
    for i in 0..JOINS {
        join(&gw, &format!("u{i}"));
    }
    assert_eq!(stub.auth_requests().len(), JOINS);
    assert_eq!(
        stub.connections(),
        1,
        "every auth call after the first reuses the first one's connection"
    );
});

// A backend that drops each connection right after answering: every join is still admitted
// (each call finds its kept connection closed and opens a new one), and the user updates of
// every join and leave still arrive.
scenario!(a_backend_closing_kept_connections_fails_no_join, |bin| {
    let stub = StubSite::start();
    stub.set_close_after_response(true);
    for i in 0..JOINS {
        stub.user(&format!("u{i}"), &[&format!("user_{i}")]);
    }
    let gw = user_site(bin, &stub).start();
    for i in 0..JOINS {
        join(&gw, &format!("u{i}"));
        // The join's and the leave's updates, before the next join: each call then finds the
        // connection of the previous one (closed by the backend) in the pool.
        stub.wait_user_updates(2 * (i + 1));
    }
    assert_eq!(stub.auth_requests().len(), JOINS);
    let updates = stub.user_updates();
    assert_eq!(updates.len(), 2 * JOINS, "{updates:#?}");
});
