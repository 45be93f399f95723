//! Engine.IO 4 long-polling: parked GETs, `\x1e` batches, binary as `b<base64>`, POST rules,
//! one GET and one POST at a time, maxPayload, closes.

mod common;

use common::{Harness, SioApp, payload, sid_of, test_config};
use courier_core::eio::{self, Message};
use courier_core::net::Method;
use courier_core::sio::Event;
use serde_json::json;

/// A polling session with `/` accepted; returns (harness, session query, socket).
fn connected() -> (Harness<SioApp>, String, courier_core::sio::SocketId) {
    let mut h = Harness::new(SioApp::new(test_config(), 11));
    let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
    let q = format!("EIO=4&transport=polling&sid={sid}");
    assert_eq!(h.post_text(&q, b"40"), "ok");
    let Some(Event::ConnectRequest { socket, .. }) = h.engine.events.first().cloned() else {
        panic!("no request");
    };
    h.engine.server.accept(socket);
    h.drain();
    let reply = h.get_text(&q);
    assert!(reply.starts_with("40{\"sid\":"), "{reply}");
    (h, q, socket)
}

#[test]
fn a_get_waits_until_packets_are_queued_and_takes_them_all() {
    let (mut h, q, socket) = connected();
    let get = h.get(&q);
    assert!(h.response(get).is_none());
    h.engine
        .server
        .emit(socket, &payload(&[json!("a"), json!(1)]));
    h.engine.server.emit(socket, &payload(&[json!("b")]));
    h.drain();
    assert_eq!(h.body(get), "42[\"a\",1]\u{1e}42[\"b\"]");
}

#[test]
fn binary_attachments_ride_as_base64_entries() {
    let (mut h, q, socket) = connected();
    let bin = courier_core::sio::binary::binary_value(&[1, 2, 3, 4]);
    h.engine.server.emit(socket, &payload(&[json!("bin"), bin]));
    h.drain();
    assert_eq!(
        h.get_text(&q),
        "451-[\"bin\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQIDBA=="
    );
}

#[test]
fn post_is_answered_ok_and_split_on_the_separator() {
    let (mut h, q, socket) = connected();
    let id = h.post(&q, b"42[\"x\"]\x1e42[\"y\",2]");
    let response = h.response(id).expect("answered");
    assert_eq!((response.status, &response.body[..]), (200, &b"ok"[..]));
    assert_eq!(response.headers.get("content-type"), Some("text/html"));
    let events: Vec<_> = h
        .engine
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ClientEvent {
                socket: s, args, ..
            } if *s == socket => Some(args.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(events, vec![vec![json!("x")], vec![json!("y"), json!(2)]]);
}

#[test]
fn an_invalid_post_closes_the_session() {
    for body in [&b"abc"[..], b"", b"4hi\x1e9"] {
        let (mut h, q, socket) = connected();
        let id = h.post(&q, body);
        assert_eq!(h.status(id), 400);
        assert!(!h.engine.server.is_connected(socket));
        let next = h.get(&q);
        assert_eq!(h.status(next), 400, "session gone after {body:?}");
    }
}

#[test]
fn octet_stream_posts_are_refused_in_v4() {
    let (mut h, q, _) = connected();
    let id = h.request(
        Method::Post,
        "/socket.io/",
        &q,
        &[("content-type", "application/octet-stream")],
        b"4hello",
        false,
    );
    assert_eq!(h.status(id), 400);
    assert_eq!(h.get_status(&q), 400);
}

#[test]
fn a_post_over_max_payload_is_413_and_the_session_survives() {
    let mut config = test_config();
    config.eio.max_payload = 10;
    let mut h = Harness::new(SioApp::new(config, 1));
    let sid = sid_of(&h.get_text("EIO=4&transport=polling"));
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let id = h.post(&q, b"4xxxxxxxxxxxxxxxxxxx");
    assert_eq!(h.status(id), 413);
    assert_eq!(h.post_text(&q, b"40"), "ok");
}

#[test]
fn overlapping_gets_refuse_the_newcomer_and_close_the_session() {
    let (mut h, q, socket) = connected();
    let first = h.get(&q);
    let second = h.get(&q);
    assert_eq!(h.status(second), 400);
    assert_eq!(h.body(first), "1");
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket,
            reason: "transport error"
        })
    );
    assert_eq!(h.get_status(&q), 400);
}

#[test]
fn a_client_close_releases_the_parked_get_with_a_noop() {
    let (mut h, q, socket) = connected();
    let get = h.get(&q);
    assert_eq!(h.post_text(&q, b"1"), "ok");
    assert_eq!(h.body(get), "6");
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket,
            reason: "transport close"
        })
    );
    let later = h.get(&q);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&h.response(later).expect("answered").body)
            .expect("json")["code"],
        1
    );
}

#[test]
fn a_server_close_answers_the_parked_get_with_close_or_queues_it() {
    let (mut h, q, socket) = connected();
    let get = h.get(&q);
    h.engine.server.close_connection(socket, h.now);
    h.drain();
    assert_eq!(h.body(get), "1");
    assert_eq!(h.get_status(&q), 400);

    let (mut h, q, socket) = connected();
    h.engine.server.close_connection(socket, h.now);
    h.drain();
    assert!(h.engine.events.contains(&Event::Disconnected {
        socket,
        reason: "forced close"
    }));
    assert_eq!(h.get_text(&q), "1");
    assert_eq!(h.get_status(&q), 400);
}

#[test]
fn an_aborted_poll_closes_the_session() {
    let (mut h, q, socket) = connected();
    let get = h.get(&q);
    h.abort(get);
    assert!(h.response(get).is_none());
    assert_eq!(
        h.engine.events.last(),
        Some(&Event::Disconnected {
            socket,
            reason: "transport error"
        })
    );
    assert_eq!(h.get_status(&q), 400);
    // Aborting a request that was already answered changes nothing.
    let (mut h, q, socket) = connected();
    let answered = h.post(&q, b"3");
    h.abort(answered);
    assert!(h.engine.server.is_connected(socket));
}

#[test]
fn a_raw_engine_server_echo_works_standalone() {
    let config = eio::Config {
        path: "/engine.io".to_owned(),
        ..eio::Config::default()
    };
    let mut server = eio::Server::new(config, 1);
    assert!(server.matches_path("/engine.io/"));
    let now = std::time::Instant::now();
    let req = |query: &str, method, body: &'static [u8]| courier_core::net::HttpRequest {
        method,
        path: "/engine.io/".to_owned(),
        query: query.to_owned(),
        headers: Default::default(),
        body: bytes::Bytes::from_static(body),
        body_truncated: false,
        websocket: false,
    };
    server.handle_http(
        courier_core::net::RequestId(1),
        req("EIO=4&transport=polling", Method::Get, b""),
        now,
    );
    while server.poll_output().is_some() {}
    let Some(eio::Event::Opened { session, .. }) = server.poll_event() else {
        panic!("opened");
    };
    assert!(server.send(session, Message::text("hello")));
    let sid = server.sid(session).expect("sid").to_owned();
    server.handle_http(
        courier_core::net::RequestId(2),
        req(
            &format!("EIO=4&transport=polling&sid={sid}"),
            Method::Get,
            b"",
        ),
        now,
    );
    let mut answered = None;
    while let Some(output) = server.poll_output() {
        if let courier_core::net::Output::HttpResponse(id, r) = output
            && id.0 == 2
        {
            answered = Some(r.body);
        }
    }
    assert_eq!(answered.as_deref(), Some(&b"4hello"[..]));
}
