//! The conformance server: what the Socket.IO project's test-suites expect of `/engine.io/` and
//! `/socket.io/`.

mod common;

use common::{Harness, sid_of};
use courier_core::conformance::Conformance;
use courier_core::net::Method;

fn eio_get(h: &mut Harness<Conformance>, query: &str) -> courier_core::net::RequestId {
    h.request(Method::Get, "/engine.io/", query, &[], b"", false)
}

#[test]
fn engine_io_echoes_every_message_over_polling_and_websocket() {
    let mut h = Harness::new(Conformance::new(1));
    let open = eio_get(&mut h, "EIO=4&transport=polling");
    let body = h.body(open);
    assert!(body.contains("\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000"));
    assert_eq!(
        h.response(open)
            .expect("answered")
            .headers
            .get("access-control-allow-origin"),
        Some("*")
    );
    let sid = sid_of(&body);
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let post = h.request(
        Method::Post,
        "/engine.io/",
        &q,
        &[],
        b"4hello\x1ebAQID",
        false,
    );
    assert_eq!(h.body(post), "ok");
    let get = eio_get(&mut h, &q);
    assert_eq!(h.body(get), "4hello\u{1e}bAQID");

    let ws = h.request(
        Method::Get,
        "/engine.io/",
        "EIO=4&transport=websocket",
        &[],
        b"",
        true,
    );
    let ws = courier_core::net::ConnId::from(ws);
    h.send_text(ws, "4hi");
    h.send_binary(ws, &[7, 8]);
    let texts = h.texts(ws);
    assert_eq!(&texts[1..], ["4hi", "<bin:0708>"]);
    // No Socket.IO on the raw endpoint: nothing like `40` is ever sent.
    assert!(!texts.iter().any(|t| t.starts_with("40")));
}

#[test]
fn socket_io_connect_emits_the_auth_object() {
    let mut h = Harness::new(Conformance::new(2));
    let ws = h.ws("EIO=4&transport=websocket");
    h.send_text(ws, "40{\"token\":\"123\"}");
    let texts = h.texts(ws);
    assert!(texts[1].starts_with("40{\"sid\":\""), "{texts:?}");
    assert_eq!(texts[2], "42[\"auth\",{\"token\":\"123\"}]");
    h.send_text(ws, "40/custom,");
    let texts = h.texts(ws);
    assert!(texts[3].starts_with("40/custom,{\"sid\":\""));
    assert_eq!(texts[4], "42/custom,[\"auth\",{}]");
    h.send_text(ws, "40/random,");
    assert_eq!(
        h.texts(ws).last().map(String::as_str),
        Some("44/random,{\"message\":\"Invalid namespace\"}")
    );
}

#[test]
fn socket_io_over_polling_batches_connect_reply_and_auth() {
    let mut h = Harness::new(Conformance::new(3));
    let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
    let q = format!("EIO=4&transport=polling&sid={sid}");
    h.post(&q, b"40");
    let body = h.get_text(&q);
    let parts: Vec<&str> = body.split('\u{1e}').collect();
    assert_eq!(parts.len(), 2, "{body}");
    assert!(parts[0].starts_with("40{\"sid\":\""));
    assert_eq!(parts[1], "42[\"auth\",{}]");
}

#[test]
fn socket_io_echo_handlers() {
    let mut h = Harness::new(Conformance::new(4));
    let ws = h.ws("EIO=4&transport=websocket");
    h.send_text(ws, "40");
    h.send_text(ws, "42[\"message\",1,\"2\",{\"3\":[true]}]");
    assert_eq!(
        h.texts(ws).last().map(String::as_str),
        Some("42[\"message-back\",1,\"2\",{\"3\":[true]}]")
    );
    h.send_text(ws, "42456[\"message-with-ack\",1,\"2\",{\"3\":[false]}]");
    assert_eq!(
        h.texts(ws).last().map(String::as_str),
        Some("43456[1,\"2\",{\"3\":[false]}]")
    );
    h.send_text(
        ws,
        "452-[\"message\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
    );
    h.send_binary(ws, &[1, 2, 3]);
    h.send_binary(ws, &[4, 5, 6]);
    let texts = h.texts(ws);
    assert_eq!(
        &texts[texts.len() - 3..],
        [
            "452-[\"message-back\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
            "<bin:010203>",
            "<bin:040506>"
        ]
    );
    h.send_text(ws, "452-789[\"message-with-ack\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
    h.send_binary(ws, &[1, 2, 3]);
    h.send_binary(ws, &[4, 5, 6]);
    let texts = h.texts(ws);
    assert_eq!(
        &texts[texts.len() - 3..],
        [
            "462-789[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
            "<bin:010203>",
            "<bin:040506>"
        ]
    );
    h.send_text(ws, "42[\"emit-with-ack\",\"q\"]");
    assert_eq!(
        h.texts(ws).last().map(String::as_str),
        Some("420[\"emit-with-ack\",\"q\"]")
    );
    h.send_text(ws, "430[\"answer\"]");
    assert_eq!(
        h.texts(ws).last().map(String::as_str),
        Some("42[\"emit-with-ack-back\",\"answer\"]")
    );
}

#[test]
fn timings_of_the_suite() {
    let mut h = Harness::new(Conformance::new(5));
    // No CONNECT within 1000 ms closes.
    let ws = h.ws("EIO=4&transport=websocket");
    h.advance(300);
    assert_eq!(h.texts(ws).last().map(String::as_str), Some("2"));
    h.send_text(ws, "3");
    h.advance(300);
    h.send_text(ws, "3");
    h.advance(300);
    h.send_text(ws, "3");
    assert!(!h.closed.contains_key(&ws));
    h.advance(100);
    assert!(h.closed.contains_key(&ws));
    // "closes the session upon ping timeout": 500 ms after the handshake, polling gets 400.
    let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
    h.advance(500);
    assert_eq!(
        h.get_status(&format!("EIO=4&transport=polling&sid={sid}")),
        400
    );
}

#[test]
fn eio3_clients_are_served_and_other_paths_are_404() {
    let mut h = Harness::new(Conformance::new(6));
    let ws = h.ws("EIO=3&transport=websocket");
    assert_eq!(h.texts(ws)[1], "40");
    assert_eq!(h.texts(ws)[2], "42[\"auth\",{}]");
    let id = h.request(Method::Get, "/other", "", &[], b"", false);
    assert_eq!(h.status(id), 404);
}
