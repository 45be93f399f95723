//! Acks both ways, for both revisions: server ack ids and the pending-ack table, client ack
//! requests answered with the exact id, binary acks.

mod common;

use common::{Harness, SioApp, payload, test_config};
use courier_core::net::ConnId;
use courier_core::sio::{Event, SocketId, binary};
use serde_json::json;

/// A WebSocket session with `/chat` accepted, for `eio` 3 or 4.
fn chat(eio: &str) -> (Harness<SioApp>, ConnId, SocketId) {
    let mut h = Harness::new(SioApp::new(test_config(), 61));
    let ws = h.ws(&format!("EIO={eio}&transport=websocket"));
    h.send_text(ws, "40/chat,");
    let socket = h
        .engine
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::ConnectRequest { socket, .. } => Some(*socket),
            _ => None,
        })
        .expect("request");
    h.engine.server.accept(socket);
    h.drain();
    (h, ws, socket)
}

#[test]
fn server_ack_ids_count_per_socket_and_each_ack_is_reported_once() {
    for eio in ["4", "3"] {
        let (mut h, ws, socket) = chat(eio);
        let first = h
            .engine
            .server
            .emit_with_ack(socket, &payload(&[json!("q"), json!(1)]));
        let second = h
            .engine
            .server
            .emit_with_ack(socket, &payload(&[json!("q"), json!(2)]));
        h.drain();
        assert_eq!((first, second), (Some(0), Some(1)));
        let texts = h.texts(ws);
        assert_eq!(
            &texts[texts.len() - 2..],
            ["42/chat,0[\"q\",1]", "42/chat,1[\"q\",2]"]
        );
        h.send_text(ws, "43/chat,1[\"two\"]");
        h.send_text(ws, "43/chat,1[\"again\"]"); // answered already: ignored
        h.send_text(ws, "43/chat,7[]"); // never asked: ignored
        h.send_text(ws, "43/chat,0[]");
        let acks: Vec<_> = h
            .engine
            .events
            .iter()
            .filter(|e| matches!(e, Event::Ack { .. }))
            .cloned()
            .collect();
        assert_eq!(
            acks,
            vec![
                Event::Ack {
                    socket,
                    id: 1,
                    args: vec![json!("two")]
                },
                Event::Ack {
                    socket,
                    id: 0,
                    args: vec![]
                },
            ]
        );
        assert!(!h.closed.contains_key(&ws), "EIO={eio}");
    }
}

#[test]
fn client_ack_requests_are_answered_with_the_exact_id() {
    for eio in ["4", "3"] {
        let (mut h, ws, socket) = chat(eio);
        h.send_text(ws, "42/chat,789[\"ask\",{\"a\":1}]");
        assert_eq!(
            h.engine.events.last(),
            Some(&Event::ClientEvent {
                socket,
                args: vec![json!("ask"), json!({"a": 1})],
                ack: Some(789)
            })
        );
        h.engine
            .server
            .ack(socket, 789, &[json!("ok"), json!({"b": [1, 2]})]);
        h.drain();
        assert_eq!(
            h.texts(ws).last().map(String::as_str),
            Some("43/chat,789[\"ok\",{\"b\":[1,2]}]")
        );
    }
}

#[test]
fn binary_acks_are_type_6_with_attachments() {
    let (mut h, ws, socket) = chat("4");
    h.engine
        .server
        .ack(socket, 5, &[binary::binary_value(&[0xAB])]);
    h.drain();
    let texts = h.texts(ws);
    assert_eq!(
        &texts[texts.len() - 2..],
        ["461-/chat,5[{\"_placeholder\":true,\"num\":0}]", "<bin:ab>"]
    );
    // And a binary ack from the client is joined before it is reported.
    let id = h
        .engine
        .server
        .emit_with_ack(socket, &payload(&[json!("q")]))
        .expect("id");
    h.send_text(
        ws,
        &format!("461-/chat,{id}[{{\"_placeholder\":true,\"num\":0}}]"),
    );
    h.send_binary(ws, &[1, 2]);
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Ack {
            socket,
            id,
            args: vec![binary::binary_value(&[1, 2])]
        })
    );
}

#[test]
fn emits_to_unknown_or_pending_sockets_are_refused() {
    let (mut h, ws, _) = chat("4");
    assert!(!h.engine.server.emit(SocketId(999), &payload(&[json!("x")])));
    assert_eq!(
        h.engine
            .server
            .emit_with_ack(SocketId(999), &payload(&[json!("x")])),
        None
    );
    h.send_text(ws, "40/pending,");
    let pending = h
        .engine
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::ConnectRequest { socket, .. } => Some(*socket),
            _ => None,
        })
        .expect("request");
    assert!(!h.engine.server.emit(pending, &payload(&[json!("x")])));
    assert!(!h.engine.server.is_connected(pending));
}

#[test]
fn unanswered_acks_are_bounded_per_socket() {
    let (mut h, ws, socket) = chat("4");
    let p = payload(&[json!("q")]);
    for _ in 0..4097 {
        h.engine.server.emit_with_ack(socket, &p);
    }
    h.drain();
    // The oldest expectation was dropped; the next one is still awaited.
    h.send_text(ws, "43/chat,0[]");
    h.send_text(ws, "43/chat,1[]");
    let acks: Vec<u64> = h
        .engine
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ack { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(acks, vec![1]);
}
