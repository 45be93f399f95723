//! Servers sharing one real Redis: store commands run through the driver's store executor,
//! and cluster messages reach the other nodes only — those for one node that node alone.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::engine::TestEngine;
use common::redis_server::PlainConnection;
use common::{TestServer, eventually, request};
use courier_core::gateway::store::StoreResult;
use courier_io::{Limits, Runtime, Setup, StoreSetup};
use courier_tests::Redis;

on_both_runtimes!(
    publishes_to_other_nodes_and_runs_store_commands,
    a_message_for_one_node_reaches_that_node_alone,
    a_node_refuses_to_start_on_another_layout,
);

fn redis_setup(redis: &Redis, node_id: u64) -> Setup {
    Setup {
        max_payload: 1024,
        store: StoreSetup::Redis {
            target: courier_io::RedisTarget::Node(redis.url()),
            prefix: "courier".into(),
            shards: courier_io::DEFAULT_SHARDS,
        },
        node_ids: vec![node_id],
        first_log_line: "Cluster test".into(),
        limits: Limits::default(),
        ops: courier_io::OpsSetup::default(),
    }
}

fn publishes_to_other_nodes_and_runs_store_commands<R: Runtime>(runtime: R) {
    let mut redis = Redis::start();
    let (engine_a, stats_a) = TestEngine::new();
    let (engine_b, stats_b) = TestEngine::new();
    let a = TestServer::start(runtime.clone(), engine_a, redis_setup(&redis, 1));
    let b = TestServer::start(runtime, engine_b, redis_setup(&redis, 2));

    // Subscriptions are asynchronous: publish until B has one.
    eventually("node B receives node A's message", || {
        request(a.addr, "POST", "/publish", b"hello from a");
        std::thread::sleep(Duration::from_millis(50));
        !stats_b.lock().expect("stats").remote.is_empty()
    });
    assert_eq!(
        stats_b.lock().expect("stats").remote[0],
        Bytes::from_static(b"hello from a")
    );
    request(b.addr, "POST", "/publish", b"hello from b");
    eventually("node A receives node B's message", || {
        stats_a
            .lock()
            .expect("stats")
            .remote
            .contains(&Bytes::from_static(b"hello from b"))
    });
    // A burst goes out in pipelines and arrives whole and in order.
    request(a.addr, "POST", "/publish-many", b"300:burst");
    let burst = |stats: &std::sync::MutexGuard<'_, common::engine::Stats>| -> Vec<Bytes> {
        stats
            .remote
            .iter()
            .filter(|message| message.starts_with(b"burst "))
            .cloned()
            .collect()
    };
    eventually("node B receives the whole burst", || {
        burst(&stats_b.lock().expect("stats")).len() == 300
    });
    let expected: Vec<Bytes> = (0..300)
        .map(|i| Bytes::from(format!("burst {i}")))
        .collect();
    assert_eq!(burst(&stats_b.lock().expect("stats")), expected);
    // Nobody hears itself.
    assert!(
        !stats_a
            .lock()
            .expect("stats")
            .remote
            .contains(&Bytes::from_static(b"hello from a"))
    );

    assert_eq!(request(a.addr, "POST", "/store/connect", b"d1").status, 202);
    eventually("the store result came back", || {
        !stats_a.lock().expect("stats").store_results.is_empty()
    });
    assert_eq!(
        stats_a.lock().expect("stats").store_results[0].1,
        StoreResult::Connected {
            items: vec![],
            more: false
        }
    );
    let mut plain = redis.connection();
    // The device's state (`conn|…`) in its user's hash, on the user's shard.
    let shard = courier_io::shard_of("user_1", courier_io::DEFAULT_SHARDS);
    let state: Option<String> = redis::cmd("HGET")
        .arg(format!("courier:{{site:{shard}}}:user_1:u"))
        .arg("d:d1")
        .query(&mut plain)
        .expect("hget");
    assert_eq!(state.as_deref().map(|s| &s[..2]), Some("1|"));
    redis.kill();
    // With Redis gone, a command fails instead of hanging the driver, and HTTP still works.
    request(a.addr, "POST", "/store/connect", b"d2");
    eventually("the failure came back", || {
        stats_a.lock().expect("stats").store_results.len() == 2
    });
    assert!(matches!(
        stats_a.lock().expect("stats").store_results[1].1,
        StoreResult::Failed(_)
    ));
    assert_eq!(request(a.addr, "GET", "/hello", b"").status, 200);

    // Redis is back: the subscriptions come back by themselves.
    redis.start_again();
    eventually("node B hears node A again", || {
        request(a.addr, "POST", "/publish", b"after the restart");
        std::thread::sleep(Duration::from_millis(100));
        stats_b
            .lock()
            .expect("stats")
            .remote
            .contains(&Bytes::from_static(b"after the restart"))
    });
    a.stop_within(Duration::from_secs(5));

    // A store command emitted at shutdown is carried out before the server returns.
    eventually("node B's store works again", || {
        request(b.addr, "POST", "/store/connect", b"probe");
        std::thread::sleep(Duration::from_millis(50));
        stats_b
            .lock()
            .expect("stats")
            .store_results
            .iter()
            .any(|(_, result)| matches!(result, StoreResult::Connected { .. }))
    });
    b.stop_within(Duration::from_secs(5));
    let mut plain = redis.connection();
    let state: Option<String> = redis::cmd("HGET")
        .arg(format!("courier:{{site:{shard}}}:user_1:u"))
        .arg("d:at-shutdown")
        .query(&mut plain)
        .expect("hget");
    assert_eq!(state.as_deref().map(|s| &s[..2]), Some("1|"));
}

