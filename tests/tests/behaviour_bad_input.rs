//! Hostile and broken peers (ARCHITECTURE.md: bad input never panics; README Differences #9, #10): garbage on the
//! engine endpoints, malformed packets, odd queries. Afterwards the gateway still serves.

mod common;

use std::time::Duration;

use common::*;
use courier_tests::{Lib, PollingSession, StubSite, Transports, http, json, scenario};

fn still_serving(gw: &courier_tests::Gateway, stub: &StubSite) {
    assert_eq!(http(gw.port(), "GET", "/healthcheck", &[], b"").body, "ok");
    stub.user("alive", &["user_99"]);
    let mut c = connected(gw, Lib::Sio4, Transports::Websocket, "alive", "check");
    push(
        gw,
        json!({"rooms": "user_99", "event": "alive", "args": []}),
    );
    let ev = c.expect_event("alive");
    c.ack_event(&ev, vec![]);
}

scenario!(garbage_polling_payloads_do_not_hurt, |bin| {
    let stub = StubSite::start();
    let gw = user_site(bin, &stub).start();
    let garbage: [&[u8]; 8] = [
        b"",
        b"99999999999:4x",
        b"abc",
        b"3:4x",
        b"\xff\xfe\x00\x01",
        b"5:42/goodcity,[\"unterminated",
        b"1:9",
        b"2:4",
    ];
    for body in garbage {
        let s = PollingSession::handshake(gw.port(), 3, "token=t");
        let target = format!("/socket.io/?EIO=3&transport=polling&b64=1&sid={}", s.sid);
        let r = http(
            gw.port(),
            "POST",
            &target,
            &[("Content-Type", "text/plain")],
            body,
        );
        assert!(r.status < 500, "{body:?}: {r:?}");
    }
    for target in [
        "/socket.io/?EIO=3",
        "/socket.io/?transport=polling",
        "/socket.io/?EIO=99&transport=polling",
        "/socket.io/?EIO=3&transport=polling&sid=",
        "/socket.io/?EIO=3&transport=websocket",
        "/socket.io/?EIO=3&transport=polling&b64=1&j=abc",
        "/socket.io/?%%%%",
    ] {
        let r = http(gw.port(), "GET", target, &[], b"");
        assert!(r.status < 500, "{target}: {r:?}");
    }
    still_serving(&gw, &stub);
});

scenario!(malformed_socketio_packets_do_not_hurt, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let packets = [
        "4",
        "49",
        "42",
        "42[",
        "42/goodcity,not json",
        "43/goodcity,999999999999999999999[]",
        "45-/goodcity,[]",
        "451-[\"x\",{\"_placeholder\":true,\"num\":5}]",
        "40/goodcity,{\"token\":5}",
        "41/nope",
        "4\u{0}",
    ];
    for packet in packets {
        let mut s = PollingSession::handshake(gw.port(), 3, "token=u1&deviceId=x");
        s.get_until(|p| p == "40");
        let r = s.post(&[packet]);
        assert!(r.status < 500, "{packet:?}: {r:?}");
    }
    // The same for EIO4 sessions.
    for packet in ["40{", "40/goodcity,[1]", "42[\"x\"]", "4", "9", "0"] {
        let s = PollingSession::handshake(gw.port(), 4, "token=u1");
        let r = s.post(&[packet]);
        assert!(r.status < 500, "{packet:?}: {r:?}");
    }
    still_serving(&gw, &stub);
});

scenario!(odd_handshake_queries_are_tolerated, |bin| {
    let stub = StubSite::start();
    stub.user("weird", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    // Percent-encoded unicode, repeated keys, empty values: the first token wins or the auth
    // simply sees the text; nothing crashes.
    for query in [
        "token=weird&token=other",
        "token=w%C3%A9ird",
        "token=&deviceId=",
        "token=%ZZ",
    ] {
        let mut s = PollingSession::handshake(gw.port(), 3, query);
        s.get_until(|p| p == "40");
        assert_eq!(s.post(&["40/goodcity"]).body, "ok");
        s.get_until(|p| p.starts_with("40/goodcity") || p.starts_with("44/goodcity"));
    }
    // A client that goes away mid-auth leaves nothing behind that hurts.
    stub.set_auth(
        "slow",
        courier_tests::AuthReply::rooms(&["user_1"]).delayed(Duration::from_millis(800)),
    );
    let c = client(&gw, Lib::Sio2, Transports::Polling, "slow", "gone");
    std::thread::sleep(Duration::from_millis(200));
    c.kill();
    std::thread::sleep(Duration::from_secs(1));
    still_serving(&gw, &stub);
});
