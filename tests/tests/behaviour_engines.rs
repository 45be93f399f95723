//! Several engines in one process (`io.engines`, README "Engines per process"): each engine is a
//! node of its own (its own node id in the registry, sessions, driver), requests of a session
//! reach the engine that owns it, and a `/send` taken by one engine reaches the clients of the
//! others exactly once — in the process without Redis pub/sub, across processes over it.
//!
//! Which engine holds a client is read from Redis: the device's state records its latest socket
//! as `<node>:<socket>`, and the node registry lists every engine's node id.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use courier_tests::{
    Bin, Client, DEFAULT_TIMEOUT, Gateway, GatewayBuilder, Lib, Metrics, PollingSession, Redis,
    StubSite, Transports, http, json, scenario, wait_until,
};

/// The other binary (mixed scenarios run one of each).
fn other(bin: Bin) -> Bin {
    match bin {
        Bin::Tokio => Bin::Smol,
        Bin::Smol => Bin::Tokio,
    }
}

/// A user-room site on `redis` with `engines` engines per process.
fn sharded(bin: Bin, stub: &StubSite, redis: &Redis, engines: u32) -> GatewayBuilder {
    user_site(bin, stub)
        .redis(redis)
        .env("IO_ENGINES", &engines.to_string())
}

/// The node ids of the registry.
fn registry(redis: &Redis) -> BTreeSet<String> {
    redis
        .cmd(&["ZRANGE", "courier:nodes", "0", "-1"])
        .strings()
        .into_iter()
        .collect()
}

/// Device id → node id of its latest socket, over every user of the store.
fn socket_nodes(redis: &Redis) -> BTreeMap<String, String> {
    let mut nodes = BTreeMap::new();
    for key in redis.keys("courier:*:u") {
        let fields = redis.cmd(&["HGETALL", &key]).strings();
        for pair in fields.chunks(2) {
            let [field, state] = pair else { continue };
            let Some(device) = field.strip_prefix("d:") else {
                continue;
            };
            // conn|at|ttl|drn|imp|sock|events
            let sock = state.split('|').nth(5).unwrap_or_default();
            let node = sock.split(':').next().unwrap_or_default();
            nodes.insert(device.to_owned(), node.to_owned());
        }
    }
    nodes
}

/// Waits until `device`'s latest socket is recorded, and returns its node.
fn node_of(redis: &Redis, device: &str) -> String {
    wait_until(DEFAULT_TIMEOUT, || {
        socket_nodes(redis)
            .get(device)
            .is_some_and(|node| !node.is_empty())
    });
    socket_nodes(redis)[device].clone()
}

/// How many PUBLISH commands Redis has run.
fn publishes(redis: &Redis) -> u64 {
    let stats = redis
        .cmd(&["INFO", "commandstats"])
        .text()
        .unwrap_or_default();
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_publish:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// Receives `event` exactly once with `args`, acks it, and sees nothing more.
fn receive_once(client: &mut Client, event: &str, args: serde_json::Value) {
    let ev = client.expect_event(event);
    assert_eq!(ev.args, vec![args], "{}", client.label());
    assert!(ev.has_ack, "stored deliveries carry an ack");
    client.ack_event(&ev, vec![]);
}

/// Waits until the summed `courier_acks_total` of the site reaches `expected`.
fn expect_acks(gw: &Gateway, expected: f64) {
    wait_until(DEFAULT_TIMEOUT, || {
        Metrics::scrape(gw.port()).find("courier_acks_total", &[("site", SITE)]) == Some(expected)
    });
}

// Clients spread over two engines of one process all get a group /send once and ack it; the
// acks are counted once each in the process's summed /metrics; a second send proves the acks
// removed what they carried (nothing comes again as `_batch` on reconnect).
scenario!(group_send_reaches_every_engine_once, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    for n in 1..=4 {
        stub.user(&format!("u{n}"), &[&format!("user_{n}"), "team"]);
    }
    let gw = sharded(bin, &stub, &redis, 2).start();
    let engines = registry(&redis);
    assert_eq!(
        engines.len(),
        2,
        "one registry entry per engine: {engines:?}"
    );

    let mut clients = vec![
        connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1"),
        connected(&gw, Lib::Sio2, Transports::Websocket, "u2", "d2"),
        connected(&gw, Lib::Sio4, Transports::Upgrade, "u3", "d3"),
        connected(&gw, Lib::Py5, Transports::Websocket, "u4", "d4"),
    ];
    let held: BTreeSet<String> = (1..=4).map(|n| node_of(&redis, &format!("d{n}"))).collect();
    assert_eq!(held, engines, "the clients are spread over both engines");

    push(
        &gw,
        json!({"rooms": "team", "event": "memo", "args": ["all"]}),
    );
    for client in &mut clients {
        receive_once(client, "memo", json!("all"));
    }
    for client in &mut clients {
        client.expect_no_event(QUIET);
    }
    expect_acks(&gw, 4.0);

    // Acked means removed: a reconnect of each device brings no `_batch`.
    for (n, client) in clients.into_iter().enumerate() {
        let (token, device) = (format!("u{}", n + 1), format!("d{}", n + 1));
        let mut back = reconnect(&gw, client, &token, &device);
        back.expect_connected();
        back.expect_no_event(QUIET);
    }
});

