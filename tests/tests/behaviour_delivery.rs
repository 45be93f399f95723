//! Live delivery and acks (behaviours 19, 21, 24, 27, 30, 32, 33, 40 in tests/README.md; README
//! Differences #9): a `/send` reaches the user's connected device with an ack request, the ack
//! removes exactly that message, and client-emitted events are ignored.

mod common;

use common::*;
use courier_tests::{Lib, Transports, json, matrix, scenario};

// Behaviours 19, 24 with every library over every transport: delivered live with an ack; once
// acked it is gone (no `_batch` on reconnect).
scenario!(every_client_receives_and_acks_live_messages, |bin| {
    let stub = courier_tests::StubSite::start();
    let combos = matrix::full();
    for i in 0..combos.len() {
        stub.user(&format!("tok{i}"), &[&format!("user_{i}")]);
    }
    let gw = user_site(bin, &stub).start();
    matrix::for_each(&combos, |i, lib, transports| {
        let (token, device) = (format!("tok{i}"), format!("dev{i}"));
        let mut c = connected(&gw, lib, transports, &token, &device);
        // Deliver over the settled transport (after the upgrade, in upgrade mode).
        c.wait_for_transport(courier_tests::Client::settled_transport(transports));
        push(
            &gw,
            json!({"rooms": format!("user_{i}"), "event": "update_store", "args": ["user", {"id": i}]}),
        );
        let ev = c.expect_event("update_store");
        assert_eq!(ev.args, vec![json!("user"), json!({"id": i})]);
        assert!(ev.has_ack, "user-room delivery asks for an ack");
        c.ack_event(&ev, vec![]);
        c.expect_no_event(QUIET);

        let mut again = reconnect(&gw, c, &token, &device);
        again.expect_connected();
        again.expect_no_event(QUIET);
    });
});

// Behaviour 21: `[event].concat(args)` — array spread, scalar as one argument, missing as null.
scenario!(send_arguments_are_built_like_the_original, |bin| {
    let stub = courier_tests::StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, Lib::Sio2, Transports::Websocket, "u1", "d1");
    let cases = [
        (
            json!({"rooms": ["user_1"], "event": "spread", "args": [1, "two", {"three": 3}, [4]]}),
            vec![json!(1), json!("two"), json!({"three": 3}), json!([4])],
        ),
        (
            json!({"rooms": "user_1", "event": "scalar", "args": "just one"}),
            vec![json!("just one")],
        ),
        (
            json!({"rooms": "user_1", "event": "missing"}),
            vec![json!(null)],
        ),
        (
            json!({"rooms": "user_1", "event": "empty", "args": []}),
            vec![],
        ),
        (
            json!({"rooms": "user_1", "event": "unicode", "args": ["é😀\u{2028}"]}),
            vec![json!("é😀\u{2028}")],
        ),
    ];
    for (body, expected) in cases {
        let name = body["event"].as_str().unwrap_or_default().to_string();
        push(&gw, body);
        let ev = c.expect_event(&name);
        assert_eq!(ev.args, expected, "event {name}");
        c.ack_event(&ev, vec![]);
    }
});

// Behaviours 27, 30: an ack (whatever its arguments) removes its own message, not the first.
scenario!(ack_removes_exactly_its_message, |bin| {
    let stub = courier_tests::StubSite::start();
    let combos = matrix::pair();
    for i in 0..combos.len() {
        stub.user(&format!("t{i}"), &[&format!("user_{i}")]);
    }
    let gw = user_site(bin, &stub).start();
    matrix::for_each(&combos, |i, lib, transports| {
        let (token, device, room) = (format!("t{i}"), format!("d{i}"), format!("user_{i}"));
        let mut c = connected(&gw, lib, transports, &token, &device);
        push(&gw, json!({"rooms": room, "event": "m", "args": [1]}));
        let first = c.expect_event("m");
        assert_eq!(first.args, vec![json!(1)]);
        push(&gw, json!({"rooms": room, "event": "m", "args": [2]}));
        let second = c.expect_event("m");
        assert_eq!(second.args, vec![json!(2)]);
        c.ack_event(&second, vec![json!("ignored"), json!({"x": 1})]);

        let mut again = reconnect(&gw, c, &token, &device);
        again.expect_connected();
        let batch = again.expect_event("_batch");
        assert!(batch.has_ack);
        assert_eq!(
            batch.args,
            vec![json!([["m", 1]])],
            "only the unacked message is left"
        );
        again.ack_event(&batch, vec![]);
    });
});

// Behaviour 33: sockets sharing (user, deviceId) — the default empty one too — share a queue;
// only the latest receives live messages.
scenario!(latest_socket_of_a_device_gets_live_messages, |bin| {
    let stub = courier_tests::StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    for device in ["shared", ""] {
        let mut older = courier_tests::Client::builder(Lib::Sio2, Transports::Websocket)
            .namespace(NS)
            .token("u1")
            .query("deviceId", device)
            .connect(gw.port());
        older.expect_connected();
        let mut newer = courier_tests::Client::builder(Lib::Sio4, Transports::Websocket)
            .namespace(NS)
            .token("u1")
            .query("deviceId", device)
            .connect(gw.port());
        newer.expect_connected();
        push(
            &gw,
            json!({"rooms": "user_1", "event": "hello", "args": [device]}),
        );
        let ev = newer.expect_event("hello");
        newer.ack_event(&ev, vec![]);
        older.expect_no_event(QUIET);
    }
});

