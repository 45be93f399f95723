//! The example session of the Socket.IO protocol documentation (v5) and the session captured from the original service (EIO3),
//! reproduced byte for byte (random sids substituted).

mod common;

use std::time::Duration;

use common::{Harness, SioApp, payload, sid_of};
use courier_core::sio::{self, Event, Revision, SocketId};
use serde_json::json;

fn connect_requests(h: &Harness<SioApp>) -> Vec<(SocketId, String, Option<serde_json::Value>)> {
    h.engine
        .events
        .iter()
        .filter_map(|e| match e {
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
        .collect()
}

#[test]
fn eio3_goodcity_session_as_captured_from_the_original() {
    // The original's defaults: pingInterval 25000, pingTimeout 60000.
    let mut h = Harness::new(SioApp::new(sio::Config::default(), 7));
    let q = "EIO=3&transport=polling&b64=1&token=u3&deviceId=d1&meta=abc";
    let open = h.get(q);
    let body = h.body(open);
    let sid = sid_of(&body);
    assert_eq!(sid.len(), 20);
    assert_eq!(
        body,
        format!(
            "97:0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":60000}}"
        )
    );
    // `/` is connected implicitly; the application is still asked (and accepts).
    let requests = connect_requests(&h);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].1, "/");
    let root = requests[0].0;
    h.engine.server.accept(root);
    h.drain();

    let sq = format!("{q}&sid={sid}");
    let post = h.post(&sq, b"11:40/goodcity");
    assert_eq!(h.body(post), "ok");
    let requests = connect_requests(&h);
    let (goodcity, namespace, auth) = requests[1].clone();
    assert_eq!(namespace, "/goodcity");
    assert_eq!(auth, None);
    let handshake = h.engine.server.handshake(goodcity).expect("handshake");
    assert_eq!(handshake.query("token"), Some("u3"));
    assert_eq!(handshake.query("meta"), Some("abc"));
    assert_eq!(h.engine.server.revision(goodcity), Some(Revision::V4));

    let first = h.get(&sq);
    assert_eq!(h.body(first), "2:40");

    // The auth call is in flight: the next GET waits.
    let second = h.get(&sq);
    assert!(h.response(second).is_none());
    h.engine.server.accept(goodcity);
    let settings = payload(&[json!("_settings"), json!({"device_ttl": 3600})]);
    assert!(h.engine.server.emit(goodcity, &settings));
    h.drain();
    assert_eq!(
        h.body(second),
        "11:40/goodcity45:42/goodcity,[\"_settings\",{\"device_ttl\":3600}]"
    );

    // /send to the connected user, acked by the client.
    let update = payload(&[json!("update_store"), json!("user"), json!({"id": 1})]);
    let ack = h.engine.server.emit_with_ack(goodcity, &update);
    assert_eq!(ack, Some(0));
    let third = h.get(&sq);
    assert_eq!(
        h.body(third),
        "45:42/goodcity,0[\"update_store\",\"user\",{\"id\":1}]"
    );
    h.post(&sq, b"15:43/goodcity,0[]");
    assert!(h.engine.events.contains(&Event::Ack {
        socket: goodcity,
        id: 0,
        args: vec![]
    }));

    // resync violation: an event without ack.
    h.engine
        .server
        .emit(goodcity, &payload(&[json!("_resync")]));
    h.drain();
    let fourth = h.get(&sq);
    assert_eq!(h.body(fourth), "23:42/goodcity,[\"_resync\"]");

    // An unknown namespace is refused with a string; the session stays open.
    h.post(&sq, b"7:40/nope");
    let nope = connect_requests(&h).last().expect("request").0;
    h.engine.server.reject(nope, "Invalid namespace");
    h.drain();
    let fifth = h.get(&sq);
    assert_eq!(h.body(fifth), "27:44/nope,\"Invalid namespace\"");
    assert!(h.engine.server.is_connected(goodcity));
}

