//! The Redis store against a real redis-server: every command, logical expiry, the legacy
//! import, key escaping, and recovery after a restart that lost all data.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis_server::PlainConnection;
use common::store_commands::*;
use courier_core::gateway::store::{EnqueueStatus, QueuedItem, Store, StoreCommand, StoreResult};
use courier_io::{BlockingRedisStore, Runtime};
use courier_tests::Redis;
use redis::Commands;

on_both_runtimes!(
    connect_enqueue_and_ack,
    groups_index_and_membership_recheck,
    disconnect_and_logical_expiry,
    ack_with_resync_checks_the_head,
    batch_ack_removes_exactly_what_it_carried,
    a_legacy_backlog_is_read_in_pieces_and_nothing_goes_live_meanwhile,
    imports_the_original_layout_once,
    escapes_names_in_keys,
    recovers_after_a_flushing_restart,
    a_user_whose_devices_all_expired_has_no_groups,
    a_tls_url_to_a_plain_server_fails_cleanly,
    a_store_of_another_layout_is_refused_with_both_named,
    without_legacy_lists_a_join_is_one_round_trip,
    the_function_library_outlives_flushall_and_is_loaded_again_when_lost,
);

/// The start of every key of one user room: `<prefix>:{<site>:<shard>}:<room>:`.
fn user_keys(room: &str) -> String {
    let shard = courier_io::shard_of(room, courier_io::DEFAULT_SHARDS);
    format!(
        "courier:{{{SITE}:{shard}}}:{}:",
        courier_io::escape_key_part(room)
    )
}

fn open<R: Runtime>(runtime: R, redis: &Redis) -> BlockingRedisStore<R> {
    BlockingRedisStore::open(runtime, &redis.url(), "courier").expect("store opens")
}

fn connect_enqueue_and_ack<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    assert_eq!(
        store.execute(connect("user_1", "d1", 1, Some(&["staff"]), T0)),
        connected(vec![])
    );
    assert_eq!(
        store.execute(connect("user_1", "d2", 2, None, T0)),
        connected(vec![])
    );
    let big = 7_530_115_940_332_077_057;
    assert_eq!(
        store.execute(enqueue("user_1", item(big, "update"), None, T0)),
        stored(&[("d1", Some(1)), ("d2", Some(2))])
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(big - 1, "other"), None, T0)),
        stored(&[("d1", Some(1)), ("d2", Some(2))])
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(big + 1, "update"), None, T0)),
        stored(&[("d1", Some(1)), ("d2", Some(2))])
    );
    // Reconnect (new socket): everything queued, in id order across events.
    assert_eq!(
        store.execute(connect("user_1", "d1", 3, None, T0 + 1)),
        connected(vec![
            item(big - 1, "other"),
            item(big, "update"),
            item(big + 1, "update")
        ])
    );
    // The latest socket gets live messages.
    assert_eq!(
        store.execute(enqueue("user_1", item(big + 2, "update"), None, T0 + 2)),
        stored(&[("d1", Some(3)), ("d2", Some(2))])
    );
    assert_eq!(
        store.execute(ack("user_1", "d1", "update", big, false)),
        StoreResult::Acked { removed: true }
    );
    assert_eq!(
        store.execute(ack("user_1", "d1", "update", big, false)),
        StoreResult::Acked { removed: false }
    );
    assert_eq!(
        store.execute(ack("user_1", "d1", "nothing", 1, false)),
        StoreResult::Acked { removed: false }
    );
    assert_eq!(
        store.execute(connect("user_1", "d1", 4, None, T0 + 3)),
        connected(vec![
            item(big - 1, "other"),
            item(big + 1, "update"),
            item(big + 2, "update")
        ])
    );
    // d2's queue is its own.
    assert_eq!(
        store
            .execute(connect("user_1", "d2", 5, None, T0 + 3))
            .clone(),
        connected(vec![
            item(big - 1, "other"),
            item(big, "update"),
            item(big + 1, "update"),
            item(big + 2, "update")
        ])
    );
    let mut plain = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut plain).expect("keys");
    assert!(
        keys.iter().all(|k| k.starts_with(&user_keys("user_1"))
            || k.starts_with("courier:{goodcity}:g:")
            || k == "courier:layout"),
        "{keys:?}"
    );
}

