//! With a Redis Cluster (README "Redis Cluster"): one Courier node whose store is a 3-master,
//! 3-replica cluster, configured in `config.yml` with a dead seed first, serves clients of both
//! protocol generations live, queues for a disconnected device on the masters of its shards and
//! delivers the queue as `_batch` on reconnect; its heartbeat lands in the cluster, so it is
//! ready. (Two nodes and failover in the middle of traffic: `behaviour_redis_cluster_bus.rs`.)

mod common;

use common::*;
use courier_tests::{Lib, RedisCluster, Transports, free_port, http, json, scenario};

scenario!(
    one_node_on_a_redis_cluster_queues_and_delivers_batch,
    |bin| {
        let cluster = RedisCluster::start(3);
        let stub = courier_tests::StubSite::start();
        stub.user("t2", &["user_2"]);
        stub.user("t4", &["user_4"]);
        let mut seeds = vec![format!("redis://127.0.0.1:{}", free_port())];
        seeds.extend(cluster.seed_urls());
        let list: String = seeds.iter().map(|url| format!("\n      - {url}")).collect();
        let gw = user_site(bin, &stub)
            .config(&format!("redis:\n    cluster:{list}"))
            .start();
        assert_eq!(http(gw.port(), "GET", "/readyz", &[], b"").status, 200);
        for (lib, token, room) in [(Lib::Sio2, "t2", "user_2"), (Lib::Sio4, "t4", "user_4")] {
            let mut c = connected(&gw, lib, Transports::Websocket, token, "d1");
            push(&gw, json!({"rooms": room, "event": "live", "args": [1]}));
            let ev = c.expect_event("live");
            c.ack_event(&ev, vec![]);
            c.disconnect();
            c.close();
            push(&gw, json!({"rooms": room, "event": "queued", "args": [1]}));
            push(&gw, json!({"rooms": room, "event": "queued2", "args": [2]}));
            let mut back = client(&gw, lib, Transports::Websocket, token, "d1");
            back.expect_connected();
            let batch = back.expect_event("_batch");
            assert_eq!(batch.args, vec![json!([["queued", 1], ["queued2", 2]])]);
            back.ack_event(&batch, vec![]);
            back.close();
        }
        // The store's keys and the node registry are in the cluster, spread over its masters.
        assert!(
            !cluster.keys("courier:nodes").is_empty(),
            "heartbeat in the cluster"
        );
        assert!(
            cluster
                .keys("courier:{*")
                .iter()
                .any(|key| key.contains("user_2")),
            "queues in the cluster"
        );
    }
);
