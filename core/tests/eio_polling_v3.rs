//! Engine.IO 3 long-polling: UTF-16 length prefixes, `b4` base64, `0:`, the binary payload
//! framing for XHR2 clients, binary POSTs, JSONP.

mod common;

use common::{Harness, SioApp, payload, sid_of, test_config};
use courier_core::net::Method;
use courier_core::sio::{Event, SocketId, binary};
use serde_json::json;

/// A v3 session (`b64=1` unless `binary`), `/` accepted; (harness, session query, `/` socket).
fn session(extra: &str) -> (Harness<SioApp>, String, SocketId) {
    let mut h = Harness::new(SioApp::new(test_config(), 21));
    let q = format!("EIO=3&transport=polling{extra}");
    let id = h.get(&q);
    let body = h.response(id).expect("answered").body.clone();
    let text = String::from_utf8_lossy(&body).into_owned();
    let sid = sid_of(&text);
    let Some(Event::ConnectRequest { socket, .. }) = h.engine.events.first().cloned() else {
        panic!("no implicit / request");
    };
    h.engine.server.accept(socket);
    h.drain();
    (h, format!("{q}&sid={sid}"), socket)
}

#[test]
fn lengths_count_utf16_code_units() {
    let (mut h, q, root) = session("&b64=1");
    assert_eq!(h.get_text(&q), "2:40");
    h.engine.server.emit(root, &payload(&[json!("é😀")]));
    h.drain();
    // `42["é😀"]` is 8 UTF-16 units (the emoji is a surrogate pair) but 11 bytes.
    assert_eq!(h.get_text(&q), "9:42[\"é😀\"]");
}

#[test]
fn posts_are_split_by_utf16_lengths_and_mismatches_close() {
    let (mut h, q, root) = session("&b64=1");
    assert_eq!(h.post_text(&q, "9:42[\"😀é\"]3:2ab".as_bytes()), "ok");
    let args: Vec<_> = h
        .engine
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ClientEvent { args, .. } => Some(args.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(args, vec![vec![json!("😀é")]]);
    // The `2ab` ping got its pong.
    assert_eq!(h.get_text(&q), "2:403:3ab");

    let id = h.post(&q, b"6:42[1]");
    assert_eq!(h.status(id), 400);
    assert!(!h.engine.server.is_connected(root));
}

#[test]
fn binary_is_b4_base64_in_text_payloads() {
    let (mut h, q, root) = session("&b64=1");
    h.get_text(&q);
    let bin = binary::binary_value(&[1, 2, 3, 4]);
    h.engine.server.emit(root, &payload(&[json!("b"), bin]));
    h.drain();
    assert_eq!(
        h.get_text(&q),
        "39:451-[\"b\",{\"_placeholder\":true,\"num\":0}]10:b4AQIDBA=="
    );
}

#[test]
fn xhr2_clients_get_the_binary_framing() {
    let (mut h, q, root) = session("");
    let id = h.get(&q);
    let response = h.response(id).expect("answered");
    assert_eq!(
        response.headers.get("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(&response.body[..], &[0, 2, 0xFF, b'4', b'0'][..]);
    let bin = binary::binary_value(&[1, 2, 3, 4]);
    h.engine.server.emit(root, &payload(&[json!("b"), bin]));
    h.drain();
    let id = h.get(&q);
    let body = h.response(id).expect("answered").body.clone();
    let text = b"451-[\"b\",{\"_placeholder\":true,\"num\":0}]";
    let mut expected = vec![0, 3, 9, 0xFF];
    expected.extend_from_slice(text);
    expected.extend_from_slice(&[1, 5, 0xFF, 4, 1, 2, 3, 4]);
    assert_eq!(&body[..], &expected[..]);
}

#[test]
fn binary_posts_are_decoded() {
    let (mut h, q, root) = session("");
    let packet = b"451-[\"up\",{\"_placeholder\":true,\"num\":0}]";
    let mut body = vec![0];
    body.extend(packet.len().to_string().bytes().map(|d| d - b'0'));
    body.push(0xFF);
    body.extend_from_slice(packet);
    body.extend_from_slice(&[1, 4, 0xFF, 4, 9, 8, 7]);
    let id = h.request(
        Method::Post,
        "/socket.io/",
        &q,
        &[("content-type", "application/octet-stream")],
        &body,
        false,
    );
    assert_eq!(h.body(id), "ok");
    assert!(h.engine.events.contains(&Event::ClientEvent {
        socket: root,
        args: vec![json!("up"), binary::binary_value(&[9, 8, 7])],
        ack: None
    }));
}

#[test]
fn an_empty_queue_with_a_closing_session_is_framed_and_empty_payload_is_0_colon() {
    let payload = courier_core::eio::payload::encode_v3_text(&[]);
    assert_eq!(&payload[..], b"0:");
    assert_eq!(
        courier_core::eio::payload::decode_v3_text(b"0:"),
        Ok(vec![])
    );
}

#[test]
fn jsonp_wraps_payloads_in_the_callback_and_reads_form_posts() {
    let (mut h, q, root) = session("&j=3");
    let id = h.get(&q);
    let response = h.response(id).expect("answered");
    assert_eq!(
        response.headers.get("content-type"),
        Some("text/javascript; charset=UTF-8")
    );
    assert_eq!(h.body(id), "___eio[3](\"2:40\");");
    let body = format!(
        "d={}",
        courier_core::urlencoded::encode_component("10:42[\"a\\\\nb\"]")
    );
    assert_eq!(h.post_text(&q, body.as_bytes()), "ok");
    assert!(h.engine.events.contains(&Event::ClientEvent {
        socket: root,
        args: vec![json!("a\nb")],
        ack: None
    }));
    assert_eq!(
        courier_core::eio::payload::decode_jsonp_body(b"d=x%5Cny%5C%5Cnz%5C"),
        Ok(b"x\ny\\nz\\".to_vec())
    );
}

#[test]
fn v3_close_overlap_and_size_rules_match_v4() {
    // A client close releases the parked GET with a noop.
    let (mut h, q, root) = session("&b64=1");
    h.get_text(&q);
    let parked = h.get(&q);
    assert_eq!(h.post_text(&q, b"1:1"), "ok");
    assert_eq!(h.body(parked), "1:6");
    assert!(!h.engine.server.is_connected(root));
    assert_eq!(h.get_status(&q), 400);

    // A server close answers the parked GET with a close packet.
    let (mut h, q, root) = session("&b64=1");
    h.get_text(&q);
    let parked = h.get(&q);
    h.engine.server.close_connection(root, h.now);
    h.drain();
    assert_eq!(h.body(parked), "1:1");

    // Overlapping GETs: the newcomer is refused, the parked one gets a close.
    let (mut h, q, _) = session("&b64=1");
    h.get_text(&q);
    let first = h.get(&q);
    let second = h.get(&q);
    assert_eq!(h.status(second), 400);
    assert_eq!(h.body(first), "1:1");

    // Over maxPayload: 413, the session survives.
    let mut config = test_config();
    config.eio.max_payload = 8;
    let mut h = Harness::new(SioApp::new(config, 22));
    let sid = sid_of(&h.get_text("EIO=3&transport=polling&b64=1"));
    let q = format!("EIO=3&transport=polling&b64=1&sid={sid}");
    let id = h.post(&q, b"12:42[\"abcdefg\"]");
    assert_eq!(h.status(id), 413);
    assert_eq!(h.post_text(&q, b"1:2"), "ok");
}