fn groups_index_and_membership_recheck<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    let resolve = |groups: &[&str]| StoreCommand::ResolveGroups {
        site: SITE.into(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        now_ms: T0,
    };
    assert_eq!(
        store.execute(resolve(&["staff"])),
        StoreResult::Users(vec![])
    );
    assert_eq!(store.execute(resolve(&[])), StoreResult::Users(vec![]));
    assert_eq!(
        store.execute(enqueue("user_9", item(1, "e"), None, T0)),
        status(EnqueueStatus::UnknownUser)
    );
    store.execute(connect("user_2", "d", 1, Some(&["staff", "reviewer"]), T0));
    store.execute(connect("user_1", "d", 2, Some(&["staff"]), T0));
    assert_eq!(
        store.execute(resolve(&["staff", "reviewer", "none"])),
        StoreResult::Users(vec!["user_1".into(), "user_2".into()])
    );
    assert_eq!(
        store.execute(enqueue("user_2", item(2, "e"), Some(&["reviewer"]), T0)),
        stored(&[("d", Some(1))])
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(3, "e"), Some(&["reviewer"]), T0)),
        status(EnqueueStatus::NotInGroups)
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(3, "e"), Some(&[]), T0)),
        status(EnqueueStatus::NotInGroups)
    );
    // A new auth replaces the recorded groups; the index keeps the old entry as a stale hint
    // (the model's rule) until a send finds it stale and the gateway forgets it.
    store.execute(connect("user_2", "d", 3, Some(&["admins"]), T0));
    assert_eq!(
        store.execute(enqueue("user_2", item(4, "e"), Some(&["staff"]), T0)),
        status(EnqueueStatus::NotInGroups)
    );
    assert_eq!(
        store.execute(resolve(&["reviewer"])),
        StoreResult::Users(vec!["user_2".into()])
    );
    store.execute(StoreCommand::ForgetGroupMember {
        site: SITE.into(),
        room: "user_2".into(),
        groups: vec!["reviewer".into()],
        now_ms: T0,
    });
    assert_eq!(
        store.execute(resolve(&["reviewer"])),
        StoreResult::Users(vec![])
    );
    assert_eq!(
        store.execute(resolve(&["admins"])),
        StoreResult::Users(vec!["user_2".into()])
    );
    // The public channel (groups None) keeps what was recorded.
    store.execute(connect("user_2", "d2", 4, None, T0));
    assert_eq!(
        store.execute(enqueue("user_2", item(5, "e"), Some(&["admins"]), T0)),
        stored(&[("d", Some(3)), ("d2", Some(4))])
    );
    assert_eq!(
        store.execute(StoreCommand::ForgetGroupMember {
            site: SITE.into(),
            room: "user_1".into(),
            groups: vec!["staff".into()],
            now_ms: T0,
        }),
        StoreResult::Done
    );
    // user_1 is gone from the index; user_2's stale `staff` entry stays until forgotten.
    assert_eq!(
        store.execute(resolve(&["staff"])),
        StoreResult::Users(vec!["user_2".into()])
    );
}

