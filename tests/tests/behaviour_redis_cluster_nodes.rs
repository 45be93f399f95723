//! Two Courier nodes on a Redis Cluster (3 masters, 3 replicas; README "Redis Cluster"): clients
//! of both protocol generations on either node get every `/send` through either node exactly
//! once, live over the bus's sharded channels; readiness and the node registry work on the
//! cluster; and when the master holding a user's queue is killed (`kill -9`) in the middle of
//! traffic, every message a `/send` acknowledged with `200` reaches the user exactly once —
//! live, or in the `_batch` of its next connect (pub/sub is at most once; the queue is not).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use courier_tests::{
    Bin, Client, Gateway, Lib, RedisCluster, Site, StubSite, Transports, http, json, scenario,
    send_json, wait_until,
};

/// The other binary: a two-node scenario runs one of each.
fn other(bin: Bin) -> Bin {
    match bin {
        Bin::Tokio => Bin::Smol,
        Bin::Smol => Bin::Tokio,
    }
}

/// Waits until `gw` answers `/readyz` 200 and lists `live` nodes as live (bounded).
fn wait_ready_with_nodes(gw: &Gateway, live: u32) {
    let line = format!("courier_cluster_nodes{{state=\"live\"}} {live}");
    let ok = wait_until(Duration::from_secs(30), || {
        http(gw.port(), "GET", "/readyz", &[], b"").status == 200
            && http(gw.port(), "GET", "/metrics", &[], b"")
                .body
                .contains(&line)
    });
    assert!(ok, "{} not ready with {live} live nodes", gw.port());
}

/// Every event named `name` `c` receives until nothing more comes for [`QUIET`]: its first
/// argument (a number), in arrival order.
fn drain(c: &mut Client, name: &str) -> Vec<i64> {
    let mut got = Vec::new();
    while let Some(event) = c.maybe_event(QUIET) {
        assert_eq!(event.name, name, "{event:?}");
        got.push(event.args[0].as_i64().expect("a number"));
    }
    got
}

// Sends through either node reach clients of both generations on both nodes once each (in order
// among the sends through one node);
// a group send too; both nodes are ready and see each other in the registry on the cluster.
scenario!(two_nodes_on_a_cluster_deliver_every_send_once, |bin| {
    let cluster = RedisCluster::start(3);
    let stub = StubSite::start();
    stub.user("u2", &["user_2", "staff"]);
    stub.user("u4", &["user_4", "staff"]);
    stub.user("p5", &["user_5", "staff"]);
    let node_a = user_site(bin, &stub).redis_cluster(&cluster).start();
    let node_b = user_site(other(bin), &stub).redis_cluster(&cluster).start();
    wait_ready_with_nodes(&node_a, 2);
    wait_ready_with_nodes(&node_b, 2);
    let auto = |gw: &Gateway, lib: Lib, token: &str| {
        let mut c = Client::builder(lib, Transports::Websocket)
            .namespace(NS)
            .token(token)
            .device("d1")
            .auto_ack(vec![])
            .connect(gw.port());
        c.expect_connected();
        c
    };
    // socket.io-client 2.5.0 (EIO3) on A, 4.8 (EIO4) and python-socketio 5 on B.
    let mut on_a = auto(&node_a, Lib::Sio2, "u2");
    let mut on_b = auto(&node_b, Lib::Sio4, "u4");
    let mut py_on_b = auto(&node_b, Lib::Py5, "p5");
    const SENDS: i64 = 12;
    for i in 0..SENDS {
        let through = if i % 2 == 0 { &node_a } else { &node_b };
        let rooms = if i % 3 == 0 {
            json!(["staff"])
        } else {
            json!(["user_2", "user_4", "user_5"])
        };
        push(through, json!({"rooms": rooms, "event": "m", "args": [i]}));
    }
    let expected: Vec<i64> = (0..SENDS).collect();
    for c in [&mut on_a, &mut on_b, &mut py_on_b] {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let event = c.expect_event("m");
            assert!(event.has_ack, "{event:?}");
            got.push(event.args[0].as_i64().expect("a number"));
        }
        got.extend(drain(c, "m"));
        // Once each; in send order among the sends through one node (a send through the other
        // node may overtake: its `200` comes once the bus message is handed to the publisher,
        // not once Redis has it).
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "{}: {got:?}", c.label());
        for node in [0, 1] {
            let through: Vec<i64> = got.iter().copied().filter(|i| i % 2 == node).collect();
            assert!(through.is_sorted(), "{}: {got:?}", c.label());
        }
    }
    // Acked: nothing comes back on a reconnect.
    for (c, gw, token) in [(on_a, &node_a, "u2"), (on_b, &node_b, "u4")] {
        let lib = c.lib();
        c.close();
        let mut back = connected(gw, lib, Transports::Websocket, token, "d1");
        back.expect_no_event(QUIET);
        back.close();
    }
    py_on_b.close();
});