#[test]
fn eio3_auth_failure_is_an_error_packet_and_the_session_stays_open() {
    let mut h = Harness::new(SioApp::new(sio::Config::default(), 8));
    let q = "EIO=3&transport=polling&b64=1&token=bad";
    let sid = sid_of(&h.get_text(q));
    let sq = format!("{q}&sid={sid}");
    h.post(&sq, b"11:40/goodcity");
    let goodcity = connect_requests(&h)[1].0;
    assert_eq!(h.get_text(&sq), "2:40");
    h.engine.server.reject(goodcity, "Authentication failed");
    h.drain();
    assert_eq!(h.get_text(&sq), "35:44/goodcity,\"Authentication failed\"");
    assert!(!h.engine.server.is_connected(goodcity));
    // No Disconnected for a socket that was never accepted.
    assert!(
        !h.engine
            .events
            .iter()
            .any(|e| matches!(e, Event::Disconnected { socket, .. } if *socket == goodcity))
    );
    let parked = h.get(&sq);
    assert!(
        h.response(parked).is_none(),
        "session still open, GET parked"
    );
}

#[test]
fn v5_chat_session_as_captured_from_node() {
    let mut config = sio::Config::default();
    config.eio.ping_timeout = Duration::from_millis(20_000);
    let mut h = Harness::new(SioApp::new(config, 9));
    let q = "EIO=4&transport=polling&t=abc";
    let body = h.get_text(q);
    let sid = sid_of(&body);
    assert_eq!(
        body,
        format!(
            "0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}}"
        )
    );
    assert!(
        connect_requests(&h).is_empty(),
        "v5 sends nothing before CONNECT"
    );
    let sq = format!("EIO=4&transport=polling&sid={sid}");
    assert_eq!(h.post_text(&sq, b"40/chat,{\"hello\":1}"), "ok");
    let (chat, namespace, auth) = connect_requests(&h)[0].clone();
    assert_eq!(namespace, "/chat");
    assert_eq!(auth, Some(json!({"hello": 1})));
    assert_eq!(h.engine.server.revision(chat), Some(Revision::V5));

    h.engine.server.accept(chat);
    h.engine.server.emit(
        chat,
        &payload(&[json!("welcome"), json!({"deviceId": "dev-1"})]),
    );
    let ask = h
        .engine
        .server
        .emit_with_ack(chat, &payload(&[json!("server-ask"), json!("question?")]));
    assert_eq!(ask, Some(0));
    h.drain();
    let socket_sid = h.engine.server.socket_sid(chat).expect("socket sid");
    assert_ne!(socket_sid, sid);
    assert_eq!(
        h.get_text(&sq),
        format!(
            "40/chat,{{\"sid\":\"{socket_sid}\"}}\u{1e}42/chat,[\"welcome\",{{\"deviceId\":\"dev-1\"}}]\u{1e}42/chat,0[\"server-ask\",\"question?\"]"
        )
    );

    let ws = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.send_text(ws, "2probe");
    h.send_text(ws, "5");
    assert_eq!(h.texts(ws), vec!["3probe"]);
    h.send_text(ws, "42/chat,0[\"echo\",{\"hi\":\"there\"}]");
    h.send_text(ws, "43/chat,0[\"answer-v4\"]");
    h.send_text(ws, "41/chat,");
    let tail: Vec<Event> = h
        .engine
        .events
        .iter()
        .rev()
        .take(3)
        .rev()
        .cloned()
        .collect();
    assert_eq!(
        tail,
        vec![
            Event::ClientEvent {
                socket: chat,
                args: vec![json!("echo"), json!({"hi": "there"})],
                ack: Some(0)
            },
            Event::Ack {
                socket: chat,
                id: 0,
                args: vec![json!("answer-v4")]
            },
            Event::Disconnected {
                socket: chat,
                reason: "client namespace disconnect"
            },
        ]
    );
    // The engine connection stays open: the next frame is the server's ping.
    h.advance(25_000);
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("2"));
}