fn disconnect_and_logical_expiry<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    let disconnect = |dev: &str, sock: u64, now_ms: u64, ttl_ms: u64| StoreCommand::Disconnect {
        device: device("user_1", dev),
        socket: socket(sock),
        now_ms,
        ttl_ms,
    };
    store.execute(connect("user_1", "d1", 1, None, T0));
    store.execute(enqueue("user_1", item(1, "e"), None, T0));
    // A socket that is no longer the latest changes nothing.
    store.execute(connect("user_1", "d1", 2, None, T0));
    assert_eq!(
        store.execute(disconnect("d1", 1, T0, 1000)),
        StoreResult::Done
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(2, "e"), None, T0 + 5000)),
        stored(&[("d1", Some(2))])
    );
    assert_eq!(
        store.execute(disconnect("d1", 2, T0 + 5000, 1000)),
        StoreResult::Done
    );
    let mut plain = redis.connection();
    // The devices' state lives in the user's hash.
    let device_key = &format!("{}u", user_keys("user_1"));
    let pttl: i64 = plain.pttl(device_key).expect("pttl");
    assert!(pttl > 0, "reclamation expiry set: {pttl}");
    let expire_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(device_key)
        .query(&mut plain)
        .expect("pexpiretime");
    // A minute past the logical expiry, and never earlier than the ttl in Redis's own time.
    let real_now = i64::try_from(courier_io::system_unix_ms()).expect("fits");
    assert!(expire_at >= i64::try_from(T0 + 5000 + 1000 + 60_000).expect("fits"));
    assert!(
        expire_at >= real_now + 1000 + 60_000 - 100,
        "{expire_at} vs {real_now}"
    );
    assert!(
        expire_at <= real_now + 1000 + 60_000 + 5_000,
        "{expire_at} vs {real_now}"
    );
    // Within the ttl: still queued for, no socket.
    assert_eq!(
        store.execute(enqueue("user_1", item(3, "e"), None, T0 + 6000)),
        stored(&[("d1", None)])
    );
    // Past it: gone, and so is its queue.
    assert_eq!(
        store.execute(enqueue("user_1", item(4, "e"), None, T0 + 6001)),
        status(EnqueueStatus::UnknownUser)
    );
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut plain).expect("keys");
    assert_eq!(keys, vec!["courier:layout".to_owned()]);
    assert_eq!(
        store.execute(connect("user_1", "d1", 3, None, T0 + 7000)),
        connected(vec![])
    );
    // Reconnecting cancels the reclamation expiry; ttl 0 keeps the device for ever.
    store.execute(disconnect("d1", 3, T0 + 7000, 0));
    let pttl: i64 = plain.pttl(device_key).expect("pttl");
    assert_eq!(pttl, -1);
    assert_eq!(
        store.execute(enqueue("user_1", item(5, "e"), None, T0 + 365 * 86_400_000)),
        stored(&[("d1", None)])
    );
    // An expired device is absent for every command: its queue does not come back.
    store.execute(connect("user_1", "d2", 4, None, T0));
    store.execute(enqueue("user_1", item(6, "e"), None, T0));
    store.execute(StoreCommand::Disconnect {
        device: device("user_1", "d2"),
        socket: socket(4),
        now_ms: T0,
        ttl_ms: 10,
    });
    let mut late_ack = ack("user_1", "d2", "e", 6, true);
    if let StoreCommand::Ack { now_ms, .. } = &mut late_ack {
        *now_ms = T0 + 11;
    }
    assert_eq!(store.execute(late_ack), StoreResult::Resync);
    assert_eq!(
        store.execute(connect("user_1", "d2", 5, None, T0 + 11)),
        connected(vec![])
    );
    // An absurd ttl is still a valid command (reclamation is clamped, not an error).
    assert_eq!(
        store.execute(StoreCommand::Disconnect {
            device: device("user_1", "d2"),
            socket: socket(5),
            now_ms: u64::MAX / 2,
            ttl_ms: u64::MAX / 2,
        }),
        StoreResult::Done
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(7, "e"), None, u64::MAX / 2 + 1)),
        stored(&[("d1", None), ("d2", None)])
    );
}

fn ack_with_resync_checks_the_head<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    store.execute(connect("user_1", "d", 1, None, T0));
    for (id, event) in [(1, "a"), (2, "a"), (3, "b")] {
        store.execute(enqueue("user_1", item(id, event), None, T0));
    }
    assert_eq!(
        store.execute(ack("user_1", "d", "a", 2, true)),
        StoreResult::Resync
    );
    assert_eq!(
        store.execute(connect("user_1", "d", 2, None, T0)),
        connected(vec![item(3, "b")])
    );
    assert_eq!(
        store.execute(ack("user_1", "d", "b", 3, true)),
        StoreResult::Acked { removed: true }
    );
    assert_eq!(
        store.execute(ack("user_1", "d", "b", 3, true)),
        StoreResult::Resync
    );
    assert_eq!(
        store.execute(connect("user_1", "d", 3, None, T0)),
        connected(vec![])
    );
}

fn batch_ack_removes_exactly_what_it_carried<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    store.execute(connect("user_1", "d", 1, None, T0));
    for (id, event) in [(1, "a"), (2, "b"), (3, "a")] {
        store.execute(enqueue("user_1", item(id, event), None, T0));
    }
    let StoreResult::Connected { items, .. } = store.execute(connect("user_1", "d", 2, None, T0))
    else {
        panic!("connect failed");
    };
    assert_eq!(items.len(), 3);
    // Queued after the batch was read: must survive the batch ack.
    store.execute(enqueue("user_1", item(4, "a"), None, T0));
    assert_eq!(
        store.execute(StoreCommand::AckBatch {
            device: device("user_1", "d"),
            items: items.iter().map(|i| (i.event.clone(), i.id)).collect(),
            now_ms: T0,
        }),
        StoreResult::Done
    );
    assert_eq!(
        store.execute(connect("user_1", "d", 3, None, T0)),
        connected(vec![item(4, "a")])
    );
}

