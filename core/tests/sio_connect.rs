//! Socket.IO namespace admission for both revisions: CONNECT, auth, replies, refusals, the
//! connect timeout, namespace state errors, disconnects.

mod common;

use common::{Harness, SioApp, payload, test_config};
use courier_core::net::ConnId;
use courier_core::sio::{Event, Revision, SocketId};
use serde_json::json;

fn last_request(h: &Harness<SioApp>) -> (SocketId, String, Option<serde_json::Value>) {
    h.engine
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::ConnectRequest {
                socket,
                namespace,
                auth,
                ..
            } => Some((
                *socket,
                namespace.clone(),
                auth.clone().map(serde_json::Value::Object),
            )),
            _ => None,
        })
        .expect("a connect request")
}

fn v5() -> (Harness<SioApp>, ConnId) {
    let mut h = Harness::new(SioApp::new(test_config(), 51));
    let ws = h.ws("EIO=4&transport=websocket");
    (h, ws)
}

#[test]
fn v5_connect_with_auth_is_answered_with_a_fresh_sid() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40/admin,{\"token\":\"abc\"}");
    let (socket, namespace, auth) = last_request(&h);
    assert_eq!(namespace, "/admin");
    assert_eq!(auth, Some(json!({"token": "abc"})));
    assert!(!h.engine.server.is_connected(socket));
    h.engine.server.accept(socket);
    h.drain();
    let reply = h.texts(ws).last().cloned().expect("reply");
    let sid = h.engine.server.socket_sid(socket).expect("sid");
    assert_eq!(reply, format!("40/admin,{{\"sid\":\"{sid}\"}}"));
    assert_ne!(Some(sid.as_str()), h.engine.server.engine_sid(socket));
    assert_eq!(h.engine.events.last(), Some(&Event::Connected { socket }));
    assert!(h.engine.server.is_connected(socket));
    assert_eq!(h.engine.server.namespace(socket), Some("/admin"));
    assert_eq!(h.engine.server.revision(socket), Some(Revision::V5));
}

#[test]
fn v5_root_connect_without_auth() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    let (socket, namespace, auth) = last_request(&h);
    assert_eq!((namespace.as_str(), auth), ("/", None));
    h.engine.server.accept(socket);
    h.drain();
    assert!(
        h.texts(ws)
            .last()
            .expect("reply")
            .starts_with("40{\"sid\":\"")
    );
}

#[test]
fn v5_refusal_is_a_connect_error_object_and_the_session_stays() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40/random,");
    let (socket, _, _) = last_request(&h);
    h.engine.server.reject(socket, "Invalid namespace");
    h.drain();
    assert_eq!(
        h.texts(ws).last().map(String::as_str),
        Some("44/random,{\"message\":\"Invalid namespace\"}")
    );
    assert!(!h.closed.contains_key(&ws));
    // The namespace may be tried again, and others joined.
    h.send_text(ws, "40/random,");
    let (again, _, _) = last_request(&h);
    assert_ne!(again, socket);
    assert_eq!(h.engine.server.socket_count(), 1);
}

#[test]
fn v5_sessions_that_never_connect_are_closed_after_connect_timeout() {
    let (mut h, ws) = v5();
    h.advance(999);
    h.send_text(ws, "3"); // answer nothing yet; pong without ping is ignored
    h.advance(1);
    h.send_text(ws, "3");
    h.advance(1000);
    h.send_text(ws, "3");
    assert!(!h.closed.contains_key(&ws));
    h.advance(1000);
    assert!(h.closed.contains_key(&ws), "closed at connect timeout");
    // A session that sent CONNECT (even still pending) is not.
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    for _ in 0..4 {
        h.advance(1000);
        h.send_text(ws, "3");
    }
    assert!(!h.closed.contains_key(&ws));
}

#[test]
fn v5_first_packet_must_be_connect_and_namespace_state_is_enforced() {
    for first in ["42[\"hi\"]", "43[]", "41", "44\"x\""] {
        let (mut h, ws) = v5();
        h.send_text(ws, first);
        if first == "41" {
            // Leaving a namespace never joined is harmless.
            assert!(!h.closed.contains_key(&ws));
        } else {
            assert!(h.closed.contains_key(&ws), "{first}");
        }
    }
    // CONNECT twice for the same namespace closes.
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    h.send_text(ws, "40");
    assert!(h.closed.contains_key(&ws));
    // An event while the CONNECT is pending closes.
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    h.send_text(ws, "42[\"early\"]");
    assert!(h.closed.contains_key(&ws));
    assert!(matches!(
        h.engine.events.last(),
        Some(Event::Disconnected {
            reason: "parse error",
            ..
        })
    ));
}

