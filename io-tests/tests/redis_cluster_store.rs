//! The Redis store on a real Redis Cluster (3 masters, 3 replicas), what is layout-specific
//! there: users spread over the masters by shard, the layout and epoch keys, the legacy import
//! of the original's lists (spread over every slot), the function library lost on one primary
//! (`FUNCTION FLUSH`), a dead seed URL at start, and a master killed with `kill -9`: what was
//! acknowledged is still there after its replica's promotion, and the store recovers by itself;
//! a master whose replica died: its writes fail (not acknowledged) until the cluster notices,
//! then run without waiting, and a send tried again is stored once.
//! (The model suite on the cluster is in `redis_suite.rs`.)
//!
//! One cluster per runtime: the checks run one after another on it, each under its own key
//! prefix (the failover last).

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::store_commands::*;
use courier_core::gateway::store::{QueuedItem, Store, StoreCommand, StoreResult};
use courier_io::{BlockingRedisStore, RedisTarget, Runtime};
use courier_tests::{RedisCluster, Resp, free_port};

on_both_runtimes!(on_a_redis_cluster);

const SHARDS: u32 = 8;

fn on_a_redis_cluster<R: Runtime + Clone>(runtime: R) {
    let mut cluster = RedisCluster::start(3);
    // The first seed is dead: the client learns the topology from the others.
    let mut seeds = vec![format!("redis://127.0.0.1:{}", free_port())];
    seeds.extend(cluster.seed_urls());
    let target = RedisTarget::Cluster(seeds);
    let open = |prefix: &str| {
        BlockingRedisStore::open_target(runtime.clone(), &target, prefix, SHARDS)
            .expect("store opens")
    };
    // The original's lists are written before the first store looks (legacy=1 for it); the
    // stores opened after their import find none (legacy=0).
    legacy_lists_are_imported_from_every_slot(&cluster, open("legacy"));
    users_spread_over_the_masters_and_the_epoch_has_one_key(&runtime, &cluster, open("spread"));
    a_primary_that_lost_the_library_gets_it_again(&cluster, open("flush"));
    a_write_no_replica_confirmed_is_not_acknowledged(&mut cluster, open("replica"));
    what_was_acknowledged_survives_a_failover(&mut cluster, open("failover"));
}

fn legacy_lists_are_imported_from_every_slot<R: Runtime>(
    cluster: &RedisCluster,
    mut store: BlockingRedisStore<R>,
) {
    let legacy = "/goodcity:socket.io:user_3:d1:";
    let events = ["a", "b", "c", "d", "e", "f"];
    for (n, event) in events.iter().enumerate() {
        let key = format!("{legacy}{event}");
        let entry = format!("{}:[\"{event}\",{n}]", n + 1);
        assert_eq!(
            cluster.cmd_for_key(&key, &["RPUSH", &key, &entry]),
            Resp::Int(1)
        );
    }
    let masters: std::collections::BTreeSet<u16> = events
        .iter()
        .map(|event| cluster.master_of(&format!("{legacy}{event}")))
        .collect();
    assert!(
        masters.len() >= 2,
        "the lists should live on several masters"
    );
    let expected: Vec<QueuedItem> = events
        .iter()
        .enumerate()
        .map(|(n, event)| QueuedItem {
            id: n as u64 + 1,
            event: (*event).into(),
            json: Bytes::from(format!("[\"{event}\",{n}]")),
        })
        .collect();
    assert_eq!(
        store.execute(connect("user_3", "d1", 1, None, T0)),
        connected(expected.clone())
    );
    assert!(
        cluster.keys("/goodcity:*").is_empty(),
        "every legacy list removed after the import"
    );
    // Once only, and served from the new layout afterwards.
    assert_eq!(
        store.execute(connect("user_3", "d1", 2, None, T0)),
        connected(expected)
    );
}

fn users_spread_over_the_masters_and_the_epoch_has_one_key<R: Runtime>(
    runtime: &R,
    cluster: &RedisCluster,
    mut store: BlockingRedisStore<R>,
) {
    let users: Vec<String> = (0..24).map(|n| format!("user_{n}")).collect();
    for user in &users {
        assert_eq!(
            store.execute(connect(user, "d", 1, None, T0)),
            connected(vec![])
        );
    }
    // One batch over every shard: one pipeline per slot, results in command order.
    let batch: Vec<StoreCommand> = users
        .iter()
        .enumerate()
        .map(|(n, user)| enqueue(user, item(n as u64 + 1, "e"), None, T0))
        .collect();
    let results = runtime.block_on(store.inner().execute_batch(batch));
    assert!(
        results.iter().all(|r| *r == stored(&[("d", Some(1))])),
        "{results:?}"
    );
    let holding: Vec<u16> = cluster
        .masters()
        .into_iter()
        .filter(|port| {
            !cluster
                .cmd_on(*port, &["KEYS", "spread:{goodcity:*"])
                .strings()
                .is_empty()
        })
        .collect();
    assert!(
        holding.len() >= 2,
        "{SHARDS} shards should land on several masters, got {holding:?}"
    );
    assert_eq!(
        store.execute(connect(&users[5], "d", 2, None, T0)),
        connected(vec![item(6, "e")])
    );
    // The epoch: written once, read back by every later check; its key is on one slot.
    assert_eq!(store.execute(check_epoch(11)), StoreResult::Epoch(11));
    assert_eq!(store.execute(check_epoch(12)), StoreResult::Epoch(11));
    assert_eq!(
        cluster
            .cmd_for_key("spread:epoch", &["GET", "spread:epoch"])
            .text()
            .as_deref(),
        Some("11")
    );
    let layout = cluster
        .cmd_for_key("spread:layout", &["GET", "spread:layout"])
        .text()
        .unwrap_or_default();
    assert_eq!(
        layout,
        format!(
            "courier-store {} shards={SHARDS} legacy=0",
            courier_io::LAYOUT_VERSION
        )
    );
}