fn a_legacy_backlog_is_read_in_pieces_and_nothing_goes_live_meanwhile<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut plain = redis.connection();
    let entries: Vec<String> = (1..=5).map(|id| format!("{id}:[\"old\",{id}]")).collect();
    let _: () = plain
        .rpush("/goodcity:socket.io:user_3:d1:old", &entries)
        .expect("rpush");
    let mut store = open(runtime, &redis);
    let limits = courier_core::gateway::store::BatchLimits {
        max_items: 2,
        max_bytes: 1_000,
    };
    let piece = |items: &[u64], more: bool| StoreResult::Connected {
        items: items
            .iter()
            .map(|&id| QueuedItem {
                id,
                event: "old".into(),
                json: Bytes::from(format!("[\"old\",{id}]")),
            })
            .collect(),
        more,
    };
    assert_eq!(
        store.execute(StoreCommand::Connect {
            device: device("user_3", "d1"),
            socket: socket(1),
            groups: None,
            limits,
            now_ms: T0,
        }),
        piece(&[1, 2], true)
    );
    // Draining: stored, not live.
    let sent = QueuedItem {
        id: 6,
        event: "old".into(),
        json: Bytes::from("[\"old\",6]"),
    };
    assert_eq!(
        store.execute(enqueue("user_3", sent, None, T0)),
        stored(&[("d1", None)])
    );
    let next = |acked: &[u64]| StoreCommand::NextBatch {
        device: device("user_3", "d1"),
        socket: socket(1),
        acked: acked.iter().map(|&id| ("old".to_owned(), id)).collect(),
        limits,
        now_ms: T0,
    };
    assert_eq!(store.execute(next(&[1, 2])), piece(&[3, 4], true));
    assert_eq!(store.execute(next(&[3, 4])), piece(&[5, 6], false));
    // Live after the last piece.
    assert_eq!(
        store.execute(enqueue("user_3", item(7, "x"), None, T0)),
        stored(&[("d1", Some(1))])
    );
    assert_eq!(store.execute(next(&[5, 6])), piece(&[], false));
}

fn imports_the_original_layout_once<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut plain = redis.connection();
    let legacy = "/goodcity:socket.io:user_3:d1:";
    let _: () = plain
        .rpush(
            format!("{legacy}update_store"),
            &[
                "7:[\"update_store\",\"user\",{\"id\":1}]",
                "9:[\"update_store\",2]",
            ],
        )
        .expect("rpush");
    let _: () = plain
        .rpush(
            format!("{legacy}offline1"),
            &["8:[\"offline1\",1]", "garbage"],
        )
        .expect("rpush");
    // Another device's lists and a device whose id extends this one stay where they are.
    let _: () = plain
        .rpush("/goodcity:socket.io:user_3:d2:x", "1:[\"x\"]")
        .expect("rpush");
    let mut store = open(runtime, &redis);
    let expected = vec![
        QueuedItem {
            id: 7,
            event: "update_store".into(),
            json: Bytes::from_static(b"[\"update_store\",\"user\",{\"id\":1}]"),
        },
        QueuedItem {
            id: 8,
            event: "offline1".into(),
            json: Bytes::from_static(b"[\"offline1\",1]"),
        },
        QueuedItem {
            id: 9,
            event: "update_store".into(),
            json: Bytes::from_static(b"[\"update_store\",2]"),
        },
    ];
    assert_eq!(
        store.execute(connect("user_3", "d1", 1, None, T0)),
        connected(expected.clone())
    );
    let exists: bool = plain
        .exists(format!("{legacy}update_store"))
        .expect("exists");
    assert!(!exists, "legacy list removed after the import");
    let other: bool = plain
        .exists("/goodcity:socket.io:user_3:d2:x")
        .expect("exists");
    assert!(other);
    // Once only: a list written now (by a node still running the original) is not imported.
    let _: () = plain
        .rpush(format!("{legacy}late"), "10:[\"late\"]")
        .expect("rpush");
    assert_eq!(
        store.execute(connect("user_3", "d1", 2, None, T0)),
        connected(expected)
    );
    assert_eq!(
        store.execute(ack("user_3", "d1", "update_store", 7, true)),
        StoreResult::Acked { removed: true }
    );
}

