//! Binary attachments: placeholders, attachment frames over every transport, limits and
//! protocol errors.

mod common;

use common::{Harness, SioApp, payload, sid_of, test_config};
use courier_core::net::ConnId;
use courier_core::sio::{Event, SocketId, binary};
use serde_json::json;

fn root(eio: &str, max_attachments: usize) -> (Harness<SioApp>, ConnId, SocketId) {
    let mut config = test_config();
    config.max_attachments = max_attachments;
    let mut h = Harness::new(SioApp::new(config, 71));
    let ws = h.ws(&format!("EIO={eio}&transport=websocket"));
    if eio == "4" {
        h.send_text(ws, "40");
    }
    let Some(Event::ConnectRequest { socket, .. }) = h.engine.events.first().cloned() else {
        panic!("no request");
    };
    h.engine.server.accept(socket);
    h.drain();
    (h, ws, socket)
}

#[test]
fn incoming_attachments_are_joined_depth_first() {
    let (mut h, ws, socket) = root("4", 10);
    h.send_text(
        ws,
        "452-[\"message\",{\"_placeholder\":true,\"num\":0},{\"nested\":[{\"_placeholder\":true,\"num\":1}]}]",
    );
    assert!(
        !h.engine
            .events
            .iter()
            .any(|e| matches!(e, Event::ClientEvent { .. }))
    );
    h.send_binary(ws, &[1, 2, 3]);
    h.send_binary(ws, &[4]);
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::ClientEvent {
            socket,
            args: vec![
                json!("message"),
                binary::binary_value(&[1, 2, 3]),
                json!({"nested": [binary::binary_value(&[4])]})
            ],
            ack: None
        })
    );
}

#[test]
fn outgoing_binary_becomes_binary_event_with_frames_in_order() {
    let (mut h, ws, socket) = root("4", 10);
    let values = [
        json!("message-back"),
        binary::binary_value(&[1]),
        json!({"x": binary::binary_value(&[2])}),
    ];
    h.engine.server.emit(socket, &payload(&values));
    h.drain();
    let texts = h.texts(ws);
    assert_eq!(
        &texts[texts.len() - 3..],
        [
            "452-[\"message-back\",{\"_placeholder\":true,\"num\":0},{\"x\":{\"_placeholder\":true,\"num\":1}}]",
            "<bin:01>",
            "<bin:02>"
        ]
    );
}

#[test]
fn binary_over_v4_polling_is_base64() {
    let mut h = Harness::new(SioApp::new(test_config(), 72));
    let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
    let q = format!("EIO=4&transport=polling&sid={sid}");
    h.post(&q, b"40");
    let Some(Event::ConnectRequest { socket, .. }) = h.engine.events.first().cloned() else {
        panic!("no request");
    };
    h.engine.server.accept(socket);
    h.drain();
    h.get(&q);
    h.post(
        &q,
        b"451-[\"up\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID",
    );
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::ClientEvent {
            socket,
            args: vec![json!("up"), binary::binary_value(&[1, 2, 3])],
            ack: None
        })
    );
}

#[test]
fn attachment_limit_and_protocol_errors_close() {
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        // Over the limit of 2.
        ("453-[\"m\",1]", vec![]),
        // A text packet while attachments are outstanding.
        (
            "451-[\"m\",{\"_placeholder\":true,\"num\":0}]",
            vec![b"42[\"x\"]".to_vec()],
        ),
        // A placeholder past the attachments.
        (
            "451-[\"m\",{\"_placeholder\":true,\"num\":1}]",
            vec![vec![1]],
        ),
        // Missing the dash.
        ("451[\"m\"]", vec![]),
    ];
    for (header, follow_ups) in cases {
        let (mut h, ws, socket) = root("4", 2);
        h.send_text(ws, header);
        for f in follow_ups {
            if f.first() == Some(&b'4') {
                h.send_text(ws, std::str::from_utf8(&f).expect("utf8"));
            } else {
                h.send_binary(ws, &f);
            }
        }
        assert!(h.closed.contains_key(&ws), "{header}");
        assert!(!h.engine.server.is_connected(socket));
    }
    // A binary frame with nothing pending.
    let (mut h, ws, _) = root("4", 2);
    h.send_binary(ws, &[1]);
    assert!(h.closed.contains_key(&ws));
}

#[test]
fn zero_attachment_binary_events_are_delivered_at_once() {
    let (mut h, ws, socket) = root("3", 10);
    h.send_text(ws, "450-[\"m\",1]");
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::ClientEvent {
            socket,
            args: vec![json!("m"), json!(1)],
            ack: None
        })
    );
}