// The master of the slot holding a user's queue is killed in the middle of a stream of sends
// through both nodes. Sends during the failover may fail (503, clearly); every one answered 200
// reaches the user exactly once, live or in the `_batch` of its next connect.
scenario!(
    failover_in_the_middle_of_traffic_loses_no_acknowledged_message,
    |bin| { failover_in_the_middle_of_traffic(bin, false) }
);

// The same, and right after the first failover the master of node A's bus channel is killed
// too: deliveries published to A meanwhile are lost to pub/sub and must come from the queue.
scenario!(
    double_failover_in_the_middle_of_traffic_loses_no_acknowledged_message,
    |bin| { failover_in_the_middle_of_traffic(bin, true) }
);

/// The operator key of `/status.json` in the failover scenarios.
const ADMIN_KEY: &str = "cluster-test";

/// The node id of `gw` (started with [`ADMIN_KEY`]), from `/status.json`.
fn node_id(gw: &Gateway) -> u64 {
    let auth = format!("Bearer {ADMIN_KEY}");
    let r = http(
        gw.port(),
        "GET",
        "/status.json",
        &[("authorization", &auth)],
        b"",
    );
    let status: courier_tests::Value =
        courier_tests::serde_json::from_str(&r.body).expect("status json");
    let hex = status["node"]["id"].as_str().expect("node id");
    u64::from_str_radix(hex, 16).expect("hex node id")
}

/// Whether the master on `port` has a replica connected (`ROLE`).
fn has_replica(cluster: &RedisCluster, port: u16) -> bool {
    match cluster.cmd_on(port, &["ROLE"]) {
        courier_tests::Resp::Array(Some(role)) => {
            matches!(role.get(2), Some(courier_tests::Resp::Array(Some(replicas))) if !replicas.is_empty())
        }
        _ => false,
    }
}