fn escapes_names_in_keys<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    let room = "user_{1}:x%";
    store.execute(connect(room, "a", 1, None, T0));
    store.execute(connect(room, "a:b", 2, None, T0));
    assert_eq!(
        store.execute(enqueue(room, item(1, "e:v"), None, T0)),
        stored(&[("a", Some(1)), ("a:b", Some(2))])
    );
    assert_eq!(
        store.execute(ack(room, "a", "e:v", 1, false)),
        StoreResult::Acked { removed: true }
    );
    assert_eq!(
        store.execute(connect(room, "a", 3, None, T0)),
        connected(vec![])
    );
    assert_eq!(
        store.execute(connect(room, "a:b", 4, None, T0)),
        connected(vec![item(1, "e:v")])
    );
    let mut plain = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut plain).expect("keys");
    assert!(
        keys.iter()
            .filter(|k| *k != "courier:layout")
            .all(|k| k.starts_with(&user_keys(room))
                && k.starts_with("courier:{goodcity:")
                && k.contains(":user_%7B1%7D%3Ax%25:")),
        "{keys:?}"
    );
}

fn recovers_after_a_flushing_restart<R: Runtime>(runtime: R) {
    let mut redis = Redis::start();
    let mut store = open(runtime, &redis);
    assert_eq!(
        store.execute(connect("user_1", "d", 1, None, T0)),
        connected(vec![])
    );
    // The first epoch check writes its candidate; later ones read it back.
    assert_eq!(store.execute(check_epoch(10)), StoreResult::Epoch(10));
    assert_eq!(store.execute(check_epoch(11)), StoreResult::Epoch(10));
    redis.kill();
    let started = Instant::now();
    match store.execute(connect("user_1", "d", 2, None, T0)) {
        StoreResult::Failed(text) => assert!(!text.is_empty()),
        other => panic!("expected a failure while Redis is down, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a failing command must not hang: {:?}",
        started.elapsed()
    );
    redis.restart();
    // The function library went with everything else; the store reconnects and loads it again.
    let started = Instant::now();
    loop {
        match store.execute(enqueue("user_1", item(1, "e"), None, T0)) {
            StoreResult::Failed(_) if started.elapsed() < Duration::from_secs(15) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            result => {
                assert_eq!(result, status(EnqueueStatus::UnknownUser));
                break;
            }
        }
    }
    assert_eq!(
        store.execute(connect("user_1", "d", 3, None, T0)),
        connected(vec![])
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(2, "e"), None, T0)),
        stored(&[("d", Some(3))])
    );
    // The epoch went with the data: the next check writes a new one, which is how a gateway
    // learns that the devices it registered are gone.
    assert_eq!(store.execute(check_epoch(12)), StoreResult::Epoch(12));
}

fn a_tls_url_to_a_plain_server_fails_cleanly<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let url = format!("rediss://127.0.0.1:{}/", redis.port());
    let mut store =
        BlockingRedisStore::open(runtime, &url, "courier").expect("TLS URLs are accepted");
    let started = Instant::now();
    match store.execute(connect("user_1", "d", 1, None, T0)) {
        StoreResult::Failed(text) => assert!(!text.is_empty()),
        other => panic!("a TLS handshake with a plain server cannot succeed: {other:?}"),
    }
    // Bounded by the connection timeout and retries, not hanging.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// `execute_batch` pipelines: a mixed batch gives exactly what one-by-one execution gives.
