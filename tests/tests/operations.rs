//! Operating Courier: `/metrics` counts what real clients do (parsed as Prometheus parses it),
//! `/readyz` follows Redis, the connection and handshake limits refuse with 503 while existing
//! clients keep receiving, and the devices of a node killed with SIGKILL count as disconnected
//! from its last heartbeat (queued, not published to it; pruned `device_ttl` after it).

mod common;

use common::*;
use courier_tests::{
    Bin, DEFAULT_TIMEOUT, Lib, Metrics, Redis, Site, StubSite, Transports, free_port, http, json,
    scenario, send_json, wait_until,
};

/// The runtime label of a binary.
fn runtime(bin: Bin) -> &'static str {
    match bin {
        Bin::Tokio => "tokio",
        Bin::Smol => "smol",
    }
}

/// The other binary (two-node scenarios run one of each).
fn other(bin: Bin) -> Bin {
    match bin {
        Bin::Tokio => Bin::Smol,
        Bin::Smol => Bin::Tokio,
    }
}

/// Waits until the sample reaches `expected` (counters move after the client saw the effect:
/// an ack travels on), then asserts it, so a failure shows the value and the whole scrape.
fn expect_metric(port: u16, name: &str, labels: &[(&str, &str)], expected: f64) -> Metrics {
    wait_until(DEFAULT_TIMEOUT, || {
        Metrics::scrape(port).find(name, labels) == Some(expected)
    });
    let scrape = Metrics::scrape(port);
    assert_eq!(
        scrape.value(name, labels),
        expected,
        "{name} {labels:?}\n{}",
        scrape.text
    );
    scrape
}

/// The node with the oldest heartbeat in the registry and that heartbeat (Unix ms): the dead
/// one in a two-node scenario.
fn oldest_heartbeat(redis: &Redis) -> (String, u64) {
    let entries = redis
        .cmd(&["ZRANGE", "courier:nodes", "0", "0", "WITHSCORES"])
        .strings();
    assert_eq!(entries.len(), 2, "registry: {entries:?}");
    (entries[0].clone(), entries[1].parse().expect("a score"))
}

fn unix_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("ms fit")
}