// Polling sessions make many requests (every GET and POST names the session); each reaches the
// engine that owns it, whichever connection it comes on: the sessions work, get their message
// and ack it. Raw handshakes show the engines' session ids tagged apart, round-robin.
scenario!(polling_requests_reach_their_engine, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    for n in 1..=4 {
        stub.user(&format!("u{n}"), &[&format!("user_{n}")]);
    }
    let gw = sharded(bin, &stub, &redis, 2).start();

    let first = PollingSession::handshake(gw.port(), 4, "");
    let second = PollingSession::handshake(gw.port(), 4, "");
    assert_ne!(
        first.sid.as_bytes()[0],
        second.sid.as_bytes()[0],
        "consecutive handshakes go to different engines: {} {}",
        first.sid,
        second.sid
    );
    // Each session is known to its own engine only, and answers there.
    for session in [&first, &second] {
        let reply = session.post(&["6"]);
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    let mut clients = vec![
        connected(&gw, Lib::Sio1, Transports::Polling, "u1", "d1"),
        connected(&gw, Lib::Sio4, Transports::Polling, "u2", "d2"),
        connected(&gw, Lib::Py4, Transports::Polling, "u3", "d3"),
        connected(&gw, Lib::Sio2, Transports::Polling, "u4", "d4"),
    ];
    let held: BTreeSet<String> = (1..=4).map(|n| node_of(&redis, &format!("d{n}"))).collect();
    assert_eq!(held.len(), 2, "polling clients on both engines: {held:?}");
    for (n, client) in clients.iter_mut().enumerate() {
        let room = format!("user_{}", n + 1);
        push(&gw, json!({"rooms": room, "event": "poll", "args": [n]}));
        receive_once(client, "poll", json!(n));
    }
    // A second round over the same sessions: later GETs and POSTs still find their engine.
    push(
        &gw,
        json!({"rooms": ["user_1", "user_2", "user_3", "user_4"], "event": "again"}),
    );
    for client in &mut clients {
        receive_once(client, "again", json!(null));
        client.expect_no_event(QUIET);
    }
    expect_acks(&gw, 8.0);
});

// A device that reconnects to the other engine gets what was queued meanwhile as `_batch`, and
// its ack removes it.
scenario!(reconnect_to_another_engine_gets_its_batch, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = sharded(bin, &stub, &redis, 2).start();
    let mut c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    let before = node_of(&redis, "d1");
    c.disconnect();
    c.close();
    // Recorded disconnected (state `0|…`): what follows is queued, not sent live.
    wait_until(DEFAULT_TIMEOUT, || {
        redis.keys("courier:*:u").iter().any(|key| {
            redis
                .cmd(&["HGET", key, "d:d1"])
                .text()
                .is_some_and(|state| state.starts_with("0|"))
        })
    });
    // Requests that name no session take turns over the two engines: the first handshake and
    // these two /sends, so the next handshake lands on the other engine (asserted below, so the
    // scenario cannot pass on the same engine).
    push(
        &gw,
        json!({"rooms": "user_1", "event": "missed", "args": [1]}),
    );
    push(
        &gw,
        json!({"rooms": "user_1", "event": "missed", "args": [2]}),
    );
    let mut back = client(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    back.expect_connected();
    let after = node_of(&redis, "d1");
    assert_ne!(before, after, "the device came back on the other engine");
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["missed", 1], ["missed", 2]])]);
    back.ack_event(&batch, vec![]);
    back.expect_no_event(QUIET);
    // Acked: one more reconnect finds nothing queued.
    let mut again = reconnect(&gw, back, "u1", "d1");
    again.expect_connected();
    again.expect_no_event(QUIET);
});

