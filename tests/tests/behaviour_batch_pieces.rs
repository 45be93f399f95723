//! A backlog far larger than one WebSocket message (issue 10, part 1): it is delivered in
//! `_batch` pieces, one per ack, over WebSocket and polling alike, every message exactly once and
//! in send order, while the gateway's memory stays far below the backlog's size; messages sent
//! while it drains (through this node or another) arrive once, in order per event.
//!
//! Registered before admitted (parts 3 and 4): a client whose registration the store cannot take
//! (Redis stopped) is never told it is connected; once Redis is back it reconnects by itself and
//! gets `_settings` and its `_batch`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use courier_tests::{
    Bin, Client, Gateway, Lib, Redis, StubSite, Transports, Value, json, scenario, send_json,
};

/// Messages in the large backlog and the size of each one's argument: ~30 MB.
const MESSAGES: usize = 15_000;
const PAYLOAD: usize = 2_000;
/// Threads sending the backlog (each thread's sends are in order; the threads interleave).
const SENDERS: usize = 4;

/// Sends `count` messages `m` with args `[sender, seq, padding]` to `rooms` from [`SENDERS`]
/// threads; each thread's messages are sent one after the other, so their flake ids increase.
fn send_backlog(gw: &Gateway, rooms: Value, count: usize) {
    let padding = "x".repeat(PAYLOAD);
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let (rooms, padding) = (rooms.clone(), padding.clone());
            scope.spawn(move || {
                for seq in (sender..count).step_by(SENDERS) {
                    let body =
                        json!({"rooms": rooms, "event": "m", "args": [sender, seq, padding]});
                    let r = send_json(gw.port(), SITE, courier_tests::Site::API_KEY, "", &body);
                    assert_ok(&r);
                }
            });
        }
    });
}

/// Checks that `got` holds `(sender, seq)` for every seq below `count` exactly once, each
/// sender's in increasing order.
fn check_once_in_order(got: &[(u64, u64)], count: usize, label: &str) {
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut seen = vec![false; count];
    for &(sender, seq) in got {
        let slot = seen
            .get_mut(seq as usize)
            .unwrap_or_else(|| panic!("{label}: unknown message {seq}"));
        assert!(!*slot, "{label}: message {seq} arrived twice");
        *slot = true;
        if let Some(previous) = last.insert(sender, seq) {
            assert!(
                previous < seq,
                "{label}: {seq} after {previous} from sender {sender}"
            );
        }
    }
    let missing = seen.iter().filter(|s| !**s).count();
    assert_eq!(missing, 0, "{label}: {missing} messages never arrived");
}

/// `(sender, seq)` of one `_batch` item `["m", sender, seq, padding]`.
fn item_id(item: &Value) -> (u64, u64) {
    (
        item[1].as_u64().expect("sender"),
        item[2].as_u64().expect("seq"),
    )
}

/// Receives and acks `_batch` pieces until `count` items came; returns them and the number of
/// pieces.
fn drain(c: &mut Client, count: usize) -> (Vec<(u64, u64)>, usize) {
    let mut got = Vec::with_capacity(count);
    let mut pieces = 0;
    while got.len() < count {
        let batch = c.expect_event("_batch");
        assert!(batch.has_ack, "every piece asks for an ack");
        let items = batch.args[0].as_array().expect("_batch carries a list");
        assert!(!items.is_empty(), "no empty piece");
        got.extend(items.iter().map(item_id));
        pieces += 1;
        c.ack_event(&batch, vec![]);
    }
    (got, pieces)
}

scenario!(
    a_30_mb_backlog_drains_in_pieces_with_bounded_memory,
    |bin| {
        let redis = Redis::start();
        let stub = StubSite::start();
        let combos = [
            (Lib::Sio2, Transports::Websocket),
            (Lib::Sio4, Transports::Websocket),
            (Lib::Sio4, Transports::Polling),
        ];
        for i in 0..combos.len() {
            stub.user(&format!("t{i}"), &[&format!("user_{i}"), "crowd"]);
        }
        let gw = user_site(bin, &stub).redis(&redis).start();
        // Every device is known, then away while its backlog is sent (one send reaches all three
        // through the group room).
        for (i, &(lib, transports)) in combos.iter().enumerate() {
            let mut c = connected(&gw, lib, transports, &format!("t{i}"), &format!("d{i}"));
            c.disconnect();
            c.close();
        }
        let started = Instant::now();
        send_backlog(&gw, json!(["crowd"]), MESSAGES);
        let (rss_before, _) = gw.memory_kib();
        eprintln!(
            "{}: queued {MESSAGES} messages of {PAYLOAD} B for {} devices in {:?}; RSS {rss_before} KiB",
            bin.name(),
            combos.len(),
            started.elapsed()
        );

        for (i, &(lib, transports)) in combos.iter().enumerate() {
            let label = format!("{}/{}", lib.name(), transports.name());
            let started = Instant::now();
            let mut c = connected(&gw, lib, transports, &format!("t{i}"), &format!("d{i}"));
            let (got, pieces) = drain(&mut c, MESSAGES);
            check_once_in_order(&got, MESSAGES, &label);
            c.expect_no_event(QUIET);
            let (rss, peak) = gw.memory_kib();
            eprintln!(
                "{}: {label} drained {MESSAGES} messages in {pieces} pieces in {:?}; RSS {rss} KiB, peak {peak} KiB",
                bin.name(),
                started.elapsed()
            );
            // Live after the drain.
            push(
                &gw,
                json!({"rooms": format!("user_{i}"), "event": "after", "args": []}),
            );
            c.expect_event("after");
            c.disconnect();
            c.close();
        }
        // The backlog of each device is ~30 MB; holding one in memory (let alone its JSON, its
        // Redis reply and its frame at once) would show here. The bound is generous on purpose: it
        // only tells "a few pieces" from "the backlog".
        let (_, peak) = gw.memory_kib();
        let backlog_kib = (MESSAGES * PAYLOAD / 1024) as u64;
        eprintln!(
            "{}: peak RSS {peak} KiB (before draining {rss_before} KiB; one backlog {backlog_kib} KiB)",
            bin.name()
        );
        assert!(
            peak < rss_before + backlog_kib / 2,
            "peak RSS {peak} KiB grew by more than half of one backlog ({backlog_kib} KiB) from {rss_before} KiB"
        );
    }
);