// Every counter moves by exactly what one real client's life causes.
scenario!(metrics_count_what_real_clients_do, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let metrics_port = free_port();
    let gw = user_site(bin, &stub)
        .redis(&redis)
        .env("METRICS_BIND", &format!("127.0.0.1:{metrics_port}"))
        .start();
    let port = gw.port();
    let site = ("site", SITE);
    let before = Metrics::scrape(port);
    assert_eq!(
        before.value(
            "courier_build_info",
            &[
                ("runtime", runtime(bin)),
                ("version", env!("CARGO_PKG_VERSION"))
            ]
        ),
        1.0
    );
    assert!(before.value("courier_process_resident_memory_bytes", &[]) > 0.0);
    assert!(before.value("courier_process_open_fds", &[]) > 0.0);
    assert_eq!(before.value("courier_store_reachable", &[]), 1.0);
    assert_eq!(before.value("courier_ready", &[]), 1.0);
    let counter = |m: &Metrics, name: &str, labels: &[(&str, &str)]| m.value(name, labels);
    let admitted = [site, ("outcome", "admitted")];
    let live = [site, ("path", "live")];
    let queued = [site, ("path", "queued")];
    let ok = [site, ("status", "200")];
    let ws4 = [site, ("transport", "websocket"), ("protocol", "EIO4")];
    assert_eq!(before.value("courier_connections", &ws4), 0.0);

    // Connect: one session, one admitted join, one open WebSocket connection.
    let mut c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    let m = expect_metric(port, "courier_connections", &ws4, 1.0);
    // The driver was busy admitting it (and busy time only grows).
    assert!(
        counter(&m, "courier_driver_busy_seconds_total", &[])
            > counter(&before, "courier_driver_busy_seconds_total", &[])
    );
    assert!(
        counter(&m, "courier_driver_cpu_seconds_total", &[])
            >= counter(&before, "courier_driver_cpu_seconds_total", &[])
    );
    assert_eq!(
        counter(&m, "courier_joins_total", &admitted),
        counter(&before, "courier_joins_total", &admitted) + 1.0
    );
    assert_eq!(
        counter(&m, "courier_connections_accepted_total", &[]),
        counter(&before, "courier_connections_accepted_total", &[]) + 1.0
    );

    // A live delivery, acknowledged.
    push(
        &gw,
        json!({"rooms": "user_1", "event": "hello", "args": [1]}),
    );
    let ev = c.expect_event("hello");
    c.ack_event(&ev, vec![]);
    let m = expect_metric(
        port,
        "courier_acks_total",
        &[site],
        counter(&before, "courier_acks_total", &[site]) + 1.0,
    );
    assert_eq!(
        counter(&m, "courier_deliveries_total", &live),
        counter(&before, "courier_deliveries_total", &live) + 1.0
    );
    assert_eq!(counter(&m, "courier_send_requests_total", &ok), 1.0);
    let acked = [("kind", "ack"), ("outcome", "ok")];
    let m = expect_metric(
        port,
        "courier_store_commands_total",
        &acked,
        counter(&before, "courier_store_commands_total", &acked) + 1.0,
    );
    let enqueued = [("kind", "enqueue"), ("outcome", "ok")];
    assert_eq!(
        counter(&m, "courier_store_commands_total", &enqueued),
        counter(&before, "courier_store_commands_total", &enqueued) + 1.0
    );
    assert!(
        m.value(
            "courier_frames_total",
            &[("transport", "websocket"), ("direction", "in")]
        ) > before.value(
            "courier_frames_total",
            &[("transport", "websocket"), ("direction", "in")]
        )
    );

    // Disconnect: the connection closes; a send now queues.
    c.disconnect();
    c.close();
    let m = expect_metric(port, "courier_connections", &ws4, 0.0);
    assert_eq!(
        m.sum("courier_connections_closed_total", &[]),
        before.sum("courier_connections_closed_total", &[]) + 1.0
    );
    push(
        &gw,
        json!({"rooms": "user_1", "event": "later", "args": [2]}),
    );
    let m = Metrics::scrape(port);
    assert_eq!(
        counter(&m, "courier_deliveries_total", &queued),
        counter(&before, "courier_deliveries_total", &queued) + 1.0
    );
    assert_eq!(counter(&m, "courier_send_requests_total", &ok), 2.0);

    // Reconnect: one `_batch` of one message, acknowledged.
    let mut back = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["later", 2]])]);
    back.ack_event(&batch, vec![]);
    let batch_acked = [("kind", "ack_batch"), ("outcome", "ok")];
    let m = expect_metric(
        port,
        "courier_store_commands_total",
        &batch_acked,
        counter(&before, "courier_store_commands_total", &batch_acked) + 1.0,
    );
    assert_eq!(
        m.value("courier_batch_size_count", &[site]),
        before.value("courier_batch_size_count", &[site]) + 1.0
    );
    assert_eq!(
        m.value("courier_batch_size_sum", &[site]),
        before.value("courier_batch_size_sum", &[site]) + 1.0
    );
    assert_eq!(
        counter(&m, "courier_joins_total", &admitted),
        counter(&before, "courier_joins_total", &admitted) + 2.0
    );

    // A refused `/send` is counted by its status; labels never carry a room or device.
    let r = send_json(
        port,
        SITE,
        "wrong-key",
        "",
        &json!({"rooms": "user_1", "event": "x"}),
    );
    assert_eq!(r.status, 401);
    let m = Metrics::scrape(port);
    assert_eq!(
        counter(
            &m,
            "courier_send_requests_total",
            &[site, ("status", "401")]
        ),
        1.0
    );
    for secret in ["user_1", "d1", "u1", Site::API_KEY] {
        assert!(
            !m.text.contains(&format!("\"{secret}\"")),
            "a label carries {secret}:\n{}",
            m.text
        );
    }

    // The same text on metrics.bind, which serves nothing else.
    let separate = Metrics::scrape(metrics_port);
    assert_eq!(
        separate.value("courier_build_info", &[("runtime", runtime(bin))]),
        1.0
    );
    assert_eq!(http(metrics_port, "GET", "/readyz", &[], b"").status, 200);
    assert_eq!(
        http(metrics_port, "GET", "/healthcheck", &[], b"").status,
        404
    );
    back.close();
});

