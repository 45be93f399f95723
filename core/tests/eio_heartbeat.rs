//! Heartbeats. v4: the server pings pingInterval after open (not at once) and after each pong,
//! and closes pingTimeout after an unanswered ping. v3: the client pings, the server pongs, and
//! pingInterval + pingTimeout of silence closes. Deadlines hold against the `now` of every input.

mod common;

use common::{Harness, SioApp, sid_of, test_config};
use courier_core::sio::Event;

fn closed_reason(h: &Harness<SioApp>) -> Option<&'static str> {
    h.engine.events.iter().find_map(|e| match e {
        Event::Disconnected { reason, .. } => Some(*reason),
        _ => None,
    })
}

/// A v4 WebSocket session with `/` accepted.
fn v4_ws() -> (Harness<SioApp>, courier_core::net::ConnId) {
    let mut h = Harness::new(SioApp::new(test_config(), 41));
    let ws = h.ws("EIO=4&transport=websocket");
    h.send_text(ws, "40");
    let Some(Event::ConnectRequest { socket, .. }) = h.engine.events.first().cloned() else {
        panic!("no request");
    };
    h.engine.server.accept(socket);
    h.drain();
    (h, ws)
}

#[test]
fn v4_first_ping_comes_after_the_interval_not_at_once() {
    let (mut h, ws) = v4_ws();
    let before = h.texts(ws).len();
    h.advance(999);
    assert_eq!(h.texts(ws).len(), before, "no ping before pingInterval");
    h.advance(1);
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("2"));
}

#[test]
fn v4_pong_schedules_the_next_ping_an_interval_later() {
    let (mut h, ws) = v4_ws();
    h.advance(1000);
    let pings = |h: &Harness<SioApp>| h.texts(ws).iter().filter(|t| *t == "2").count();
    assert_eq!(pings(&h), 1);
    h.advance(300);
    h.send_text(ws, "3");
    h.advance(999);
    assert_eq!(pings(&h), 1);
    h.advance(1);
    assert_eq!(pings(&h), 2);
    assert_eq!(closed_reason(&h), None);
}

#[test]
fn v4_closes_when_no_pong_arrives_within_the_timeout() {
    let (mut h, ws) = v4_ws();
    h.advance(1000 + 499);
    assert_eq!(closed_reason(&h), None);
    h.advance(1);
    assert_eq!(closed_reason(&h), Some("ping timeout"));
    assert!(h.closed.contains_key(&ws));
}

#[test]
fn v4_polling_ping_timeout_is_seen_by_a_request_arriving_late() {
    let mut h = Harness::new(SioApp::new(test_config(), 42));
    let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
    let q = format!("EIO=4&transport=polling&sid={sid}");
    // The driver never delivers the timer; the request itself comes after both deadlines.
    h.now += std::time::Duration::from_millis(1000);
    let get = h.get(&q);
    assert_eq!(h.body(get), "2", "ping delivered to the poll");
    h.now += std::time::Duration::from_millis(500);
    assert_eq!(h.get_status(&q), 400);
}

#[test]
fn v4_client_ping_is_the_wrong_direction() {
    let (mut h, ws) = v4_ws();
    h.send_text(ws, "2");
    assert_eq!(closed_reason(&h), Some("transport error"));
}

#[test]
fn v3_client_pings_get_pongs_and_keep_the_session() {
    let mut h = Harness::new(SioApp::new(test_config(), 43));
    let ws = h.ws("EIO=3&transport=websocket");
    for _ in 0..5 {
        h.advance(1000);
        h.send_text(ws, "2");
    }
    let texts = h.texts(ws);
    assert_eq!(texts.iter().filter(|t| *t == "3").count(), 5);
    assert!(
        !texts.iter().any(|t| t == "2"),
        "the server never pings in v3"
    );
    assert_eq!(closed_reason(&h), None);
    assert!(!h.closed.contains_key(&ws));
}

#[test]
fn v3_silence_for_interval_plus_timeout_closes() {
    let mut h = Harness::new(SioApp::new(test_config(), 44));
    let ws = h.ws("EIO=3&transport=websocket");
    let Some(Event::ConnectRequest { socket, .. }) = h.engine.events.first().cloned() else {
        panic!("no implicit / request");
    };
    h.engine.server.accept(socket);
    h.drain();
    h.advance(1499);
    assert_eq!(closed_reason(&h), None);
    // Any packet counts as a sign of life.
    h.send_text(ws, "42[\"alive\"]");
    h.advance(1499);
    assert_eq!(closed_reason(&h), None);
    h.advance(1);
    assert_eq!(closed_reason(&h), Some("ping timeout"));
}

#[test]
fn v3_pong_from_the_client_is_the_wrong_direction() {
    let mut h = Harness::new(SioApp::new(test_config(), 45));
    let ws = h.ws("EIO=3&transport=websocket");
    h.send_text(ws, "3");
    assert!(h.closed.contains_key(&ws));
}

#[test]
fn the_idle_deadline_is_the_next_heartbeat() {
    let mut h = Harness::new(SioApp::new(test_config(), 46));
    h.ws("EIO=4&transport=websocket");
    // Connect timeout (3000) is later than the first ping (1000).
    assert_eq!(h.deadline.map(|d| (d - h.start).as_millis()), Some(1000));
}