/// The other binary, for a second node.
fn other(bin: Bin) -> Bin {
    match bin {
        Bin::Tokio => Bin::Smol,
        Bin::Smol => Bin::Tokio,
    }
}

scenario!(
    messages_sent_while_a_backlog_drains_arrive_once_in_order,
    |bin| {
        let redis = Redis::start();
        let stub = StubSite::start();
        stub.user("u1", &["user_1"]);
        let node_a = user_site(bin, &stub)
            .redis(&redis)
            .config("batch: {maxItems: 50}")
            .start();
        let node_b = user_site(other(bin), &stub)
            .redis(&redis)
            .env("FLAKE_WORKER", "1")
            .start();
        let mut c = connected(&node_a, Lib::Sio4, Transports::Websocket, "u1", "d1");
        c.disconnect();
        c.close();
        // Backlog: events `a` 0..200 through node A.
        for seq in 0..200 {
            push(
                &node_a,
                json!({"rooms": "user_1", "event": "a", "args": [seq]}),
            );
        }

        let mut c = connected(&node_a, Lib::Sio4, Transports::Websocket, "u1", "d1");
        let mut got: HashMap<String, Vec<u64>> = HashMap::new();
        let (mut next_a, mut next_b) = (200u64, 0u64);
        // After each event received (pieces, then live ones), one more `a` through node A and one
        // `b` through node B (reaching node A over the cluster bus), six pairs in all: the first
        // while the backlog drains, the last ones once the device is live.
        const PAIRS: u64 = 6;
        loop {
            let ev = c.next_event();
            match ev.name.as_str() {
                "_batch" => {
                    for item in ev.args[0].as_array().expect("items") {
                        let event = item[0].as_str().expect("name").to_owned();
                        got.entry(event)
                            .or_default()
                            .push(item[1].as_u64().expect("seq"));
                    }
                }
                "a" | "b" => {
                    got.entry(ev.name.clone())
                        .or_default()
                        .push(ev.args[0].as_u64().expect("seq"));
                }
                other => panic!("unexpected event {other}"),
            }
            if next_b < PAIRS {
                push(
                    &node_a,
                    json!({"rooms": "user_1", "event": "a", "args": [next_a]}),
                );
                push(
                    &node_b,
                    json!({"rooms": "user_1", "event": "b", "args": [next_b]}),
                );
                next_a += 1;
                next_b += 1;
            }
            c.ack_event(&ev, vec![]);
            let arrived = |name: &str| got.get(name).map_or(0, Vec::len) as u64;
            if next_b == PAIRS && arrived("a") >= next_a && arrived("b") >= next_b {
                break;
            }
        }
        c.expect_no_event(QUIET);
        assert_eq!(
            got["a"],
            (0..next_a).collect::<Vec<_>>(),
            "event a once, in order"
        );
        assert_eq!(
            got["b"],
            (0..next_b).collect::<Vec<_>>(),
            "event b once, in order"
        );

        // Live afterwards, through either node.
        push(
            &node_b,
            json!({"rooms": "user_1", "event": "b", "args": [99]}),
        );
        assert_eq!(c.expect_event("b").args, vec![json!(99)]);
    }
);

scenario!(
    no_settings_before_registration_and_a_reconnect_once_redis_is_back,
    |bin| {
        let mut redis = Redis::start_persistent();
        let stub = StubSite::start();
        let libs = [Lib::Sio2, Lib::Sio4, Lib::Py5];
        for i in 0..libs.len() {
            stub.user(&format!("t{i}"), &[&format!("user_{i}")]);
        }
        let gw = user_site(bin, &stub).redis(&redis).start();
        for (i, &lib) in libs.iter().enumerate() {
            let mut c = connected(
                &gw,
                lib,
                Transports::Websocket,
                &format!("t{i}"),
                &format!("d{i}"),
            );
            c.disconnect();
            c.close();
            push(
                &gw,
                json!({"rooms": format!("user_{i}"), "event": "queued", "args": [i]}),
            );
        }
        redis.kill();

        let mut clients: Vec<Client> = libs
            .iter()
            .enumerate()
            .map(|(i, &lib)| {
                Client::builder(lib, Transports::Websocket)
                    .namespace(NS)
                    .token(&format!("t{i}"))
                    .device(&format!("d{i}"))
                    .reconnection(true)
                    .connect(gw.port())
            })
            .collect();
        gw.wait_for_log("Registration failed, closing the session");
        for c in &mut clients {
            // Authenticated, but the store cannot register it: not told it is connected.
            c.expect_not_connected(QUIET);
        }
        redis.start_again();
        for (i, c) in clients.iter_mut().enumerate() {
            // Each library retries with its own backoff (socket.io-client up to 5 s).
            let settings = c.expect_connected_after_retries(Duration::from_secs(30));
            assert_eq!(settings, json!({"device_ttl": 3600}));
            let batch = c.expect_event("_batch");
            assert_eq!(batch.args, vec![json!([["queued", i]])], "{}", c.label());
            c.ack_event(&batch, vec![]);
            push(
                &gw,
                json!({"rooms": format!("user_{i}"), "event": "live", "args": []}),
            );
            c.expect_event("live");
        }
    }
);
