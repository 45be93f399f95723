//! Node liveness in the Redis scripts: a device whose socket belongs to a dead node counts as
//! disconnected since that node's last heartbeat — with the dead node listed, and after it was
//! pruned from the registry (its id's start time is older than the horizon) — while nodes that
//! are alive, or started after the registry was read, keep their devices connected.

#[macro_use]
mod common;

use bytes::Bytes;
use common::redis_server::PlainConnection;
use courier_core::gateway::store::{
    Delivery, DeviceKey, EnqueueStatus, QueuedItem, SocketRef, Store, StoreCommand, StoreResult,
};
use courier_io::{BlockingRedisStore, Liveness, Runtime, node_id};
use courier_tests::Redis;

on_both_runtimes!(
    a_dead_nodes_devices_are_disconnected_since_its_heartbeat,
    a_pruned_node_is_recognised_by_its_start_time,
    reconnecting_takes_the_device_over,
);

const SITE: &str = "goodcity";
const T0: u64 = 1_790_000_000_000;
const TTL: u64 = 60_000;

fn device(dev: &str) -> DeviceKey {
    DeviceKey {
        site: SITE.into(),
        room: "user_1".into(),
        device: dev.into(),
    }
}

fn connect(dev: &str, socket: SocketRef, now_ms: u64) -> StoreCommand {
    StoreCommand::Connect {
        device: device(dev),
        socket,
        groups: None,
        limits: courier_core::gateway::store::BatchLimits::for_max_payload(u64::MAX / 2),
        now_ms,
    }
}

fn enqueue(id: u64, now_ms: u64) -> StoreCommand {
    StoreCommand::Enqueue {
        site: SITE.into(),
        room: "user_1".into(),
        item: QueuedItem {
            id,
            event: "e".into(),
            json: Bytes::from(format!("[\"e\",{id}]")),
        },
        via_groups: None,
        now_ms,
    }
}

fn stored(devices: &[(&str, Option<SocketRef>)]) -> StoreResult {
    StoreResult::Enqueued {
        status: EnqueueStatus::Stored,
        devices: devices
            .iter()
            .map(|(d, s)| Delivery {
                device: d.to_string(),
                socket: *s,
            })
            .collect(),
    }
}

fn open<R: Runtime>(runtime: R, redis: &Redis) -> BlockingRedisStore<R> {
    BlockingRedisStore::open(runtime, &redis.url(), "courier").expect("store opens")
}

fn device_fields(redis: &Redis, dev: &str) -> Vec<Option<String>> {
    let mut connection = redis.connection();
    // The device's state `conn|at|ttl|…` in its user's hash (io/REDIS-LAYOUT.md).
    let shard = courier_io::shard_of("user_1", courier_io::DEFAULT_SHARDS);
    let state: Option<String> = redis::cmd("HGET")
        .arg(format!("courier:{{{SITE}:{shard}}}:user_1:u"))
        .arg(format!("d:{dev}"))
        .query(&mut connection)
        .expect("HGET");
    let Some(state) = state else {
        return vec![None, None, None];
    };
    state
        .split('|')
        .take(3)
        .map(|field| Some(field.to_owned()))
        .collect()
}

fn a_dead_nodes_devices_are_disconnected_since_its_heartbeat<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    let dead = SocketRef {
        node: node_id(T0 - 5_000, 1),
        socket: 1,
    };
    let alive = SocketRef {
        node: node_id(T0 - 5_000, 2),
        socket: 1,
    };
    store.execute(connect("d1", dead, T0));
    store.execute(connect("d2", alive, T0));
    assert_eq!(
        store.execute(enqueue(1, T0 + 1)),
        stored(&[("d1", Some(dead)), ("d2", Some(alive))])
    );
    let heartbeat = T0 + 2_000;
    store.inner().set_liveness(Liveness {
        dead: vec![(dead.node, heartbeat)],
        horizon_ms: T0 - 3_600_000,
        device_ttl_ms: TTL,
    });
    // Queued for d1 (no socket: nothing is published to the dead node), live for d2.
    assert_eq!(
        store.execute(enqueue(2, T0 + 20_000)),
        stored(&[("d1", None), ("d2", Some(alive))])
    );
    assert_eq!(
        device_fields(&redis, "d1"),
        vec![
            Some("0".into()),
            Some(heartbeat.to_string()),
            Some(TTL.to_string())
        ]
    );
    // Still there at exactly heartbeat + ttl, gone after: device_ttl ran from the heartbeat.
    assert_eq!(
        store.execute(enqueue(3, heartbeat + TTL)),
        stored(&[("d1", None), ("d2", Some(alive))])
    );
    assert_eq!(
        store.execute(enqueue(4, heartbeat + TTL + 1)),
        stored(&[("d2", Some(alive))])
    );
}

fn a_pruned_node_is_recognised_by_its_start_time<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    let horizon = T0 - 1_000;
    // Started before the horizon and no longer listed: pruned, so dead.
    let pruned = SocketRef {
        node: node_id(horizon - 10, 3),
        socket: 1,
    };
    // Started after the registry was read: taken as alive.
    let newcomer = SocketRef {
        node: node_id(horizon + 10, 4),
        socket: 1,
    };
    store.execute(connect("d1", pruned, T0));
    store.execute(connect("d2", newcomer, T0));
    store.inner().set_liveness(Liveness {
        dead: Vec::new(),
        horizon_ms: horizon,
        device_ttl_ms: TTL,
    });
    assert_eq!(
        store.execute(enqueue(1, T0 + 1)),
        stored(&[("d1", None), ("d2", Some(newcomer))])
    );
    assert_eq!(device_fields(&redis, "d1")[1], Some(horizon.to_string()));
}

fn reconnecting_takes_the_device_over<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    let dead = SocketRef {
        node: node_id(T0 - 5_000, 5),
        socket: 1,
    };
    let fresh = SocketRef {
        node: node_id(T0 + 5_000, 6),
        socket: 9,
    };
    store.execute(connect("d1", dead, T0));
    store.inner().set_liveness(Liveness {
        dead: vec![(dead.node, T0 + 1_000)],
        horizon_ms: T0 - 3_600_000,
        device_ttl_ms: TTL,
    });
    assert_eq!(
        store.execute(enqueue(1, T0 + 2_000)),
        stored(&[("d1", None)])
    );
    // The device comes back on a live node: its queue arrives, it is connected there, and a
    // late Disconnect of the dead node's socket changes nothing.
    let StoreResult::Connected { items, .. } = store.execute(connect("d1", fresh, T0 + 3_000))
    else {
        panic!("connect failed");
    };
    assert_eq!(items.len(), 1);
    store.execute(StoreCommand::Disconnect {
        device: device("d1"),
        socket: dead,
        now_ms: T0 + 3_001,
        ttl_ms: TTL,
    });
    assert_eq!(
        store.execute(enqueue(2, T0 + 4_000)),
        stored(&[("d1", Some(fresh))])
    );
}
