//! A backlog larger than one `_batch` piece: it is delivered in pieces cut by `batch.maxItems`
//! and `batch.maxBytes`, in send order, the next piece only after the previous one's ack, each
//! ack removing exactly what its piece carried; messages sent while the backlog drains arrive
//! once, behind it, and the device is live after its last piece.

mod sim;

use std::time::Duration;

use courier_core::gateway::store::StoreCommand;
use serde_json::{Value, json};
use sim::{AuthAnswer, Client, Generation, Sim};

const NSP: &str = "/goodcity";

fn sim_with(batch: &str) -> Sim {
    let config = format!("production:\n  batch:\n{batch}");
    let mut sim = Sim::new(sim::GOODCITY, Some(&config));
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    sim
}

/// Queues `n` messages `m` with args 1..=n for a device that is away.
fn queue_while_away(sim: &mut Sim, n: u64) {
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    sim.join(&mut client, NSP);
    sim.close(&mut client);
    for arg in 1..=n {
        let body = format!(r#"{{"rooms":["user_3"],"event":"m","args":[{arg}]}}"#);
        assert_eq!(sim.send(&body).status, 200);
        sim.advance(Duration::from_millis(1));
    }
}

/// The `_batch` pieces among `packets`: (ack id, items).
fn pieces(packets: &[String]) -> Vec<(u64, Vec<Value>)> {
    sim::events_named(packets, NSP, "_batch")
        .into_iter()
        .map(|packet| {
            let args = sim::event_args(packet, NSP).expect("event args");
            let items = args[1].as_array().expect("items").clone();
            (
                sim::ack_id(packet, NSP).expect("_batch asks for an ack"),
                items,
            )
        })
        .collect()
}

fn args_of(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .map(|item| item[1].as_u64().expect("arg"))
        .collect()
}

/// Acks every piece as it comes; returns the args of every piece, piece by piece.
fn drain(sim: &mut Sim, client: &mut Client, mut packets: Vec<String>) -> Vec<Vec<u64>> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let got = pieces(&packets);
        assert!(got.len() <= 1, "one piece at a time: {packets:?}");
        let Some((ack, items)) = got.into_iter().next() else {
            return seen;
        };
        seen.push(args_of(&items));
        sim.ack(client, NSP, ack);
        packets = sim.recv(client);
    }
    panic!("the drain does not end");
}

#[test]
fn a_backlog_comes_in_pieces_of_max_items_in_send_order_one_per_ack() {
    let mut sim = sim_with("    maxItems: 3\n");
    queue_while_away(&mut sim, 8);
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut client, NSP);
    assert!(packets[0].starts_with("40/goodcity,"), "{packets:?}");
    assert_eq!(sim::events_named(&packets, NSP, "_settings").len(), 1);
    let got = drain(&mut sim, &mut client, packets);
    assert_eq!(got, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8]]);

    // Every piece was acknowledged: nothing is left.
    sim.close(&mut client);
    let mut again = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut again, NSP);
    assert!(pieces(&packets).is_empty(), "{packets:?}");
}

#[test]
fn pieces_are_cut_by_bytes() {
    // Each item `["m",N]` counts 8 bytes (9 from 10 on) with its separator: 26 bytes take
    // three of the first and two of the others.
    let mut sim = sim_with("    maxItems: 1000\n    maxBytes: 26\n");
    queue_while_away(&mut sim, 12);
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d1");
    let packets = sim.join(&mut client, NSP);
    let got = drain(&mut sim, &mut client, packets);
    assert_eq!(
        got,
        vec![
            vec![1, 2, 3],
            vec![4, 5, 6],
            vec![7, 8, 9],
            vec![10, 11],
            vec![12]
        ]
    );
}