fn a_primary_that_lost_the_library_gets_it_again<R: Runtime>(
    cluster: &RedisCluster,
    mut store: BlockingRedisStore<R>,
) {
    assert_eq!(
        store.execute(connect("user_1", "d", 1, None, T0)),
        connected(vec![])
    );
    for port in cluster.masters() {
        assert_eq!(
            library_count(cluster, port),
            1,
            "every primary holds the library"
        );
    }
    let master = cluster.master_of(&shard_key("flush", "user_1"));
    assert_eq!(
        cluster.cmd_on(master, &["FUNCTION", "FLUSH"]),
        Resp::Simple("OK".into())
    );
    // The call that finds it missing fails (it ran nothing); the next batch loads it again.
    assert!(matches!(
        store.execute(enqueue("user_1", item(1, "e"), None, T0)),
        StoreResult::Failed(_)
    ));
    assert_eq!(
        store.execute(enqueue("user_1", item(2, "e"), None, T0)),
        stored(&[("d", Some(1))])
    );
    assert_eq!(library_count(cluster, master), 1);
    assert_eq!(
        store.execute(connect("user_1", "d", 2, None, T0)),
        connected(vec![item(2, "e")])
    );
}

fn what_was_acknowledged_survives_a_failover<R: Runtime>(
    cluster: &mut RedisCluster,
    mut store: BlockingRedisStore<R>,
) {
    assert_eq!(
        store.execute(connect("user_1", "d", 1, None, T0)),
        connected(vec![])
    );
    for id in 1..=20 {
        assert_eq!(
            store.execute(enqueue("user_1", item(id, "e"), None, T0)),
            stored(&[("d", Some(1))])
        );
    }
    let killed = cluster.kill_master_of(&shard_key("failover", "user_1"));
    // The client finds the promoted replica by itself; until then commands may fail (a
    // clear error, never a panic), afterwards they run again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        match store.execute(connect("user_1", "d", 2, None, T0)) {
            StoreResult::Failed(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => break other,
        }
    };
    let all: Vec<QueuedItem> = (1..=20).map(|id| item(id, "e")).collect();
    assert_eq!(
        recovered,
        connected(all),
        "every acknowledged message survives the failover of {killed}"
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(21, "e"), None, T0)),
        stored(&[("d", Some(2))])
    );
}

fn a_write_no_replica_confirmed_is_not_acknowledged<R: Runtime>(
    cluster: &mut RedisCluster,
    mut store: BlockingRedisStore<R>,
) {
    // A user on another master than the failover check's (that one needs its replica).
    let spare = cluster.master_of(&shard_key("failover", "user_1"));
    let room = (0..100)
        .map(|n| format!("user_{n}"))
        .find(|room| cluster.master_of(&shard_key("replica", room)) != spare)
        .expect("a room on another master");
    let master = cluster.master_of(&shard_key("replica", &room));
    // The store reads the topology with its first write: the master has its replica.
    assert_eq!(
        store.execute(connect(&room, "d", 1, None, T0)),
        connected(vec![])
    );
    let replica = match cluster.cmd_on(master, &["ROLE"]) {
        Resp::Array(Some(role)) => match role.get(2) {
            Some(Resp::Array(Some(replicas))) => match replicas.first() {
                Some(Resp::Array(Some(fields))) => match fields.get(1) {
                    Some(Resp::Bulk(Some(port))) => String::from_utf8_lossy(port)
                        .parse::<u16>()
                        .expect("a replica port"),
                    other => panic!("ROLE replica port: {other:?}"),
                },
                other => panic!("ROLE replicas: {other:?}"),
            },
            other => panic!("ROLE: {other:?}"),
        },
        other => panic!("ROLE: {other:?}"),
    };
    cluster.kill(replica);
    // The replica is gone but the cluster has not noticed yet: the write reaches the master
    // alone, so it is not acknowledged.
    match store.execute(enqueue(&room, item(1, "e"), None, T0)) {
        StoreResult::Failed(reason) => assert!(
            reason.contains("not confirmed by a replica"),
            "a clear reason: {reason}"
        ),
        other => panic!("a write only the master holds is acknowledged: {other:?}"),
    }
    // Once the cluster marks the replica failed, the master has none to wait for: the send
    // tried again is stored, once (its first try left the same member on the master).
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        match store.execute(enqueue(&room, item(1, "e"), None, T0)) {
            StoreResult::Failed(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => break other,
        }
    };
    assert_eq!(again, stored(&[("d", Some(1))]));
    assert_eq!(
        store.execute(connect(&room, "d", 2, None, T0)),
        connected(vec![item(1, "e")])
    );
}

fn library_count(cluster: &RedisCluster, port: u16) -> usize {
    match cluster.cmd_on(port, &["FUNCTION", "LIST"]) {
        Resp::Array(Some(libraries)) => libraries.len(),
        other => panic!("FUNCTION LIST: {other:?}"),
    }
}

/// A key of the shard that holds `room` under `prefix` (its slot is the shard's).
fn shard_key(prefix: &str, room: &str) -> String {
    let shard = courier_io::shard_of(room, SHARDS);
    format!("{prefix}:{{{SITE}:{shard}}}:x")
}