// Behaviour 40 / README Differences #9: client events are ignored and never acked — `error` and
// `disconnect` included — and the connection goes on working.
scenario!(client_events_are_ignored_and_never_acked, |bin| {
    let stub = courier_tests::StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    matrix::for_each(&matrix::one_per_lib(), |i, lib, transports| {
        let mut c = connected(&gw, lib, transports, "u1", &format!("d{i}"));
        for name in ["error", "disconnect", "hello", "_batch"] {
            c.emit(name, vec![json!("payload")]);
        }
        let answer = c.emit_with_ack("question", vec![json!(1)], QUIET);
        assert_eq!(answer, None, "client events are never acked");
    });
    // Still alive and still delivering to a fresh device.
    let mut c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "after");
    push(
        &gw,
        json!({"rooms": "user_1", "event": "still", "args": []}),
    );
    let ev = c.expect_event("still");
    c.ack_event(&ev, vec![]);
    assert_eq!(
        courier_tests::http(gw.port(), "GET", "/healthcheck", &[], b"").body,
        "ok"
    );
});

// Behaviour 32 (as far as a client can see it): each `/send` is emitted by the time the next
// one is answered, so live messages arrive in send order.
scenario!(live_messages_arrive_in_send_order, |bin| {
    let stub = courier_tests::StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    for n in 0..5 {
        push(&gw, json!({"rooms": "user_1", "event": "seq", "args": [n]}));
    }
    for n in 0..5 {
        let ev = c.expect_event("seq");
        assert_eq!(ev.args, vec![json!(n)], "delivered in send order");
        c.ack_event(&ev, vec![]);
    }
});

/// A raw WebSocket session of user u1's device `device`, connected to [`NS`] up to `_settings`.
fn raw_session(gw: &courier_tests::Gateway, eio: u8, device: &str) -> courier_tests::RawWebSocket {
    let mut ws = courier_tests::RawWebSocket::connect(
        gw.port(),
        &format!("/socket.io/?EIO={eio}&transport=websocket&token=u1&deviceId={device}"),
    );
    let open = ws
        .recv_text(std::time::Duration::from_secs(10))
        .unwrap_or_default();
    assert!(open.starts_with("0{"), "open packet: {open:?}");
    ws.send_text(if eio == 3 {
        "40/goodcity"
    } else {
        "40/goodcity,"
    });
    ws.recv_until(|m| m.contains("\"_settings\""));
    ws
}

// What a client sends right before closing its WebSocket counts: an ack followed at once by
// the close frame is honoured (raw WebSocket, EIO3 and EIO4 alternately, ten devices).
scenario!(acks_right_before_a_websocket_close_are_honoured, |bin| {
    let stub = courier_tests::StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let eio = |round: usize| if round.is_multiple_of(2) { 3 } else { 4 };
    for round in 0..10 {
        let mut ws = raw_session(&gw, eio(round), &format!("raw{round}"));
        push(
            &gw,
            json!({"rooms": "user_1", "event": "tick", "args": [round]}),
        );
        let seen = ws.recv_until(|m| m.contains("[\"tick\","));
        let live = seen.last().cloned().unwrap_or_default();
        let id: String = live
            .strip_prefix("42/goodcity,")
            .unwrap_or_else(|| panic!("not a namespace event: {live}"))
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(
            !id.is_empty(),
            "a live user-room message asks for an ack: {live}"
        );
        ws.send_text(&format!("43/goodcity,{id}[]"));
        ws.close();
    }
    // Every device acked everything it was sent (later ticks went to devices that were gone
    // and stay queued for them, so only look for this round's own tick and earlier).
    let mut lost = Vec::new();
    for round in 0..10 {
        let mut ws = raw_session(&gw, eio(round), &format!("raw{round}"));
        if let Some(batch) = ws.recv_text(QUIET) {
            let own_tick = format!("[\"tick\",{round}]");
            if batch.contains(&own_tick) {
                lost.push(round);
            }
        }
        ws.close();
    }
    assert!(
        lost.is_empty(),
        "acks sent right before a close were lost for rounds {lost:?}"
    );
});

// An event packet for a namespace the client has not joined yet: socket.io 1.7.4 drops it and
// the Engine.IO 3 session stays usable; socket.io 4 closes an Engine.IO 4 session (raw
// WebSocket, both generations).
scenario!(
    an_event_before_connect_is_dropped_on_eio3_and_closes_eio4,
    |bin| {
        let stub = courier_tests::StubSite::start();
        stub.user("u1", &["user_1"]);
        let gw = user_site(bin, &stub).start();

        let mut v3 = courier_tests::RawWebSocket::connect(
            gw.port(),
            "/socket.io/?EIO=3&transport=websocket&token=u1&deviceId=early3",
        );
        v3.recv_until(|m| m == "40");
        v3.send_text("42/goodcity,[\"early\"]");
        v3.send_text("40/goodcity");
        v3.recv_until(|m| m.contains("\"_settings\""));
        push(
            &gw,
            json!({"rooms": "user_1", "event": "after", "args": [1]}),
        );
        let seen = v3.recv_until(|m| m.contains("[\"after\",1]"));
        assert!(seen.last().is_some_and(|m| m.starts_with("42/goodcity,")));

        let mut v4 = courier_tests::RawWebSocket::connect(
            gw.port(),
            "/socket.io/?EIO=4&transport=websocket&token=u1&deviceId=early4",
        );
        let open = v4.recv_text(std::time::Duration::from_secs(10));
        assert!(open.is_some_and(|m| m.starts_with("0{")));
        v4.send_text("42/goodcity,[\"early\"]");
        // Were the session still open, this CONNECT would be answered (`40/goodcity,{"sid":…}`).
        v4.send_text("40/goodcity,");
        assert_eq!(v4.recv_text(std::time::Duration::from_secs(3)), None);
    }
);
