//! The store loses its data under a running gateway (Redis restarted without persistence, or a
//! failover to a replica that had not caught up): the gateway notices — by the store's epoch,
//! or by a send that finds a connected device unknown — registers its connected devices again,
//! and meanwhile delivers live, here and through the cluster bus, so a `/send` answered 200
//! has reached every connected device. Here the store is the in-memory one, swapped for an
//! empty one to lose everything.

mod sim;

use bytes::Bytes;
use courier_core::gateway::cluster::{RemoteHeader, RemoteMessage, RemoteTarget, UnregisteredRoom};
use courier_core::gateway::store::{MemoryStore, QueuedItem, Store, StoreCommand, StoreResult};
use courier_core::gateway::{EPOCH_CHECK_INTERVAL, GatewayOptions};
use courier_core::net::Engine;
use sim::{AuthAnswer, Client, Generation, Sim};

const NSP: &str = "/goodcity";

fn connected_pair() -> (Sim, Client, Client) {
    let mut sim = Sim::goodcity_clustered(1);
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3", "staff"]));
    sim.auth("u4", AuthAnswer::Rooms(vec!["user_4"]));
    let mut old = sim.client(Generation::V3, "token=u3&deviceId=d1");
    sim.join(&mut old, NSP);
    let mut new = sim.client(Generation::V4, "token=u4&deviceId=d2");
    sim.join(&mut new, NSP);
    (sim, old, new)
}

/// The store's epoch now, without changing it.
fn epoch(store: &mut MemoryStore) -> u64 {
    match store.execute(StoreCommand::CheckEpoch {
        candidate: 0,
        now_ms: 0,
    }) {
        StoreResult::Epoch(epoch) => epoch,
        other => panic!("{other:?}"),
    }
}

/// An empty store that kept `epoch`: what a replica that missed the latest writes looks like.
fn lagging_replica(epoch: u64) -> MemoryStore {
    let mut store = MemoryStore::new();
    store.execute(StoreCommand::CheckEpoch {
        candidate: epoch,
        now_ms: 0,
    });
    store
}

fn published(sim: &Sim) -> Vec<RemoteHeader> {
    sim.published_headers()
}