// Two processes on one Redis, each with two engines (one of each binary): a group /send to
// either process reaches all clients of both exactly once.
scenario!(two_processes_with_two_engines_each, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    for n in 1..=6 {
        stub.user(&format!("u{n}"), &[&format!("user_{n}"), "crew"]);
    }
    let a = sharded(bin, &stub, &redis, 2).start();
    let b = sharded(other(bin), &stub, &redis, 2).start();
    assert_eq!(registry(&redis).len(), 4, "two engines per process");
    let mut clients = vec![
        connected(&a, Lib::Sio4, Transports::Websocket, "u1", "d1"),
        connected(&a, Lib::Sio2, Transports::Polling, "u2", "d2"),
        connected(&a, Lib::Py5, Transports::Websocket, "u3", "d3"),
        connected(&b, Lib::Sio4, Transports::Upgrade, "u4", "d4"),
        connected(&b, Lib::Sio1, Transports::Websocket, "u5", "d5"),
        connected(&b, Lib::Sio4, Transports::Polling, "u6", "d6"),
    ];
    let held: BTreeSet<String> = (1..=6).map(|n| node_of(&redis, &format!("d{n}"))).collect();
    assert_eq!(held.len(), 4, "clients on all four engines: {held:?}");

    for (gw, round) in [(&a, 1), (&b, 2)] {
        let published = publishes(&redis);
        push(
            gw,
            json!({"rooms": "crew", "event": "round", "args": [round]}),
        );
        for client in &mut clients {
            receive_once(client, "round", json!(round));
        }
        for client in &mut clients {
            client.expect_no_event(QUIET);
        }
        // The other process's engines are reached over Redis.
        assert!(
            publishes(&redis) > published,
            "the other process is reached over Redis"
        );
    }
    let acks = |gw: &Gateway| {
        Metrics::scrape(gw.port())
            .find("courier_acks_total", &[("site", SITE)])
            .unwrap_or(0.0)
    };
    wait_until(DEFAULT_TIMEOUT, || acks(&a) + acks(&b) == 12.0);
    assert_eq!(
        acks(&a),
        6.0,
        "three clients × two rounds on the first process"
    );
});

// /readyz, /status.json and SIGTERM with two engines: ready once both serve, the status document
// lists both engines as this process, and a SIGTERM drains both — every client is told, every
// device is recorded disconnected in Redis before the process exits 0.
scenario!(two_engines_report_and_drain_together, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    stub.user("u2", &["user_2"]);
    let mut gw = sharded(bin, &stub, &redis, 2)
        .env("ADMIN_API_KEY", "operator-key")
        .start();
    let ready = http(gw.port(), "GET", "/readyz", &[], b"");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready"));
    let mut c1 = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    let mut c2 = connected(&gw, Lib::Sio2, Transports::Polling, "u2", "d2");
    assert_ne!(node_of(&redis, "d1"), node_of(&redis, "d2"));

    let status = http(
        gw.port(),
        "GET",
        "/status.json",
        &[("authorization", "Bearer operator-key")],
        b"",
    );
    assert_eq!(status.status, 200, "{status:?}");
    let document: serde_json::Value = serde_json::from_str(&status.body).expect("JSON");
    assert_eq!(document["node"]["engines"], json!(2), "{document}");
    let own: Vec<_> = document["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|node| node["self"] == json!(true))
        .collect();
    assert_eq!(own.len(), 2, "{document}");
    let open = &document["sites"][0]["connections"];
    assert_eq!(
        (
            open["websocket"]["eio4"].clone(),
            open["polling"]["eio3"].clone()
        ),
        (json!(1), json!(1)),
        "the status sums both engines' connections: {document}"
    );

    let exit = gw.terminate();
    assert!(exit.success(), "exit status after SIGTERM: {exit}");
    c1.expect_disconnect();
    c2.expect_disconnect();
    for device in ["d1", "d2"] {
        let state = redis
            .keys("courier:*:u")
            .iter()
            .find_map(|key| redis.cmd(&["HGET", key, &format!("d:{device}")]).text())
            .unwrap_or_default();
        assert!(
            state.starts_with("0|"),
            "{device} recorded disconnected: {state}"
        );
    }
});

// More than one engine needs the Redis store: refused at start, naming the key and where it
// was set.
#[test]
fn several_engines_without_redis_are_refused() {
    for bin in [Bin::Tokio, Bin::Smol] {
        let output = std::process::Command::new(bin.path())
            .env_clear()
            .current_dir(std::env::temp_dir())
            .env("IO_ENGINES", "2")
            .output()
            .expect("the binary runs");
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("IO_ENGINES") && stderr.contains("Redis store"),
            "{stderr}"
        );
    }
}
