//! What a `/send` logs: one `info` line when it is done (site, event, dataId, rooms, recipients
//! stored / live / remote, status, duration), the per-delivery lines at `debug` only, and none
//! of those built at all when the adapter does not log `debug`.

mod sim;

use std::time::Duration;

use courier_core::net::{AppEvent, FieldValue, Level};
use sim::{AuthAnswer, Generation, Sim};

const NSP: &str = "/goodcity";

/// The events with `message`.
fn named<'a>(sim: &'a Sim, message: &str) -> Vec<&'a AppEvent> {
    sim.events.iter().filter(|e| e.message == message).collect()
}

fn field<'a>(event: &'a AppEvent, name: &str) -> &'a FieldValue {
    event
        .fields
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {name} in {event:?}"))
}

fn number(event: &AppEvent, name: &str) -> u64 {
    match field(event, name) {
        FieldValue::U64(n) => *n,
        other => panic!("{name} is {other:?}"),
    }
}

/// Two users of group `staff`, both connected: a send to the group and a user room.
fn two_users(sim: &mut Sim) -> (sim::Client, sim::Client) {
    sim.auth("u1", AuthAnswer::Rooms(vec!["user_1", "staff"]));
    sim.auth("u2", AuthAnswer::Rooms(vec!["user_2", "staff"]));
    let mut one = sim.client(Generation::V4, "token=u1&deviceId=d1");
    sim.join(&mut one, NSP);
    let mut two = sim.client(Generation::V3, "token=u2&deviceId=d2");
    sim.join(&mut two, NSP);
    (one, two)
}

#[test]
fn a_user_room_send_logs_one_info_line_with_what_it_reached() {
    let mut sim = Sim::goodcity();
    let (mut one, mut two) = two_users(&mut sim);
    sim.events.clear();
    sim.now += Duration::from_millis(3);
    let response = sim.send(r#"{"rooms":["staff","user_1","user_9"],"event":"news","args":[1]}"#);
    assert_eq!(response.status, 200);

    let infos: Vec<&AppEvent> = sim
        .events
        .iter()
        .filter(|e| e.level >= Level::Info)
        .collect();
    assert_eq!(infos.len(), 1, "one info line per /send: {infos:?}");
    let done = infos[0];
    assert_eq!(done.message, "Message dispatched");
    assert_eq!(field(done, "site"), &FieldValue::from("goodcity"));
    assert_eq!(field(done, "event"), &FieldValue::from("news"));
    assert_eq!(number(done, "rooms"), 3);
    assert_eq!(number(done, "stored"), 2, "d1 and d2 (user_9 is unknown)");
    assert_eq!(number(done, "live"), 2);
    assert_eq!(number(done, "remote"), 0);
    assert_eq!(number(done, "status"), 200);
    assert!(matches!(field(done, "durationMs"), FieldValue::Millis(_)));
    let data_id = field(done, "dataId").clone();

    // The per-delivery lines are there, at debug, with the same dataId.
    for message in ["Message stored", "Message sent"] {
        let lines = named(&sim, message);
        assert_eq!(lines.len(), 2, "{message}");
        assert!(lines.iter().all(|e| e.level == Level::Debug));
        assert!(lines.iter().all(|e| field(e, "dataId") == &data_id));
    }
    assert_eq!(named(&sim, "New message")[0].level, Level::Debug);
    assert_eq!(named(&sim, "User not connected")[0].level, Level::Debug);

    // Each ack's removal is a debug line too.
    for client in [&mut one, &mut two] {
        let namespace = NSP;
        let packets = sim.recv(client);
        let event = sim::events_named(&packets, namespace, "news")[0].clone();
        let id = sim::ack_id(&event, namespace).expect("an ack id");
        sim.ack(client, namespace, id);
    }
    let removed = named(&sim, "Message removed");
    assert_eq!(removed.len(), 2);
    assert!(removed.iter().all(|e| e.level == Level::Debug));
}

#[test]
fn the_duration_runs_from_the_request_to_the_last_store_result() {
    let mut sim = Sim::goodcity();
    let (_one, _two) = two_users(&mut sim);
    sim.hold_result = |command| {
        matches!(
            command,
            courier_core::gateway::store::StoreCommand::Enqueue { .. }
        )
    };
    sim.events.clear();
    let request = sim.request(
        courier_core::net::Method::Post,
        "/send",
        "site=goodcity&apiKey=54321",
        &[("content-type", "application/json")],
        br#"{"rooms":["user_1","user_2"],"event":"slow","args":[]}"#,
    );
    assert!(named(&sim, "Message dispatched").is_empty(), "not done yet");
    sim.now += Duration::from_millis(25);
    sim.release_results();
    assert_eq!(sim.response(request).expect("answered").status, 200);
    let done = named(&sim, "Message dispatched");
    assert_eq!(done.len(), 1);
    assert_eq!(
        field(done[0], "durationMs"),
        &FieldValue::Millis(Duration::from_millis(25))
    );
}

#[test]
fn at_info_no_debug_event_is_built() {
    let mut sim = Sim::goodcity();
    sim.gateway.set_event_level(Level::Info);
    let (mut one, _two) = two_users(&mut sim);
    sim.events.clear();
    sim.send(r#"{"rooms":["staff"],"event":"news","args":[1]}"#);
    let packets = sim.recv(&mut one);
    let event = sim::events_named(&packets, NSP, "news")[0].clone();
    sim.ack(&one, NSP, sim::ack_id(&event, NSP).expect("an ack id"));

    assert!(
        sim.events.iter().all(|e| e.level >= Level::Info),
        "{:?}",
        sim.events
    );
    let done = named(&sim, "Message dispatched");
    assert_eq!(done.len(), 1);
    assert_eq!(number(done[0], "stored"), 2);
    assert_eq!(number(done[0], "live"), 2);
}

const BROADCAST: &str = r#"
news:
  authUrl: http://127.0.0.1:9/rooms
  authScheme: Token
  apiKey: k
"#;

#[test]
fn a_broadcast_send_logs_one_info_line_with_the_sockets_reached() {
    let mut sim = Sim::new(BROADCAST, None);
    sim.auth("a", AuthAnswer::Rooms(vec!["sports", "weather"]));
    sim.auth("b", AuthAnswer::Rooms(vec!["sports"]));
    let mut a = sim.client(Generation::V3, "token=a");
    sim.join(&mut a, "/news");
    let mut b = sim.client(Generation::V4, "token=b");
    sim.join(&mut b, "/news");
    sim.events.clear();
    let response = sim.send_json(
        "site=news&apiKey=k",
        r#"{"rooms":["sports","weather"],"event":"score","args":[2]}"#,
    );
    assert_eq!(response.status, 200);
    let infos: Vec<&AppEvent> = sim
        .events
        .iter()
        .filter(|e| e.level >= Level::Info)
        .collect();
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert_eq!(infos[0].message, "Message dispatched");
    assert_eq!(number(infos[0], "rooms"), 2);
    assert_eq!(number(infos[0], "live"), 3, "a in both rooms, b in one");
    assert_eq!(number(infos[0], "stored"), 0);
}