#[test]
fn invalid_packets_close_the_engine_connection() {
    for bad in [
        "4abc",
        "42{}",
        "42abc[\"x\"]",
        "42[]",
        "42[{}]",
        "40\"x\"",
        "49",
        "451[\"a\"]",
        "4",
        "411[\"x\"]",
    ] {
        let (mut h, ws) = v5();
        h.send_text(ws, "40");
        let (socket, _, _) = last_request(&h);
        h.engine.server.accept(socket);
        h.drain();
        h.send_text(ws, bad);
        assert!(h.closed.contains_key(&ws), "{bad:?} must close");
        assert_eq!(
            h.engine.events.last(),
            Some(&Event::Disconnected {
                socket,
                reason: "parse error"
            }),
            "{bad:?}"
        );
    }
}

#[test]
fn client_events_named_like_reserved_ones_are_ordinary_events() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    let (socket, _, _) = last_request(&h);
    h.engine.server.accept(socket);
    h.drain();
    for name in ["error", "disconnect", "connect", "newListener"] {
        h.send_text(ws, &format!("42[\"{name}\",1]"));
        assert_eq!(
            h.engine.events.last(),
            Some(&Event::ClientEvent {
                socket,
                args: vec![json!(name), json!(1)],
                ack: None
            })
        );
    }
    assert!(!h.closed.contains_key(&ws));
}

#[test]
fn namespaces_are_multiplexed_and_left_independently() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    let (root, _, _) = last_request(&h);
    h.send_text(ws, "40/chat,");
    let (chat, _, _) = last_request(&h);
    h.engine.server.accept(root);
    h.engine.server.accept(chat);
    h.drain();
    h.send_text(ws, "42/chat,[\"in-chat\"]");
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::ClientEvent {
            socket: chat,
            args: vec![json!("in-chat")],
            ack: None
        })
    );
    h.send_text(ws, "41/chat,");
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket: chat,
            reason: "client namespace disconnect"
        })
    );
    assert!(!h.engine.server.emit(chat, &payload(&[json!("x")])));
    assert!(h.engine.server.emit(root, &payload(&[json!("x")])));
    // A server-side disconnect sends 41 and keeps the engine session.
    h.engine.server.disconnect(root);
    h.drain();
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("41"));
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket: root,
            reason: "server namespace disconnect"
        })
    );
    assert!(!h.closed.contains_key(&ws));
}

#[test]
fn pending_requests_are_reported_disconnected_when_the_transport_dies() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40/slow,");
    let (socket, _, _) = last_request(&h);
    h.close_ws(ws);
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket,
            reason: "transport close"
        })
    );
    // A late answer is harmless.
    h.engine.server.accept(socket);
    h.engine.server.reject(socket, "late");
    h.drain();
    assert_eq!(h.engine.server.socket_count(), 0);
}

#[test]
fn v4_implicit_root_and_query_in_namespace() {
    let mut h = Harness::new(SioApp::new(test_config(), 52));
    let ws = h.ws("EIO=3&transport=websocket&token=http-token");
    assert_eq!(&h.texts(ws)[1..], ["40"]);
    let (root, namespace, auth) = last_request(&h);
    assert_eq!((namespace.as_str(), auth), ("/", None));
    h.engine.server.accept(root);
    h.drain();
    assert_eq!(
        h.texts(ws).len(),
        2,
        "accepting the implicit / sends nothing more"
    );
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Connected { socket: root })
    );

    h.send_text(ws, "40/goodcity?token=x&deviceId=d%201,");
    let (city, namespace, auth) = last_request(&h);
    assert_eq!(namespace, "/goodcity");
    assert_eq!(auth, Some(json!({"token": "x", "deviceId": "d 1"})));
    assert_eq!(
        h.engine
            .server
            .handshake(city)
            .expect("handshake")
            .query("token"),
        Some("http-token")
    );
    h.engine.server.accept(city);
    h.drain();
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("40/goodcity"));
    let engine_sid = h.engine.server.engine_sid(city).expect("sid").to_owned();
    assert_eq!(
        h.engine.server.socket_sid(city),
        Some(format!("/goodcity#{engine_sid}"))
    );
    assert_eq!(h.engine.server.socket_sid(root), Some(engine_sid));
    h.engine.server.disconnect(city);
    h.drain();
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("41/goodcity"));
    // v4 has no connect timeout.
    for _ in 0..10 {
        h.advance(900);
        h.send_text(ws, "2");
    }
    assert!(!h.closed.contains_key(&ws));
}