/// Sends `event` to `room` and returns, per client, the packets of that event it received.
fn send_and_receive(
    sim: &mut Sim,
    room: &str,
    event: &str,
    clients: &mut [&mut Client],
) -> Vec<Vec<String>> {
    let body = format!(r#"{{"rooms":["{room}"],"event":"{event}","args":[1]}}"#);
    assert_eq!(sim.send(&body).status, 200);
    clients
        .iter_mut()
        .map(|client| {
            let packets = sim.recv(client);
            sim::events_named(&packets, NSP, event)
                .into_iter()
                .cloned()
                .collect()
        })
        .collect()
}

/// The user's next connect gets these items in its `_batch` (none: no `_batch`).
fn batch_on_reconnect(sim: &mut Sim, query: &str) -> serde_json::Value {
    let mut client = sim.client(Generation::V4, query);
    let packets = sim.join(&mut client, NSP);
    sim::events_named(&packets, NSP, "_batch")
        .first()
        .and_then(|packet| sim::event_args(packet, NSP))
        .map_or(serde_json::Value::Null, |args| args[1].clone())
}

#[test]
fn an_epoch_change_registers_every_connected_device_again_within_one_interval() {
    let (mut sim, mut old, mut new) = connected_pair();
    sim.store = MemoryStore::new();
    sim.advance(EPOCH_CHECK_INTERVAL);
    assert!(sim.logged("Store lost its data"), "{:?}", sim.events);
    assert_eq!(
        sim.events
            .iter()
            .filter(|e| e.message == "Device registered again")
            .count(),
        2
    );
    assert!(
        published(&sim)
            .iter()
            .any(|header| matches!(header, RemoteHeader::StoreReset { origin: 1, .. })),
        "the other nodes are told at once"
    );
    // Registered again, groups included: sends are stored and delivered as before.
    let got = send_and_receive(&mut sim, "staff", "grp", &mut [&mut old, &mut new]);
    assert_eq!(got[0].len(), 1, "{got:?}");
    let got = send_and_receive(&mut sim, "user_4", "direct", &mut [&mut old, &mut new]);
    assert_eq!((got[0].len(), got[1].len()), (0, 1), "{got:?}");
    sim.close(&mut new);
    let body = r#"{"rooms":["user_4"],"event":"later","args":[2]}"#;
    assert_eq!(sim.send(body).status, 200);
    let batch = batch_on_reconnect(&mut sim, "token=u4&deviceId=d2");
    assert_eq!(batch, serde_json::json!([["direct", 1], ["later", 2]]));
}

#[test]
fn an_unchanged_epoch_registers_nothing() {
    let (mut sim, _old, _new) = connected_pair();
    sim.advance(EPOCH_CHECK_INTERVAL * 3);
    assert!(!sim.logged("Store lost its data"));
    assert!(!sim.logged("Device registered again"));
}

#[test]
fn a_send_that_finds_a_connected_device_unknown_delivers_live_and_registers_it_again() {
    let (mut sim, mut old, mut new) = connected_pair();
    // The epoch survived, the registrations did not: only use can tell.
    let kept = epoch(&mut sim.store);
    sim.store = lagging_replica(kept);
    let got = send_and_receive(&mut sim, "user_3", "live", &mut [&mut old, &mut new]);
    assert_eq!((got[0].len(), got[1].len()), (1, 0), "{got:?}");
    assert!(sim.logged("Device unknown to the store"));
    assert!(sim.logged("Device registered again"));
    // Other nodes are asked to serve their sockets of the room as well.
    let unregistered = published(&sim)
        .into_iter()
        .find_map(|header| match header {
            RemoteHeader::Unregistered { rooms, .. } => Some(rooms),
            _ => None,
        })
        .expect("an Unregistered message");
    assert_eq!(
        unregistered,
        vec![UnregisteredRoom {
            room: "user_3".into(),
            via_groups: false,
            known: vec![],
        }]
    );
    // Its ack removes nothing, and from now on the device's messages are stored again.
    let ack = sim::ack_id(&got[0][0], NSP).expect("asks for an ack");
    sim.ack(&old, NSP, ack);
    sim.close(&mut old);
    assert_eq!(
        sim.send(r#"{"rooms":["user_3"],"event":"stored","args":[2]}"#)
            .status,
        200
    );
    let batch = batch_on_reconnect(&mut sim, "token=u3&deviceId=d1");
    assert_eq!(batch, serde_json::json!([["stored", 2]]));
}

#[test]
fn a_group_send_after_the_loss_reaches_members_once_they_are_registered_again() {
    let (mut sim, mut old, _new) = connected_pair();
    sim.store = MemoryStore::new();
    // Before the next check the group index is gone: a group send reaches nobody yet.
    let got = send_and_receive(&mut sim, "staff", "early", &mut [&mut old]);
    assert_eq!(got[0].len(), 0);
    sim.advance(EPOCH_CHECK_INTERVAL);
    let got = send_and_receive(&mut sim, "staff", "late", &mut [&mut old]);
    assert_eq!(got[0].len(), 1);
}

#[test]
fn another_nodes_unregistered_message_reaches_only_the_devices_the_store_did_not_know() {
    let (mut sim, mut old, mut new) = connected_pair();
    let message = |known: Vec<String>, room: &str, via_groups: bool| {
        RemoteMessage {
            header: RemoteHeader::Unregistered {
                origin: 2,
                site: "goodcity".into(),
                event: "remote".into(),
                id: 7_000_000,
                groups: vec!["staff".into()],
                rooms: vec![UnregisteredRoom {
                    room: room.into(),
                    via_groups,
                    known,
                }],
            },
            payload: Bytes::from_static(br#"["remote",3]"#),
        }
        .encode()
    };
    let deliver = |sim: &mut Sim, wire: Bytes, clients: &mut [&mut Client]| {
        let now = sim.now;
        sim.gateway.handle_remote(wire, now);
        sim.run();
        clients
            .iter_mut()
            .map(|client| {
                let packets = sim.recv(client);
                sim::events_named(&packets, NSP, "remote").len()
            })
            .collect::<Vec<_>>()
    };
    // Known to the store: the queue takes care of it, no second copy.
    let wire = message(vec!["d1".into()], "user_3", false);
    assert_eq!(deliver(&mut sim, wire, &mut [&mut old, &mut new]), [0, 0]);
    // Unknown: delivered live, here; a user reached through a group it is not in gets nothing.
    let wire = message(vec![], "user_4", true);
    assert_eq!(deliver(&mut sim, wire, &mut [&mut old, &mut new]), [0, 0]);
    let wire = message(vec![], "user_3", true);
    assert_eq!(deliver(&mut sim, wire, &mut [&mut old, &mut new]), [1, 0]);
    let wire = message(vec!["d9".into()], "user_4", false);
    assert_eq!(deliver(&mut sim, wire, &mut [&mut old, &mut new]), [0, 1]);
}

#[test]
fn another_nodes_store_reset_registers_again_without_waiting_for_the_check() {
    let (mut sim, mut old, _new) = connected_pair();
    sim.store = MemoryStore::new();
    let reset = RemoteMessage {
        header: RemoteHeader::StoreReset {
            origin: 2,
            epoch: 1,
        },
        payload: Bytes::new(),
    };
    let now = sim.now;
    sim.gateway.handle_remote(reset.encode(), now);
    sim.run();
    assert!(sim.logged("Store lost its data"));
    let got = send_and_receive(&mut sim, "user_3", "after", &mut [&mut old]);
    assert_eq!(got[0].len(), 1);
    assert!(
        !sim.logged("Device unknown to the store"),
        "stored, not live"
    );
}

#[test]
fn while_recovering_sends_ask_other_nodes_to_serve_devices_of_stored_rooms_too() {
    let (mut sim, _old, _new) = connected_pair();
    sim.store = MemoryStore::new();
    sim.advance(EPOCH_CHECK_INTERVAL);
    sim.published.clear();
    assert_eq!(
        sim.send(r#"{"rooms":["user_3"],"event":"e","args":[]}"#)
            .status,
        200
    );
    let rooms: Vec<UnregisteredRoom> = published(&sim)
        .into_iter()
        .filter_map(|header| match header {
            RemoteHeader::Unregistered { rooms, .. } => Some(rooms),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        rooms,
        vec![UnregisteredRoom {
            room: "user_3".into(),
            via_groups: false,
            known: vec!["d1".into()],
        }]
    );
    // Once every node has had time to notice, stored rooms are the queue's business again.
    sim.advance(EPOCH_CHECK_INTERVAL * 2);
    sim.published.clear();
    sim.send(r#"{"rooms":["user_3"],"event":"e","args":[]}"#);
    assert!(published(&sim).is_empty(), "{:?}", published(&sim));
}

#[test]
fn a_gateway_shutting_down_checks_the_epoch_no_more() {
    let (mut sim, _old, _new) = connected_pair();
    let now = sim.now;
    sim.gateway.handle_shutdown(now);
    sim.run();
    sim.store = MemoryStore::new();
    sim.advance(EPOCH_CHECK_INTERVAL * 2);
    assert!(!sim.logged("Store lost its data"));
}

/// The names of the events in the `_batch` pieces among `packets`.
fn batched_events(packets: &[String]) -> Vec<String> {
    sim::events_named(packets, NSP, "_batch")
        .into_iter()
        .filter_map(|packet| sim::event_args(packet, NSP))
        .flat_map(|args| args[1].as_array().cloned().unwrap_or_default())
        .filter_map(|item| item[0].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_device_found_by_use_and_then_by_the_epoch_gets_no_second_copy_of_what_it_has_unacked() {
    let (mut sim, mut old, _new) = connected_pair();
    sim.store = MemoryStore::new();
    // Before the epoch check: the send finds the device unknown, delivers live, registers again.
    let got = send_and_receive(&mut sim, "user_3", "first", &mut [&mut old]);
    assert_eq!(got[0].len(), 1, "{got:?}");
    assert!(sim.logged("Device registered again"));
    // Stored for the device registered again and delivered live; not acknowledged yet.
    let got = send_and_receive(&mut sim, "user_3", "second", &mut [&mut old]);
    assert_eq!(got[0].len(), 1, "{got:?}");
    // Now the epoch check notices the loss and registers every device again.
    sim.advance(EPOCH_CHECK_INTERVAL);
    assert!(sim.logged("Store lost its data"));
    let packets = sim.recv(&mut old);
    assert_eq!(
        batched_events(&packets),
        Vec::<String>::new(),
        "a message the socket has live must not come again in a `_batch`: {packets:?}"
    );
    // It is still queued: its ack removes it, and a reconnect gets nothing more.
    let ack = sim::ack_id(&got[0][0], NSP).expect("asks for an ack");
    sim.ack(&old, NSP, ack);
    sim.close(&mut old);
    let batch = batch_on_reconnect(&mut sim, "token=u3&deviceId=d1");
    assert_eq!(batch, serde_json::Value::Null);
}

#[test]
fn a_message_acked_while_the_device_is_registered_again_does_not_come_back() {
    let (mut sim, mut old, _new) = connected_pair();
    sim.store = MemoryStore::new();
    let got = send_and_receive(&mut sim, "user_3", "first", &mut [&mut old]);
    assert_eq!(got[0].len(), 1, "{got:?}");
    let got = send_and_receive(&mut sim, "user_3", "second", &mut [&mut old]);
    assert_eq!(got[0].len(), 1, "{got:?}");
    // The epoch check's `Connect` reads the queue; its answer is slow, and the client's ack
    // reaches the store meanwhile.
    sim.hold_result = |command| matches!(command, StoreCommand::Connect { .. });
    sim.advance(EPOCH_CHECK_INTERVAL);
    let ack = sim::ack_id(&got[0][0], NSP).expect("asks for an ack");
    sim.ack(&old, NSP, ack);
    sim.hold_result = |_| false;
    sim.release_results();
    assert!(sim.logged("Store lost its data"));
    let packets = sim.recv(&mut old);
    assert_eq!(
        batched_events(&packets),
        Vec::<String>::new(),
        "an acknowledged message never comes again: {packets:?}"
    );
}

#[test]
fn a_backlog_found_behind_live_messages_on_registering_again_restarts_the_session() {
    let options = GatewayOptions {
        node_id: 1,
        seed: 7,
        clustered: true,
        epoch_check: Some(EPOCH_CHECK_INTERVAL),
        engine: None,
    };
    let config = "production:\n  batch:\n    maxItems: 1\n";
    let mut sim = Sim::with_options(sim::GOODCITY, Some(config), options);
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let mut old = sim.client(Generation::V4, "token=u3&deviceId=d1");
    sim.join(&mut old, NSP);
    sim.store = MemoryStore::new();
    send_and_receive(&mut sim, "user_3", "first", &mut [&mut old]);
    // Two stored and delivered live, unacknowledged: more than one piece of `maxItems: 1`.
    for event in ["second", "third"] {
        let got = send_and_receive(&mut sim, "user_3", event, &mut [&mut old]);
        assert_eq!(got[0].len(), 1, "{got:?}");
    }
    // The epoch check's `Connect` leaves the device draining behind what the socket has live:
    // draining it here would send those again, so the client reconnects instead.
    sim.advance(EPOCH_CHECK_INTERVAL);
    let packets = sim.recv(&mut old);
    assert_eq!(
        batched_events(&packets),
        Vec::<String>::new(),
        "{packets:?}"
    );
    assert!(sim.logged("Backlog behind live messages, closing the session"));
    // Unacknowledged, they come again after the reconnect, from the head of the queue.
    let batch = batch_on_reconnect(&mut sim, "token=u3&deviceId=d1");
    assert_eq!(batch, serde_json::json!([["second", 1]]));
}

#[test]
fn a_message_still_on_the_bus_when_the_device_is_registered_again_arrives_once() {
    let (mut sim, mut old, _new) = connected_pair();
    sim.store = MemoryStore::new();
    send_and_receive(&mut sim, "user_3", "first", &mut [&mut old]);
    // Another node stores a message for the device registered again; its cluster message to
    // this node is slower than this node's own store round trip.
    let item = QueuedItem {
        id: 9_000_000,
        event: "remote".into(),
        json: Bytes::from_static(br#"["remote",3]"#),
    };
    let enqueued = sim.store.execute(StoreCommand::Enqueue {
        site: "goodcity".into(),
        room: "user_3".into(),
        item: item.clone(),
        via_groups: None,
        now_ms: sim.unix_ms(),
    });
    let StoreResult::Enqueued { devices, .. } = enqueued else {
        panic!("{enqueued:?}")
    };
    let socket = devices[0].socket.expect("connected and live");
    sim.advance(EPOCH_CHECK_INTERVAL);
    assert!(sim.logged("Store lost its data"));
    let deliver = RemoteMessage {
        header: RemoteHeader::Deliver {
            origin: 2,
            site: "goodcity".into(),
            event: item.event.clone(),
            id: item.id,
            resync: false,
            targets: vec![RemoteTarget {
                node: socket.node,
                socket: socket.socket,
                room: "user_3".into(),
                device: "d1".into(),
            }],
        },
        payload: item.json.clone(),
    };
    let now = sim.now;
    sim.gateway.handle_remote(deliver.encode(), now);
    sim.run();
    let packets = sim.recv(&mut old);
    assert_eq!(
        batched_events(&packets),
        Vec::<String>::new(),
        "{packets:?}"
    );
    assert_eq!(
        sim::events_named(&packets, NSP, "remote").len(),
        1,
        "{packets:?}"
    );
}
