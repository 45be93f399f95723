//! The in-memory store passes the shared model-based suite, and reclaims expired devices.

use bytes::Bytes;
use courier_core::gateway::store::suite::check_store;
use courier_core::gateway::store::{
    DeviceKey, MemoryStore, QueuedItem, SocketRef, Store, StoreCommand, StoreResult,
};

#[test]
fn memory_store_matches_the_model() {
    check_store(MemoryStore::new, 512);
}

fn device(name: &str) -> DeviceKey {
    DeviceKey {
        site: "goodcity".into(),
        room: "user_1".into(),
        device: name.into(),
    }
}

const SOCKET: SocketRef = SocketRef { node: 1, socket: 1 };

#[test]
fn sweep_reclaims_expired_devices_and_only_them() {
    let mut store = MemoryStore::new();
    for (name, ttl_ms) in [("short", 1_000), ("long", 10_000), ("forever", 0)] {
        store.execute(StoreCommand::Connect {
            limits: courier_core::gateway::store::BatchLimits::for_max_payload(u64::MAX / 2),
            device: device(name),
            socket: SOCKET,
            groups: Some(vec![]),
            now_ms: 0,
        });
        store.execute(StoreCommand::Disconnect {
            device: device(name),
            socket: SOCKET,
            now_ms: 0,
            ttl_ms,
        });
    }
    assert_eq!(store.device_count(), 3);
    store.sweep(1_000);
    assert_eq!(store.device_count(), 3, "alive at exactly disconnect + ttl");
    store.sweep(1_001);
    assert_eq!(store.device_count(), 2);
    store.sweep(u64::MAX);
    assert_eq!(store.device_count(), 1, "ttl 0 keeps the device");
}

#[test]
fn commands_reclaim_expired_devices_in_small_steps() {
    let mut store = MemoryStore::new();
    for n in 0..20 {
        let key = device(&format!("d{n}"));
        store.execute(StoreCommand::Connect {
            limits: courier_core::gateway::store::BatchLimits::for_max_payload(u64::MAX / 2),
            device: key.clone(),
            socket: SOCKET,
            groups: None,
            now_ms: 0,
        });
        store.execute(StoreCommand::Disconnect {
            device: key,
            socket: SOCKET,
            now_ms: 0,
            ttl_ms: 10,
        });
    }
    // An ack for another user: it must not purge user_1 itself, only take a sweep step.
    let ack = StoreCommand::Ack {
        device: DeviceKey {
            room: "user_2".into(),
            ..device("other")
        },
        event: "e".into(),
        id: 1,
        resync: false,
        now_ms: 100,
    };
    assert_eq!(
        store.execute(ack.clone()),
        StoreResult::Acked { removed: false }
    );
    assert!(store.device_count() < 20 && store.device_count() >= 16);
    for _ in 0..5 {
        store.execute(ack.clone());
    }
    assert_eq!(store.device_count(), 0);
}

#[test]
fn a_reconnected_device_is_never_reclaimed() {
    let mut store = MemoryStore::new();
    let key = device("d1");
    store.execute(StoreCommand::Connect {
        limits: courier_core::gateway::store::BatchLimits::for_max_payload(u64::MAX / 2),
        device: key.clone(),
        socket: SOCKET,
        groups: None,
        now_ms: 0,
    });
    store.execute(StoreCommand::Disconnect {
        device: key.clone(),
        socket: SOCKET,
        now_ms: 0,
        ttl_ms: 10,
    });
    let second = SocketRef { node: 1, socket: 2 };
    store.execute(StoreCommand::Connect {
        limits: courier_core::gateway::store::BatchLimits::for_max_payload(u64::MAX / 2),
        device: key.clone(),
        socket: second,
        groups: None,
        now_ms: 5,
    });
    store.sweep(1_000_000);
    assert_eq!(store.device_count(), 1);
    let result = store.execute(StoreCommand::Enqueue {
        site: "goodcity".into(),
        room: "user_1".into(),
        item: QueuedItem {
            id: 9,
            event: "e".into(),
            json: Bytes::from_static(b"[\"e\"]"),
        },
        via_groups: None,
        now_ms: 1_000_000,
    });
    let StoreResult::Enqueued { devices, .. } = result else {
        panic!("unexpected {result:?}");
    };
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].socket, Some(second));
}
