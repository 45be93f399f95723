//! polling → WebSocket upgrade: probe, noops for parked GETs, `5`, flushing, deadline, refusals.

mod common;

use common::{Harness, SioApp, payload, sid_of, test_config};
use courier_core::sio::{Event, SocketId, binary};
use serde_json::json;

/// A polling session connected to `/`, for revision `eio`; (harness, sid, `/` socket).
fn polling(eio: &str) -> (Harness<SioApp>, String, SocketId) {
    polling_with(eio, test_config())
}

fn polling_with(
    eio: &str,
    config: courier_core::sio::Config,
) -> (Harness<SioApp>, String, SocketId) {
    let mut h = Harness::new(SioApp::new(config, 31));
    let sid = sid_of(&h.get_text(&format!("EIO={eio}&transport=polling&b64=1")));
    if eio == "4" {
        h.post(&format!("EIO=4&transport=polling&sid={sid}"), b"40");
    }
    let Some(Event::ConnectRequest { socket, .. }) = h.engine.events.first().cloned() else {
        panic!("no request");
    };
    h.engine.server.accept(socket);
    h.drain();
    h.get(&format!("EIO={eio}&transport=polling&b64=1&sid={sid}"));
    (h, sid, socket)
}

#[test]
fn probe_releases_the_parked_get_with_a_noop_and_5_switches_and_flushes() {
    for eio in ["4", "3"] {
        let (mut h, sid, socket) = polling(eio);
        let pq = format!("EIO={eio}&transport=polling&b64=1&sid={sid}");
        let parked = h.get(&pq);
        assert!(h.response(parked).is_none());
        let ws = h.ws(&format!("EIO={eio}&transport=websocket&sid={sid}"));
        assert!(h.texts(ws).is_empty(), "nothing before the probe");
        h.send_text(ws, "2probe");
        assert_eq!(h.texts(ws), vec!["3probe"]);
        let noop = if eio == "4" { "6" } else { "1:6" };
        assert_eq!(h.body(parked), noop);
        // A GET during the upgrade is released with a noop after engine.io's 100 ms.
        let during = h.get(&pq);
        h.advance(99);
        assert!(h.response(during).is_none());
        h.advance(1);
        assert_eq!(h.body(during), noop);
        // Packets emitted before `5` wait and are flushed on the WebSocket.
        h.engine.server.emit(socket, &payload(&[json!("queued")]));
        h.drain();
        h.send_text(ws, "5");
        assert_eq!(h.texts(ws), vec!["3probe", "42[\"queued\"]"]);
        h.engine.server.emit(socket, &payload(&[json!("live")]));
        h.drain();
        assert_eq!(h.texts(ws).last().map(String::as_str), Some("42[\"live\"]"));
        // Polling with the upgraded sid is refused.
        assert_eq!(h.get_status(&pq), 400);
        assert!(h.engine.server.is_connected(socket));
    }
}

#[test]
fn probe_and_upgrade_back_to_back_are_processed_in_order() {
    let (mut h, sid, socket) = polling("4");
    let ws = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.send_text(ws, "2probe");
    h.send_text(ws, "5");
    h.send_text(ws, "42[\"hi\"]");
    assert_eq!(h.texts(ws), vec!["3probe"]);
    assert!(h.engine.events.contains(&Event::ClientEvent {
        socket,
        args: vec![json!("hi")],
        ack: None
    }));
}

#[test]
fn no_upgrade_within_the_deadline_closes_only_the_probe() {
    let mut config = test_config();
    config.eio.ping_interval = std::time::Duration::from_secs(60);
    let (mut h, sid, socket) = polling_with("4", config);
    let ws = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.send_text(ws, "2probe");
    h.advance(2_000);
    assert_eq!(h.closed.get(&ws), Some(&1000));
    assert!(h.engine.server.is_connected(socket));
    let pq = format!("EIO=4&transport=polling&sid={sid}");
    assert_eq!(h.post_text(&pq, b"42[\"still\"]"), "ok");
    // Polling goes on; a later upgrade may succeed.
    let ws2 = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.send_text(ws2, "2probe");
    h.send_text(ws2, "5");
    assert_eq!(h.texts(ws2), vec!["3probe"]);
}

#[test]
fn anything_but_probe_or_upgrade_on_the_probing_socket_closes_it() {
    let (mut h, sid, socket) = polling("4");
    let ws = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.send_text(ws, "42[\"early\"]");
    assert_eq!(h.closed.get(&ws), Some(&1002));
    assert!(h.engine.server.is_connected(socket));
}

/// As engine.io does: a WebSocket carrying the sid of a session that is upgrading,
/// or already on a WebSocket, is accepted at the HTTP level and closed at once (a close frame
/// without a code, 1005 to the adapter; nothing sent on it); the session keeps its transport and
/// goes on working.
fn assert_closed_at_once(h: &mut Harness<SioApp>, sid: &str, eio: &str) {
    let extra = h.ws(&format!("EIO={eio}&transport=websocket&sid={sid}"));
    assert_eq!(
        h.closed.get(&extra),
        Some(&1005),
        "closed at once, without a code"
    );
    assert!(h.texts(extra).is_empty(), "nothing sent on it");
    // Whatever the adapter still reports about it is ignored.
    h.send_text(extra, "2probe");
    h.close_ws(extra);
    assert!(h.texts(extra).is_empty());
}

#[test]
fn a_second_websocket_after_the_upgrade_is_accepted_and_closed() {
    for eio in ["4", "3"] {
        let (mut h, sid, socket) = polling(eio);
        let ws = h.ws(&format!("EIO={eio}&transport=websocket&sid={sid}"));
        h.send_text(ws, "2probe");
        h.send_text(ws, "5");
        assert_closed_at_once(&mut h, &sid, eio);
        assert!(h.engine.server.is_connected(socket));
        assert!(h.engine.server.emit(socket, &payload(&[json!("still")])));
        h.drain();
        let last = h.texts(ws).last().cloned().unwrap_or_default();
        assert!(last.ends_with("[\"still\"]"), "{eio}: {last}");
        assert!(!h.closed.contains_key(&ws));
    }
}