#[test]
fn v4_rejecting_the_implicit_root_sends_an_error_string() {
    let mut h = Harness::new(SioApp::new(test_config(), 53));
    let ws = h.ws("EIO=3&transport=websocket");
    let (root, _, _) = last_request(&h);
    // Events on `/` before the application answered are dropped, not fatal.
    h.send_text(ws, "42[\"early\"]");
    assert!(!h.closed.contains_key(&ws));
    h.engine.server.reject(root, "Not allowed");
    h.drain();
    assert_eq!(
        h.texts(ws).last().map(String::as_str),
        Some("44\"Not allowed\"")
    );
    assert!(
        !h.engine
            .events
            .iter()
            .any(|e| matches!(e, Event::ClientEvent { .. } | Event::Disconnected { .. }))
    );
}

#[test]
fn socket_ids_are_unique_and_monotonic_from_one() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    h.send_text(ws, "40/a,");
    h.send_text(ws, "40/b,");
    let ids: Vec<u64> = h
        .engine
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ConnectRequest { socket, .. } => Some(socket.0),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
}

#[test]
fn v5_query_in_namespace_is_stripped_and_not_auth() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40/chat?token=x,{\"k\":1}");
    let (_, namespace, auth) = last_request(&h);
    assert_eq!(namespace, "/chat");
    assert_eq!(auth, Some(json!({"k": 1})));
}

#[test]
fn leaving_a_pending_namespace_reports_it_gone() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40/slow,");
    let (socket, _, _) = last_request(&h);
    h.send_text(ws, "41/slow,");
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket,
            reason: "client namespace disconnect"
        })
    );
    assert!(!h.closed.contains_key(&ws));
}

#[test]
fn closing_the_connection_disconnects_every_namespace_on_it() {
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    let (root, _, _) = last_request(&h);
    h.send_text(ws, "40/chat,");
    let (chat, _, _) = last_request(&h);
    h.engine.server.accept(root);
    h.engine.server.accept(chat);
    h.engine.server.close_connection(chat, h.now);
    h.drain();
    let gone: Vec<_> = h
        .engine
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected { socket, reason } => Some((*socket, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(gone, vec![(root, "forced close"), (chat, "forced close")]);
    assert_eq!(h.closed.get(&ws), Some(&1000));
    assert_eq!(h.engine.server.socket_count(), 0);
    assert_eq!(h.engine.server.engine_sid(root), None);
}

#[test]
fn v4_connect_for_an_already_joined_namespace_is_ignored() {
    let mut h = Harness::new(SioApp::new(test_config(), 54));
    let ws = h.ws("EIO=3&transport=websocket");
    let requests = h.engine.events.len();
    h.send_text(ws, "40");
    assert_eq!(h.engine.events.len(), requests);
    assert!(!h.closed.contains_key(&ws));
}

#[test]
fn v4_packets_for_a_namespace_not_joined_yet_are_dropped_and_the_session_stays() {
    let mut h = Harness::new(SioApp::new(test_config(), 55));
    let ws = h.ws("EIO=3&transport=websocket");
    let (root, _, _) = last_request(&h);
    h.engine.server.accept(root);
    // Never asked for: an event, a binary event and an ack for `/goodcity`.
    for early in [
        "42/goodcity,[\"early\"]",
        "451-/goodcity,[\"bin\",{\"_placeholder\":true,\"num\":0}]",
        "43/goodcity,7[]",
    ] {
        h.send_text(ws, early);
        if early.starts_with("451-") {
            // Engine.IO 3 binary frames start with their packet type (4, message).
            h.send_binary(ws, b"\x04\x01");
        }
    }
    // Asked for, not answered yet.
    h.send_text(ws, "40/goodcity");
    let (city, namespace, _) = last_request(&h);
    assert_eq!(namespace, "/goodcity");
    h.send_text(ws, "42/goodcity,[\"still early\"]");
    assert!(
        !h.closed.contains_key(&ws),
        "socket.io 1.7.4 keeps the session"
    );
    assert!(
        !h.engine
            .events
            .iter()
            .any(|e| matches!(e, Event::ClientEvent { .. } | Event::Disconnected { .. }))
    );
    // The session is still usable: the namespace joins and its events arrive.
    h.engine.server.accept(city);
    h.drain();
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("40/goodcity"));
    h.send_text(ws, "42/goodcity,[\"late\"]");
    assert!(matches!(
        h.engine.events.last(),
        Some(Event::ClientEvent { socket, args, .. }) if *socket == city && args == &[json!("late")]
    ));
}

#[test]
fn v5_packets_for_a_namespace_not_joined_close_the_session() {
    // socket.io 4 closes an Engine.IO 4 session in that case.
    let (mut h, ws) = v5();
    h.send_text(ws, "40");
    let (root, _, _) = last_request(&h);
    h.engine.server.accept(root);
    h.send_text(ws, "42/goodcity,[\"early\"]");
    assert!(h.closed.contains_key(&ws));
}