#[test]
fn a_pipelined_batch_matches_one_by_one_execution() {
    let runtime = courier_smol::SmolRuntime::new();
    let redis = Redis::start();
    let batched =
        courier_io::RedisStore::open_in(&runtime, &redis.url(), "batched").expect("store");
    let mut single =
        BlockingRedisStore::open(runtime.clone(), &redis.url(), "single").expect("store");
    let script = || {
        let mut commands = vec![
            connect("user_1", "d1", 1, Some(&["staff"]), T0),
            connect("user_2", "d1", 2, Some(&["staff"]), T0),
            StoreCommand::ResolveGroups {
                site: SITE.into(),
                groups: vec!["staff".into()],
                now_ms: T0,
            },
        ];
        for id in 1..=50 {
            commands.push(enqueue(
                "user_1",
                item(id, if id % 2 == 0 { "a" } else { "b" }),
                None,
                T0,
            ));
            commands.push(enqueue("user_2", item(id, "a"), Some(&["staff"]), T0));
        }
        for id in (1..=50).step_by(3) {
            commands.push(ack(
                "user_1",
                "d1",
                if id % 2 == 0 { "a" } else { "b" },
                id,
                id % 5 == 0,
            ));
        }
        commands.push(StoreCommand::AckBatch {
            device: device("user_2", "d1"),
            items: (1..=20).map(|id| ("a".to_owned(), id)).collect(),
            now_ms: T0,
        });
        commands.push(StoreCommand::ForgetGroupMember {
            site: SITE.into(),
            room: "user_2".into(),
            groups: vec!["staff".into()],
            now_ms: T0,
        });
        commands.push(connect("user_1", "d1", 3, None, T0));
        commands.push(connect("user_2", "d1", 4, None, T0));
        commands
    };
    let one_by_one: Vec<StoreResult> = script().into_iter().map(|c| single.execute(c)).collect();
    let pipelined = runtime.block_on(batched.execute_batch(script()));
    assert_eq!(pipelined.len(), one_by_one.len());
    for (index, (p, s)) in pipelined.iter().zip(&one_by_one).enumerate() {
        assert_eq!(p, s, "command {index}");
    }
    assert!(
        pipelined
            .iter()
            .all(|r| !matches!(r, StoreResult::Failed(_)))
    );

    // The function library flushed behind the store's back (as a failover to a server without
    // it would lose it): those commands fail (nothing happened), and the next batch loads the
    // library again.
    let mut plain = redis.connection();
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query(&mut plain)
        .expect("flush");
    let results = runtime.block_on(batched.execute_batch(vec![
        enqueue("user_1", item(100, "a"), None, T0),
        enqueue("user_1", item(101, "a"), None, T0),
    ]));
    assert!(
        results.iter().all(|r| matches!(r, StoreResult::Failed(_))),
        "{results:?}"
    );
    let results =
        runtime.block_on(batched.execute_batch(vec![enqueue("user_1", item(102, "a"), None, T0)]));
    assert_eq!(results, vec![stored(&[("d1", Some(3))])]);
}

fn a_user_whose_devices_all_expired_has_no_groups<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut store = open(runtime, &redis);
    store.execute(connect("user_1", "a", 1, Some(&["staff"]), T0));
    store.execute(StoreCommand::Disconnect {
        device: device("user_1", "a"),
        socket: socket(1),
        now_ms: T0,
        ttl_ms: 1000,
    });
    // Past the expiry the user is gone; a connect that brings no groups (the public-channel
    // kind) starts it afresh instead of reviving the old groups.
    store.execute(connect("user_1", "b", 2, None, T0 + 1001));
    assert_eq!(
        store.execute(enqueue("user_1", item(1, "e"), Some(&["staff"]), T0 + 1001)),
        status(EnqueueStatus::NotInGroups)
    );
    assert_eq!(
        store.execute(enqueue("user_1", item(2, "e"), None, T0 + 1001)),
        stored(&[("b", Some(2))])
    );
}