// `/readyz` is 503 while redis-server is down and 200 once it is back; `/healthcheck` stays ok.
scenario!(readiness_follows_redis, |bin| {
    let mut redis = Redis::start();
    let stub = StubSite::start();
    let gw = user_site(bin, &stub)
        .redis(&redis)
        .config("cluster: {heartbeatInterval: 200, heartbeatTimeout: 1000}")
        .start();
    let readyz = || http(gw.port(), "GET", "/readyz", &[], b"");
    let r = readyz();
    assert_eq!((r.status, r.body.as_str()), (200, "ready"));
    redis.kill();
    assert!(
        wait_until(DEFAULT_TIMEOUT, || readyz().status == 503),
        "/readyz stayed {} with Redis down",
        readyz().status
    );
    let r = readyz();
    assert!(
        r.body == "redis unreachable" || r.body == "cluster bus not subscribed",
        "{}",
        r.body
    );
    assert_eq!(Metrics::scrape(gw.port()).value("courier_ready", &[]), 0.0);
    let health = http(gw.port(), "GET", "/healthcheck", &[], b"");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    redis.start_again();
    assert!(
        wait_until(DEFAULT_TIMEOUT, || readyz().status == 200),
        "/readyz stayed {} after Redis came back",
        readyz().status
    );
});

/// A raw Engine.IO 4 polling handshake.
fn handshake(port: u16) -> courier_tests::HttpResponse {
    http(port, "GET", "/socket.io/?EIO=4&transport=polling", &[], b"")
}

// Over `io.maxConnections` a handshake gets 503 with an Engine.IO error body; the connected
// clients keep receiving.
scenario!(connection_limit_refuses_new_handshakes_only, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    stub.user("u2", &["user_2"]);
    let gw = user_site(bin, &stub)
        .config("io: {maxConnections: 2}")
        .start();
    let mut a = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    let mut b = connected(&gw, Lib::Sio2, Transports::Websocket, "u2", "d2");
    let refused = handshake(gw.port());
    assert_eq!(refused.status, 503, "{}", refused.body);
    let body: courier_tests::Value =
        courier_tests::serde_json::from_str(&refused.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"code": 3, "message": "Server at its connection limit"})
    );
    gw.wait_for_log("Engine.IO handshake refused");
    push(
        &gw,
        json!({"rooms": ["user_1", "user_2"], "event": "still", "args": []}),
    );
    let ev = a.expect_event("still");
    a.ack_event(&ev, vec![]);
    let ev = b.expect_event("still");
    b.ack_event(&ev, vec![]);
    let m = Metrics::scrape(gw.port());
    assert_eq!(
        m.value(
            "courier_handshakes_refused_total",
            &[("limit", "max_connections")]
        ),
        1.0
    );
    // Room again once one leaves.
    a.disconnect();
    a.close();
    assert!(wait_until(DEFAULT_TIMEOUT, || handshake(gw.port()).status == 200));
    b.close();
});

// Over `io.maxHandshakesPerSecond` a handshake gets 503; the connected client keeps receiving.
scenario!(handshake_rate_limit_refuses_new_handshakes_only, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub)
        .config("io: {maxHandshakesPerSecond: 1}")
        .start();
    let mut a = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    // One handshake a second: of 50 back to back, one is refused long before 50 s pass.
    let mut refused = None;
    for _ in 0..50 {
        let r = handshake(gw.port());
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let refused = refused.expect("a handshake over the rate limit is refused");
    let body: courier_tests::Value =
        courier_tests::serde_json::from_str(&refused.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"code": 3, "message": "Server at its handshake rate limit"})
    );
    push(
        &gw,
        json!({"rooms": "user_1", "event": "still", "args": []}),
    );
    let ev = a.expect_event("still");
    a.ack_event(&ev, vec![]);
    let m = Metrics::scrape(gw.port());
    assert!(
        m.value(
            "courier_handshakes_refused_total",
            &[("limit", "handshake_rate")]
        ) >= 1.0
    );
    a.close();
});

