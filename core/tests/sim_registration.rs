//! Registered before admitted: a socket with devices is told it is connected (CONNECT reply,
//! `_settings`) only once the store has registered every device; live messages that reach it
//! before then wait behind `_settings` and the `_batch`; a failed registration closes the
//! Engine.IO session so that the client reconnects, and the reconnect registers it.

mod sim;

use std::time::Duration;

use courier_core::gateway::store::StoreCommand;
use serde_json::json;
use sim::{AuthAnswer, Generation, Sim};

const NSP: &str = "/goodcity";

fn is_connect_reply(packet: &str) -> bool {
    packet == "40/goodcity" || packet.starts_with("40/goodcity,")
}

fn sim() -> Sim {
    let mut sim = Sim::goodcity();
    // A user room and the public channel: two devices to register.
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3", "browse"]));
    sim
}

#[test]
fn nothing_is_said_to_the_client_until_every_device_is_registered() {
    for generation in [Generation::V3, Generation::V4] {
        let mut sim = sim();
        let mut away = sim.client(generation, "token=u3&deviceId=d1");
        sim.join(&mut away, NSP);
        sim.close(&mut away);
        sim.send(r#"{"rooms":["user_3"],"event":"queued","args":[1]}"#);

        sim.hold_result = |command| matches!(command, StoreCommand::Connect { .. });
        let mut client = sim.client(generation, "token=u3&deviceId=d1");
        let packets = sim.join(&mut client, NSP);
        sim.hold_result = |_| false;
        assert!(
            !packets.iter().any(|p| is_connect_reply(p)),
            "no CONNECT reply before registration: {packets:?}"
        );
        assert!(sim::events_named(&packets, NSP, "_settings").is_empty());
        assert_eq!(sim.held_results.len(), 2);

        sim.release_results();
        let packets = sim.recv(&mut client);
        assert!(is_connect_reply(&packets[0]), "{packets:?}");
        assert_eq!(
            sim::event_args(&packets[1], NSP),
            Some(json!(["_settings", {"device_ttl": 3600}]))
        );
        assert_eq!(
            sim::event_args(&packets[2], NSP),
            Some(json!(["_batch", [["queued", 1]]]))
        );
        assert_eq!(packets.len(), 3, "{packets:?}");
    }
}

#[test]
fn a_message_sent_during_registration_follows_settings() {
    let mut sim = sim();
    sim.hold_result = |command| matches!(command, StoreCommand::Connect { .. });
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    sim.join(&mut client, NSP);
    sim.hold_result = |_| false;
    // The store has the device (registered, live) but its answer has not arrived yet.
    assert_eq!(
        sim.send(r#"{"rooms":["user_3"],"event":"early","args":[]}"#)
            .status,
        200
    );
    assert!(sim.recv(&mut client).is_empty());

    sim.release_results();
    let packets = sim.recv(&mut client);
    assert!(is_connect_reply(&packets[0]), "{packets:?}");
    assert_eq!(sim::events_named(&packets[1..2], NSP, "_settings").len(), 1);
    assert_eq!(sim::event_args(&packets[2], NSP), Some(json!(["early"])));
    assert!(
        sim::ack_id(&packets[2], NSP).is_some(),
        "a stored message asks for an ack"
    );
}

#[test]
fn a_failed_registration_closes_the_session_and_a_reconnect_registers() {
    let mut sim = sim();
    sim.fail = |command| matches!(command, StoreCommand::Connect { device, .. } if device.room == "browse");
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut client, NSP);
    assert!(!packets.iter().any(|p| is_connect_reply(p)), "{packets:?}");
    assert!(
        packets.contains(&"1".to_owned()),
        "session closed: {packets:?}"
    );
    assert!(sim.logged("Registration failed, closing the session"));
    assert_eq!(sim.gateway.connected_sockets(), 0);

    // The store is back: the client's reconnect registers it and it gets its messages.
    sim.fail = |_| false;
    sim.advance(Duration::from_millis(10));
    let mut again = sim.client(Generation::V4, "token=u3&deviceId=d1");
    let packets = sim.join(&mut again, NSP);
    assert!(is_connect_reply(&packets[0]), "{packets:?}");
    assert_eq!(sim::events_named(&packets, NSP, "_settings").len(), 1);
    sim.send(r#"{"rooms":["user_3"],"event":"after","args":[]}"#);
    assert_eq!(
        sim::events_named(&sim.recv(&mut again), NSP, "after").len(),
        1
    );
}

#[test]
fn a_site_without_user_rooms_is_told_at_once() {
    let mut sim = Sim::new(
        "open:\n  authUrl: http://127.0.0.1:9/rooms\n  authScheme: Bearer\n  apiKey: 1\n",
        None,
    );
    sim.auth("u3", AuthAnswer::Rooms(vec!["lobby"]));
    sim.fail = |_| true;
    let mut client = sim.client(Generation::V4, "token=u3");
    let packets = sim.join(&mut client, "/open");
    assert!(packets[0].starts_with("40/open,"), "{packets:?}");
    assert_eq!(sim::events_named(&packets, "/open", "_settings").len(), 1);
}
