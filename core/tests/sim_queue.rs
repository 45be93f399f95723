//! Per-device queues through the gateway: offline sends come back as one `_batch` in send
//! order, the batch ack removes exactly what it carried, several devices each get their copy,
//! and the latest socket of a device is the one that gets live messages.

mod sim;

use std::time::Duration;

use sim::{AuthAnswer, Client, Generation, Sim};

const NSP: &str = "/goodcity";

fn connect(sim: &mut Sim, query: &str) -> (Client, Vec<String>) {
    let mut client = sim.client(Generation::V3, query);
    let packets = sim.join(&mut client, NSP);
    (client, packets)
}

fn batch_of(packets: &[String]) -> Option<(u64, serde_json::Value)> {
    let batch = sim::events_named(packets, NSP, "_batch");
    assert!(batch.len() <= 1, "{packets:?}");
    let packet = batch.first()?;
    let args = sim::event_args(packet, NSP)?;
    Some((
        sim::ack_id(packet, NSP).expect("_batch asks for an ack"),
        args[1].clone(),
    ))
}

#[test]
fn offline_sends_arrive_as_one_batch_in_send_order_across_events() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3", "staff"]));
    let (mut client, _) = connect(&mut sim, "token=u3&deviceId=d1");
    sim.close(&mut client);

    for (event, arg) in [("offline1", "1"), ("offline2", "2"), ("offline1", "3")] {
        let body = format!(r#"{{"rooms":["user_3"],"event":"{event}","args":[{arg}]}}"#);
        assert_eq!(sim.send(&body).status, 200);
        sim.advance(Duration::from_millis(5));
    }
    assert_eq!(sim.send(r#"{"rooms":"staff","event":"grp"}"#).status, 200);

    let (_, packets) = connect(&mut sim, "token=u3&deviceId=d1");
    let (_, items) = batch_of(&packets).expect("a _batch");
    assert_eq!(
        items,
        serde_json::json!([
            ["offline1", 1],
            ["offline2", 2],
            ["offline1", 3],
            ["grp", null]
        ])
    );
}

#[test]
fn the_batch_ack_removes_exactly_what_the_batch_carried() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let (mut first, _) = connect(&mut sim, "token=u3&deviceId=d1");
    sim.close(&mut first);
    sim.send(r#"{"rooms":"user_3","event":"a","args":[1]}"#);

    let (mut second, packets) = connect(&mut sim, "token=u3&deviceId=d1");
    let (batch_ack, items) = batch_of(&packets).expect("a _batch");
    assert_eq!(items, serde_json::json!([["a", 1]]));
    // A message queued after the batch was read, delivered live but not acknowledged.
    sim.send(r#"{"rooms":"user_3","event":"b","args":[2]}"#);
    let live = sim.recv(&mut second);
    assert_eq!(sim::events_named(&live, NSP, "b").len(), 1, "{live:?}");
    sim.ack(&second, NSP, batch_ack);
    sim.close(&mut second);

    let (_, packets) = connect(&mut sim, "token=u3&deviceId=d1");
    let (_, items) = batch_of(&packets).expect("b is still queued");
    assert_eq!(items, serde_json::json!([["b", 2]]));
}

#[test]
fn no_batch_when_nothing_is_queued() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let (_, packets) = connect(&mut sim, "token=u3&deviceId=d1");
    assert_eq!(batch_of(&packets), None);
}

#[test]
fn each_device_has_its_own_queue() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let (mut phone, _) = connect(&mut sim, "token=u3&deviceId=phone");
    let (mut laptop, _) = connect(&mut sim, "token=u3&deviceId=laptop");
    sim.send(r#"{"rooms":"user_3","event":"hello","args":["x"]}"#);
    let on_phone = sim.recv(&mut phone);
    let on_laptop = sim.recv(&mut laptop);
    let phone_ack = sim::ack_id(&on_phone[0], NSP).expect("ack on phone");
    assert_eq!(on_laptop.len(), 1, "{on_laptop:?}");
    sim.ack(&phone, NSP, phone_ack);
    sim.close(&mut phone);
    sim.close(&mut laptop);

    let (_, packets) = connect(&mut sim, "token=u3&deviceId=phone");
    assert_eq!(batch_of(&packets), None, "the phone acknowledged");
    let (_, packets) = connect(&mut sim, "token=u3&deviceId=laptop");
    assert_eq!(
        batch_of(&packets).expect("laptop did not").1,
        serde_json::json!([["hello", "x"]])
    );
}

#[test]
fn only_the_latest_socket_of_a_device_gets_live_messages() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let (mut older, _) = connect(&mut sim, "token=u3");
    let (mut newer, _) = connect(&mut sim, "token=u3");
    sim.send(r#"{"rooms":"user_3","event":"live","args":[]}"#);
    assert!(sim::events_named(&sim.recv(&mut older), NSP, "live").is_empty());
    assert_eq!(
        sim::events_named(&sim.recv(&mut newer), NSP, "live").len(),
        1
    );
}

#[test]
fn nothing_is_queued_for_a_user_never_seen() {
    let mut sim = Sim::goodcity();
    sim.auth("u9", AuthAnswer::Rooms(vec!["user_9"]));
    assert_eq!(
        sim.send(r#"{"rooms":"user_9","event":"early","args":[]}"#)
            .status,
        200
    );
    let (_, packets) = connect(&mut sim, "token=u9&deviceId=d");
    assert_eq!(batch_of(&packets), None);
}

#[test]
fn a_disconnected_device_expires_after_device_ttl() {
    let mut sim = Sim::new(sim::GOODCITY, Some("production:\n  device_ttl: 60\n"));
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let (mut client, packets) = connect(&mut sim, "token=u3&deviceId=d1");
    assert_eq!(packets[2], r#"42/goodcity,["_settings",{"device_ttl":60}]"#);
    sim.close(&mut client);
    sim.send(r#"{"rooms":"user_3","event":"kept","args":[]}"#);
    sim.advance(Duration::from_secs(61));
    sim.send(r#"{"rooms":"user_3","event":"late","args":[]}"#);
    let (_, packets) = connect(&mut sim, "token=u3&deviceId=d1");
    assert_eq!(
        batch_of(&packets),
        None,
        "the device expired with its queue: {packets:?}"
    );
}

#[test]
fn a_connected_device_is_never_pruned() {
    let mut sim = Sim::new(sim::GOODCITY, Some("production:\n  device_ttl: 5\n"));
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let (mut first, _) = connect(&mut sim, "token=u3&deviceId=d1");
    sim.close(&mut first);
    let (mut second, _) = connect(&mut sim, "token=u3&deviceId=d1");
    // Long after the old disconnect, with the client pinging as real clients do.
    for _ in 0..4 {
        sim.advance(Duration::from_secs(5));
        sim.post(&second, &["2"]);
    }
    sim.recv(&mut second);
    sim.send(r#"{"rooms":"user_3","event":"still","args":[]}"#);
    assert_eq!(
        sim::events_named(&sim.recv(&mut second), NSP, "still").len(),
        1
    );
}

#[test]
fn client_emitted_error_and_disconnect_events_are_ignored() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let (mut client, _) = connect(&mut sim, "token=u3&deviceId=d1");
    let puts_before = sim.puts().len();
    sim.post(
        &client,
        &[
            r#"42/goodcity,["error","boom"]"#,
            r#"42/goodcity,1["disconnect"]"#,
        ],
    );
    sim.send(r#"{"rooms":"user_3","event":"after","args":[]}"#);
    let packets = sim.recv(&mut client);
    assert_eq!(
        sim::events_named(&packets, NSP, "after").len(),
        1,
        "{packets:?}"
    );
    assert!(
        !packets.iter().any(|packet| packet.starts_with("43")),
        "never acked: {packets:?}"
    );
    assert_eq!(sim.puts().len(), puts_before, "no fake last_disconnected");
}