// kill -9 of node A: once its heartbeat expired, a `/send` through node B queues for A's
// device instead of publishing to A; the device gets it as `_batch` on B; a device that never
// comes back is pruned `device_ttl` after A's last heartbeat.
scenario!(devices_of_a_killed_node_count_as_disconnected, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let cluster = "cluster: {heartbeatInterval: 200, heartbeatTimeout: 1000}";
    let mut node_a = user_site(bin, &stub)
        .redis(&redis)
        .config(cluster)
        .device_ttl(10)
        .start();
    let node_b = user_site(other(bin), &stub)
        .redis(&redis)
        .config(cluster)
        .device_ttl(10)
        .start();
    let c1 = connected(&node_a, Lib::Sio4, Transports::Websocket, "u1", "d1");
    let c2 = connected(&node_a, Lib::Sio2, Transports::Websocket, "u1", "d2");
    node_a.kill();
    c1.kill();
    c2.kill();
    // B reads the registry every 200 ms: A is dead once its heartbeat is 1 s old.
    expect_metric(
        node_b.port(),
        "courier_cluster_nodes",
        &[("state", "dead")],
        1.0,
    );
    let (dead_node, last_heartbeat) = oldest_heartbeat(&redis);
    let before = Metrics::scrape(node_b.port());
    push(
        &node_b,
        json!({"rooms": "user_1", "event": "after_crash", "args": [1]}),
    );
    let after = Metrics::scrape(node_b.port());
    let path =
        |m: &Metrics, p: &str| m.value("courier_deliveries_total", &[("site", SITE), ("path", p)]);
    assert_eq!(path(&after, "queued"), path(&before, "queued") + 2.0);
    assert_eq!(path(&after, "remote"), path(&before, "remote"));
    assert_eq!(
        after.value("courier_cluster_messages_total", &[("event", "published")]),
        before.value("courier_cluster_messages_total", &[("event", "published")]),
        "nothing is published to the dead node"
    );
    // Both devices are recorded as disconnected since A's last heartbeat.
    for device in ["d1", "d2"] {
        let key = format!("courier:{{{SITE}:user_1}}:d:{device}");
        let fields = redis
            .cmd(&["HMGET", &key, "conn", "at", "ttl", "sock"])
            .strings();
        assert_eq!(fields[0], "0", "{device}: {fields:?}");
        assert_eq!(
            fields[1],
            last_heartbeat.to_string(),
            "{device}: {fields:?}"
        );
        assert_eq!(fields[2], "10000", "{device}: {fields:?}");
        assert!(
            fields[3].starts_with(&format!("{dead_node}:")),
            "{fields:?}"
        );
    }
    // d1 comes back on B and gets the message in its `_batch`.
    let mut back = connected(&node_b, Lib::Sio4, Transports::Websocket, "u1", "d1");
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["after_crash", 1]])]);
    back.ack_event(&batch, vec![]);
    // d2 never does: once A's last heartbeat is `device_ttl` (10 s) old, the next command that
    // touches the user forgets it and its queue.
    let d2 = format!("courier:{{{SITE}:user_1}}:d:d2");
    assert_eq!(redis.cmd(&["EXISTS", &d2]).int(), 1);
    assert!(wait_until(DEFAULT_TIMEOUT, || unix_ms()
        > last_heartbeat + 10_000 + 100));
    push(
        &node_b,
        json!({"rooms": "user_1", "event": "pruning", "args": []}),
    );
    let ev = back.expect_event("pruning");
    back.ack_event(&ev, vec![]);
    assert_eq!(redis.cmd(&["EXISTS", &d2]).int(), 0, "d2 was pruned");
    assert_eq!(
        redis
            .cmd(&[
                "EXISTS",
                &format!("courier:{{{SITE}:user_1}}:q:d2:after_crash")
            ])
            .int(),
        0
    );
    let members = redis
        .cmd(&["SMEMBERS", &format!("courier:{{{SITE}:user_1}}:devices")])
        .strings();
    assert_eq!(members, vec!["d1".to_owned()]);
    back.close();
});