#[test]
fn an_unacknowledged_piece_and_the_rest_come_again_on_reconnect() {
    let mut sim = sim_with("    maxItems: 2\n");
    queue_while_away(&mut sim, 5);
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut client, NSP);
    let (ack, items) = pieces(&packets).remove(0);
    assert_eq!(args_of(&items), vec![1, 2]);
    sim.ack(&client, NSP, ack);
    let packets = sim.recv(&mut client);
    let (_, items) = pieces(&packets).remove(0);
    assert_eq!(args_of(&items), vec![3, 4], "{packets:?}");
    // Gone before acknowledging the second piece: it stays queued, the first does not.
    sim.close(&mut client);

    let mut again = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut again, NSP);
    assert_eq!(
        drain(&mut sim, &mut again, packets),
        vec![vec![3, 4], vec![5]]
    );
}

#[test]
fn a_message_sent_while_the_backlog_drains_comes_once_behind_it_then_sends_are_live() {
    let mut sim = sim_with("    maxItems: 2\n");
    queue_while_away(&mut sim, 3);
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut client, NSP);
    let (ack, items) = pieces(&packets).remove(0);
    assert_eq!(args_of(&items), vec![1, 2]);

    // Draining: not emitted live, only queued behind the backlog.
    sim.send(r#"{"rooms":["user_3"],"event":"m","args":[4]}"#);
    let live = sim.recv(&mut client);
    assert!(live.is_empty(), "nothing live while draining: {live:?}");

    sim.ack(&client, NSP, ack);
    let packets = sim.recv(&mut client);
    let (ack, items) = pieces(&packets).remove(0);
    assert_eq!(args_of(&items), vec![3, 4]);
    sim.ack(&client, NSP, ack);
    assert!(sim.recv(&mut client).is_empty());

    // The last piece made the device live.
    sim.send(r#"{"rooms":["user_3"],"event":"m","args":[5]}"#);
    let live = sim.recv(&mut client);
    let live = sim::events_named(&live, NSP, "m");
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(sim::event_args(live[0], NSP), Some(json!(["m", 5])));
}

#[test]
fn a_live_delivery_that_overtakes_the_last_piece_is_held_behind_it() {
    let mut sim = sim_with("    maxItems: 2\n");
    queue_while_away(&mut sim, 3);
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut client, NSP);
    let (ack, _) = pieces(&packets).remove(0);

    // The store reads the last piece (and makes the device live) but its answer is slow; a
    // send right after is stored and delivered live before that answer arrives.
    sim.hold_result = |command| matches!(command, StoreCommand::NextBatch { .. });
    sim.ack(&client, NSP, ack);
    sim.hold_result = |_| false;
    assert_eq!(sim.held_results.len(), 1);
    sim.send(r#"{"rooms":["user_3"],"event":"m","args":[4]}"#);
    assert!(sim.recv(&mut client).is_empty(), "held behind the backlog");

    sim.release_results();
    let packets = sim.recv(&mut client);
    assert_eq!(packets.len(), 2, "{packets:?}");
    let (_, items) = pieces(&packets[..1]).remove(0);
    assert_eq!(args_of(&items), vec![3]);
    assert_eq!(sim::event_args(&packets[1], NSP), Some(json!(["m", 4])));
}

#[test]
fn a_failed_next_piece_closes_the_session_and_the_rest_comes_on_reconnect() {
    let mut sim = sim_with("    maxItems: 2\n");
    queue_while_away(&mut sim, 3);
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut client, NSP);
    let (ack, _) = pieces(&packets).remove(0);
    sim.fail = |command| matches!(command, StoreCommand::NextBatch { .. });
    sim.ack(&client, NSP, ack);
    sim.fail = |_| false;
    assert!(sim.logged("Store command failed, closing the session"));
    assert_eq!(sim.gateway.connected_sockets(), 0, "session closed");
    let _ = client;

    // The failed step removed nothing: the first piece comes again (at least once).
    let mut again = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut again, NSP);
    assert_eq!(
        drain(&mut sim, &mut again, packets),
        vec![vec![1, 2], vec![3]]
    );
}