/// The failover scenarios; `double_kill` also kills the master of node A's bus channel.
fn failover_in_the_middle_of_traffic(bin: Bin, double_kill: bool) {
    let mut cluster = RedisCluster::start(3);
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    // Each node its own flake worker, as config.yml asks of nodes sharing a store: an ack
    // removes every queued member of its id, so with equal machine fields a message sent
    // through A in the same millisecond as one through B gets the same id, and A's ack of
    // its own removes B's from the queue too — lost when B's live delivery is lost to
    // pub/sub (a failover of A's bus channel).
    let node_a = user_site(bin, &stub)
        .redis_cluster(&cluster)
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("FLAKE_WORKER", "1")
        .start();
    let node_b = user_site(other(bin), &stub)
        .redis_cluster(&cluster)
        .env("FLAKE_WORKER", "2")
        .start();
    wait_ready_with_nodes(&node_a, 2);
    wait_ready_with_nodes(&node_b, 2);
    let mut c = Client::builder(Lib::Sio4, Transports::Websocket)
        .namespace(NS)
        .token("u1")
        .device("d1")
        .auto_ack(vec![])
        .reconnection(true)
        .connect(node_a.port());
    c.expect_connected();
    // The user's queue lives on the master of its shard's slot.
    push(
        &node_b,
        json!({"rooms": "user_1", "event": "m", "args": [-1]}),
    );
    assert_eq!(c.expect_event("m").args, vec![json!(-1)]);
    let queue_key = cluster
        .keys("courier:{goodcity:*}:user_1:*")
        .into_iter()
        .next()
        .expect("the user's keys are in the cluster");

    // One sender through each node, one send at a time, until told to stop (bounded). Each
    // answer keeps when it came (for the diagnostics: where a lost one sits around the kill).
    let start = std::time::Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = [(node_a.port(), 0i64), (node_b.port(), 1_000_000)]
        .into_iter()
        .map(|(port, base)| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut answers = BTreeMap::new();
                for i in base..base + 2_000 {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let body = json!({"rooms": "user_1", "event": "m", "args": [i]});
                    let r = send_json(port, SITE, Site::API_KEY, "", &body);
                    assert!(
                        r.status == 200 || r.status == 503,
                        "a send during the failover answers 200 or a clear 503: {r:?}"
                    );
                    if r.status == 503 {
                        assert!(r.body.contains("Store unavailable"), "{r:?}");
                    }
                    answers.insert(i, (r.status, start.elapsed()));
                    std::thread::sleep(Duration::from_millis(20));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let kill_at = start.elapsed();
    let killed = cluster.kill_master_of(&queue_key);
    let promoted_at = start.elapsed();
    assert_ne!(cluster.master_of(&queue_key), killed);
    // And the master of the client's node's bus channel, when it still has a replica to take
    // over (it may be the replica just promoted).
    if double_kill {
        let a_channel = format!("courier:bus:{}", node_id(&node_a));
        if has_replica(&cluster, cluster.master_of(&a_channel)) {
            cluster.kill_master_of(&a_channel);
            eprintln!("killed the masters of the queue's slot and of node A's bus channel");
        }
    }
    // Traffic goes on a while on the promoted replica, then stops.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Release);
    let mut answers = BTreeMap::new();
    for sender in senders {
        answers.extend(sender.join().expect("sender"));
    }
    let acknowledged: Vec<i64> = answers
        .iter()
        .filter(|(_, (status, _))| *status == 200)
        .map(|(i, _)| *i)
        .collect();
    // When an answer came, in ms relative to the kill (the promotion was seen at
    // `promoted_at`).
    let when = |i: &i64| {
        answers.get(i).map(|(status, at)| {
            format!(
                "{i}: {status} at {:+} ms",
                at.as_millis() as i64 - kill_at.as_millis() as i64
            )
        })
    };
    assert!(
        acknowledged.len() > 20,
        "traffic before and after the failover: {answers:?}"
    );
    wait_ready_with_nodes(&node_a, 2);
    wait_ready_with_nodes(&node_b, 2);

    // What arrived live (the client may have been dropped and reconnected by itself meanwhile:
    // a reconnect's `_batch` counts too), then a reconnect for what pub/sub lost.
    let mut delivered: Vec<i64> = Vec::new();
    let take = |event: &courier_tests::Event, delivered: &mut Vec<i64>| match event.name.as_str() {
        "m" => delivered.push(event.args[0].as_i64().expect("a number")),
        "_batch" => {
            for item in event.args[0].as_array().expect("a batch") {
                delivered.push(item[1].as_i64().expect("a number"));
            }
        }
        other => panic!("unexpected event {other}: {event:?}"),
    };
    while let Some(event) = c.maybe_event(Duration::from_secs(2)) {
        take(&event, &mut delivered);
    }
    c.close();
    let before_reconnect = delivered.len();
    let mut back = Client::builder(Lib::Sio4, Transports::Websocket)
        .namespace(NS)
        .token("u1")
        .device("d1")
        .auto_ack(vec![])
        .connect(node_b.port());
    back.expect_connected();
    while let Some(event) = back.maybe_event(Duration::from_secs(2)) {
        take(&event, &mut delivered);
    }
    eprintln!(
        "sends: {} answered 200, {} answered 503; delivered {} before the reconnect, {} in \
             its _batch",
        acknowledged.len(),
        answers.len() - acknowledged.len(),
        before_reconnect,
        delivered.len() - before_reconnect
    );
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for i in &delivered {
        *counts.entry(*i).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let promoted = promoted_at.as_millis() as i64 - kill_at.as_millis() as i64;
    assert!(
        twice.is_empty(),
        "delivered more than once: {twice:?} ({:?}; promotion seen at +{promoted} ms)",
        twice
            .iter()
            .filter_map(|(i, _)| when(i))
            .collect::<Vec<_>>()
    );
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|i| !counts.contains_key(i))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged with 200 but never delivered: {missing:?} ({:?}; promotion seen at \
             +{promoted} ms)",
        missing.iter().filter_map(|i| when(i)).collect::<Vec<_>>()
    );
    // Nothing else is queued: one more connect gets no `_batch`.
    back.close();
    let mut last = connected(&node_a, Lib::Sio2, Transports::Websocket, "u1", "d1");
    last.expect_no_event(QUIET);
    last.close();
}