/// `execute_batch` groups by shard: a batch of many users over several shards, with every
/// kind of command mixed, gives exactly what one-by-one execution gives, for several shard
/// counts.
#[test]
fn a_batch_of_mixed_shards_and_kinds_matches_one_by_one_execution() {
    let runtime = courier_smol::SmolRuntime::new();
    let redis = Redis::start();
    let limits = courier_core::gateway::store::BatchLimits {
        max_items: 3,
        max_bytes: 10_000,
    };
    let script = || {
        let users: Vec<String> = (0..24).map(|i| format!("user_{i}")).collect();
        let mut commands = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let groups: &[&str] = if i % 3 == 0 {
                &["staff"]
            } else {
                &["staff", "ops"]
            };
            commands.push(connect(user, "d1", i as u64, Some(groups), T0));
            if i % 4 == 0 {
                commands.push(connect(user, "d2", 100 + i as u64, None, T0));
            }
        }
        commands.push(StoreCommand::ResolveGroups {
            site: SITE.into(),
            groups: vec!["ops".into()],
            now_ms: T0,
        });
        for id in 1..=6u64 {
            for (i, user) in users.iter().enumerate() {
                let via: Option<&[&str]> = if (i + id as usize).is_multiple_of(2) {
                    Some(&["ops"])
                } else {
                    None
                };
                commands.push(enqueue(
                    user,
                    item(id, if id % 2 == 0 { "a" } else { "b" }),
                    via,
                    T0,
                ));
            }
            // Acks of the previous id interleaved with the next sends, resync for some.
            for (i, user) in users.iter().enumerate().filter(|(i, _)| i % 3 != 1) {
                let prev = id.saturating_sub(1).max(1);
                commands.push(ack(
                    user,
                    "d1",
                    if prev % 2 == 0 { "a" } else { "b" },
                    prev,
                    i % 5 == 0,
                ));
            }
        }
        for (i, user) in users.iter().enumerate() {
            match i % 4 {
                0 => commands.push(StoreCommand::AckBatch {
                    device: device(user, "d2"),
                    items: vec![("a".into(), 2), ("b".into(), 3), ("a".into(), 99)],
                    now_ms: T0,
                }),
                1 => commands.push(StoreCommand::Disconnect {
                    device: device(user, "d1"),
                    socket: socket(i as u64),
                    now_ms: T0 + 10,
                    ttl_ms: 1000,
                }),
                2 => commands.push(StoreCommand::Connect {
                    device: device(user, "d1"),
                    socket: socket(200 + i as u64),
                    groups: Some(vec!["staff".into()]),
                    limits,
                    now_ms: T0 + 20,
                }),
                _ => commands.push(StoreCommand::NextBatch {
                    device: device(user, "d1"),
                    socket: socket(i as u64),
                    acked: vec![("b".into(), 1)],
                    limits,
                    now_ms: T0 + 20,
                }),
            }
        }
        commands.push(StoreCommand::ForgetGroupMember {
            site: SITE.into(),
            room: "user_1".into(),
            groups: vec!["ops".into()],
            now_ms: T0 + 30,
        });
        commands.push(check_epoch(5));
        for (i, user) in users.iter().enumerate() {
            commands.push(enqueue(user, item(50, "a"), Some(&["ops"]), T0 + 2000));
            if i % 2 == 0 {
                commands.push(StoreCommand::NextBatch {
                    device: device(user, "d1"),
                    socket: socket(200 + i as u64),
                    acked: vec![("a".into(), 2), ("b".into(), 1)],
                    limits,
                    now_ms: T0 + 2000,
                });
            }
        }
        commands.push(StoreCommand::ResolveGroups {
            site: SITE.into(),
            groups: vec!["ops".into(), "staff".into()],
            now_ms: T0 + 2000,
        });
        commands
    };
    for shards in [1, 3, 16] {
        let batched = courier_io::RedisStore::open_sharded_in(
            &runtime,
            &redis.url(),
            &format!("batched{shards}"),
            shards,
        )
        .expect("store");
        let mut single = BlockingRedisStore::open_sharded(
            runtime.clone(),
            &redis.url(),
            &format!("single{shards}"),
            shards,
        )
        .expect("store");
        let one_by_one: Vec<StoreResult> =
            script().into_iter().map(|c| single.execute(c)).collect();
        let commands = script();
        let mut pipelined = Vec::new();
        // In batches the size of the gateway's store loop.
        for chunk in commands.chunks(256) {
            pipelined.extend(runtime.block_on(batched.execute_batch(chunk.to_vec())));
        }
        assert_eq!(pipelined.len(), one_by_one.len());
        for (index, (p, s)) in pipelined.iter().zip(&one_by_one).enumerate() {
            assert_eq!(p, s, "shards {shards}, command {index}");
        }
        assert!(
            one_by_one
                .iter()
                .all(|r| !matches!(r, StoreResult::Failed(_)))
        );
        assert!(one_by_one.iter().any(|r| matches!(r, StoreResult::Resync)));
    }
}

