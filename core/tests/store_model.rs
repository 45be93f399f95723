//! The reference model's decisions, one by one (the property suite then holds every store to
//! them).

use bytes::Bytes;
use courier_core::gateway::store::suite::check_store;
use courier_core::gateway::store::{
    Delivery, DeviceKey, EnqueueStatus, Model, QueuedItem, SocketRef, Store, StoreCommand,
    StoreResult,
};

const SITE: &str = "goodcity";
const S1: SocketRef = SocketRef { node: 1, socket: 1 };
const S2: SocketRef = SocketRef { node: 2, socket: 7 };

fn dev(room: &str, device: &str) -> DeviceKey {
    DeviceKey {
        site: SITE.into(),
        room: room.into(),
        device: device.into(),
    }
}

fn item(id: u64, event: &str) -> QueuedItem {
    QueuedItem {
        id,
        event: event.into(),
        json: Bytes::from(format!("[\"{event}\",{id}]")),
    }
}

fn connect(
    store: &mut impl Store,
    device: DeviceKey,
    socket: SocketRef,
    groups: &[&str],
    now_ms: u64,
) -> Vec<(String, u64)> {
    let groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
    match store.execute(StoreCommand::Connect {
        limits: courier_core::gateway::store::BatchLimits::for_max_payload(u64::MAX / 2),
        device,
        socket,
        groups,
        now_ms,
    }) {
        StoreResult::Connected { items, .. } => {
            items.into_iter().map(|i| (i.event, i.id)).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn disconnect(
    store: &mut impl Store,
    device: DeviceKey,
    socket: SocketRef,
    now_ms: u64,
    ttl_ms: u64,
) {
    let result = store.execute(StoreCommand::Disconnect {
        device,
        socket,
        now_ms,
        ttl_ms,
    });
    assert_eq!(result, StoreResult::Done);
}

fn enqueue(
    store: &mut impl Store,
    room: &str,
    item: QueuedItem,
    via: Option<&[&str]>,
    now_ms: u64,
) -> StoreResult {
    store.execute(StoreCommand::Enqueue {
        site: SITE.into(),
        room: room.into(),
        item,
        via_groups: via.map(|v| v.iter().map(|g| (*g).to_owned()).collect()),
        now_ms,
    })
}

fn ack(
    store: &mut impl Store,
    device: DeviceKey,
    event: &str,
    id: u64,
    resync: bool,
) -> StoreResult {
    store.execute(StoreCommand::Ack {
        device,
        event: event.into(),
        id,
        resync,
        now_ms: 10,
    })
}

#[test]
fn model_satisfies_its_own_invariants() {
    check_store(Model::new, 256);
}

#[test]
fn a_device_is_alive_at_exactly_disconnect_plus_ttl() {
    let mut model = Model::new();
    connect(&mut model, dev("user_1", "d1"), S1, &[], 0);
    disconnect(&mut model, dev("user_1", "d1"), S1, 100, 1_000);
    let at_boundary = enqueue(&mut model, "user_1", item(1, "e"), None, 1_100);
    assert_eq!(
        at_boundary,
        StoreResult::Enqueued {
            status: EnqueueStatus::Stored,
            devices: vec![Delivery {
                device: "d1".into(),
                socket: None
            }],
        }
    );
    let after = enqueue(&mut model, "user_1", item(2, "e"), None, 1_101);
    assert_eq!(
        after,
        StoreResult::Enqueued {
            status: EnqueueStatus::UnknownUser,
            devices: vec![]
        }
    );
    assert!(
        connect(&mut model, dev("user_1", "d1"), S1, &[], 1_102).is_empty(),
        "queue expired with the device"
    );
}

#[test]
fn ttl_zero_keeps_a_disconnected_device_for_ever() {
    let mut model = Model::new();
    connect(&mut model, dev("user_1", "d1"), S1, &[], 0);
    disconnect(&mut model, dev("user_1", "d1"), S1, 0, 0);
    let result = enqueue(&mut model, "user_1", item(1, "e"), None, u64::MAX / 2);
    assert!(matches!(
        result,
        StoreResult::Enqueued {
            status: EnqueueStatus::Stored,
            ..
        }
    ));
    assert_eq!(
        connect(&mut model, dev("user_1", "d1"), S1, &[], u64::MAX / 2),
        vec![("e".into(), 1)]
    );
}

#[test]
fn a_connected_device_never_expires_and_stale_disconnects_are_ignored() {
    let mut model = Model::new();
    connect(&mut model, dev("user_1", "d1"), S1, &[], 0);
    connect(&mut model, dev("user_1", "d1"), S2, &[], 1);
    // The older socket going away does not disconnect the device the newer one owns.
    disconnect(&mut model, dev("user_1", "d1"), S1, 2, 10);
    let result = enqueue(&mut model, "user_1", item(5, "e"), None, 1_000_000);
    assert_eq!(
        result,
        StoreResult::Enqueued {
            status: EnqueueStatus::Stored,
            devices: vec![Delivery {
                device: "d1".into(),
                socket: Some(S2)
            }],
        }
    );
}

#[test]
fn enqueue_reaches_every_live_device_sorted_and_unknown_users_get_nothing() {
    let mut model = Model::new();
    assert_eq!(
        enqueue(&mut model, "user_1", item(1, "e"), None, 0),
        StoreResult::Enqueued {
            status: EnqueueStatus::UnknownUser,
            devices: vec![]
        }
    );
    connect(&mut model, dev("user_1", "b"), S2, &[], 0);
    connect(&mut model, dev("user_1", "a"), S1, &[], 0);
    disconnect(&mut model, dev("user_1", "a"), S1, 0, 100);
    assert_eq!(
        enqueue(&mut model, "user_1", item(2, "e"), None, 50),
        StoreResult::Enqueued {
            status: EnqueueStatus::Stored,
            devices: vec![
                Delivery {
                    device: "a".into(),
                    socket: None
                },
                Delivery {
                    device: "b".into(),
                    socket: Some(S2)
                },
            ],
        }
    );
}

#[test]
fn connect_returns_every_item_in_id_order_across_events() {
    let mut model = Model::new();
    connect(&mut model, dev("user_1", ""), S1, &[], 0);
    for (id, event) in [(30, "b"), (10, "a"), (20, "b"), (40, "a")] {
        enqueue(&mut model, "user_1", item(id, event), None, 0);
    }
    let batch = connect(&mut model, dev("user_1", ""), S2, &[], 1);
    let ids: Vec<u64> = batch.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, [10, 20, 30, 40]);
}

#[test]
fn ack_removes_by_id_anywhere_and_resync_checks_push_order_head() {
    let mut model = Model::new();
    let d = dev("user_1", "d");
    connect(&mut model, d.clone(), S1, &[], 0);
    for id in [1, 2, 3] {
        enqueue(&mut model, "user_1", item(id, "e"), None, 0);
    }
    enqueue(&mut model, "user_1", item(4, "other"), None, 0);
    assert_eq!(
        ack(&mut model, d.clone(), "e", 2, false),
        StoreResult::Acked { removed: true }
    );
    assert_eq!(
        ack(&mut model, d.clone(), "e", 2, false),
        StoreResult::Acked { removed: false },
        "at most once"
    );
    assert_eq!(
        ack(&mut model, d.clone(), "other", 1, false),
        StoreResult::Acked { removed: false },
        "wrong event"
    );
    assert_eq!(
        ack(&mut model, d.clone(), "e", 1, true),
        StoreResult::Acked { removed: true }
    );
    // 3 is now the head; 9 is not: the whole `e` queue goes, `other` stays.
    assert_eq!(
        ack(&mut model, d.clone(), "e", 9, true),
        StoreResult::Resync
    );
    assert_eq!(model.queued(&d, 10), vec![item(4, "other")]);
    assert_eq!(
        ack(&mut model, d.clone(), "e", 3, true),
        StoreResult::Resync,
        "gone counts as not first"
    );
    assert_eq!(
        ack(&mut model, dev("user_9", "x"), "e", 3, true),
        StoreResult::Resync,
        "unknown device"
    );
    assert_eq!(
        ack(&mut model, dev("user_9", "x"), "e", 3, false),
        StoreResult::Acked { removed: false }
    );
}

#[test]
fn batch_ack_removes_exactly_what_the_batch_carried() {
    let mut model = Model::new();
    let d = dev("user_1", "d");
    connect(&mut model, d.clone(), S1, &[], 0);
    enqueue(&mut model, "user_1", item(1, "a"), None, 0);
    enqueue(&mut model, "user_1", item(2, "b"), None, 0);
    let batch = connect(&mut model, d.clone(), S2, &[], 1);
    enqueue(&mut model, "user_1", item(3, "a"), None, 2);
    let result = model.execute(StoreCommand::AckBatch {
        device: d.clone(),
        items: batch,
        now_ms: 3,
    });
    assert_eq!(result, StoreResult::Done);
    assert_eq!(model.queued(&d, 3), vec![item(3, "a")]);
}

#[test]
fn group_index_grows_on_connect_shrinks_on_forget_and_enqueue_rechecks_membership() {
    let mut model = Model::new();
    let resolve = |model: &mut Model, group: &str| {
        model.execute(StoreCommand::ResolveGroups {
            site: SITE.into(),
            groups: vec![group.into()],
            now_ms: 0,
        })
    };
    connect(&mut model, dev("user_1", "d"), S1, &["staff"], 0);
    connect(&mut model, dev("user_2", "d"), S1, &["staff", "drivers"], 0);
    assert_eq!(
        resolve(&mut model, "staff"),
        StoreResult::Users(vec!["user_1".into(), "user_2".into()])
    );
    // user_1 leaves staff: the index still names it (a hint), Enqueue refuses.
    connect(&mut model, dev("user_1", "d"), S2, &["drivers"], 1);
    assert_eq!(
        resolve(&mut model, "staff"),
        StoreResult::Users(vec!["user_1".into(), "user_2".into()])
    );
    assert_eq!(
        enqueue(&mut model, "user_1", item(1, "e"), Some(&["staff"]), 2),
        StoreResult::Enqueued {
            status: EnqueueStatus::NotInGroups,
            devices: vec![]
        }
    );
    model.execute(StoreCommand::ForgetGroupMember {
        site: SITE.into(),
        room: "user_1".into(),
        groups: vec!["staff".into()],
        now_ms: 3,
    });
    assert_eq!(
        resolve(&mut model, "staff"),
        StoreResult::Users(vec!["user_2".into()])
    );
    // Expiry does not touch the index.
    disconnect(&mut model, dev("user_2", "d"), S1, 4, 1);
    enqueue(&mut model, "user_2", item(2, "e"), None, 100);
    assert_eq!(
        resolve(&mut model, "staff"),
        StoreResult::Users(vec!["user_2".into()])
    );
}

#[test]
fn sites_are_isolated() {
    let mut model = Model::new();
    connect(&mut model, dev("user_1", "d"), S1, &["staff"], 0);
    let other = model.execute(StoreCommand::Enqueue {
        site: "othersite".into(),
        room: "user_1".into(),
        item: item(1, "e"),
        via_groups: None,
        now_ms: 0,
    });
    assert_eq!(
        other,
        StoreResult::Enqueued {
            status: EnqueueStatus::UnknownUser,
            devices: vec![]
        }
    );
    let groups = model.execute(StoreCommand::ResolveGroups {
        site: "othersite".into(),
        groups: vec!["staff".into()],
        now_ms: 0,
    });
    assert_eq!(groups, StoreResult::Users(vec![]));
}
