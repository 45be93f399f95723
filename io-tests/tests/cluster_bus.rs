//! The cluster bus on a real Redis Cluster (3 masters, 3 replicas): sharded pub/sub on one
//! channel per node, so a message for a node is subscribed to on its channel's shard by that
//! node alone; and the subscription comes back by itself after the master of that shard is
//! killed and its replica promoted.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::engine::{SharedStats, TestEngine};
use common::{TestServer, request};
use courier_io::{Limits, RedisTarget, Runtime, Setup, StoreSetup};
use courier_tests::RedisCluster;

on_both_runtimes!(a_message_for_one_node_reaches_it_over_its_shard_across_a_failover);

const PREFIX: &str = "courier";

fn cluster_setup(cluster: &RedisCluster, node_id: u64) -> Setup {
    Setup {
        max_payload: 1024,
        store: StoreSetup::Redis {
            target: RedisTarget::Cluster(cluster.seed_urls()),
            prefix: PREFIX.into(),
            shards: courier_io::DEFAULT_SHARDS,
        },
        node_ids: vec![node_id],
        first_log_line: "Cluster bus test".into(),
        limits: Limits::default(),
        ops: courier_io::OpsSetup::default(),
    }
}

fn has(stats: &SharedStats, text: &str) -> bool {
    stats
        .lock()
        .expect("stats")
        .remote
        .contains(&Bytes::copy_from_slice(text.as_bytes()))
}

/// Repeats `attempt` (which publishes something) until `check` holds, for at most `patience`
/// (a bound, so the test stops by itself: a failover takes a few seconds here).
fn until(what: &str, patience: Duration, mut attempt: impl FnMut(u32) -> bool) {
    let started = Instant::now();
    let mut round = 0;
    while !attempt(round) {
        assert!(
            started.elapsed() < patience,
            "timed out waiting for: {what}"
        );
        round += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Subscribers of a sharded channel, asked on the master of its slot.
fn shard_subscribers(cluster: &RedisCluster, channel: &str) -> i64 {
    let reply = cluster.cmd_for_key(channel, &["PUBSUB", "SHARDNUMSUB", channel]);
    let courier_tests::Resp::Array(Some(items)) = reply else {
        panic!("PUBSUB SHARDNUMSUB: {reply:?}");
    };
    items[1].int()
}

fn a_message_for_one_node_reaches_it_over_its_shard_across_a_failover<R: Runtime>(runtime: R) {
    let mut cluster = RedisCluster::start(3);
    let (engine_a, stats_a) = TestEngine::new();
    let (engine_b, stats_b) = TestEngine::new();
    let (engine_c, stats_c) = TestEngine::new();
    let a = TestServer::start(runtime.clone(), engine_a, cluster_setup(&cluster, 1));
    let b = TestServer::start(runtime.clone(), engine_b, cluster_setup(&cluster, 2));
    let c = TestServer::start(runtime, engine_c, cluster_setup(&cluster, 3));
    let patience = Duration::from_secs(10);

    // Everyone listens on the all-nodes channel and on its own; nobody on another's.
    until("B and C hear A on the all-nodes channel", patience, |_| {
        request(a.addr, "POST", "/publish", b"to all");
        has(&stats_b, "to all") && has(&stats_c, "to all")
    });
    assert!(!has(&stats_a, "to all"), "A heard itself");
    for node in [1, 2, 3] {
        let channel = courier_io::bus_node_channel(PREFIX, node);
        assert_eq!(shard_subscribers(&cluster, &channel), 1, "{channel}");
    }
    assert_eq!(
        shard_subscribers(&cluster, &courier_io::bus_channel(PREFIX)),
        3
    );
    request(a.addr, "POST", "/publish?node=2", b"for b");
    until("B hears what A addresses to it", patience, |_| {
        has(&stats_b, "for b")
    });
    request(c.addr, "POST", "/publish?node=1", b"for a");
    until("A hears what C addresses to it", patience, |_| {
        has(&stats_a, "for a")
    });
    assert!(!has(&stats_c, "for b") && !has(&stats_b, "for a"));

    // The master of B's channel dies; its replica takes over and B subscribes there again.
    let b_channel = courier_io::bus_node_channel(PREFIX, 2);
    let killed = cluster.kill_master_of(&b_channel);
    assert_ne!(cluster.master_of(&b_channel), killed);
    until(
        "B hears A again after the failover",
        Duration::from_secs(40),
        |round| {
            let text = format!("after failover {round}");
            request(a.addr, "POST", "/publish?node=2", text.as_bytes());
            // The message of this round or of any earlier one.
            (0..=round).any(|earlier| has(&stats_b, &format!("after failover {earlier}")))
        },
    );
    // (Readiness needs heartbeats too, which this setup does not run: the gauge says it.)
    until(
        "B's bus is subscribed again",
        Duration::from_secs(10),
        |_| {
            let reply = request(b.addr, "GET", "/metrics", b"");
            String::from_utf8_lossy(&reply.body).contains("courier_cluster_bus_subscribed 1")
        },
    );
    assert_eq!(shard_subscribers(&cluster, &b_channel), 1);
    until("C still hears the all-nodes channel", patience, |round| {
        let text = format!("to all again {round}");
        request(a.addr, "POST", "/publish", text.as_bytes());
        (0..=round).any(|earlier| has(&stats_c, &format!("to all again {earlier}")))
    });
    a.stop_within(Duration::from_secs(5));
    b.stop_within(Duration::from_secs(5));
    c.stop_within(Duration::from_secs(5));
}