fn a_store_of_another_layout_is_refused_with_both_named<R: Runtime + Clone>(runtime: R) {
    let redis = Redis::start();
    let mut first = open(runtime.clone(), &redis);
    assert_eq!(
        first.execute(connect("user_1", "d1", 1, None, T0)),
        connected(vec![])
    );
    let mut plain = redis.connection();
    let layout: String = plain.get("courier:layout").expect("layout key");
    assert_eq!(
        layout,
        format!(
            "courier-store {} shards={} legacy=0",
            courier_io::LAYOUT_VERSION,
            courier_io::DEFAULT_SHARDS
        )
    );
    let mut other = BlockingRedisStore::open_sharded(runtime.clone(), &redis.url(), "courier", 7)
        .expect("store");
    match other.execute(enqueue("user_1", item(1, "e"), None, T0)) {
        StoreResult::Failed(text) => {
            assert!(
                text.contains(&format!("shards={}", courier_io::DEFAULT_SHARDS)),
                "{text}"
            );
            assert!(text.contains("shards=7"), "{text}");
            assert!(text.contains("redis.shards"), "{text}");
        }
        result => panic!("a store of another shard count must refuse: {result:?}"),
    }
    assert!(other.inner().layout_error().is_some());
    match runtime.block_on(other.inner().check_layout()) {
        Err(courier_io::LayoutError::Mismatch(_)) => {}
        result => panic!("{result:?}"),
    }
    // Nothing was written by the refused store: the first one still sees only its device.
    assert_eq!(
        first.execute(enqueue("user_1", item(2, "e"), None, T0)),
        stored(&[("d1", Some(1))])
    );
    // Another version is refused the same way; the message names what was found.
    let _: () = plain
        .set("courier:layout", "courier-store 1 shards=4 legacy=0")
        .expect("set");
    let mut third = open(runtime, &redis);
    match third.execute(enqueue("user_1", item(3, "e"), None, T0)) {
        StoreResult::Failed(text) => assert!(text.contains("courier-store 1 shards=4"), "{text}"),
        result => panic!("{result:?}"),
    }
    // Put right (here: the key removed, as on a fresh Redis), the refusing store recovers.
    let _: () = plain.del("courier:layout").expect("del");
    assert_eq!(
        third.execute(enqueue("user_1", item(4, "e"), None, T0)),
        stored(&[("d1", Some(1))])
    );
}

fn without_legacy_lists_a_join_is_one_round_trip<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut plain = redis.connection();
    let mut store = open(runtime, &redis);
    // The first command writes the layout key; no list of the original exists.
    assert_eq!(
        store.execute(connect("user_1", "d1", 1, Some(&["staff"]), T0)),
        connected(vec![])
    );
    let layout: String = plain.get("courier:layout").expect("layout key");
    assert!(layout.ends_with("legacy=0"), "{layout}");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut plain)
        .expect("resetstat");
    assert_eq!(
        store.execute(connect("user_2", "d1", 2, Some(&["staff"]), T0)),
        connected(vec![])
    );
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut plain)
        .expect("info");
    // One script call and the group-index update; no SCAN, no second script call.
    assert!(stats.contains("cmdstat_fcall:calls=1,"), "{stats}");
    assert!(stats.contains("cmdstat_sadd:calls=1,"), "{stats}");
    assert!(!stats.contains("cmdstat_scan"), "{stats}");
    assert_eq!(
        store.execute(StoreCommand::ResolveGroups {
            site: SITE.into(),
            groups: vec!["staff".into()],
            now_ms: T0,
        }),
        StoreResult::Users(vec!["user_1".into(), "user_2".into()])
    );
}

fn the_function_library_outlives_flushall_and_is_loaded_again_when_lost<R: Runtime>(runtime: R) {
    let redis = Redis::start();
    let mut plain = redis.connection();
    let mut store = open(runtime, &redis);
    assert_eq!(
        store.execute(connect("user_1", "d", 1, None, T0)),
        connected(vec![])
    );
    // FLUSHALL empties the key space but keeps functions: the very next command runs (and finds
    // the user gone, as the model does after losing everything).
    let () = redis::cmd("FLUSHALL").query(&mut plain).expect("flushall");
    assert_eq!(
        store.execute(enqueue("user_1", item(1, "e"), None, T0)),
        status(EnqueueStatus::UnknownUser)
    );
    assert_eq!(
        store.execute(connect("user_1", "d", 2, None, T0)),
        connected(vec![])
    );
    // FUNCTION FLUSH drops the library behind the store's back: the call that finds it missing
    // fails (it ran nothing), and the store loads the library with its next pipeline.
    let () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query(&mut plain)
        .expect("function flush");
    assert!(matches!(
        store.execute(enqueue("user_1", item(2, "e"), None, T0)),
        StoreResult::Failed(_)
    ));
    assert_eq!(
        store.execute(enqueue("user_1", item(3, "e"), None, T0)),
        stored(&[("d", Some(2))])
    );
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut plain)
        .expect("function list");
    assert_eq!(libraries.len(), 1, "one library: {libraries:?}");
    // Only item 3 was stored: the failed call did nothing.
    assert_eq!(
        store.execute(connect("user_1", "d", 3, None, T0)),
        connected(vec![item(3, "e")])
    );
}