/// A message addressed to one node is published on that node's channel: it reaches it, and a
/// third node never hears of it; a message for all nodes reaches both others.
fn a_message_for_one_node_reaches_that_node_alone<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let (engine_a, _) = TestEngine::new();
    let (engine_b, stats_b) = TestEngine::new();
    let (engine_c, stats_c) = TestEngine::new();
    let a = TestServer::start(runtime.clone(), engine_a, redis_setup(&redis, 1));
    let b = TestServer::start(runtime.clone(), engine_b, redis_setup(&redis, 2));
    let c = TestServer::start(runtime, engine_c, redis_setup(&redis, 3));
    let has = |stats: &common::engine::SharedStats, text: &'static [u8]| {
        stats
            .lock()
            .expect("stats")
            .remote
            .contains(&Bytes::from_static(text))
    };
    // Subscriptions are asynchronous: publish until both have theirs.
    eventually("nodes B and C hear node A", || {
        request(a.addr, "POST", "/publish", b"to all");
        std::thread::sleep(Duration::from_millis(50));
        has(&stats_b, b"to all") && has(&stats_c, b"to all")
    });
    eventually("node B hears what is addressed to it", || {
        request(a.addr, "POST", "/publish?node=2", b"for b only");
        std::thread::sleep(Duration::from_millis(50));
        has(&stats_b, b"for b only")
    });
    // A later message for all nodes, from the same publisher on the same Redis: once C has
    // it, C would have had the one for B before it, had it been on a channel C listens to.
    request(a.addr, "POST", "/publish", b"marker");
    eventually("node C hears the marker", || has(&stats_c, b"marker"));
    assert!(
        !has(&stats_c, b"for b only"),
        "node C heard node B's message"
    );
    request(c.addr, "POST", "/publish?node=1", b"for a");
    eventually("node B hears the next marker", || {
        request(c.addr, "POST", "/publish", b"marker 2");
        std::thread::sleep(Duration::from_millis(20));
        has(&stats_b, b"marker 2")
    });
    assert!(!has(&stats_b, b"for a"), "node B heard node A's message");
    a.stop_within(Duration::from_secs(5));
    b.stop_within(Duration::from_secs(5));
    c.stop_within(Duration::from_secs(5));
}

/// A Redis that holds another layout (here: another shard count) is refused at start, with an
/// error naming both; the process exits with it.
fn a_node_refuses_to_start_on_another_layout<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut plain = redis.connection();
    let () = redis::cmd("SET")
        .arg("courier:layout")
        .arg(format!(
            "courier-store {} shards=3 legacy=0",
            courier_io::LAYOUT_VERSION
        ))
        .query(&mut plain)
        .expect("set");
    let (engine, _) = TestEngine::new();
    let setup = redis_setup(&redis, 1);
    let rt = runtime.clone();
    let outcome = rt.block_on(async move {
        let bind = "127.0.0.1:0".parse().expect("address");
        courier_io::start(runtime, vec![engine], setup, bind)
            .await
            .map(|_| ())
    });
    let text = outcome.expect_err("a node of another layout must not start");
    assert!(text.contains("shards=3"), "{text}");
    assert!(
        text.contains(&format!("shards={}", courier_io::DEFAULT_SHARDS)),
        "{text}"
    );
}