#[test]
fn a_second_websocket_during_the_upgrade_is_accepted_and_closed() {
    for eio in ["4", "3"] {
        let (mut h, sid, socket) = polling(eio);
        let ws = h.ws(&format!("EIO={eio}&transport=websocket&sid={sid}"));
        assert_closed_at_once(&mut h, &sid, eio);
        // The first probe goes on and completes the upgrade.
        h.send_text(ws, "2probe");
        assert_eq!(h.texts(ws), vec!["3probe".to_owned()]);
        h.send_text(ws, "5");
        assert!(h.engine.server.is_connected(socket));
        assert!(h.engine.server.emit(socket, &payload(&[json!("after")])));
        h.drain();
        let last = h.texts(ws).last().cloned().unwrap_or_default();
        assert!(last.ends_with("[\"after\"]"), "{eio}: {last}");
    }
}

#[test]
fn a_websocket_naming_a_websocket_session_is_accepted_and_closed() {
    for eio in ["4", "3"] {
        let mut h = Harness::new(SioApp::new(test_config(), 33));
        let ws = h.ws(&format!("EIO={eio}&transport=websocket"));
        let sid = sid_of(&h.texts(ws)[0]);
        assert_closed_at_once(&mut h, &sid, eio);
        assert!(!h.closed.contains_key(&ws));
    }
}

#[test]
fn websocket_binary_frames_are_raw_in_v4_and_type_prefixed_in_v3() {
    for (eio, prefix) in [("4", ""), ("3", "04")] {
        let mut h = Harness::new(SioApp::new(test_config(), 32));
        let ws = h.ws(&format!("EIO={eio}&transport=websocket"));
        if eio == "4" {
            h.send_text(ws, "40");
        }
        let Some(Event::ConnectRequest { socket, .. }) = h.engine.events.first().cloned() else {
            panic!("no request");
        };
        h.engine.server.accept(socket);
        let bin = binary::binary_value(&[1, 2, 3]);
        h.engine.server.emit(socket, &payload(&[json!("b"), bin]));
        h.drain();
        assert_eq!(
            h.texts(ws).last().cloned(),
            Some(format!("<bin:{prefix}010203>")),
            "EIO={eio}"
        );
        // Incoming: same framing.
        h.send_text(ws, "451-[\"up\",{\"_placeholder\":true,\"num\":0}]");
        let frame = if eio == "4" {
            vec![9u8, 9]
        } else {
            vec![4u8, 9, 9]
        };
        h.send_binary(ws, &frame);
        assert!(h.engine.events.contains(&Event::ClientEvent {
            socket,
            args: vec![json!("up"), binary::binary_value(&[9, 9])],
            ack: None
        }));
    }
}

#[test]
fn websocket_frames_over_max_payload_close_with_1009() {
    let mut config = test_config();
    config.eio.max_payload = 16;
    let mut h = Harness::new(SioApp::new(config, 33));
    let ws = h.ws("EIO=4&transport=websocket");
    h.send_text(ws, "4xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_eq!(h.closed.get(&ws), Some(&1009));
}

#[test]
fn websocket_close_semantics() {
    // A client `1` closes at once.
    let mut h = Harness::new(SioApp::new(test_config(), 34));
    let ws = h.ws("EIO=4&transport=websocket");
    h.send_text(ws, "1");
    assert_eq!(h.closed.get(&ws), Some(&1000));
    // An invalid frame closes with a protocol error.
    let ws = h.ws("EIO=4&transport=websocket");
    h.send_text(ws, "abc");
    assert_eq!(h.closed.get(&ws), Some(&1002));
    // The peer going away ends the session and every socket on it.
    let ws = h.ws("EIO=4&transport=websocket");
    h.send_text(ws, "40");
    let socket = match h.engine.events.last() {
        Some(Event::ConnectRequest { socket, .. }) => *socket,
        other => panic!("{other:?}"),
    };
    h.engine.server.accept(socket);
    h.drain();
    h.close_ws(ws);
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket,
            reason: "transport close"
        })
    );
    // A server close sends `1` then closes.
    let ws = h.ws("EIO=4&transport=websocket");
    h.send_text(ws, "40");
    let socket = match h.engine.events.last() {
        Some(Event::ConnectRequest { socket, .. }) => *socket,
        other => panic!("{other:?}"),
    };
    h.engine.server.accept(socket);
    h.engine.server.close_all(h.now);
    h.drain();
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("1"));
    assert_eq!(h.closed.get(&ws), Some(&1000));
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket,
            reason: "server shutting down"
        })
    );
    assert_eq!(h.engine.server.socket_count(), 0);
}

#[test]
fn server_pings_wait_while_a_probe_is_under_way() {
    let (mut h, sid, _) = polling("4");
    let pq = format!("EIO=4&transport=polling&sid={sid}");
    let ws = h.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.send_text(ws, "2probe");
    // The ping falls due at 1000 ms; it is held back while upgrading.
    h.advance(1050);
    let during = h.get(&pq);
    h.advance(100);
    assert_eq!(h.body(during), "6", "no ping on the polling transport");
    h.send_text(ws, "5");
    h.advance(100);
    assert_eq!(h.texts(ws), vec!["3probe", "2"]);
    h.send_text(ws, "3");
    h.advance(900);
    assert_eq!(h.texts(ws).len(), 2);
    h.advance(100);
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("2"));
}
